"""What the SQLite and PostgreSQL stores share: the schema as versioned migrations, the queries
(written once, with `?` placeholders), row <-> record conversion, and the `Store` methods built
on four primitives each backend provides (credit holds, which each backend does its own way,
are in store_holds.py).

The SQL is the subset both dialects accept: TEXT, BIGINT, DOUBLE PRECISION, BOOLEAN (SQLite
stores 0/1), `ON CONFLICT ... DO NOTHING/UPDATE`, `excluded.`. Where they differ (percentiles),
a backend overrides one method.
"""
from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

import orjson

from costr.accounts import dashboard_sessions, usage_rollups
from costr.accounts.records import MICROS, ApiKey, Feedback, KeptPrompt, LedgerRecord, RatedRequest

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            admin BOOLEAN NOT NULL DEFAULT FALSE,
            balance_micros BIGINT,
            reserved_micros BIGINT NOT NULL DEFAULT 0,
            rpm BIGINT,
            tpm BIGINT,
            revoked BOOLEAN NOT NULL DEFAULT FALSE,
            created_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX api_keys_prefix ON api_keys (prefix)",
        """CREATE TABLE ledger (
            id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            day TEXT NOT NULL,
            family TEXT NOT NULL,
            requested_model TEXT NOT NULL DEFAULT '',
            routed_model TEXT NOT NULL DEFAULT '',
            provider TEXT NOT NULL DEFAULT '',
            tier TEXT,
            policy TEXT,
            complexity DOUBLE PRECISION,
            confidence DOUBLE PRECISION,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            cached_tokens BIGINT NOT NULL DEFAULT 0,
            usage_estimated BOOLEAN NOT NULL DEFAULT FALSE,
            cost_micros BIGINT NOT NULL DEFAULT 0,
            charged_micros BIGINT NOT NULL DEFAULT 0,
            baseline_micros BIGINT NOT NULL DEFAULT 0,
            savings_percent DOUBLE PRECISION NOT NULL DEFAULT 0,
            cache_hit BOOLEAN NOT NULL DEFAULT FALSE,
            latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
            ttft_ms DOUBLE PRECISION,
            status INTEGER NOT NULL,
            upstream_status INTEGER,
            error TEXT)""",
        "CREATE INDEX ledger_key_ts ON ledger (key_id, ts)",
        "CREATE INDEX ledger_ts ON ledger (ts)",
        "CREATE INDEX ledger_day ON ledger (day)",
        """CREATE TABLE feedback (
            request_id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            rating INTEGER NOT NULL,
            comment TEXT NOT NULL DEFAULT '',
            ts DOUBLE PRECISION NOT NULL)""",
    ]),
    (2, ["ALTER TABLE ledger ADD COLUMN cache_saved_micros BIGINT NOT NULL DEFAULT 0"]),
    (3, [
        """CREATE TABLE kept_prompts (
            request_id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL,
            messages TEXT NOT NULL)""",
        "CREATE INDEX kept_prompts_ts ON kept_prompts (ts)",
    ]),
    (4, ["ALTER TABLE ledger ADD COLUMN policy_rule TEXT"]),
    (5, usage_rollups.MIGRATION),  # daily usage rollups, the call history's ledger indexes
    (6, dashboard_sessions.TABLES),  # dashboard sign-in sessions and their cookie secret
    (7, ["ALTER TABLE ledger ADD COLUMN routing_signals TEXT",   # what the dashboard's request
         "ALTER TABLE ledger ADD COLUMN fallbacks TEXT"]),        # detail shows of the routing
    (8, [  # credit holds (store_holds.py); a reservation left by an instance that stopped before
           # this migration has no hold: it becomes one that expired, released at start-up
        """CREATE TABLE credit_holds (
            id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            micros BIGINT NOT NULL,
            owner TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL)""",   # the holds in flight: no other index
        """INSERT INTO credit_holds (id, key_id, micros, owner, expires_at)
            SELECT 'before-holds-' || id, id, reserved_micros, 'before-holds', 0
            FROM api_keys WHERE reserved_micros > 0"""]),
]

CREATE_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"""
APPLIED_VERSIONS = "SELECT version FROM schema_migrations ORDER BY version"
RECORD_VERSION = "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1..$n` (the queries here hold no `?` in literals)."""
    count = 0

    def next_number(_match: re.Match) -> str:
        nonlocal count
        count += 1
        return f"${count}"
    return re.sub(r"\?", next_number, sql)


# --- rows <-> records ---------------------------------------------------------------------

