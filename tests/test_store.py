"""One suite, both stores: every test runs on SQLite and on PostgreSQL (the real server, each
test in a fresh schema; skipped with the reason when no server answers)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from costr.accounts.records import (ApiKey, CreditHold, Feedback, KeptPrompt, LedgerRecord,
                                    hash_secret)
from costr.accounts.store import open_store
from costr.accounts.store_sql import MIGRATIONS

pytestmark = pytest.mark.anyio


def make_key(key_id="k1", balance=None, **kw) -> ApiKey:
    return ApiKey(id=key_id, name=f"name-{key_id}", prefix=f"cr-{key_id}pre",
                  balance_micros=balance, created_at=1_700_000_000.5, **kw)


_holds = iter(range(10**9))


def hold(key_id: str, micros: int, expires_at: float = 4e9) -> CreditHold:
    """A hold for a request of its own, owned by this test."""
    return CreditHold(f"req-hold-{next(_holds)}", key_id, micros, "test-instance", expires_at)


async def test_migrations_are_versioned_and_idempotent(store, db_url):
    assert await store.applied_versions() == [v for v, _ in MIGRATIONS]
    await store.migrate()
    again = await open_store(db_url)
    await again.migrate()
    assert await again.applied_versions() == [v for v, _ in MIGRATIONS]
    await again.close()
    assert await store.count_keys() == 0


MIGRATOR = """
import asyncio, sys
from costr.accounts.store import open_store

async def main(url):
    sys.stdin.readline()
    store = await open_store(url)
    print(await store.applied_versions())
    await store.close()

asyncio.run(main(sys.argv[1]))
"""


async def test_two_instances_starting_together_migrate_once(db_url):
    workers = [subprocess.Popen([sys.executable, "-c", MIGRATOR, db_url], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == [str([v for v, _ in MIGRATIONS])] * 2


async def test_create_find_and_list_keys(store):
    first = make_key("k1", balance=5_000_000, rpm=60, tpm=100_000, admin=True)
    second = make_key("k2")
    await store.create_key(first, hash_secret("secret-1"))
    await store.create_key(second, hash_secret("secret-2"))
    assert await store.key_by_hash(hash_secret("secret-1")) == first
    assert await store.key_by_hash(hash_secret("secret-2")) == second
    assert await store.key_by_hash(hash_secret("nope")) is None
    assert await store.key_by_id_or_prefix("k2") == second
    assert await store.key_by_id_or_prefix(first.prefix) == first
    assert await store.key_by_id_or_prefix("k3") is None
    assert await store.list_keys() == [first, second]
    assert await store.count_keys() == 2
    with pytest.raises(Exception):
        await store.create_key(make_key("k3"), hash_secret("secret-1"))


async def test_a_revoked_key_is_found_marked_revoked_and_holds_nothing(store):
    await store.create_key(make_key("k1", balance=10_000), hash_secret("s"))
    assert await store.revoke_key("k1") is True
    assert await store.revoke_key("k1") is False
    assert await store.revoke_key("missing") is False
    found = await store.key_by_hash(hash_secret("s"))
    assert found is not None and found.revoked  # the caller rejects it
    assert await store.reserve(hold("k1", 1_000)) is False


async def test_top_up(store):
    await store.create_key(make_key("k1", balance=1_000), hash_secret("a"))
    await store.create_key(make_key("k2"), hash_secret("b"))
    assert await store.top_up("k1", 2_500_000) == 2_501_000
    assert (await store.key_by_hash(hash_secret("a"))).balance_micros == 2_501_000
    assert await store.top_up("k2", 1_000) is None  # unlimited stays unlimited
    assert (await store.key_by_hash(hash_secret("b"))).unlimited
    assert await store.top_up("missing", 1_000) is None


async def test_reserve_and_settle_arithmetic(store):
    await store.create_key(make_key("k1", balance=10_000), hash_secret("a"))

    async def key():
        return await store.key_by_hash(hash_secret("a"))
    first, second = hold("k1", 4_000), hold("k1", 6_000)
    assert await store.reserve(first)
    assert ((await key()).balance_micros, (await key()).reserved_micros) == (10_000, 4_000)
    assert not await store.reserve(hold("k1", 7_000))  # 10,000 - 4,000 held < 7,000
    assert await store.reserve(second)                 # exactly what is left
    assert not await store.reserve(hold("k1", 1))
    await store.settle(first, 2_500)
    await store.settle(second, 9_000)                  # the charge is capped at the hold
    assert ((await key()).balance_micros, (await key()).reserved_micros) == (1_500, 0)
    third = hold("k1", 1_500)
    assert await store.reserve(third)
    await store.settle(third, 0)                       # a failed request: the hold comes back
    assert ((await key()).balance_micros, (await key()).reserved_micros) == (1_500, 0)
    assert not await store.reserve(hold("missing", 1))


async def test_an_unlimited_key_always_reserves_and_stays_unlimited(store):
    await store.create_key(make_key("k1"), hash_secret("a"))
    held = hold("k1", 10**12)
    assert await store.reserve(held)
    await store.settle(held, 123)
    key = await store.key_by_hash(hash_secret("a"))
    assert key.unlimited and key.reserved_micros == 0


async def test_200_concurrent_reserves_hold_exactly_what_the_balance_covers(store):
    await store.create_key(make_key("k1", balance=50_000), hash_secret("a"))
    holds = [hold("k1", 1_000) for _ in range(200)]
    results = await asyncio.gather(*(store.reserve(h) for h in holds))
    assert sum(results) == 50
    await asyncio.gather(*(store.settle(h, 1_000) for h, held in zip(holds, results) if held))
    key = await store.key_by_hash(hash_secret("a"))
    assert (key.balance_micros, key.reserved_micros) == (0, 0)


RESERVER = """
import asyncio, random, sys, uuid
from costr.accounts.records import CreditHold
from costr.accounts.store import open_store

