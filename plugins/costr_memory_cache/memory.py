"""`memory://`: a least-recently-used cache in this process, bounded by entries and by bytes."""
from __future__ import annotations

import time
from collections import OrderedDict
from urllib.parse import parse_qsl, urlsplit

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class MemoryCache:
    """`memory://?max_entries=10000&max_bytes=67108864` (the defaults). When either bound
    would be exceeded the least recently used entries go first (a `get` counts as a use);
    `bytes` counts values, not keys. `options` may set the same bounds, overriding the URL, and
    a `clock` returning seconds (`time.monotonic` unless a test passes a fake). Expired entries
    are never returned; they are purged when read, replaced or evicted, and until then count
    in `stats()`."""

    # Costr uses a backend from one event loop, and no method here awaits anything, so each
    # call runs to completion without interleaving: no lock is needed. Not for use across threads.

    def __init__(self, url: str = "memory://", options: dict | None = None):
        settings = {**_query_options(url), **(options or {})}
        unknown = sorted(set(settings) - {"max_entries", "max_bytes", "clock"})
        if unknown:
            raise ValueError(f"unknown memory cache option {unknown[0]!r} "
                             f"(known: max_entries, max_bytes, clock)")
        self.max_entries = _positive_int(settings, "max_entries", DEFAULT_MAX_ENTRIES)
        self.max_bytes = _positive_int(settings, "max_bytes", DEFAULT_MAX_BYTES)
        self._clock = settings.get("clock", time.monotonic)
        if not callable(self._clock):
            raise ValueError("memory cache option 'clock' must be a callable returning seconds")
        # key -> (value, expires_at), least recently used first
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is not None and self._clock() >= entry[1]:
            self._drop(key)
            entry = None
        if entry is None:
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return entry[0]

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self._drop(key)  # a set replaces the old value even when the new one is not kept
        if not ttl_seconds > 0 or len(value) > self.max_bytes:  # `not >` also refuses NaN
            return
        now = self._clock()
        self._entries[key] = (value, now + ttl_seconds)
        self._bytes += len(value)
        # The new entry is last and fits both bounds alone, so this never evicts it.
        # Each entry is evicted at most once, so a set stays O(1) amortised.
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (old, expires_at) = self._entries.popitem(last=False)
            self._bytes -= len(old)
            if expires_at > now:  # dropping an expired entry loses nothing
                self._evictions += 1

    async def delete(self, key: str) -> None:
        self._drop(key)

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def stats(self) -> dict:
        return {"entries": len(self._entries), "bytes": self._bytes, "hits": self._hits,
                "misses": self._misses, "evictions": self._evictions}

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[0])


def _query_options(url: str) -> dict:
    parts = urlsplit(url)
    if parts.netloc or parts.path not in ("", "/"):
        raise ValueError("a memory cache URL has no host or path: "
                         "memory://?max_entries=N&max_bytes=N")
    try:
        return dict(parse_qsl(parts.query, strict_parsing=True))
    except ValueError:
        raise ValueError(f"memory cache URL query {parts.query!r} is not name=value&...") from None


def _positive_int(settings: dict, name: str, default: int) -> int:
    value = settings.get(name, default)
    number = int(value) if isinstance(value, str) and value.isdecimal() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"memory cache option {name!r} must be a positive integer, not {value!r}")
    return number