KEY_COLUMNS = [f.name for f in fields(ApiKey)]
LEDGER_COLUMNS = [f.name for f in fields(LedgerRecord)]
_CASTS = {"bool": bool, "int": int, "float": float, "str": str}


def _casts(record_type) -> dict[str, Any]:
    """Per field, the plain type its column's value is cast to (bools come back from SQLite
    as 0/1, sums from PostgreSQL as Decimal)."""
    return {f.name: _CASTS[str(f.type).split("|")[0].strip()] for f in fields(record_type)}


_KEY_CASTS, _LEDGER_CASTS = _casts(ApiKey), _casts(LedgerRecord)


def _cast_row(row: dict, casts: dict) -> dict:
    return {name: (None if row[name] is None else casts[name](row[name])) for name in casts}


def key_from_row(row: dict) -> ApiKey:
    return ApiKey(**_cast_row(row, _KEY_CASTS))


def ledger_from_row(row: dict) -> LedgerRecord:
    return LedgerRecord(**_cast_row(row, _LEDGER_CASTS))


def _params(record, casts: dict) -> tuple:
    """The record's fields in column order, as the plain types the drivers expect."""
    return tuple(None if (value := getattr(record, name)) is None else cast(value)
                 for name, cast in casts.items())


def ledger_params(record: LedgerRecord) -> tuple:
    return _params(record, _LEDGER_CASTS)


def _usd(micros) -> float:
    return int(micros or 0) / MICROS


def _savings_percent(cost_micros: int, baseline_micros: int) -> float:
    if not baseline_micros:
        return 0.0
    return round(100.0 * (baseline_micros - cost_micros) / baseline_micros, 1)


def _stats_row(row: dict, rated: dict | None, latencies: tuple) -> dict:
    """One (tier, model) group of STATS, rounded as the other endpoints round: money from
    micro-dollars, savings to 0.1 %, rates to 0.01 %, latencies to 0.01 ms (as the ledger
    records them), ratings to 0.01."""
    requests, hits = int(row["requests"]), int(row["cache_hits"] or 0)
    cost, baseline = int(row["cost"] or 0), int(row["baseline"] or 0)
    p50, p95 = (None if ms is None else round(float(ms), 2) for ms in latencies)
    return {"tier": row["tier"], "model": row["routed_model"], "requests": requests,
            "errors": int(row["errors"] or 0), "cost_usd": _usd(cost),
            "baseline_cost_usd": _usd(baseline), "savings_percent": _savings_percent(cost, baseline),
            "cache_hits": hits, "cache_hit_rate": round(hits / requests, 4) if requests else 0.0,
            "cache_saved_usd": _usd(int(row["cache_saved"] or 0)),
            "p50_latency_ms": p50, "p95_latency_ms": p95,
            "feedback_count": int(rated["n"]) if rated else 0,
            "mean_rating": round(float(rated["mean_rating"]), 2) if rated else None}


def percentile(ordered: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- queries -------------------------------------------------------------------------------

_KEY_SELECT = f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys"
INSERT_KEY = (f"INSERT INTO api_keys ({', '.join(KEY_COLUMNS)}, secret_hash) "
              f"VALUES ({', '.join('?' * (len(KEY_COLUMNS) + 1))})")
KEY_BY_HASH = f"{_KEY_SELECT} WHERE secret_hash = ?"
KEY_BY_ID_OR_PREFIX = f"{_KEY_SELECT} WHERE id = ? OR prefix = ? LIMIT 2"
LIST_KEYS = f"{_KEY_SELECT} ORDER BY created_at, id"
COUNT_KEYS = "SELECT COUNT(*) AS n FROM api_keys"
REVOKE_KEY = "UPDATE api_keys SET revoked = TRUE WHERE id = ? AND NOT revoked"
TOP_UP = ("UPDATE api_keys SET balance_micros = balance_micros + ? "
          "WHERE id = ? AND balance_micros IS NOT NULL")
BALANCE = "SELECT balance_micros FROM api_keys WHERE id = ?"

INSERT_LEDGER = (f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(LEDGER_COLUMNS))}) ON CONFLICT (id) DO NOTHING")
_LEDGER_SELECT = f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger"
LEDGER_RECORD = f"{_LEDGER_SELECT} WHERE id = ?"
UPSERT_FEEDBACK = ("INSERT INTO feedback (request_id, key_id, rating, comment, ts) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id) DO UPDATE SET "
                   "rating = excluded.rating, comment = excluded.comment, ts = excluded.ts")
