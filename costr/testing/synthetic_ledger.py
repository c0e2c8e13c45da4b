"""A synthetic ledger of any size, bulk-loaded into SQLite or PostgreSQL, and the app over it in
this process: what `python -m costr.benchmark.ledger_pages` measures the dashboard against.

The ledger is loaded at the schema of a Costr from before the dashboard (migrations 1-4) and
then brought up to date the way an operator's upgrade would, so the benchmark also times
migration 5 (the daily rollup's backfill and the call history's indexes) on a full ledger.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import random
import sqlite3
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from costr.accounts.records import ApiKey, display_prefix, hash_secret
from costr.accounts.store import SQLITE_SCHEME, open_store
from costr.accounts.store_sql import (CREATE_MIGRATIONS_TABLE, INSERT_KEY, KEY_COLUMNS,
                                      MIGRATIONS, RECORD_VERSION, numbered)
from costr.testing.fake_upstream import DEFAULT_MODELS, write_gateway_config

BEFORE_THE_DASHBOARD = 5          # the first migration of the dashboard's
TIERS = ["budget", "standard", "premium"]
PRICES = {"budget": (0.10, 0.40), "standard": (1.00, 4.00), "premium": (5.00, 20.00)}  # per M
TIER_WEIGHTS = [0.55, 0.30, 0.15]
POLICIES = ["balanced"] * 8 + ["cost", "quality"]
FAMILIES = ["openai-chat"] * 7 + ["anthropic-messages"] * 3
ERRORS = [(429, "Rate limit: 60 requests per minute"), (502, "upstream error"),
          (400, "Missing required parameter: 'messages'.")]
LOAD_CHUNK = 50_000


@dataclass(frozen=True)
class SyntheticKey:
    key: ApiKey
    secret: str


def synthetic_keys(count: int, now: float) -> list[SyntheticKey]:
    """`count` keys with known secrets: the first an unlimited admin key, the rest prepaid
    user keys, every fifth with rate limits."""
    keys = []
    for n in range(count):
        secret = f"cr-synthetic-{n:06d}-" + hashlib.sha256(str(n).encode()).hexdigest()[:24]
        key = ApiKey(id=hash_secret(secret)[:16], name=f"key {n}", prefix=display_prefix(secret),
                     admin=n == 0, balance_micros=None if n == 0 else 50_000_000 + n * 1_000,
                     rpm=600 if n % 5 == 1 else None, tpm=2_000_000 if n % 5 == 1 else None,
                     created_at=now - 100 * 86_400)
        keys.append(SyntheticKey(key, secret))
    return keys


def _micros(tokens_in: int, tokens_out: int, tier: str) -> int:
    price_in, price_out = PRICES[tier]
    return round(tokens_in * price_in + tokens_out * price_out)   # $/M tokens * tokens = micros


# The columns of a row `ledger_rows` makes, in its order: the ledger as it was before the
# dashboard's migrations (later columns, such as the routing signals, are left empty).
ROW_COLUMNS = (
    "id", "key_id", "ts", "day", "family", "requested_model", "routed_model", "provider", "tier",
    "policy", "complexity", "confidence", "policy_rule", "input_tokens", "output_tokens",
    "cached_tokens", "usage_estimated", "cost_micros", "charged_micros", "baseline_micros",
    "savings_percent", "cache_hit", "cache_saved_micros", "latency_ms", "ttft_ms", "status",
    "upstream_status", "error")


def ledger_rows(count: int, days: int, keys: list[SyntheticKey], now: float,
                seed: int = 14) -> list[tuple]:
    """`count` ledger rows (in ROW_COLUMNS order), oldest first, spread
    evenly over the last `days` days. Keys are used as real ones are, unevenly: the n-th key
    makes a share proportional to 1/n (the first, the admin, about 13% with 1,000 keys).
    Tiers, models, tokens, prices, cache hits (5%) and failures (3%) are drawn as on a routed
    gateway."""
    rng = random.Random(seed)
    start = now - days * 86_400
    stamps = sorted(rng.uniform(start, now) for _ in range(count))
    owners = rng.choices([k.key.id for k in keys], cum_weights=list(
        itertools.accumulate(1 / (n + 1) for n in range(len(keys)))), k=count)
    tiers = rng.choices(TIERS, weights=TIER_WEIGHTS, k=count)
    first_day = math.floor(start / 86_400)
    day_names = [datetime.fromtimestamp((first_day + d) * 86_400, timezone.utc).strftime("%Y-%m-%d")
                 for d in range(days + 2)]
    model_of = dict(zip(TIERS, DEFAULT_MODELS))
    rows = []
    for ts, key_id, tier in zip(stamps, owners, tiers):
        model = model_of[tier]
        tokens_in = int(rng.lognormvariate(6.5, 1.2)) + 20
        tokens_out = int(rng.lognormvariate(5.0, 1.0)) + 5
        cost = _micros(tokens_in, tokens_out, tier)
        baseline = _micros(tokens_in, tokens_out, "premium")
        roll = rng.random()
        hit, status, error = roll < 0.05, 200, None
        if roll > 0.97:
            status, error = ERRORS[int(roll * 1000) % 3]
            tokens_out, cost, baseline = 0, 0, 0
            if status == 400:
                model, tier, tokens_in = "", None, 0
        saved = cost if hit else 0
        cost = 0 if hit else cost
        rows.append((
            f"req_{rng.getrandbits(128):032x}", key_id, ts, day_names[int(ts // 86_400) - first_day],
            FAMILIES[int(roll * 997) % 10], "auto" if roll < 0.9 else model, model,
            "fake" if model else "", tier, POLICIES[int(roll * 991) % 10], round(roll, 3),
            round(1 - roll / 2, 3), None, tokens_in, tokens_out, tokens_in // 4 if hit else 0,
            False, cost, cost, baseline,
            round(100 * (baseline - cost) / baseline, 1) if baseline else 0.0, hit, saved,
            round(rng.uniform(200, 4000), 2), round(rng.uniform(80, 600), 2), status,
            status if status >= 500 else None, error))
    return rows


_INSERT = (f"INSERT INTO ledger ({', '.join(ROW_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(ROW_COLUMNS))})")
_EARLIER = [statement for version, statements in MIGRATIONS if version < BEFORE_THE_DASHBOARD
            for statement in statements]


def _key_row(k: SyntheticKey) -> tuple:
    return (*(getattr(k.key, name) for name in KEY_COLUMNS), hash_secret(k.secret))


async def bulk_load(url: str, keys: list[SyntheticKey], rows: list[tuple]) -> None:
    """Create the schema of migrations 1-4 in an empty database and load the keys and the
    ledger as fast as each database takes rows: one transaction of executemany on SQLite,
    COPY on PostgreSQL."""
    applied = [(version, time.time()) for version, _ in MIGRATIONS
               if version < BEFORE_THE_DASHBOARD]
    if url.startswith(SQLITE_SCHEME):
        conn = sqlite3.connect(url[len(SQLITE_SCHEME):], isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA cache_size = -262144")   # 256 MB while loading
            conn.execute("BEGIN")
            for statement in [CREATE_MIGRATIONS_TABLE, *_EARLIER]:
                conn.execute(statement)
            conn.executemany(RECORD_VERSION, applied)
            conn.executemany(INSERT_KEY, [_key_row(k) for k in keys])
            for chunk in range(0, len(rows), LOAD_CHUNK):
                conn.executemany(_INSERT, rows[chunk:chunk + LOAD_CHUNK])
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    import asyncpg
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for statement in [CREATE_MIGRATIONS_TABLE, *_EARLIER]:
                await conn.execute(statement)
            await conn.executemany(numbered(RECORD_VERSION), applied)
            await conn.executemany(numbered(INSERT_KEY), [_key_row(k) for k in keys])
            await conn.copy_records_to_table("ledger", records=rows, columns=list(ROW_COLUMNS))
    finally:
        await conn.close()


async def upgrade(url: str) -> None:
    """Apply the migrations not yet applied, as `costr serve` does when it starts."""
    store = await open_store(url)
    await store.close()


async def refresh_planner_statistics(url: str) -> None:
    """On PostgreSQL, ANALYZE: what autovacuum does by itself soon after a bulk load, done now
    so that the figures are those of a settled server. (SQLite is left as Costr leaves it, with
    no statistics.)"""
    if url.startswith(SQLITE_SCHEME):
        return
    store = await open_store(url)
    try:
        await store._execute("ANALYZE")
    finally:
        await store.close()


@asynccontextmanager
async def app_in_process(url: str, workdir: Path):
    """The whole Costr app on this database, started (lifespan) and stopped around the block;
    its upstream is a closed port on loopback, as no page here calls one."""
    from costr.server.app import create_app

    providers, policies = write_gateway_config(workdir, "http://127.0.0.1:9")
    app = create_app(providers_path=providers, policies_dir=policies, database=url,
                     watch_seconds=3600)
    async with app.router.lifespan_context(app):
        yield app
