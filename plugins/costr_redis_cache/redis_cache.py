"""`redis://HOST:PORT/DB` and `rediss://` (TLS): a cache shared by every replica that names
the same Redis, expiring entries itself."""
from __future__ import annotations

import math
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis import exceptions

DEFAULT_PREFIX = "costr:cache:"
DEFAULT_TIMEOUT = 1.0
DEFAULT_COOLDOWN = 5.0
OWN_OPTIONS = ("prefix", "cooldown")


class RedisCache:
    """`redis://[:PASSWORD@]HOST:PORT/DB?prefix=costr:cache:&cooldown=5`. Keys are stored
    under `prefix` (so deployments can share a Redis) with Redis's own expiry (`PX`), and Redis
    bounds memory through its `maxmemory` policy (`allkeys-lru` suits a cache). Every other
    query parameter is redis-py's (`socket_timeout`, `socket_connect_timeout`, both 1 second
    here, `ssl_cert_reqs`, ...). `options` may set any of them, overriding the URL.

    The connection opens at first use. When Redis cannot be reached or does not answer in
    time, the call raises, and for `cooldown` seconds after that every call raises at once
    rather than wait again: a cache that is down must not slow every request down.
    `stats()` counts this object's hits and misses; entries and bytes are Redis's business
    (`None`), and so are evictions (always 0 here)."""

    def __init__(self, url: str, options: dict | None = None):
        parts = urlsplit(url)
        try:
            query = dict(parse_qsl(parts.query, strict_parsing=True))
        except ValueError:
            raise ValueError("redis cache URL query is not name=value&...") from None
        settings = {**query, **(options or {})}
        self.prefix = str(settings.pop("prefix", DEFAULT_PREFIX))
        self.cooldown = _seconds(settings.pop("cooldown", DEFAULT_COOLDOWN), "cooldown")
        self._url = parts._replace(query=urlencode(settings)).geturl()
        self._connection_settings = {
            "socket_timeout": DEFAULT_TIMEOUT, "socket_connect_timeout": DEFAULT_TIMEOUT,
            # One try: a failure is a miss, and the next call after `cooldown` tries again.
            "retry": Retry(NoBackoff(), 0)}
        _check_connection_settings(self._url, self._connection_settings)
        self._client: redis.asyncio.Redis | None = None
        self._down_until = 0.0
        self._hits = self._misses = 0

    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", self.prefix + key)
        if value is None:
            self._misses += 1
        else:
            self._hits += 1
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if not ttl_seconds > 0:  # `not >` also refuses NaN; a set replaces even so
            await self._call("delete", self.prefix + key)
        elif math.isinf(ttl_seconds):
            await self._call("set", self.prefix + key, value)
        else:
            await self._call("set", self.prefix + key, value, px=math.ceil(ttl_seconds * 1000))

    async def delete(self, key: str) -> None:
        await self._call("delete", self.prefix + key)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()  # closes the pool too: from_url made it for this client

    def stats(self) -> dict:
        return {"entries": None, "bytes": None, "hits": self._hits, "misses": self._misses,
                "evictions": 0}

    async def _call(self, command: str, *args, **kwargs):
        if time.monotonic() < self._down_until:
            raise exceptions.ConnectionError(
                f"the redis cache was unreachable less than {self.cooldown:g} seconds ago; "
                "not trying again yet")
        if self._client is None:
            self._client = redis.asyncio.Redis.from_url(self._url, **self._connection_settings)
        try:
            return await getattr(self._client, command)(*args, **kwargs)
        except (exceptions.ConnectionError, exceptions.TimeoutError, OSError):
            self._down_until = time.monotonic() + self.cooldown
            raise


def _check_connection_settings(url: str, defaults: dict) -> None:
    """Raise ValueError for a URL redis-py would refuse only when it first connects."""
    try:
        pool = redis.asyncio.ConnectionPool.from_url(url, **defaults)
        pool.connection_class(**pool.connection_kwargs)  # builds settings; connects nothing
    except (TypeError, ValueError) as exc:
        # redis-py's messages name the bad setting, never the password.
        raise ValueError(f"redis cache URL: {exc}") from None


def _seconds(value, name: str) -> float:
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < math.inf:
        raise ValueError(f"redis cache option {name!r} must be a number of seconds >= 0, "
                         f"not {value!r}")
    return seconds