INSERT_PROMPT = ("INSERT INTO kept_prompts (request_id, key_id, ts, messages) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (request_id) DO NOTHING")
FORGET_PROMPTS = "DELETE FROM kept_prompts WHERE ts < ?"
RATED_REQUESTS = """SELECT l.id, l.key_id, l.ts, l.routed_model, l.tier, l.policy, l.complexity,
    f.rating, p.messages FROM feedback f JOIN ledger l ON l.id = f.request_id
    LEFT JOIN kept_prompts p ON p.request_id = f.request_id
    WHERE l.ts >= ? {key} ORDER BY l.ts, l.id"""

USAGE_BY_DAY = """SELECT day, COUNT(*) AS requests, SUM(input_tokens) AS input_tokens,
    SUM(output_tokens) AS output_tokens, SUM(cached_tokens) AS cached_tokens,
    SUM(cost_micros) AS cost, SUM(baseline_micros) AS baseline
    FROM ledger WHERE day >= ? AND day <= ? {key} GROUP BY day ORDER BY day"""
STATS = """SELECT tier, routed_model, COUNT(*) AS requests,
    SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors,
    SUM(cost_micros) AS cost, SUM(baseline_micros) AS baseline,
    SUM(CASE WHEN cache_hit THEN 1 ELSE 0 END) AS cache_hits,
    SUM(cache_saved_micros) AS cache_saved
    FROM ledger WHERE ts >= ? {key} GROUP BY tier, routed_model"""
STATS_FEEDBACK = """SELECT l.tier, l.routed_model, COUNT(*) AS n, AVG(f.rating) AS mean_rating
    FROM feedback f JOIN ledger l ON l.id = f.request_id
    WHERE l.ts >= ? {key} GROUP BY l.tier, l.routed_model"""
# Latency percentiles are over answered requests: an error's latency says nothing of the model.
STATS_LATENCIES = """SELECT tier, routed_model, latency_ms FROM ledger
    WHERE ts >= ? AND status < 400 {key} ORDER BY tier, routed_model, latency_ms"""


def _key_filter(sql: str, key_id: str | None, column: str = "key_id") -> tuple[str, tuple]:
    if key_id is None:
        return sql.format(key=""), ()
    return sql.format(key=f"AND {column} = ?"), (key_id,)


