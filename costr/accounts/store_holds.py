"""Credit holds in the database: each hold a row of `credit_holds` (its request id, key, amount,
owner instance and expiry) beside the key's `reserved_micros`, which is their sum.

Reserving adds to `reserved_micros` and inserts the hold in one step; settling deletes the hold,
gives back what it still held, debits the charge and writes the request's ledger record in one
step, so a charge never exists without its record, nor a reservation without its hold. A hold
is released only by whoever deletes its row (its settle, or the release of expired holds), so
two instances can never both give the same hold back. Settles come in batches (the ledger
writer's, ledger.py): a batch is one transaction. PostgreSQL does each step in one statement
(a reserve is one round trip); SQLite reserves on the event loop's own connection, which is a
few tens of microseconds of work with no thread hand-off, and only when another writer holds
the file does it wait for its turn on the store's worker thread. docs/accounts.md ("Credit
holds") tells the story.
"""
from __future__ import annotations

import asyncio
import sqlite3

from costr.accounts.records import CreditHold, LedgerRecord
from costr.accounts.store_sql import INSERT_LEDGER, ledger_params

# The check and the add are one statement, so concurrent requests (in any process) can never
# hold more than the balance covers: the row lock / database write lock makes it one step.
RESERVE = ("UPDATE api_keys SET reserved_micros = reserved_micros + ? "
           "WHERE id = ? AND NOT revoked "
           "AND (balance_micros IS NULL OR balance_micros - reserved_micros >= ?)")
INSERT_HOLD = "INSERT INTO credit_holds (id, key_id, micros, owner, expires_at) VALUES (?, ?, ?, ?, ?)"
DROP_HOLD = "DELETE FROM credit_holds WHERE id = ? RETURNING micros"
DEBIT = ("UPDATE api_keys SET balance_micros = balance_micros - ?, "
         "reserved_micros = CASE WHEN reserved_micros >= ? THEN reserved_micros - ? ELSE 0 END "
         "WHERE id = ?")
EXPIRED_BY_KEY = ("SELECT key_id, SUM(micros) AS micros, COUNT(*) AS holds FROM credit_holds "
                  "WHERE expires_at < ? GROUP BY key_id")
DROP_EXPIRED = "DELETE FROM credit_holds WHERE expires_at < ?"
RENEW_SOME = "UPDATE credit_holds SET expires_at = ? WHERE owner = ? AND id IN ({ids})"

# PostgreSQL: each step as one statement.
PG_RESERVE = f"""WITH held AS ({RESERVE} RETURNING id)
    INSERT INTO credit_holds (id, key_id, micros, owner, expires_at)
    SELECT ?, id, ?, ?, ? FROM held"""
_PG_RELEASE_AND_DEBIT = """WITH released AS (DELETE FROM credit_holds WHERE id = ? RETURNING micros),
    debited AS (UPDATE api_keys SET balance_micros = balance_micros - ?,
        reserved_micros = GREATEST(reserved_micros
                                   - COALESCE((SELECT SUM(micros) FROM released), 0), 0)
        WHERE id = ? RETURNING id)"""
PG_SETTLE = f"{_PG_RELEASE_AND_DEBIT} SELECT COUNT(*) AS n FROM debited"
PG_SETTLE_AND_RECORD = f"{_PG_RELEASE_AND_DEBIT} {INSERT_LEDGER}"
PG_RELEASE_EXPIRED = """WITH gone AS (DELETE FROM credit_holds WHERE expires_at < ?
        RETURNING key_id, micros),
    per_key AS (SELECT key_id, SUM(micros) AS micros, COUNT(*) AS holds FROM gone GROUP BY key_id),
    restored AS (UPDATE api_keys SET reserved_micros = GREATEST(
            api_keys.reserved_micros - per_key.micros, 0)
        FROM per_key WHERE api_keys.id = per_key.key_id RETURNING api_keys.id)
    SELECT COALESCE(SUM(holds), 0) AS holds, COALESCE(SUM(micros), 0) AS micros FROM per_key"""
PG_RENEW = "UPDATE credit_holds SET expires_at = ? WHERE owner = ? AND id = ANY(?::text[])"

RENEW_CHUNK = 500   # hold ids per renewal statement


def _charge(hold: CreditHold, charge_micros: int) -> int:
    return max(0, min(int(charge_micros), int(hold.micros)))


def _reserve_one(conn: sqlite3.Connection, hold: CreditHold) -> bool:
    micros = int(hold.micros)
    if conn.execute(RESERVE, (micros, hold.key_id, micros)).rowcount != 1:
        return False
    conn.execute(INSERT_HOLD, _hold_row(hold))
    return True


def _in_lock_order(settles: list) -> list:
    """By key, so two instances settling batches at once lock the keys' rows in the same order
    and never deadlock."""
    return sorted(settles, key=lambda item: (item[0].key_id, item[0].id))


def _hold_row(hold: CreditHold) -> tuple:
    return (hold.id, hold.key_id, int(hold.micros), hold.owner, float(hold.expires_at))


