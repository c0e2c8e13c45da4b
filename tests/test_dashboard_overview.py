"""The overview page and the daily rollup under it: the rollup always equals the ledger summed
(after every batch, after a retried batch, after migration 5's backfill; on SQLite and on
PostgreSQL), the page shows those figures, a non-admin sees only their own key, and the charts
escape what they label."""
from __future__ import annotations

import html
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from costr.accounts.records import LedgerRecord
from costr.accounts.store_sql import LEDGER_COLUMNS, ledger_from_row
from costr.accounts.usage_rollups import (ADD_TO_ROLLUP, ALL_KEYS, MIGRATION, Usage,
                                          usage_overview, write_ledger_batch)
from costr.benchmark import ledger_pages
from costr.dashboard.charts import MOST_SHARES, daily_chart, nice_step, share_chart
from costr.server.app import create_app
from costr.testing import TEST_KEY, seed_key
from costr.testing.fake_upstream import write_gateway_config
from costr.testing.synthetic_ledger import ROW_COLUMNS, ledger_rows, synthetic_keys

NOW = time.time()
TODAY = datetime.fromtimestamp(NOW, timezone.utc).date()
USER_KEY = "cr-user-key-for-the-overview-tests-0123456789"
OTHER_KEY = "cr-other-key-for-the-overview-tests-012345678"
EVIL = '<script>alert("x")</script>'


def ledger_record(n: int, key_id: str, days_ago: int, **fields) -> LedgerRecord:
    ts = NOW - days_ago * 86_400 - n
    values = dict(id=f"req_{key_id}_{days_ago}_{n}", key_id=key_id, ts=ts,
                  day=datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d"),
                  family="openai-chat", requested_model="auto",
                  routed_model=("mini", "standard", "large")[n % 3],
                  tier=("budget", "standard", "premium")[n % 3], provider="fake",
                  input_tokens=100 + n, output_tokens=20 + n, cached_tokens=n % 4,
                  cost_micros=1_000 * (1 + n % 3), baseline_micros=5_000,
                  cache_hit=n % 5 == 0, cache_saved_micros=700 if n % 5 == 0 else 0,
                  status=200)
    values.update(fields)
    return LedgerRecord(**values)


def known_ledger(key_ids: list[str]) -> list[LedgerRecord]:
    """Requests on several days, tiers and models, with failures and cache hits."""
    records = []
    for key_id in key_ids:
        for days_ago in (0, 1, 5, 29, 30, 45):
            for n in range(7):
                failed = n == 6
                records.append(ledger_record(n, key_id, days_ago,
                                             status=502 if failed else 200,
                                             routed_model="" if failed and days_ago == 1 else
                                             ("mini", "standard", "large")[n % 3],
                                             tier=None if failed and days_ago == 1 else
                                             ("budget", "standard", "premium")[n % 3]))
    return records


# -- the rollup against the ledger, on both databases -----------------------------------------



LEDGER_SUMS = """SELECT {who} AS key_id, day, COALESCE(tier, '') AS tier, routed_model,
    requested_model, COALESCE(policy, '') AS policy, cache_hit, COUNT(*) AS requests, SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors,
    SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,
    SUM(cached_tokens) AS cached_tokens, SUM(cost_micros) AS cost_micros,
    SUM(baseline_micros) AS baseline_micros, SUM(cache_saved_micros) AS cache_saved_micros
    FROM ledger GROUP BY {group}"""
ROLLUP = "SELECT * FROM usage_daily"


def normalised(rows: list[dict]) -> set[tuple]:
    return {tuple((k, bool(v) if k == "cache_hit" else v if isinstance(v, str) else int(v))
                  for k, v in sorted(row.items())) for row in rows}


async def ledger_summed(store) -> set[tuple]:
    group = "day, COALESCE(tier, ''), routed_model, requested_model, COALESCE(policy, ''), cache_hit"
    per_key = await store._fetch(LEDGER_SUMS.format(who="key_id", group="key_id, " + group))
    every_key = await store._fetch(LEDGER_SUMS.format(who=f"'{ALL_KEYS}'", group=group))
    return normalised(per_key + every_key)


