"""Daily usage, pre-aggregated: what the dashboard's overview reads instead of the ledger.

The ledger has one row per request, and a busy gateway's month is millions of rows: too many to
sum on every page view. `usage_daily` holds, per key, UTC day, tier, routed and requested model,
policy and cache hit, that day's requests, errors, tokens and money (the requested model and
the policy are there for the call history: which days hold rows a filter matches, so that a
filter matching nothing answers without reading the ledger); and the same per day for every key at once under
the key id `*` (no key id has one), so that an overview, of one key or of all, reads a few
hundred small rows whatever the ledger's size. Migration 5 creates the table and fills it from
the ledger; from then on the ledger writer adds each batch to it as it writes the batch.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from costr.accounts.records import LedgerRecord

ALL_KEYS = "*"
CHART_DAYS = 30
_GROUP = ("key_id", "day", "tier", "routed_model", "requested_model", "policy", "cache_hit")
_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens", "cost_micros",
         "baseline_micros", "cache_saved_micros")


def _backfill(key_id: str, group_by: str) -> str:
    """The rollup rows of the whole ledger, per key (`key_id`) or for every key (`'*'`)."""
    return f"""INSERT INTO usage_daily ({', '.join(_GROUP + _SUMS)})
        SELECT {key_id}, day, COALESCE(tier, ''), routed_model, requested_model,
            COALESCE(policy, ''), cache_hit, COUNT(*),
            SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(input_tokens),
            SUM(output_tokens), SUM(cached_tokens), SUM(cost_micros), SUM(baseline_micros),
            SUM(cache_saved_micros)
        FROM ledger GROUP BY {group_by}"""


# Migration 5 (in store_sql.MIGRATIONS): the rollup table, filled from the ledger; and the
# ledger's indexes for the call history, newest first with keyset pagination on (ts, id),
# of one key or of all, so a page never sorts more than it shows.
MIGRATION = [
    """CREATE TABLE usage_daily (
        key_id TEXT NOT NULL,
        day TEXT NOT NULL,
        tier TEXT NOT NULL,
        routed_model TEXT NOT NULL,
        requested_model TEXT NOT NULL,
        policy TEXT NOT NULL,
        cache_hit BOOLEAN NOT NULL,
        requests BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        cost_micros BIGINT NOT NULL,
        baseline_micros BIGINT NOT NULL,
        cache_saved_micros BIGINT NOT NULL,
        PRIMARY KEY (key_id, day, tier, routed_model, requested_model, policy, cache_hit))""",
    _backfill("key_id", "key_id, day, COALESCE(tier, ''), routed_model, requested_model, "
                        "COALESCE(policy, ''), cache_hit"),
    _backfill(f"'{ALL_KEYS}'", "day, COALESCE(tier, ''), routed_model, requested_model, "
                               "COALESCE(policy, ''), cache_hit"),
    "DROP INDEX ledger_key_ts",
    "CREATE INDEX ledger_key_ts_id ON ledger (key_id, ts, id)",
    "DROP INDEX ledger_ts",
    "CREATE INDEX ledger_ts_id ON ledger (ts, id)",
]

ADD_TO_ROLLUP = (
    f"INSERT INTO usage_daily ({', '.join(_GROUP + _SUMS)}) "
    f"VALUES ({', '.join('?' * (len(_GROUP) + len(_SUMS)))}) "
    f"ON CONFLICT ({', '.join(_GROUP)}) DO UPDATE SET "
    + ", ".join(f"{name} = usage_daily.{name} + excluded.{name}" for name in _SUMS))
ROLLUP_ROWS = f"""SELECT day, tier, routed_model, cache_hit, {', '.join(_SUMS)}
    FROM usage_daily WHERE key_id = ? AND day >= ? AND day <= ?"""
CREDIT_TOTALS = """SELECT COUNT(*) AS keys_in_use,
    SUM(CASE WHEN balance_micros IS NULL THEN 1 ELSE 0 END) AS unlimited_keys,
    SUM(balance_micros) AS balance_micros, SUM(reserved_micros) AS reserved_micros
    FROM api_keys WHERE NOT revoked"""


async def days_with_rows(store, key_id: str | None, *, tier: str | None = None,
                         model: str | None = None, policy: str | None = None,
                         failed: bool | None = None, first: date | None = None,
                         last: date | None = None) -> tuple[date, date] | None:
    """The first and last UTC day holding a request of `key_id` (None: any key) with this
    tier, model (routed or requested), policy and outcome (`failed`: True, an error status;
    False, answered), within [first, last]; None when no day does."""
    conditions, params = ["key_id = ?"], [ALL_KEYS if key_id is None else key_id]
    for column, value in (("tier", tier), ("policy", policy)):
        if value:
            conditions.append(f"{column} = ?")
            params.append(value)
    if model:
        conditions.append("(routed_model = ? OR requested_model = ?)")
        params += [model, model]
    if failed is not None:
        conditions.append("errors > 0" if failed else "requests > errors")
    if first is not None:
        conditions.append("day >= ?")
        params.append(first.isoformat())
    if last is not None:
        conditions.append("day <= ?")
        params.append(last.isoformat())
    row = (await store._fetch("SELECT MIN(day) AS first, MAX(day) AS last FROM usage_daily "
                              f"WHERE {' AND '.join(conditions)}", tuple(params)))[0]
    if row["first"] is None:
        return None
    return date.fromisoformat(row["first"]), date.fromisoformat(row["last"])


def rollup_increments(records: list[LedgerRecord]) -> list[tuple]:
    """What a batch of ledger records adds to the rollup, one row per group (each record counts
    for its key and for every key), sorted so that two instances writing at once lock the
    rows they share in the same order and never deadlock."""
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(_SUMS))
    for r in records:
        values = (1, int(r.status >= 400), r.input_tokens, r.output_tokens, r.cached_tokens,
                  r.cost_micros, r.baseline_micros, r.cache_saved_micros)
        for key_id in (r.key_id, ALL_KEYS):
            total = sums[(key_id, r.day, r.tier or "", r.routed_model, r.requested_model,
                          r.policy or "", bool(r.cache_hit))]
            for i, value in enumerate(values):
                total[i] += int(value)
    return [(*group, *totals) for group, totals in sorted(sums.items())]


async def write_ledger_batch(store, records: list[LedgerRecord]) -> None:
    """Write a batch to the ledger, then add it to the rollup.

    Two transactions, in this order, so that the ledger writer's retry of a failed batch keeps
    them equal: the ledger insert ignores records already written, and the rollup is added to
    only after that insert succeeded, in one transaction of its own. (They can differ only if
    the process dies between the two commits.)"""
    if not records:
        return
    await store.write_ledger(records)
    await store._execute_many(ADD_TO_ROLLUP, rollup_increments(records))


@dataclass
class Usage:
    """Requests and their money over some days; amounts in micro-dollars."""
    requests: int = 0
    errors: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_micros: int = 0
    baseline_micros: int = 0
    cache_saved_micros: int = 0

    def add(self, row: dict) -> None:
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + int(row[name] or 0))
        if row["cache_hit"]:
            self.cache_hits += int(row["requests"])

    @property
    def savings_micros(self) -> int:
        """What the baseline model would have cost beyond what was spent (negative when the
        routed models cost more)."""
        return self.baseline_micros - self.cost_micros

    @property
    def savings_percent(self) -> float:
        return 100.0 * self.savings_micros / self.baseline_micros if self.baseline_micros else 0.0

    @property
    def cache_hit_percent(self) -> float:
        return 100.0 * self.cache_hits / self.requests if self.requests else 0.0


@dataclass
class UsageOverview:
    """One key's usage (or every key's) as the overview shows it. Days are UTC dates. `tiers`
    and `models`: the window's requests per tier and per routed model, most first ('' for the
    requests no model answered)."""
    today: Usage
    month: Usage
    window: Usage                             # the last CHART_DAYS days, today included
    days: list[tuple[str, Usage]]             # each of those days, oldest first, none missing
    tiers: list[tuple[str, int]] = field(default_factory=list)
    models: list[tuple[str, int]] = field(default_factory=list)


async def usage_overview(store, key_id: str | None, today: date) -> UsageOverview:
    """Today's, this month's and the last CHART_DAYS days' usage of `key_id` (None: every key),
    from the rollup alone."""
    first = min(today.replace(day=1), today - timedelta(days=CHART_DAYS - 1))
    whose = ALL_KEYS if key_id is None else key_id
    rows = await store._fetch(ROLLUP_ROWS, (whose, first.isoformat(), today.isoformat()))
    window_start = (today - timedelta(days=CHART_DAYS - 1)).isoformat()
    month_start, today_text = today.replace(day=1).isoformat(), today.isoformat()
    days = {(today - timedelta(days=n)).isoformat(): Usage() for n in range(CHART_DAYS - 1, -1, -1)}
    overview = UsageOverview(today=Usage(), month=Usage(), window=Usage(), days=list(days.items()))
    tiers: dict[str, int] = defaultdict(int)
    models: dict[str, int] = defaultdict(int)
    for row in rows:
        day = row["day"]
        if day >= month_start:
            overview.month.add(row)
        if day == today_text:
            overview.today.add(row)
        if day >= window_start:
            days[day].add(row)
            overview.window.add(row)
            tiers[row["tier"]] += int(row["requests"])
            models[row["routed_model"]] += int(row["requests"])
    overview.tiers = _most_first(tiers)
    overview.models = _most_first(models)
    return overview


def _most_first(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


@dataclass(frozen=True)
class CreditTotals:
    """The credit of every key not revoked, added up; unlimited keys are counted apart."""
    keys_in_use: int
    unlimited_keys: int
    balance_micros: int
    reserved_micros: int

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.reserved_micros


async def credit_totals(store) -> CreditTotals:
    row = (await store._fetch(CREDIT_TOTALS))[0]
    return CreditTotals(keys_in_use=int(row["keys_in_use"]),
                        unlimited_keys=int(row["unlimited_keys"] or 0),
                        balance_micros=int(row["balance_micros"] or 0),
                        reserved_micros=int(row["reserved_micros"] or 0))
