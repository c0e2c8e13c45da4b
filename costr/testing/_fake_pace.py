"""Slow streams for the fake upstream: a streamed answer that comes one token every interval
for a set time, as from a model generating at a steady pace, so that a drill can hold many
streams open at once (costr/benchmark/many_streams.py).

The waits are asyncio sleeps on the fake's one event loop, and a stream's content chunks are
one bytes object repeated: a thousand open streams cost a thousand timers and a few small
objects each, not threads or buffers.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar, Iterable

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Pace:
    """One content chunk every `interval` seconds, for `seconds`."""
    interval: float
    seconds: float

    WORD: ClassVar[str] = "tok "   # each content chunk's text: one token

    def __post_init__(self) -> None:
        if not (self.interval > 0 and self.seconds > 0):
            raise ValueError("a slow stream needs a token interval and a duration, both above 0")

    @classmethod
    def from_options(cls, token_interval_ms: float, stream_seconds: float) -> "Pace | None":
        """The pace the fake's options ask for; None (answers at once) when neither is set."""
        if not token_interval_ms and not stream_seconds:
            return None
        return cls(token_interval_ms / 1000, stream_seconds)

    @property
    def tokens(self) -> int:
        """Content chunks per answer: one per interval over `seconds`, at least one."""
        return max(1, round(self.seconds / self.interval))

    async def write(self, response: web.StreamResponse, chunks: Iterable[bytes]) -> None:
        """Write a paced stream's chunks (its role chunk, `tokens` content chunks, then its
        closing chunks): the first at once, the k-th content chunk k intervals after it, the
        closing ones right after the last. The times are kept from the start, so a late
        wake-up does not push every later chunk back."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, chunk in enumerate(chunks):
            if 1 <= index <= self.tokens:
                wait = start + index * self.interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            await response.write(chunk)