@pytest.mark.anyio
async def test_the_rollup_equals_the_ledger_summed_after_every_batch(store):
    records = known_ledger(["k1", "k2"])
    await write_ledger_batch(store, records[:50])
    assert normalised(await store._fetch(ROLLUP)) == await ledger_summed(store)
    await write_ledger_batch(store, records[50:])
    await write_ledger_batch(store, [])
    assert normalised(await store._fetch(ROLLUP)) == await ledger_summed(store)
    assert len(await ledger_summed(store)) > 40


@pytest.mark.anyio
async def test_a_batch_retried_after_its_rollup_failed_is_counted_once(store, monkeypatch):
    records = known_ledger(["k1"])
    real = store._execute_many

    async def rollup_fails(sql, rows):
        if sql == ADD_TO_ROLLUP:
            raise ConnectionError("the database went away")
        await real(sql, rows)
    monkeypatch.setattr(store, "_execute_many", rollup_fails)
    with pytest.raises(ConnectionError):
        await write_ledger_batch(store, records)   # the ledger took it, the rollup did not
    monkeypatch.setattr(store, "_execute_many", real)
    await write_ledger_batch(store, records)       # the ledger writer's retry
    assert normalised(await store._fetch(ROLLUP)) == await ledger_summed(store)


@pytest.mark.anyio
async def test_migration_5_fills_the_rollup_from_an_existing_ledger(store):
    await store.write_ledger(known_ledger(["k1", "k2", "k3"]))   # as before migration 5
    assert await store._fetch(ROLLUP) == []
    for statement in MIGRATION[1:3]:   # the backfill, as the migration runs it
        await store._execute(statement)
    assert normalised(await store._fetch(ROLLUP)) == await ledger_summed(store)


@pytest.mark.anyio
async def test_the_overview_figures_are_the_ledgers(store):
    records = known_ledger(["k1", "k2"])
    await write_ledger_batch(store, records)
    for key_id in ("k1", None):
        mine = [r for r in records if key_id is None or r.key_id == key_id]
        got = await usage_overview(store, key_id, TODAY)
        month_start = TODAY.replace(day=1).isoformat()
        window_start = (TODAY - timedelta(days=29)).isoformat()
        for usage, chosen in ((got.today, [r for r in mine if r.day == TODAY.isoformat()]),
                              (got.month, [r for r in mine if r.day >= month_start]),
                              (got.window, [r for r in mine if r.day >= window_start])):
            assert usage.requests == len(chosen)
            assert usage.errors == sum(r.status >= 400 for r in chosen)
            assert usage.cost_micros == sum(r.cost_micros for r in chosen)
            assert usage.baseline_micros == sum(r.baseline_micros for r in chosen)
            assert usage.cache_hits == sum(r.cache_hit for r in chosen)
            assert usage.output_tokens == sum(r.output_tokens for r in chosen)
        window = [r for r in mine if r.day >= window_start]
        assert len(got.days) == 30 and got.days[-1][0] == TODAY.isoformat()
        assert sum(u.requests for _, u in got.days) == len(window)
        assert dict(got.models) == {m: sum(r.routed_model == m for r in window)
                                    for m in {r.routed_model for r in window}}
        assert dict(got.tiers)[""] == sum(r.tier is None for r in window)


@pytest.fixture
def anyio_backend():
    return "asyncio"


# -- the page ---------------------------------------------------------------------------------

@pytest.fixture
def site(tmp_path):
    """The app on a fresh SQLite store: TEST_KEY (admin, unlimited), a prepaid user key with
    limits, and another user; every key with the known ledger, written by the ledger writer."""
    import asyncio

    providers, policies = write_gateway_config(tmp_path, "http://127.0.0.1:9")
    admin = asyncio.run(seed_key(None, tmp_path, TEST_KEY, name="ops"))
    user = asyncio.run(seed_key(None, tmp_path, USER_KEY, name="alice", admin=False,
                                credits_usd=12.5, rpm=60, tpm=90_000))
    other = asyncio.run(seed_key(None, tmp_path, OTHER_KEY, name="bob", admin=False))
    app = create_app(providers_path=providers, policies_dir=policies, data_dir=tmp_path)
    with TestClient(app, follow_redirects=False) as client:
        records = known_ledger([admin.id, user.id, other.id])
        records.append(ledger_record(99, other.id, 0, routed_model=EVIL, tier="premium"))
        ledger = app.state.gateway.books.ledger
        for record in records:
            ledger.record(record)   # the writer flushes them when a page asks
        yield client, {"admin": admin, "user": user, "other": other}, records


