"""The response cache: what a backend offers, how a cache URL picks one, and cache keys.

Backends are plugins (hook `register_cache_backends`); the core never names one.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:
    from costr.plugins import Registry


@runtime_checkable
class CacheBackend(Protocol):
    """A byte store with per-entry expiry. A cache may forget anything at any time (evict,
    refuse a value, restart), so callers treat every `get` as possibly a miss, and a backend
    not keeping a value is not an error. Methods are async so backends may do I/O; `stats` is
    not and must not.

    Failures: a factory raises `ValueError` for a bad URL or option, without echoing the URL.
    When the backend itself cannot work (a file that is not a database, a server that cannot
    be reached or does not answer in time), the factory or any method raises some other
    exception, promptly rather than hanging, and never takes the process down. Callers catch
    it, log a warning and carry on as if the cache missed: a broken cache must never fail a
    request. A backend may recover by itself at a later call."""

    async def get(self, key: str) -> bytes | None:
        """The value last set under `key`, or `None` when there is none or it has expired."""

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store `value` under `key` for `ttl_seconds` (> 0), replacing any earlier value; when
        the value is not kept (too large, or `ttl_seconds` <= 0) the earlier one is gone too."""

    async def delete(self, key: str) -> None:
        """Forget `key`; nothing happens when it is absent."""

    async def close(self) -> None:
        """Release connections and memory; the backend is not used afterwards."""

    def stats(self) -> dict:
        """Counters for `costr` to report: `entries` and `bytes` held (`None` when a shared
        backend cannot tell cheaply), and `hits`, `misses`, `evictions` seen by this backend
        object since it was opened."""


def open_cache(url: str, registry: Registry, options: dict | None = None) -> CacheBackend:
    """The backend registered for `url`'s scheme (`memory://...`), built by calling its factory
    with the whole `url` and `options`. Raises `ValueError` naming the installed schemes when no
    plugin registered the scheme; the URL itself is not echoed, as it may hold a password.
    Whatever the factory raises passes through (see `CacheBackend` on failures)."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    installed = ", ".join(sorted(registry.cache_backends)) or "none"
    if not scheme:
        raise ValueError(f"a cache URL starts with a scheme such as memory:// "
                         f"(installed: {installed})")
    factory = registry.cache_backends.get(scheme)
    if factory is None:
        raise ValueError(f"unknown cache URL scheme {scheme + '://'!r} (installed: {installed})")
    return factory(url, dict(options or {}))


def cache_key(*parts) -> str:
    """The SHA-256 hex digest of `parts` as canonical JSON (sorted keys, compact separators),
    so equal dicts hash alike whatever their key order. Parts must be JSON-serialisable
    (`TypeError` otherwise); lists and tuples hash alike, `1` and `1.0` do not."""
    # orjson: the same canonical text as json.dumps(sort_keys=True), ten times faster on the
    # 100k-token bodies agents send.
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