class SQLiteHolds:
    """The holds on SQLite (mixed into SQLiteStore): each step one transaction. The reserves
    asked for in one turn of the event loop are taken together, in one transaction on the event
    loop's connection unless the file is busy (`_in_transaction_inline`); the rest run on the
    store's worker thread (`_in_transaction`)."""

    _reserving: list | None = None   # (hold, future) asked for in this turn of the loop

    async def reserve(self, hold: CreditHold) -> bool:
        loop = asyncio.get_running_loop()
        if self._reserving is None:
            self._reserving = []
            loop.call_soon(self._reserve_together)
        answer = loop.create_future()
        self._reserving.append((hold, answer))
        return await answer

    def _reserve_together(self) -> None:
        waiting, self._reserving = self._reserving, None

        def step(conn: sqlite3.Connection) -> list[bool]:
            return [_reserve_one(conn, hold) for hold, _ in waiting]
        try:
            done, reserved = self._in_transaction_inline(step)
        except Exception as exc:  # noqa: BLE001 - each caller gets the database's failure
            self._answer(waiting, None, exc)
            return
        if done:
            self._answer(waiting, reserved)
            return

        async def when_free() -> None:   # another writer holds the file: wait on the thread
            try:
                self._answer(waiting, await self._in_transaction(step))
            except Exception as exc:  # noqa: BLE001
                self._answer(waiting, None, exc)
        asyncio.get_running_loop().create_task(when_free())

    def _answer(self, waiting: list, reserved: list[bool] | None,
                failure: Exception | None = None) -> None:
        for i, (hold, answer) in enumerate(waiting):
            if answer.cancelled():   # its request is gone: give back what was taken for it
                if reserved and reserved[i]:
                    asyncio.get_running_loop().create_task(self.settle_many([(hold, 0, None)]))
            elif failure is not None:
                answer.set_exception(failure)
            else:
                answer.set_result(reserved[i])

    async def settle(self, hold: CreditHold, charge_micros: int,
                     record: LedgerRecord | None = None) -> None:
        await self.settle_many([(hold, charge_micros, record)])

    async def settle_many(self, settles: list[tuple[CreditHold, int, LedgerRecord | None]]) -> None:
        steps = [(hold, _charge(hold, charge), None if record is None else ledger_params(record))
                 for hold, charge, record in _in_lock_order(settles)]

        def step(conn: sqlite3.Connection) -> None:
            for hold, charge, params in steps:
                released = sum(int(row[0]) for row in conn.execute(DROP_HOLD, (hold.id,)).fetchall())
                if released or charge:
                    conn.execute(DEBIT, (charge, released, released, hold.key_id))
                if params is not None:
                    conn.execute(INSERT_LEDGER, params)
        if steps:
            await self._in_transaction(step)

    async def renew_holds(self, owner: str, hold_ids: list[str], expires_at: float) -> int:
        def step(conn: sqlite3.Connection) -> int:
            renewed = 0
            for start in range(0, len(hold_ids), RENEW_CHUNK):
                chunk = hold_ids[start:start + RENEW_CHUNK]
                sql = RENEW_SOME.format(ids=", ".join("?" * len(chunk)))
                renewed += conn.execute(sql, (float(expires_at), owner, *chunk)).rowcount
            return renewed
        return await self._in_transaction(step) if hold_ids else 0

    async def release_expired_holds(self, now: float) -> tuple[int, int]:
        def step(conn: sqlite3.Connection) -> tuple[int, int]:
            expired = conn.execute(EXPIRED_BY_KEY, (float(now),)).fetchall()
            conn.execute(DROP_EXPIRED, (float(now),))
            for key_id, micros, _ in expired:
                conn.execute(DEBIT, (0, int(micros), int(micros), key_id))
            return sum(int(r[2]) for r in expired), sum(int(r[1]) for r in expired)
        return await self._in_transaction(step)


class PostgresHolds:
    """The holds on PostgreSQL (mixed into PostgresStore): each step one statement."""

    async def reserve(self, hold: CreditHold) -> bool:
        micros = int(hold.micros)
        return await self._execute(PG_RESERVE, (micros, hold.key_id, micros, hold.id, micros,
                                                hold.owner, float(hold.expires_at))) == 1

    async def settle(self, hold: CreditHold, charge_micros: int,
                     record: LedgerRecord | None = None) -> None:
        first = (hold.id, _charge(hold, charge_micros), hold.key_id)
        if record is None:
            await self._fetch(PG_SETTLE, first)
        else:
            await self._execute(PG_SETTLE_AND_RECORD, (*first, *ledger_params(record)))

    async def settle_many(self, settles: list[tuple[CreditHold, int, LedgerRecord | None]]) -> None:
        """One transaction; each settle the one statement `settle` sends."""
        settles = _in_lock_order(settles)
        with_record = [(h.id, _charge(h, c), h.key_id, *ledger_params(r))
                       for h, c, r in settles if r is not None]
        bare = [(h.id, _charge(h, c), h.key_id) for h, c, r in settles if r is None]
        await self._in_transaction_many([(PG_SETTLE_AND_RECORD, with_record), (PG_SETTLE, bare)])

    async def renew_holds(self, owner: str, hold_ids: list[str], expires_at: float) -> int:
        renewed = 0
        for start in range(0, len(hold_ids), RENEW_CHUNK):
            renewed += await self._execute(PG_RENEW, (float(expires_at), owner,
                                                      hold_ids[start:start + RENEW_CHUNK]))
        return renewed

    async def release_expired_holds(self, now: float) -> tuple[int, int]:
        row = (await self._fetch(PG_RELEASE_EXPIRED, (float(now),)))[0]
        return int(row["holds"]), int(row["micros"])
