"""The `memory://` cache backend, opened through the plugin registry as Costr opens it, and
the cache URL and key helpers in `costr.cache`."""
import asyncio
import re

import pytest

from costr.cache.backends import CacheBackend, cache_key, open_cache
from costr.plugins import collect, make_plugin_manager
from costr_memory_cache import MemoryCache
from costr_memory_cache.memory import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES

HOUR = 3600.0


@pytest.fixture(scope="module")
def registry():
    return collect(make_plugin_manager())


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def memory(registry, query: str = "", **options):
    return open_cache(f"memory://{query}", registry, options)


def test_registered_as_a_plugin(registry):
    assert registry.cache_backends["memory"] is MemoryCache
    assert registry.origins[("cache backend", "memory")] == "memory_cache"
    cache = memory(registry)
    assert isinstance(cache, CacheBackend)
    assert (cache.max_entries, cache.max_bytes) == (DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES)
    assert (DEFAULT_MAX_ENTRIES, DEFAULT_MAX_BYTES) == (10_000, 64 * 1024 * 1024)


def test_round_trip_miss_replace_and_delete(registry):
    async def main():
        cache = memory(registry)
        assert await cache.get("k") is None
        await cache.set("k", b"one", HOUR)
        assert await cache.get("k") == b"one"
        await cache.set("k", b"three", HOUR)
        assert await cache.get("k") == b"three"
        assert cache.stats()["bytes"] == 5
        await cache.delete("k")
        await cache.delete("k")  # absent: nothing happens
        assert await cache.get("k") is None
        assert cache.stats() == {"entries": 0, "bytes": 0, "hits": 2, "misses": 2, "evictions": 0}
    asyncio.run(main())


def test_entries_expire_and_are_purged_when_read(registry):
    async def main():
        clock = FakeClock()
        cache = memory(registry, clock=clock)
        await cache.set("short", b"s", 10)
        await cache.set("long", b"l", 20)
        clock.now += 9.999
        assert await cache.get("short") == b"s"
        clock.now += 0.001  # exactly ttl_seconds after the set
        assert cache.stats()["entries"] == 2  # purged lazily, not before it is read
        assert await cache.get("short") is None
        assert cache.stats()["entries"] == 1 and cache.stats()["bytes"] == 1
        assert await cache.get("long") == b"l"
        clock.now += 10
        assert await cache.get("long") is None
        assert cache.stats() == {"entries": 0, "bytes": 0, "hits": 2, "misses": 2, "evictions": 0}
    asyncio.run(main())


def test_a_set_renews_the_ttl(registry):
    async def main():
        clock = FakeClock()
        cache = memory(registry, clock=clock)
        await cache.set("k", b"v", 10)
        clock.now += 8
        await cache.set("k", b"v", 10)
        clock.now += 8
        assert await cache.get("k") == b"v"
    asyncio.run(main())


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
def test_a_ttl_that_is_not_positive_stores_nothing_and_replaces(registry, ttl):
    async def main():
        cache = memory(registry)
        await cache.set("k", b"old", HOUR)
        await cache.set("k", b"new", ttl)
        assert await cache.get("k") is None
        assert cache.stats()["entries"] == 0
    asyncio.run(main())


def test_least_recently_used_goes_first_by_count(registry):
    async def main():
        cache = memory(registry, "?max_entries=2")
        await cache.set("a", b"1", HOUR)
        await cache.set("b", b"2", HOUR)
        assert await cache.get("a") == b"1"  # a is now more recently used than b
        await cache.set("c", b"3", HOUR)
        assert await cache.get("b") is None
        assert await cache.get("a") == b"1" and await cache.get("c") == b"3"
        assert cache.stats()["entries"] == 2 and cache.stats()["evictions"] == 1
    asyncio.run(main())


def test_least_recently_used_goes_first_by_bytes(registry):
    async def main():
        cache = memory(registry, "?max_bytes=10")
        await cache.set("a", b"aaaa", HOUR)
        await cache.set("b", b"bbbb", HOUR)
        assert await cache.get("a") == b"aaaa"
        await cache.set("c", b"cccc", HOUR)  # 12 bytes: b, least recently used, goes
        assert await cache.get("b") is None
        assert await cache.get("a") == b"aaaa" and await cache.get("c") == b"cccc"
        await cache.set("d", b"dddddddd", HOUR)  # 16 bytes: a, then c, go
        assert [await cache.get(k) for k in "acd"] == [None, None, b"dddddddd"]
        assert cache.stats()["bytes"] == 8 and cache.stats()["evictions"] == 3
    asyncio.run(main())


