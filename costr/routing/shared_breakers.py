"""Circuit-breaker state shared by the instances that use one Redis (`--limits redis://...`).

Redis stays off the request path: an instance writes a breaker's state when it changes (opens,
or closes after a probe), from a background task, and reads every instance's once a second,
adopting a change newer than its own (Breakers.adopt). So an upstream one instance found dead
is skipped by all of them within about a second, and a Redis that is down or slow only stops
the sharing: requests never wait on it, and each instance carries on with its own breakers.
"""
from __future__ import annotations

import asyncio
import logging
import uuid

import orjson

from costr.routing.breakers import Breaker, Breakers

log = logging.getLogger("costr.breakers")

HASH = "costr:breakers"        # field: breaker key; value: its last published state (JSON)
KEEP_SECONDS = 86400           # the hash is dropped a day after the last change


class SharedBreakers:
    def __init__(self, breakers: Breakers, url: str, poll_seconds: float = 1.0):
        import redis.asyncio as redis

        self.breakers, self.poll_seconds = breakers, poll_seconds
        self.redis = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.instance = uuid.uuid4().hex[:12]
        self._unsent: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._down = False            # Redis failed last time: said once, not every second
        breakers.on_change = self.publish

    def publish(self, key: str, breaker: Breaker) -> None:
        """Queue a state change for the writer (called by Breakers, never waits)."""
        self._unsent[key] = orjson.dumps({
            "state": breaker.state, "until": breaker.open_until, "changed": breaker.changed,
            "why": breaker.why_open, "error": breaker.last_error, "by": self.instance})
        self._wake.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._read())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._unsent = self._unsent, {}
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    await pipe.hset(HASH, mapping=batch).expire(HASH, KEEP_SECONDS).execute()
                self._up()
            except Exception as exc:   # Redis down: sent again once it answers
                self._failed("publish", exc)
                self._unsent = {**batch, **self._unsent}
                await asyncio.sleep(self.poll_seconds)
                self._wake.set()

    async def _read(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                shared = await self.redis.hgetall(HASH)
                self._up()
            except Exception as exc:
                self._failed("read", exc)
                continue
            for key, value in shared.items():
                self._adopt(key.decode(), value)

    def _adopt(self, key: str, value: bytes) -> None:
        try:
            seen = orjson.loads(value)
            if seen.get("by") == self.instance:
                return
            self.breakers.adopt(key, str(seen["state"]), float(seen["until"]),
                                float(seen["changed"]), seen.get("why"), seen.get("error"))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.warning("ignoring an unreadable shared breaker state for %s", key)

    def _failed(self, what: str, exc: Exception) -> None:
        if not self._down:
            log.warning("cannot %s circuit-breaker state through Redis (%s); each instance "
                        "keeps its own until it answers again", what, exc)
        self._down = True

    def _up(self) -> None:
        if self._down:
            log.warning("circuit-breaker state is shared through Redis again")
        self._down = False


def share_breakers(breakers: Breakers, limits_url: str | None) -> SharedBreakers | None:
    """Share `breakers` through the Redis of a `redis://` limits URL, started; None for
    memory:// (or no URL): each instance then keeps its own."""
    if not limits_url or not limits_url.startswith(("redis://", "rediss://", "unix://")):
        return None
    board = SharedBreakers(breakers, limits_url)
    board.start()
    return board
