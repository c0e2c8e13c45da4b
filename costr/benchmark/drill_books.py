"""What the fault drill reads from the database behind the instances: the ledger rows of the
requests clients saw, and the drill key's balance (sampled while PostgreSQL restarts, so a
negative balance at any moment would show). A fresh connection per query: the drill restarts
the server under it."""
from __future__ import annotations

import asyncio

KEY_NAME = "drill"


class Books:
    def __init__(self, database: str):
        self.database = database
        self.lowest_balance: int | None = None   # micro-dollars, the lowest balance sampled

    async def open(self) -> None:
        await self._fetch("SELECT 1")

    async def close(self) -> None:
        pass

    async def _fetch(self, sql: str, *args):
        import asyncpg
        conn = await asyncpg.connect(self.database, timeout=5)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def ledger(self, ids: list[str]) -> dict[str, dict]:
        """The ledger rows of these request ids, by id."""
        if not ids:
            return {}
        rows = await self._fetch("SELECT id, status, output_tokens, charged_micros, provider "
                                 "FROM ledger WHERE id = ANY($1::text[])", list(ids))
        return {r["id"]: dict(r) for r in rows}

    async def balance(self) -> tuple[int, int]:
        rows = await self._fetch("SELECT balance_micros, reserved_micros FROM api_keys "
                                 "WHERE name = $1", KEY_NAME)
        return rows[0]["balance_micros"], rows[0]["reserved_micros"]

    async def watch_balance(self, every: float = 0.25) -> None:
        """Sample the key's balance until cancelled, keeping the lowest; an unreachable
        database is skipped (that is the point of the scenario)."""
        while True:
            try:
                balance, _ = await self.balance()
                if self.lowest_balance is None or balance < self.lowest_balance:
                    self.lowest_balance = balance
            except Exception:   # noqa: BLE001 - down, restarting: sample again
                pass
            await asyncio.sleep(every)

    async def settled_balance(self, wait: float = 10.0) -> tuple[int, int]:
        """(balance, reserved) once nothing is held any more, or after `wait` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        while True:
            balance, reserved = await self.balance()
            if reserved == 0 or loop.time() > end:
                return balance, reserved
            await asyncio.sleep(0.5)


async def ledger_gaps(books: Books, ids: list[str], wait: float = 5.0) -> list[str]:
    """The ids with no ledger row, after giving the ledger writers `wait` seconds to flush."""
    loop = asyncio.get_running_loop()
    end = loop.time() + wait
    while True:
        found = await books.ledger(ids)
        missing = [i for i in ids if i not in found]
        if not missing or loop.time() > end:
            return missing
        await asyncio.sleep(0.5)