class SQLStore:
    """The `Store` methods, on four primitives a backend supplies: `_fetch` (rows as dicts),
    `_execute` (affected row count), `_execute_many` (one transaction) and `migrate`."""

    async def _fetch(self, sql: str, params: tuple = ()) -> list[dict]:
        raise NotImplementedError

    async def _execute(self, sql: str, params: tuple = ()) -> int:
        raise NotImplementedError

    async def _execute_many(self, sql: str, rows: list[tuple]) -> None:
        raise NotImplementedError

    async def applied_versions(self) -> list[int]:
        return [int(row["version"]) for row in await self._fetch(APPLIED_VERSIONS)]

    # keys
    async def create_key(self, key: ApiKey, secret_hash: str) -> None:
        await self._execute(INSERT_KEY, (*_params(key, _KEY_CASTS), secret_hash))

    async def key_by_hash(self, secret_hash: str) -> ApiKey | None:
        """The key, revoked or not: the caller rejects a revoked one with its own words."""
        rows = await self._fetch(KEY_BY_HASH, (secret_hash,))
        return key_from_row(rows[0]) if rows else None

    async def key_by_id_or_prefix(self, ident: str) -> ApiKey | None:
        """None when nothing matches, or when a display prefix is shared by two keys."""
        rows = await self._fetch(KEY_BY_ID_OR_PREFIX, (ident, ident))
        return key_from_row(rows[0]) if len(rows) == 1 else None

    async def list_keys(self) -> list[ApiKey]:
        return [key_from_row(row) for row in await self._fetch(LIST_KEYS)]

    async def count_keys(self) -> int:
        return int((await self._fetch(COUNT_KEYS))[0]["n"])

    async def revoke_key(self, key_id: str) -> bool:
        return await self._execute(REVOKE_KEY, (key_id,)) == 1

    async def top_up(self, key_id: str, micros: int) -> int | None:
        await self._execute(TOP_UP, (int(micros), key_id))
        rows = await self._fetch(BALANCE, (key_id,))
        return None if not rows or rows[0]["balance_micros"] is None \
            else int(rows[0]["balance_micros"])

    # credits: reserve, settle and the holds' upkeep are each backend's (store_holds.py)

    # ledger
    async def write_ledger(self, records: list[LedgerRecord]) -> None:
        if records:
            await self._execute_many(INSERT_LEDGER, [ledger_params(r) for r in records])

    async def usage_by_day(self, key_id: str | None, start_day: str, end_day: str) -> list[dict]:
        sql, key_params = _key_filter(USAGE_BY_DAY, key_id)
        rows = await self._fetch(sql, (start_day, end_day, *key_params))
        out = []
        for row in rows:
            cost, baseline = int(row["cost"] or 0), int(row["baseline"] or 0)
            out.append({"day": row["day"], "requests": int(row["requests"]),
                        "input_tokens": int(row["input_tokens"] or 0),
                        "output_tokens": int(row["output_tokens"] or 0),
                        "cached_tokens": int(row["cached_tokens"] or 0),
                        "cost_usd": _usd(cost), "baseline_cost_usd": _usd(baseline),
                        "savings_usd": _usd(baseline - cost),
                        "savings_percent": _savings_percent(cost, baseline)})
        return out

    async def stats(self, key_id: str | None, since_ts: float) -> list[dict]:
        sql, key_params = _key_filter(STATS, key_id)
        groups = await self._fetch(sql, (float(since_ts), *key_params))
        sql, key_params = _key_filter(STATS_FEEDBACK, key_id, "l.key_id")
        feedback = {(r["tier"], r["routed_model"]): r
                    for r in await self._fetch(sql, (float(since_ts), *key_params))}
        latencies = await self._latency_percentiles(key_id, float(since_ts))
        out = []
        for row in groups:
            group = (row["tier"], row["routed_model"])
            out.append(_stats_row(row, feedback.get(group), latencies.get(group, (None, None))))
        return sorted(out, key=lambda s: (s["tier"] or "", s["model"]))

    async def _latency_percentiles(self, key_id: str | None, since_ts: float) -> dict:
        """{(tier, model): (p50, p95)}, computed here from the window's latencies."""
        sql, key_params = _key_filter(STATS_LATENCIES, key_id)
        by_group: dict[tuple, list[float]] = {}
        for row in await self._fetch(sql, (since_ts, *key_params)):
            by_group.setdefault((row["tier"], row["routed_model"]), []).append(
                float(row["latency_ms"]))
        return {group: (percentile(values, 0.5), percentile(values, 0.95))
                for group, values in by_group.items()}

    async def requests_page(self, key_id: str | None, limit: int,
                            before_ts: float | None) -> list[LedgerRecord]:
        """Newest first; the next page is `before_ts=` the last record's ts."""
        conditions, params = [], []
        if key_id is not None:
            conditions.append("key_id = ?")
            params.append(key_id)
        if before_ts is not None:
            conditions.append("ts < ?")
            params.append(float(before_ts))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"{_LEDGER_SELECT}{where} ORDER BY ts DESC, id DESC LIMIT ?"
        rows = await self._fetch(sql, (*params, int(limit)))
        return [ledger_from_row(row) for row in rows]

    async def ledger_record(self, request_id: str) -> LedgerRecord | None:
        rows = await self._fetch(LEDGER_RECORD, (request_id,))
        return ledger_from_row(rows[0]) if rows else None

    async def add_feedback(self, feedback: Feedback) -> None:
        await self._execute(UPSERT_FEEDBACK, (feedback.request_id, feedback.key_id,
                                              int(feedback.rating), feedback.comment or "",
                                              float(feedback.ts)))

    # kept prompts
    async def keep_prompts(self, prompts: list[KeptPrompt]) -> None:
        if prompts:
            await self._execute_many(INSERT_PROMPT, [(p.request_id, p.key_id, float(p.ts),
                                                      p.messages) for p in prompts])

    async def forget_prompts_before(self, ts: float) -> int:
        return await self._execute(FORGET_PROMPTS, (float(ts),))

    async def rated_requests(self, since_ts: float, key_id: str | None) -> list[RatedRequest]:
        sql, key_params = _key_filter(RATED_REQUESTS, key_id, "l.key_id")
        return [RatedRequest(
            request_id=r["id"], key_id=r["key_id"], ts=float(r["ts"]),
            routed_model=r["routed_model"], tier=r["tier"], policy=r["policy"],
            complexity=None if r["complexity"] is None else float(r["complexity"]),
            rating=int(r["rating"]),
            messages=None if r["messages"] is None else orjson.loads(r["messages"]))
            for r in await self._fetch(sql, (float(since_ts), *key_params))]


class StoreUnavailable(Exception):
    """The database cannot be opened or reached. The message names it without a password."""
