"""Open the store a database URL names, with its schema brought up to date."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from costr.accounts.records import Store
from costr.accounts.store_sql import StoreUnavailable

__all__ = ["open_store", "default_data_dir", "redacted", "StoreUnavailable"]

SQLITE_SCHEME = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
DB_FILE = "costr.db"


def default_data_dir() -> Path:
    return Path(os.environ.get("COSTR_DATA_DIR") or "data")


def redacted(url: str) -> str:
    """The URL with any password replaced by `***`, fit for a message or a log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


async def open_store(url: str | None, data_dir: str | os.PathLike | None = None) -> Store:
    """`postgresql://...` (or `postgres://`): PostgreSQL. `sqlite:///PATH`: SQLite at PATH.
    None: SQLite at `<data_dir>/costr.db`, data_dir defaulting to $COSTR_DATA_DIR or ./data.
    Raises StoreUnavailable, naming the database but never its password."""
    if url and url.startswith(POSTGRES_SCHEMES):
        from costr.accounts.store_postgres import PostgresStore
        store, where = PostgresStore(url), f"PostgreSQL at {redacted(url)}"
    elif url and url.startswith(SQLITE_SCHEME):
        path = Path(url[len(SQLITE_SCHEME):])
        _make_directory(path.parent)
        store, where = _sqlite(path), f"SQLite database {path}"
    elif url:
        raise StoreUnavailable(f"unsupported database URL {redacted(url)!r}: "
                               "expected postgresql://... or sqlite:///PATH")
    else:
        directory = Path(data_dir) if data_dir is not None else default_data_dir()
        _make_directory(directory)
        path = directory / DB_FILE
        store, where = _sqlite(path), f"SQLite database {path}"
    try:
        await store.migrate()
    except StoreUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to reach or migrate is reported once
        await _close_quietly(store)
        if isinstance(exc, sqlite3.Error | OSError | TimeoutError) or _is_postgres_error(exc):
            reason = _reason(exc)
            password = urlsplit(url).password if url else None
            if password:
                reason = reason.replace(password, "***")
            raise StoreUnavailable(f"cannot open the {where}: {reason}") from None
        raise
    return store


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create the data directory {directory}: "
                               f"{_reason(exc)}") from None


def _sqlite(path: Path):
    from costr.accounts.store_sqlite import SQLiteStore
    return SQLiteStore(path)


def _is_postgres_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith("asyncpg")


async def _close_quietly(store) -> None:
    try:
        await store.close()
    except Exception:  # noqa: BLE001 - already reporting the error that matters
        pass
