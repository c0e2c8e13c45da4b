"""The PostgreSQL store: several Costr instances share keys, credits, limits and the ledger.

Reserve and settle are single statements (store_holds.py): PostgreSQL's row lock makes each
check-and-update atomic across every connection of every instance.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

import asyncpg

from costr.accounts.store_holds import PostgresHolds
from costr.errors import DatabaseUnavailable
from costr.accounts.store_sql import (APPLIED_VERSIONS, CREATE_MIGRATIONS_TABLE, MIGRATIONS, RECORD_VERSION,
                        SQLStore, numbered)

POOL_MIN, POOL_MAX = 1, 10
CONNECT_TIMEOUT_S = 10
log = logging.getLogger("costr.store")
MIGRATION_LOCK = 0x636F737472  # "costr": one advisory lock id for every instance

LATENCY_PERCENTILES = """SELECT tier, routed_model,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
    FROM ledger WHERE ts >= $1 AND status < 400 {key} GROUP BY tier, routed_model"""

pg = functools.lru_cache(maxsize=256)(numbered)


# What the driver raises when the server is away (refusing, restarting, shutting down, or the
# connection dropped), as opposed to a statement it refused. InternalClientError ("cannot
# switch to state ...; another operation is in progress") is a pooled connection the server
# dropped mid-operation: seen on every PostgreSQL restart in the fault drill.
UNREACHABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError,
               asyncpg.ConnectionDoesNotExistError, asyncpg.InternalClientError,
               asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
               asyncpg.CrashShutdownError)


@contextlib.contextmanager
def reachable():
    """Turn "the database is away" into DatabaseUnavailable: a 503 in the caller's own error
    shape, with Retry-After, rather than a 500 (the PostgreSQL restart in the fault drill)."""
    try:
        yield
    except UNREACHABLE as exc:
        log.warning("the database cannot be reached: %s", type(exc).__name__)
        raise DatabaseUnavailable() from None


class PostgresStore(PostgresHolds, SQLStore):
    dialect = "postgresql"

    def __init__(self, dsn: str):
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self.dsn, min_size=POOL_MIN, max_size=POOL_MAX,
                        timeout=CONNECT_TIMEOUT_S, command_timeout=60)
        return self._pool

    async def _fetch(self, sql: str, params: tuple = ()) -> list[dict]:
        with reachable():
            pool = await self._get_pool()
            return [dict(row) for row in await pool.fetch(pg(sql), *params)]

    async def _execute(self, sql: str, params: tuple = ()) -> int:
        with reachable():
            pool = await self._get_pool()
            status = await pool.execute(pg(sql), *params)  # e.g. "UPDATE 1"
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0

    async def _execute_many(self, sql: str, rows: list[tuple]) -> None:
        await self._in_transaction_many([(sql, rows)])

    async def _in_transaction_many(self, statements: list[tuple[str, list[tuple]]]) -> None:
        """Each (sql, rows) run for every row, all in one transaction."""
        if not any(rows for _, rows in statements):
            return
        with reachable():
            pool = await self._get_pool()
            async with pool.acquire() as conn, conn.transaction():
                for sql, rows in statements:
                    if rows:
                        await conn.executemany(pg(sql), rows)

    async def migrate(self) -> None:
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            # Two instances starting together: the second waits here, then finds nothing to do.
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(CREATE_MIGRATIONS_TABLE)
                applied = {row["version"] for row in await conn.fetch(APPLIED_VERSIONS)}
                for version, statements in MIGRATIONS:
                    if version in applied:
                        continue
                    async with conn.transaction():
                        for statement in statements:
                            await conn.execute(statement)
                        await conn.execute(pg(RECORD_VERSION), version, time.time())
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)

    async def _latency_percentiles(self, key_id: str | None, since_ts: float) -> dict:
        key, params = ("", ()) if key_id is None else ("AND key_id = $2", (key_id,))
        rows = await self._fetch(LATENCY_PERCENTILES.format(key=key), (since_ts, *params))
        return {(r["tier"], r["routed_model"]): (float(r["p50"]), float(r["p95"])) for r in rows}

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