def sign_in(client: TestClient, secret: str) -> None:
    client.cookies.clear()
    form = client.get("/dashboard/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = client.post("/dashboard/login", data={"key": secret, "csrf_token": token,
                                                   "next": "/"})
    assert answer.status_code == 303, answer.text


def card(page: str, card_id: str) -> dict[str, int]:
    tag = re.search(rf'<div class="card usage" id="{card_id}"([^>]*)>', page).group(1)
    return {name: int(value) for name, value in re.findall(r'data-([a-z-]+)="(\d+)"', tag)}


def expected_card(records: list[LedgerRecord]) -> dict[str, int]:
    return {"requests": len(records), "errors": sum(r.status >= 400 for r in records),
            "cost-micros": sum(r.cost_micros for r in records),
            "baseline-micros": sum(r.baseline_micros for r in records),
            "cache-hits": sum(r.cache_hit for r in records)}


def test_a_user_sees_their_own_credit_limits_and_usage(site):
    client, keys, records = site
    sign_in(client, USER_KEY)
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text, user = page.text, keys["user"]
    assert f'data-scope="{user.id}"' in text
    assert 'id="credit-balance" data-micros="12500000">$12.50<' in text
    assert 'id="credit-available" data-micros="12500000"' in text
    assert 'id="limit-rpm">60<' in text and 'id="limit-tpm">90,000<' in text
    mine = [r for r in records if r.key_id == user.id]
    assert card(text, "usage-today") == expected_card([r for r in mine if r.day == TODAY.isoformat()])
    window = [r for r in mine if r.day >= (TODAY - timedelta(days=29)).isoformat()]
    assert card(text, "usage-window") == expected_card(window)
    assert 'id="overview-scope"' not in text   # no choice of key for a non-admin
    for chart in ("requests-per-day", "spend-per-day", "tier-mix", "model-mix", "cache-mix"):
        assert f'id="chart-{chart}"' in text
    assert text.count('<g class="day" data-day=') == 2 * 30


@pytest.mark.parametrize("asked", ["all", "OTHER", "OTHER-PREFIX"])
def test_a_user_is_refused_another_keys_overview(site, asked):
    client, keys, _ = site
    sign_in(client, USER_KEY)
    other = keys["other"]
    wanted = {"all": "all", "OTHER": other.id, "OTHER-PREFIX": other.prefix}[asked]
    page = client.get("/dashboard", params={"key_id": wanted})
    assert page.status_code == 403
    assert other.name not in page.text and EVIL not in html.unescape(page.text)
    assert client.get("/dashboard", params={"key_id": keys["user"].id}).status_code == 200


def test_an_admin_sees_their_own_key_then_any_key_or_all(site):
    client, keys, records = site
    sign_in(client, TEST_KEY)
    today = TODAY.isoformat()
    own = client.get("/dashboard").text
    assert f'data-scope="{keys["admin"].id}"' in own and 'id="overview-scope"' in own
    assert "Unlimited (admin key)" in own
    assert card(own, "usage-today") == expected_card(
        [r for r in records if r.key_id == keys["admin"].id and r.day == today])
    user = client.get("/dashboard", params={"key_id": keys["user"].prefix}).text
    assert f'data-scope="{keys["user"].id}"' in user and "alice" in user
    every = client.get("/dashboard", params={"key_id": "all"}).text
    assert 'data-scope="all"' in every and "3 keys in use, 2 of them unlimited" in every
    assert 'id="credit-balance" data-micros="12500000"' in every
    assert card(every, "usage-today") == expected_card([r for r in records if r.day == today])
    assert client.get("/dashboard", params={"key_id": "nobody"}).status_code == 404


