"""`sqlite:///PATH`: a response cache in one SQLite file, kept across restarts and shared by
the processes of one host."""
from costr import hookimpl

from .sqlite_cache import SQLiteCache

__all__ = ["SQLiteCache"]


@hookimpl
def register_cache_backends(register):
    register("sqlite", SQLiteCache)