def test_a_value_larger_than_max_bytes_is_not_stored(registry):
    async def main():
        cache = memory(registry, "?max_bytes=10")
        await cache.set("small", b"12345", HOUR)
        await cache.set("big", b"old", HOUR)
        await cache.set("big", b"x" * 11, HOUR)
        assert await cache.get("big") is None  # nor is the value it replaced
        assert await cache.get("small") == b"12345"  # nothing was evicted for it
        await cache.set("exact", b"y" * 10, HOUR)
        assert await cache.get("exact") == b"y" * 10
        assert cache.stats()["evictions"] == 1  # "small", to make room for "exact"
    asyncio.run(main())


def test_dropping_an_expired_entry_for_room_is_not_an_eviction(registry):
    async def main():
        clock = FakeClock()
        cache = memory(registry, "?max_entries=1", clock=clock)
        await cache.set("a", b"1", 10)
        clock.now += 10
        await cache.set("b", b"2", 10)
        assert cache.stats() == {"entries": 1, "bytes": 1, "hits": 0, "misses": 0, "evictions": 0}
    asyncio.run(main())


def test_stats_count_hits_misses_and_evictions(registry):
    async def main():
        cache = memory(registry, "?max_entries=2")
        for key in "abc":
            await cache.set(key, key.encode() * 3, HOUR)
        for key in "abcd":
            await cache.get(key)
        assert cache.stats() == {"entries": 2, "bytes": 6, "hits": 2, "misses": 2, "evictions": 1}
        await cache.close()
        assert cache.stats() == {"entries": 0, "bytes": 0, "hits": 2, "misses": 2, "evictions": 1}
    asyncio.run(main())


def test_options_override_the_url_query(registry):
    cache = memory(registry, "?max_entries=5&max_bytes=100", max_bytes=200)
    assert (cache.max_entries, cache.max_bytes) == (5, 200)
    assert memory(registry, "/?max_entries=7").max_entries == 7


@pytest.mark.parametrize("query, options, message", [
    ("?max_entires=5", {}, "unknown memory cache option 'max_entires'"),
    ("?max_entries=0", {}, "'max_entries' must be a positive integer, not '0'"),
    ("?max_bytes=64MiB", {}, "'max_bytes' must be a positive integer, not '64MiB'"),
    ("", {"max_bytes": 1.5}, "'max_bytes' must be a positive integer, not 1.5"),
    ("", {"max_entries": True}, "'max_entries' must be a positive integer"),
    ("", {"clock": "monotonic"}, "'clock' must be a callable"),
    ("max_entries=5", {}, "no host or path"),
    ("?max_entries", {}, "is not name=value"),
])
def test_bad_settings_are_named(registry, query, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        memory(registry, query, **options)


def test_unknown_scheme_names_the_installed_ones(registry):
    expected = r"unknown cache URL scheme 'memcached://' \(installed: .*memory"
    with pytest.raises(ValueError, match=expected) as raised:
        open_cache("memcached://:hunter2@cache.internal:11211/0", registry)
    assert "hunter2" not in str(raised.value)  # a URL may hold a password: never echoed
    with pytest.raises(ValueError, match="starts with a scheme"):
        open_cache("memory", registry)


def test_cache_key_is_canonical():
    first = cache_key("chat", {"model": "auto", "messages": [{"role": "user", "content": "Hi"}]})
    same = cache_key("chat", {"messages": [{"content": "Hi", "role": "user"}], "model": "auto"})
    assert first == same
    assert len(first) == 64 and int(first, 16) >= 0
    other = cache_key("chat", {"model": "auto", "messages": [{"role": "user", "content": "Hi!"}]})
    assert other != first
    assert cache_key("ab") != cache_key("a", "b") != cache_key(["a", "b"])
    assert cache_key(1) != cache_key(1.0) != cache_key("1")
    with pytest.raises(TypeError):
        cache_key(object())