def test_the_charts_escape_what_they_label(site):
    client, _, _ = site
    sign_in(client, TEST_KEY)
    text = client.get("/dashboard", params={"key_id": "all"}).text
    assert EVIL not in text and "<script>alert" not in text
    mix = text[text.index('id="chart-model-mix"'):]
    mix = mix[: mix.index("</figure>")]
    shown = str(escape(EVIL))
    assert f'data-label="{shown}"' in mix and f"<title>{shown}: 1 of " in mix
    assert f'<text class="share-label" x="0" y="150">{shown} <tspan' in mix


# -- the charts' geometry ---------------------------------------------------------------------

def test_axis_steps_are_round_numbers():
    assert [nice_step(x) for x in (0, 1, 1.2, 3, 7, 12, 4_999, 250_001)] == \
        [1, 1, 2, 5, 10, 20, 5_000, 500_000]


def test_daily_bars_are_scaled_to_the_axis_and_stacked():
    days = [("2024-05-01", Usage(requests=10, errors=2)), ("2024-05-02", Usage()),
            ("2024-05-03", Usage(requests=40, errors=0))]
    chart = daily_chart("t", "T", "requests", days,
                        [("ok", "answered", lambda u: u.requests - u.errors),
                         ("bad", "failed", lambda u: u.errors)])
    assert [t.value for t in chart.y_ticks] == [0, 10, 20, 30, 40]
    plot = chart.plot_bottom - chart.plot_top
    first, empty, last = chart.columns
    assert [s.series for s in first.segments] == ["ok", "bad"]
    assert first.segments[0].height == pytest.approx(plot * 8 / 40, abs=0.01)
    assert first.segments[1].y + first.segments[1].height == pytest.approx(first.segments[0].y)
    assert empty.segments == () and last.segments[0].height == pytest.approx(plot)
    assert [t.text for t in chart.x_ticks] == ["03 May"] and not chart.empty
    nothing = daily_chart("t", "T", "usd", days[1:2], [("spent", "spent", lambda u: u.cost_micros)])
    assert nothing.empty and [t.value for t in nothing.y_ticks] == [0]


def test_shares_beyond_the_most_shown_are_one_other_row():
    counts = [(f"model-{i}", 100 - i) for i in range(MOST_SHARES + 3)] + [("unused", 0)]
    chart = share_chart("m", "Models", counts)
    assert len(chart.rows) == MOST_SHARES and chart.rows[-1].label == "other"
    assert chart.total == sum(n for _, n in counts)
    assert sum(r.percent for r in chart.rows) == pytest.approx(100)
    assert chart.rows[0].bar_width == pytest.approx(chart.width * 100 / chart.total, abs=0.01)
    long = share_chart("m", "Models", [("x" * 80, 1)]).rows[0]
    assert len(long.short_label) < 40 and long.short_label.endswith("…")


# -- the ledger benchmark's data and a smoke run of it ----------------------------------------

def test_synthetic_ledger_rows_are_ledger_records():
    keys = synthetic_keys(10, NOW)
    records = [ledger_from_row({**dict.fromkeys(LEDGER_COLUMNS), **dict(zip(ROW_COLUMNS, row))})
               for row in ledger_rows(3_000, 7, keys, NOW)]
    assert [r.ts for r in records] == sorted(r.ts for r in records)
    assert {r.key_id for r in records} == {k.key.id for k in keys}
    for r in records:
        assert r.day == datetime.fromtimestamp(r.ts, timezone.utc).strftime("%Y-%m-%d")
        assert 0 <= r.cost_micros <= r.baseline_micros
        assert (r.status >= 400) == (r.error is not None)
    assert 0 < sum(r.cache_hit for r in records) < 300 and keys[0].key.admin


def test_the_ledger_benchmark_runs_small(capsys):
    assert ledger_pages.main(["--requests", "12000", "--keys", "5", "--repeat", "1",
                              "--databases", "sqlite"]) == 0
    table = capsys.readouterr().out
    for page in ("Overview", "Overview, all keys", "Call history, filtered",
                 "Call history, page 21", "CSV export, first bytes"):
        assert re.search(rf"\| {page} \| [\d.]+ \(", table), page
