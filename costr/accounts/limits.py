"""Per-key rate limits: requests and tokens per minute, in fixed one-minute windows.

`memory://` (the default) limits one instance; `redis://HOST:PORT/DB` shares the windows
between every instance using the same Redis, so a key's limit holds across them.
"""
from __future__ import annotations

import time
from typing import Protocol

from costr.errors import RateLimited

WINDOW = 60


class Limiter(Protocol):
    async def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> float | None:
        """Count a request; None if admitted, else seconds until it would be."""

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        """Count tokens a finished request used."""

    async def close(self) -> None: ...


def _window(now: float) -> tuple[int, float]:
    window = int(now // WINDOW)
    return window, (window + 1) * WINDOW - now


class MemoryLimiter:
    def __init__(self, clock=time.time):
        self.clock = clock
        self._counts: dict[str, tuple[int, int, int]] = {}  # key -> (window, requests, tokens)

    def _current(self, key_id: str, window: int) -> tuple[int, int]:
        seen = self._counts.get(key_id)
        return (seen[1], seen[2]) if seen and seen[0] == window else (0, 0)

    async def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> float | None:
        window, remaining = _window(self.clock())
        requests, tokens = self._current(key_id, window)
        if (rpm is not None and requests >= rpm) or (tpm is not None and tokens >= tpm):
            return remaining
        self._counts[key_id] = (window, requests + 1, tokens)
        return None

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        window, _ = _window(self.clock())
        requests, used = self._current(key_id, window)
        self._counts[key_id] = (window, requests, used + tokens)

    async def close(self) -> None:
        self._counts.clear()


_ADMIT = """
local requests = tonumber(redis.call('GET', KEYS[1]) or '0')
local tokens = tonumber(redis.call('GET', KEYS[2]) or '0')
if (ARGV[1] ~= '' and requests >= tonumber(ARGV[1])) or (ARGV[2] ~= '' and tokens >= tonumber(ARGV[2])) then
  return 0
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class RedisLimiter:
    def __init__(self, url: str, clock=time.time):
        import redis.asyncio as redis

        self.clock = clock
        self.redis = redis.from_url(url)
        self._admit = self.redis.register_script(_ADMIT)

    async def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> float | None:
        window, remaining = _window(self.clock())
        keys = [f"costr:limits:{key_id}:{window}:requests", f"costr:limits:{key_id}:{window}:tokens"]
        admitted = await self._admit(keys=keys, args=["" if rpm is None else rpm,
                                                      "" if tpm is None else tpm, 2 * WINDOW])
        return None if admitted else remaining

    async def add_tokens(self, key_id: str, tokens: int) -> None:
        window, _ = _window(self.clock())
        key = f"costr:limits:{key_id}:{window}:tokens"
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.incrby(key, tokens).expire(key, 2 * WINDOW).execute()

    async def close(self) -> None:
        await self.redis.aclose()


def open_limiter(url: str | None) -> Limiter:
    if not url or url.startswith("memory://"):
        return MemoryLimiter()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisLimiter(url)
    raise ValueError("limits URL must start with memory:// or redis://")


async def enforce(limiter: Limiter, key_id: str, rpm: int | None, tpm: int | None) -> None:
    """Raise RateLimited (429, with Retry-After) when the key is over a limit."""
    if rpm is None and tpm is None:
        return
    wait = await limiter.admit(key_id, rpm, tpm)
    if wait is not None:
        seconds = max(1, int(wait + 0.999))
        raise RateLimited(f"Rate limit reached for this key ({_describe(rpm, tpm)}); retry in "
                          f"{seconds} s.", headers={"retry-after": str(seconds)})


def _describe(rpm: int | None, tpm: int | None) -> str:
    parts = ([f"{rpm} requests"] if rpm is not None else []) + ([f"{tpm} tokens"] if tpm is not None else [])
    return " and ".join(parts) + " per minute"
