"""The SQLite store: one file in WAL mode, zero set-up.

Calls run on one worker thread that owns a connection, so they are serialised and the event
loop never waits on the disk or on another writer. The one call on every limited key's request
path, the credit reserve, first tries the event loop's own connection, which never waits: in WAL
mode (synchronous=NORMAL, no fsync per commit) it is a few tens of microseconds, far less than
handing it to a thread and back; if another writer holds the file it goes to the worker thread,
which waits its turn. Several processes may share the file: SQLite's write lock (waited on for
up to `busy_timeout`) makes each reserve or settle a single atomic step.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from costr.accounts.store_holds import SQLiteHolds
from costr.accounts.store_sql import (APPLIED_VERSIONS, CREATE_MIGRATIONS_TABLE, MIGRATIONS, RECORD_VERSION,
                        SQLStore)

BUSY_TIMEOUT_MS = 10_000


class SQLiteStore(SQLiteHolds, SQLStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None   # the event loop's; never waits
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costr-sqlite")

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _connection(self) -> sqlite3.Connection:
        """The worker thread's connection, opened on first use."""
        if self._conn is None:
            create_owner_only(self.path)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            use_wal(conn, BUSY_TIMEOUT_MS / 1000)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn = conn
        return self._conn

    def _inline_connection(self) -> sqlite3.Connection:
        """The event loop's connection: a busy file is an immediate error, never a wait, and it
        leaves checkpoints (which write the database file) to the worker's connection."""
        if self._inline is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._inline = conn
        return self._inline

    def _in_transaction_inline(self, steps) -> tuple[bool, object]:
        """(True, `steps(connection)`) in one transaction on the event loop's connection, or
        (False, None) when another writer holds the file (run it with `_in_transaction`)."""
        conn = self._inline_connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                return False, None
            raise
        return True, _finish_transaction(conn, steps)

    def _fetch_now(self, sql: str, params: tuple) -> list[dict]:
        return [dict(row) for row in self._connection().execute(sql, params)]

    def _execute_now(self, sql: str, params: tuple) -> int:
        return self._connection().execute(sql, params).rowcount

    def _execute_many_now(self, sql: str, rows: list[tuple]) -> None:
        self._in_transaction_now(lambda conn: conn.executemany(sql, rows))

    def _in_transaction_now(self, steps):
        """`steps(connection)` in one transaction, holding the write lock from its start."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        return _finish_transaction(conn, steps)

    async def _fetch(self, sql: str, params: tuple = ()) -> list[dict]:
        return await self._call(self._fetch_now, sql, params)

    async def _execute(self, sql: str, params: tuple = ()) -> int:
        return await self._call(self._execute_now, sql, params)

    async def _execute_many(self, sql: str, rows: list[tuple]) -> None:
        await self._call(self._execute_many_now, sql, rows)

    async def _in_transaction(self, steps):
        return await self._call(self._in_transaction_now, steps)

    def _migrate_now(self) -> list[int]:
        conn = self._connection()
        # BEGIN IMMEDIATE takes the write lock, so a second process starting at the same
        # moment waits here and then finds the versions already applied.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(CREATE_MIGRATIONS_TABLE)
            applied = {row[0] for row in conn.execute(APPLIED_VERSIONS)}
            for version, statements in MIGRATIONS:
                if version not in applied:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(RECORD_VERSION, (version, time.time()))
                    applied.add(version)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return sorted(applied)

    async def migrate(self) -> None:
        await self._call(self._migrate_now)

    def _close_now(self) -> None:
        for conn in (self._conn, self._inline):
            if conn is not None:
                conn.close()
        self._conn = self._inline = None

    async def close(self) -> None:
        await self._call(self._close_now)
        self._worker.shutdown(wait=True)


def _finish_transaction(conn: sqlite3.Connection, steps):
    """Run `steps(conn)` in the transaction just begun: committed, or rolled back if it fails."""
    try:
        result = steps(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def create_owner_only(path: Path) -> None:
    """Create the database file readable and writable by its owner alone, as SQLite would not
    (it follows the umask, usually 0644): it holds every key's hash, the ledger and perhaps
    kept prompts. SQLite gives the -wal and -shm files the database file's mode. An existing
    file is left as the operator set it."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def use_wal(conn: sqlite3.Connection, timeout_seconds: float) -> None:
    """Switch the file to WAL once. The switch needs the file to itself and SQLite does not wait
    for that (busy_timeout does not apply), so a process starting beside another retries.
    (Also used by the sqlite:// cache backend.)"""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
