"""The built-in cache backends (`memory://`, `sqlite:///PATH`, `redis://`), each opened
through the plugin registry as Costr opens it and held to one behaviour; then what only a
file or a server can do: persist, share, and fail without taking the gateway down.

Redis tests use the Redis at $COSTR_TEST_REDIS_URL (default redis://127.0.0.1:6379/14) under
a random key prefix, deleted afterwards, and are skipped when it cannot be reached."""
import asyncio
import os
import re
import sqlite3
import time
import uuid

import pytest
import redis
import redis.exceptions

from costr.cache.backends import CacheBackend, open_cache
from costr.plugins import collect, make_plugin_manager
from costr_redis_cache import RedisCache
from costr_sqlite_cache import SQLiteCache

HOUR = 3600.0
REDIS_URL = os.environ.get("COSTR_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture(scope="module")
def registry():
    return collect(make_plugin_manager())


class FakeClock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """Opens caches of one kind; `advance` moves time on for them, with a fake clock where the
    backend takes one and by sleeping where it does not (Redis keeps its own time)."""

    def __init__(self, registry, url: str, clock: FakeClock | None = None, **options):
        self.registry, self.url, self.clock, self.options = registry, url, clock, options

    def open(self, **options) -> CacheBackend:
        clock = {"clock": self.clock} if self.clock else {}
        return open_cache(self.url, self.registry, {**self.options, **clock, **options})

    async def advance(self, seconds: float) -> None:
        if self.clock:
            self.clock.now += seconds
        else:
            await asyncio.sleep(seconds)


def redis_reachable() -> str | None:
    """Why Redis cannot be used for these tests, or None."""
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            client.ping()
        finally:
            client.close()
    except redis.exceptions.RedisError as exc:
        return f"Redis not reachable at {REDIS_URL} ({exc})"
    return None


@pytest.fixture
def redis_prefix():
    reason = redis_reachable()
    if reason:
        pytest.skip(reason)
    prefix = f"costr-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request, registry, tmp_path) -> Backend:
    if request.param == "memory":
        return Backend(registry, "memory://", FakeClock())
    if request.param == "sqlite":
        return Backend(registry, f"sqlite:///{tmp_path}/cache.db", FakeClock())
    return Backend(registry, REDIS_URL, prefix=request.getfixturevalue("redis_prefix"))


# ---- one behaviour -------------------------------------------------------------------------

def test_registered_as_plugins(registry):
    assert registry.cache_backends["sqlite"] is SQLiteCache
    assert registry.cache_backends["redis"] is RedisCache
    assert registry.cache_backends["rediss"] is RedisCache
    assert registry.origins[("cache backend", "sqlite")] == "sqlite_cache"
    assert registry.origins[("cache backend", "redis")] == "redis_cache"
    assert registry.origins[("cache backend", "rediss")] == "redis_cache"


def test_round_trip_miss_overwrite_and_delete(backend):
    async def main():
        cache = backend.open()
        assert isinstance(cache, CacheBackend)
        try:
            assert await cache.get("k") is None
            await cache.set("k", b"one", HOUR)
            assert await cache.get("k") == b"one"
            await cache.set("k", b"three", HOUR)
            assert await cache.get("k") == b"three"
            await cache.delete("k")
            await cache.delete("k")  # absent: nothing happens
            assert await cache.get("k") is None
            stats = cache.stats()
            assert (stats["hits"], stats["misses"], stats["evictions"]) == (2, 2, 0)
        finally:
            await cache.close()
        await cache.close()  # a second close does nothing
    asyncio.run(main())


def test_entries_expire(backend):
    async def main():
        cache = backend.open()
        try:
            await cache.set("short", b"s", 0.2)
            await cache.set("long", b"l", HOUR)
            assert await cache.get("short") == b"s"
            await backend.advance(0.3)
            assert await cache.get("short") is None
            assert await cache.get("long") == b"l"
        finally:
            await cache.close()
    asyncio.run(main())


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
def test_a_ttl_that_is_not_positive_stores_nothing_and_replaces(backend, ttl):
    async def main():
        cache = backend.open()
        try:
            await cache.set("k", b"old", HOUR)
            await cache.set("k", b"new", ttl)
            assert await cache.get("k") is None
        finally:
            await cache.close()
    asyncio.run(main())


def test_values_are_binary_safe_and_may_be_large(backend):
    binary = bytes(range(256)) * 4 + b"\x00\xff\xfe not utf-8 \x80"
    large = os.urandom(4 * 1024 * 1024)

    async def main():
        cache = backend.open()
        try:
            await cache.set("binary", binary, HOUR)
            await cache.set("large", large, HOUR)
            await cache.set("empty", b"", HOUR)
            assert await cache.get("binary") == binary
            assert await cache.get("large") == large
            assert await cache.get("empty") == b""  # stored and empty is not a miss
        finally:
            await cache.close()
    asyncio.run(main())


# ---- sqlite:// -----------------------------------------------------------------------------

def sqlite_cache(registry, path, query: str = "", **options) -> SQLiteCache:
    return open_cache(f"sqlite:///{path}{query}", registry, options)


def test_sqlite_persists_across_close_and_reopen(registry, tmp_path):
    path = tmp_path / "nested" / "cache.db"  # the directory is made at first use

    async def main():
        first = sqlite_cache(registry, path)
        await first.set("k", b"kept", HOUR)
        await first.set("gone", b"x", 0.2)
        await first.close()
        second = sqlite_cache(registry, path)
        assert second.stats()["entries"] is None  # the file is not opened until first used
        assert await second.get("k") == b"kept"
        await asyncio.sleep(0.25)
        assert await second.get("gone") is None  # expiry is wall-clock time, kept in the file
        assert second.stats() == {"entries": 1, "bytes": 4, "hits": 1, "misses": 1,
                                  "evictions": 0}
        await second.close()
    asyncio.run(main())
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_least_recently_used_goes_first(registry, tmp_path):
    async def main():
        clock = FakeClock()
        cache = sqlite_cache(registry, tmp_path / "c.db", "?max_entries=3&max_bytes=10",
                             clock=clock)
        for key in "abc":
            clock.now += 1
            await cache.set(key, key.encode() * 3, HOUR)
        clock.now += 1
        assert await cache.get("a") == b"aaa"  # b is now the least recently used
        clock.now += 1
        await cache.set("d", b"d", HOUR)  # 4 entries: b goes
        assert await cache.get("b") is None
        clock.now += 1
        await cache.set("e", b"eeee", HOUR)  # 11 bytes: c, now least recently used, goes
        assert [await cache.get(k) for k in "acde"] == [b"aaa", None, b"d", b"eeee"]
        assert cache.stats()["entries"] == 3 and cache.stats()["bytes"] == 8
        assert cache.stats()["evictions"] == 2
        await cache.set("big", b"x" * 11, HOUR)  # larger than max_bytes: not stored
        assert await cache.get("big") is None and cache.stats()["evictions"] == 2
        await cache.close()
    asyncio.run(main())


def test_sqlite_calls_made_together_are_serialised(registry, tmp_path):
    async def main():
        cache = sqlite_cache(registry, tmp_path / "c.db", "?max_entries=10")
        await asyncio.gather(*(cache.set(f"k{i}", b"v", HOUR) for i in range(50)))
        values = await asyncio.gather(*(cache.get(f"k{i}") for i in range(50)))
        assert values == [None] * 40 + [b"v"] * 10
        assert cache.stats() == {"entries": 10, "bytes": 10, "hits": 10, "misses": 40,
                                 "evictions": 40}
        await cache.close()
    asyncio.run(main())


def test_sqlite_purges_expired_entries_periodically(registry, tmp_path):
    async def main():
        clock = FakeClock()
        cache = sqlite_cache(registry, tmp_path / "c.db", "?purge_interval=60", clock=clock)
        await cache.set("short", b"s", 10)
        await cache.set("long", b"l", HOUR)
        clock.now += 30
        await cache.set("other", b"o", HOUR)
        assert cache.stats()["entries"] == 3  # expired, but not purged before the interval
        clock.now += 31
        await cache.set("other", b"o", HOUR)
        assert cache.stats()["entries"] == 2 and cache.stats()["bytes"] == 2
        assert cache.stats()["evictions"] == 0  # dropping what expired loses nothing
        await cache.close()
    asyncio.run(main())


def test_sqlite_refuses_a_file_that_is_not_a_database(registry, tmp_path):
    path = tmp_path / "cache.db"
    path.write_bytes(b"these are not the bytes of a database\x00\xff" * 100)
    with pytest.raises(sqlite3.DatabaseError, match=re.escape(str(path))):
        sqlite_cache(registry, path)
    assert path.read_bytes().startswith(b"these are not")  # nothing was deleted


def test_sqlite_raises_on_a_corrupted_database_when_used(registry, tmp_path):
    path = tmp_path / "cache.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))  # right header, garbage after

    async def main():
        cache = sqlite_cache(registry, path)
        for call in (cache.get("k"), cache.set("k", b"v", HOUR), cache.get("k")):
            with pytest.raises(sqlite3.DatabaseError, match=re.escape(str(path))):
                await asyncio.wait_for(call, timeout=5)
        await cache.close()
    asyncio.run(main())


@pytest.mark.parametrize("url, options, message", [
    ("sqlite://host/cache.db", {}, "names a file and no host"),
    ("sqlite:///", {}, "names a file"),
    ("sqlite:///c.db?max_entires=5", {}, "unknown sqlite cache option 'max_entires'"),
    ("sqlite:///c.db?max_bytes=1GiB", {}, "'max_bytes' must be a positive integer"),
    ("sqlite:///c.db", {"purge_interval": 0}, "'purge_interval' must be a positive number"),
    ("sqlite:///c.db", {"clock": "time"}, "'clock' must be a callable"),
    ("sqlite:///c.db?max_entries", {}, "is not name=value"),
])
def test_sqlite_bad_settings_are_named(registry, url, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        open_cache(url, registry, options)


def test_sqlite_options_override_the_url(registry, tmp_path):
    cache = sqlite_cache(registry, tmp_path / "c.db", "?max_entries=5&max_bytes=100",
                         max_bytes=200)
    assert (cache.max_entries, cache.max_bytes, cache.path) == (5, 200, tmp_path / "c.db")
    relative = open_cache("sqlite:///data/cache.db", registry)
    assert str(relative.path) == "data/cache.db"
    assert not (tmp_path / "data").exists()  # opening is lazy: nothing is created yet


# ---- redis:// ------------------------------------------------------------------------------

def test_redis_instances_on_one_url_share_entries_and_prefixes_separate(registry, redis_prefix):
    async def main():
        first = open_cache(REDIS_URL, registry, {"prefix": redis_prefix})
        second = open_cache(f"{REDIS_URL}?prefix={redis_prefix}", registry)
        elsewhere = open_cache(REDIS_URL, registry, {"prefix": redis_prefix + "other:"})
        try:
            await first.set("k", b"from first", HOUR)
            assert await second.get("k") == b"from first"
            assert await elsewhere.get("k") is None
            await second.delete("k")
            assert await first.get("k") is None
            assert first.stats() == {"entries": None, "bytes": None, "hits": 0, "misses": 1,
                                     "evictions": 0}
        finally:
            for cache in (first, second, elsewhere):
                await cache.close()
    asyncio.run(main())
    client = redis.Redis.from_url(REDIS_URL)
    assert client.exists(redis_prefix + "k") == 0
    client.close()


def test_redis_stores_with_an_expiry(registry, redis_prefix):
    async def main():
        cache = open_cache(REDIS_URL, registry, {"prefix": redis_prefix})
        await cache.set("k", b"v", 90.5)
        await cache.close()
    asyncio.run(main())
    client = redis.Redis.from_url(REDIS_URL)
    assert 90_000 < client.pttl(redis_prefix + "k") <= 90_500
    client.close()


def test_redis_unreachable_raises_promptly(registry):
    async def main():
        cache = open_cache("redis://127.0.0.1:1/14", registry)
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError):
            await cache.get("k")
        with pytest.raises(redis.exceptions.ConnectionError):
            await cache.set("k", b"v", HOUR)
        assert time.monotonic() - started < 2
        await cache.close()
    asyncio.run(main())


def test_redis_that_does_not_answer_times_out_then_is_left_alone_for_a_while(registry):
    async def main():
        connections = []
        server = await asyncio.start_server(lambda r, w: connections.append(w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cache = open_cache(f"redis://127.0.0.1:{port}/14?socket_timeout=0.2", registry,
                           {"cooldown": 30})
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            await cache.get("k")
        assert 0.2 <= time.monotonic() - started < 1.5
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError, match="not trying again yet"):
            await cache.get("k")
        assert time.monotonic() - started < 0.1 and len(connections) == 1
        await cache.close()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
    asyncio.run(main())


@pytest.mark.parametrize("url, options, message", [
    ("redis://:hunter2@127.0.0.1:6379/0?socket_timout=1", {}, "socket_timout"),
    ("redis://:hunter2@127.0.0.1:6379/0?socket_timeout=soon", {}, "socket_timeout"),
    ("redis://:hunter2@127.0.0.1:6379/0", {"cooldown": -1}, "'cooldown' must be"),
    ("redis://:hunter2@127.0.0.1:6379/0?prefix", {}, "is not name=value"),
])
def test_redis_bad_settings_are_named_without_the_password(registry, url, options, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        open_cache(url, registry, options)
    assert "hunter2" not in str(raised.value)


def test_rediss_builds_a_tls_client_without_connecting(registry):
    cache = open_cache("rediss://cache.internal:6380/2?ssl_cert_reqs=none", registry,
                       {"prefix": "team-a:"})
    assert isinstance(cache, RedisCache) and cache.prefix == "team-a:"
    assert cache.stats()["hits"] == 0
