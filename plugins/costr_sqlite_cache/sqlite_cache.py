"""`sqlite:///PATH`: a least-recently-used cache in one SQLite file, kept across restarts."""
from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit
from costr.accounts.store_sqlite import use_wal

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
DEFAULT_PURGE_INTERVAL = 60.0
# A cache that waits long for a lock is slower than no cache: give up and let the caller miss.
BUSY_TIMEOUT_MS = 2_000
SQLITE_MAGIC = b"SQLite format 3\x00"
OPTIONS = ("max_entries", "max_bytes", "purge_interval", "clock")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cache_entries (
        key TEXT PRIMARY KEY, value BLOB NOT NULL, expires_at REAL NOT NULL,
        size INTEGER NOT NULL, last_used REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cache_entries_last_used ON cache_entries (last_used)",
    "CREATE INDEX IF NOT EXISTS cache_entries_expires_at ON cache_entries (expires_at)",
)


class SQLiteCache:
    """`sqlite:///PATH?max_entries=100000&max_bytes=1073741824&purge_interval=60` (the
    defaults; `sqlite:///data/cache.db` is relative to the working directory,
    `sqlite:////var/cache/costr.db` absolute). When either bound would be exceeded the least
    recently used entries go first (a `get` counts as a use); a value larger than `max_bytes`
    is not stored. Expired entries are never returned; they are deleted when read, and all at
    once every `purge_interval` seconds (at the next `set`). `options` may set the same
    settings, overriding the URL, and a `clock` returning wall-clock seconds (`time.time`
    unless a test passes a fake; expiry times outlive the process, so not a monotonic clock).

    A file that is not an SQLite database raises `sqlite3.DatabaseError` here, naming it;
    a file that breaks later raises from the call that finds out. Nothing is deleted: the
    operator may have pointed the cache at the wrong file."""

    # Every call runs on one worker thread that owns the connection, so calls are serialised
    # and the event loop never waits on disk. The thread starts, and the file opens, at first use.

    def __init__(self, url: str, options: dict | None = None):
        path, query = _parse_url(url)
        settings = {**query, **(options or {})}
        unknown = sorted(set(settings) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown sqlite cache option {unknown[0]!r} "
                             f"(known: {', '.join(OPTIONS)})")
        self.path = path
        self.max_entries = _positive_int(settings, "max_entries", DEFAULT_MAX_ENTRIES)
        self.max_bytes = _positive_int(settings, "max_bytes", DEFAULT_MAX_BYTES)
        self.purge_interval = _positive_seconds(settings, "purge_interval",
                                                DEFAULT_PURGE_INTERVAL)
        self._clock = settings.get("clock", time.time)
        if not callable(self._clock):
            raise ValueError("sqlite cache option 'clock' must be a callable returning seconds")
        _check_header(path)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costr-sqlite-cache")
        self._conn: sqlite3.Connection | None = None
        # Totals of the file, kept by the worker: counted when the file opens and at each
        # purge, adjusted in between (another process sharing the file may make them drift).
        self._entries: int | None = None
        self._bytes: int | None = None
        self._next_purge = 0.0
        self._hits = self._misses = self._evictions = 0
        self._closed = False

    async def get(self, key: str) -> bytes | None:
        value = await self._call(self._get_now, key)
        if value is None:
            self._misses += 1
        else:
            self._hits += 1
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        evicted = await self._call(self._set_now, key, bytes(value), ttl_seconds)
        self._evictions += evicted  # not `+= await`: that reads the count before awaiting

    async def delete(self, key: str) -> None:
        await self._call(self._write_now, self._drop_now, key)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._call(self._close_now)
            self._worker.shutdown(wait=True)

    def stats(self) -> dict:
        return {"entries": self._entries, "bytes": self._bytes, "hits": self._hits,
                "misses": self._misses, "evictions": self._evictions}

    async def _call(self, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)
        except sqlite3.Error as exc:
            raise type(exc)(f"sqlite cache {self.path}: {exc}") from exc

    # ---- on the worker thread ------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                use_wal(conn, BUSY_TIMEOUT_MS / 1000)
                conn.execute("PRAGMA synchronous = NORMAL")  # a cache may lose its last writes
                for statement in SCHEMA:
                    conn.execute(statement)
                self._conn = conn
                self._count_now()
            except BaseException:
                self._conn = None
                conn.close()
                raise
        return self._conn

    def _get_now(self, key: str) -> bytes | None:
        conn = self._connection()
        now = self._clock()
        row = conn.execute("SELECT value, expires_at FROM cache_entries WHERE key = ?",
                           (key,)).fetchone()
        if row is None:
            return None
        if now >= row[1]:
            self._write_now(self._drop_now, key)
            return None
        conn.execute("UPDATE cache_entries SET last_used = ? WHERE key = ?", (now, key))
        return row[0]

    def _set_now(self, key: str, value: bytes, ttl_seconds: float) -> int:
        now = self._clock()
        if now >= self._next_purge:
            self._write_now(self._purge_now, now)
        keep = ttl_seconds > 0 and len(value) <= self.max_bytes  # `>` also refuses NaN
        return self._write_now(self._replace_now, key, value, ttl_seconds, now, keep)

    def _write_now(self, fn, *args):
        """`fn(conn, *args)` in one write transaction; on failure the totals are recounted."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
            conn.execute("COMMIT")
        except BaseException:
            self._entries = self._bytes = None
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._count_now()
            except sqlite3.Error:
                self._close_now()  # reopened, and recounted, at the next call
            raise
        return result

    def _replace_now(self, conn, key, value, ttl_seconds, now, keep) -> int:
        self._drop_now(conn, key)  # a set replaces the old value even when the new one is not kept
        if not keep:
            return 0
        conn.execute("INSERT INTO cache_entries VALUES (?, ?, ?, ?, ?)",
                     (key, value, now + ttl_seconds, len(value), now))
        self._entries += 1
        self._bytes += len(value)
        return self._evict_now(conn, key, now)

    def _evict_now(self, conn, new_key: str, now: float) -> int:
        """Drop least recently used entries, never `new_key`, until both bounds hold."""
        evictions = 0
        while self._entries > self.max_entries or self._bytes > self.max_bytes:
            oldest = conn.execute("SELECT key, size, expires_at FROM cache_entries "
                                  "WHERE key != ? ORDER BY last_used, rowid LIMIT 64",
                                  (new_key,)).fetchall()
            if not oldest:
                break
            for key, size, expires_at in oldest:
                if self._entries <= self.max_entries and self._bytes <= self.max_bytes:
                    break
                conn.execute("DELETE FROM cache_entries WHERE key = ?", (key,))
                self._entries -= 1
                self._bytes -= size
                if expires_at > now:  # dropping an expired entry loses nothing
                    evictions += 1
        return evictions

    def _drop_now(self, conn, key: str) -> None:
        row = conn.execute("SELECT size FROM cache_entries WHERE key = ?", (key,)).fetchone()
        if row is not None:
            conn.execute("DELETE FROM cache_entries WHERE key = ?", (key,))
            self._entries -= 1
            self._bytes -= row[0]

    def _purge_now(self, conn, now: float) -> None:
        conn.execute("DELETE FROM cache_entries WHERE expires_at <= ?", (now,))
        self._count_now()
        self._next_purge = now + self.purge_interval

    def _count_now(self) -> None:
        self._entries, self._bytes = self._conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM cache_entries").fetchone()

    def _close_now(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


def _parse_url(url: str) -> tuple[Path, dict]:
    parts = urlsplit(url)
    path = unquote(parts.path[1:])  # sqlite:///data/c.db is data/c.db; sqlite:////c.db is /c.db
    if parts.netloc or not path:
        raise ValueError("a sqlite cache URL names a file and no host: sqlite:///PATH "
                         "(sqlite:////PATH for an absolute path)")
    try:
        return Path(path), dict(parse_qsl(parts.query, strict_parsing=True))
    except ValueError:
        raise ValueError(f"sqlite cache URL query {parts.query!r} is not name=value&...") from None


def _check_header(path: Path) -> None:
    """Refuse a file that is not an SQLite database now, rather than at every request."""
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_MAGIC))
    except OSError:
        return  # absent: created at first use; unreadable: SQLite says why at first use
    if header and header != SQLITE_MAGIC:
        raise sqlite3.DatabaseError(f"sqlite cache {path}: the file is not an SQLite database "
                                    "(move it away, or point the cache at another path)")


def _positive_int(settings: dict, name: str, default: int) -> int:
    value = settings.get(name, default)
    number = int(value) if isinstance(value, str) and value.isdecimal() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"sqlite cache option {name!r} must be a positive integer, not {value!r}")
    return number


def _positive_seconds(settings: dict, name: str, default: float) -> float:
    value = settings.get(name, default)
    try:
        seconds = float(value) if not isinstance(value, bool) else 0.0
    except (TypeError, ValueError):
        seconds = 0.0
    if not 0 < seconds < float("inf"):  # also refuses NaN
        raise ValueError(f"sqlite cache option {name!r} must be a positive number of seconds, "
                         f"not {value!r}")
    return seconds