async def reserve(store):
    await asyncio.sleep(random.random() * 0.1)  # spread out, so the two processes interleave
    return await store.reserve(CreditHold(uuid.uuid4().hex, "k1", 1_000, "worker", 4e9))

async def main(url):
    store = await open_store(url)
    print("ready", flush=True)
    sys.stdin.readline()  # both processes start reserving at the same moment
    results = await asyncio.gather(*(reserve(store) for _ in range(100)))
    await store.close()
    print(sum(results))

asyncio.run(main(sys.argv[1]))
"""


async def test_reserves_from_two_processes_never_overspend(store, db_url):
    await store.create_key(make_key("k1", balance=50_000), hash_secret("a"))
    workers = [subprocess.Popen([sys.executable, "-c", RESERVER, db_url], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    assert [w.stdout.readline() for w in workers] == ["ready\n", "ready\n"]
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    assert sum(int(out) for out, _ in outputs) == 50
    key = await store.key_by_hash(hash_secret("a"))
    assert (key.balance_micros, key.reserved_micros) == (50_000, 50_000)


DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]
T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z


def record(i: int, **kw) -> LedgerRecord:
    day = i % 3
    fields = dict(id=f"req-{i:03d}", key_id="k1" if i % 2 == 0 else "k2",
                  ts=T0 + day * 86_400 + i, day=DAYS[day], family="chat",
                  requested_model="auto", routed_model="small" if i % 4 < 2 else "large",
                  provider="local", tier="budget" if i % 4 < 2 else "premium",
                  policy="balanced", complexity=0.25, confidence=0.5, input_tokens=100,
                  output_tokens=20, cached_tokens=10 if i % 5 == 0 else 0,
                  usage_estimated=i % 7 == 0, cost_micros=1_000, charged_micros=1_000,
                  baseline_micros=4_000, savings_percent=75.0, cache_hit=i % 10 == 0,
                  latency_ms=float(i), ttft_ms=None if i % 2 else float(i) / 2,
                  status=200, upstream_status=200, error=None)
    fields.update(kw)
    return LedgerRecord(**fields)


async def test_ledger_records_round_trip_and_page_newest_first(store):
    records = [record(i) for i in range(60)]
    await store.write_ledger(records)
    await store.write_ledger(records[:5])  # written twice: still once
    assert await store.ledger_record("req-007") == records[7]
    assert await store.ledger_record("missing") is None
    newest_first = sorted(records, key=lambda r: r.ts, reverse=True)
    page = await store.requests_page(None, 25, None)
    assert page == newest_first[:25]
    page2 = await store.requests_page(None, 25, page[-1].ts)
    assert page2 == newest_first[25:50]
    mine = await store.requests_page("k2", 100, None)
    assert mine == [r for r in newest_first if r.key_id == "k2"]


async def test_usage_by_day(store):
    await store.write_ledger([record(i) for i in range(60)])
    rows = await store.usage_by_day(None, DAYS[0], DAYS[2])
    assert [r["day"] for r in rows] == DAYS
    assert rows[0] == {"day": DAYS[0], "requests": 20, "input_tokens": 2_000,
                       "output_tokens": 400, "cached_tokens": 40, "cost_usd": 0.02,
                       "baseline_cost_usd": 0.08, "savings_usd": 0.06, "savings_percent": 75.0}
    mine = await store.usage_by_day("k1", DAYS[1], DAYS[2])
    assert [(r["day"], r["requests"]) for r in mine] == [(DAYS[1], 10), (DAYS[2], 10)]
    assert await store.usage_by_day("nobody", DAYS[0], DAYS[2]) == []


async def test_stats_per_tier_and_model_with_percentiles_and_feedback(store):
    records = [record(i, routed_model="small", tier="budget", latency_ms=float(i + 1),
                      cache_hit=i < 10) for i in range(100)]
    records += [record(100 + i, routed_model="large", tier="premium", status=502,
                       error="upstream", latency_ms=9_999.0) for i in range(4)]
    await store.write_ledger(records)
    await store.add_feedback(Feedback("req-000", "k1", 1, "", T0))
    await store.add_feedback(Feedback("req-002", "k1", 5, "great", T0))
    await store.add_feedback(Feedback("req-002", "k1", 4, "good", T0 + 1))  # replaces the 5
    stats = await store.stats(None, T0)
    assert [(s["tier"], s["model"]) for s in stats] == [("budget", "small"), ("premium", "large")]
    small, large = stats
    assert small["requests"] == 100 and small["errors"] == 0
    assert small["cost_usd"] == 0.1 and small["baseline_cost_usd"] == 0.4
    assert small["savings_percent"] == 75.0
    assert (small["cache_hits"], small["cache_hit_rate"]) == (10, 0.1)
    assert small["p50_latency_ms"] == pytest.approx(50.5)   # latencies 1..100
    assert small["p95_latency_ms"] == pytest.approx(95.05)
    assert (small["feedback_count"], small["mean_rating"]) == (2, 2.5)
    assert (large["requests"], large["errors"]) == (4, 4)
    assert large["p50_latency_ms"] is None  # only errors: no latency to speak of
    assert (large["feedback_count"], large["mean_rating"]) == (0, None)
    mine = await store.stats("k2", T0)
    assert sum(s["requests"] for s in mine) == 52
    assert all(s["feedback_count"] == 0 for s in mine)
    assert await store.stats(None, T0 + 10 * 86_400) == []


async def test_kept_prompts_join_the_latest_rating_and_expire(store):
    await store.write_ledger([record(i) for i in range(6)])
    said = [{"role": "user", "content": "Énoncé: prove it ✓"}]
    await store.keep_prompts([KeptPrompt(f"req-{i:03d}", "k1", T0 + i, json.dumps(said))
                              for i in (0, 2, 3)])
    await store.keep_prompts([KeptPrompt("req-000", "k1", T0, "[]")])   # kept once: first stays
    for i, rating in ((0, 5), (3, 2), (4, 4), (0, 1)):                 # req-000 rated again
        await store.add_feedback(Feedback(f"req-{i:03d}", "k2" if i % 2 else "k1", rating, "", T0))
    rated = await store.rated_requests(T0, None)
    assert [(r.request_id, r.rating, r.messages) for r in rated] == [
        ("req-000", 1, said), ("req-003", 2, said), ("req-004", 4, None)]
    first = rated[0]
    assert (first.key_id, first.ts, first.routed_model, first.tier, first.policy,
            first.complexity) == ("k1", T0, "small", "budget", "balanced", 0.25)
    assert [r.request_id for r in await store.rated_requests(T0, "k2")] == ["req-003"]
    assert [r.request_id for r in await store.rated_requests(T0 + 86_400, None)] == ["req-004"]
    assert await store.forget_prompts_before(T0 + 3) == 2                # req-000, req-002
    assert [r.messages for r in await store.rated_requests(T0, None)] == [None, said, None]
    assert await store.forget_prompts_before(T0 + 3) == 0
