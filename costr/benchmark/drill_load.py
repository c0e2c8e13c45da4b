"""The fault drill's bounded load: a few clients on 127.0.0.1 sending OpenAI chat requests
through nginx back to back, half of them streamed, and what each one saw.

Every request asks for a distinct answer (so the response cache never answers it) of known
length. A client records its status (None when the connection failed or was reset), its
`x-request-id`, which upstream answered, and for a stream whether it ended properly, with an
error event, or silently cut.
"""
from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp
import orjson

ANSWER_WORDS = "the quick brown fox jumps over the lazy dog while the drill keeps running "
CLIENT_TIMEOUT = 30.0   # longer than any deadline the drill sets: a hang shows as a hang


@dataclass(slots=True)
class Outcome:
    started: float
    ended: float
    stream: bool
    status: int | None = None       # None: no HTTP answer (connection refused, reset, cut)
    failure: str = ""               # the transport error, or the error the body carried
    request_id: str | None = None
    provider: str | None = None
    error_event: bool = False       # a stream that ended with an error event
    complete: bool = False          # a stream that ended with its final event, or a JSON answer
    delivered_chars: int = 0        # answer text the client received

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def label(self) -> str:
        """How it ended, for the table: 200, 504, ..., `reset`, `cut` (a stream that ended
        with neither its end nor an error event), `200+error event`; `in flight`."""
        if not self.ended:
            return "in flight"
        if self.status is None:
            return "reset"
        if self.status == 200 and self.stream and self.error_event:
            return "200+error event"
        if self.status == 200 and not self.complete:
            return "cut"
        return str(self.status)

    @property
    def ok(self) -> bool:
        return self.label == "200"


class Load:
    """`concurrency` clients sending back to back (after `pause` seconds each) until stopped."""

    def __init__(self, base_url: str, key: str, concurrency: int = 6, pause: float = 0.02,
                 answer_chars: int = 160):
        self.base_url, self.key = base_url, key
        self.concurrency, self.pause = concurrency, pause
        self.answer = (ANSWER_WORDS * (answer_chars // len(ANSWER_WORDS) + 1))[:answer_chars]
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._sent = 0

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency * 2, force_close=False)
        self._http = aiohttp.ClientSession(connector=connector)
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.close()

    def since(self, t0: float, t1: float | None = None) -> list[Outcome]:
        """The requests that started in [t0, t1), those still in flight included."""
        return [o for o in self.outcomes if o.started >= t0 and (t1 is None or o.started < t1)]

    async def settled(self, t0: float, t1: float | None = None) -> list[Outcome]:
        """`since(t0, t1)` once every one of them has ended (or timed out on the client)."""
        chosen = self.since(t0, t1)
        while any(not o.ended for o in chosen):
            await asyncio.sleep(0.1)
        return chosen

    async def _client(self) -> None:
        while not self._stop.is_set():
            self._sent += 1
            outcome = Outcome(time.monotonic(), 0.0, stream=self._sent % 2 == 0)
            self.outcomes.append(outcome)   # in flight: seen by `since` already
            await self.request(outcome)
            if self.pause:
                await asyncio.sleep(self.pause)

    async def request(self, outcome: Outcome) -> Outcome:
        stream = outcome.stream
        nonce = secrets.token_hex(6)
        body = {"model": "auto", "max_tokens": 256, "stream": stream,
                "messages": [{"role": "user", "content": f"Reply exactly: {nonce} {self.answer}"}]}
        if stream:
            body["stream_options"] = {"include_usage": True}
        try:
            async with self._http.post(f"{self.base_url}/v1/chat/completions",
                                       data=orjson.dumps(body), headers={
                                           "authorization": f"Bearer {self.key}",
                                           "content-type": "application/json"},
                                       timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)) as r:
                outcome.status = r.status
                outcome.request_id = r.headers.get("x-request-id")
                outcome.provider = r.headers.get("x-costr-routed-provider")
                if stream and r.status == 200:
                    await _read_stream(r, outcome)
                else:
                    _read_json(await r.read(), outcome)
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            if outcome.status is None or not stream:
                outcome.status = None
            outcome.failure = f"{type(exc).__name__}: {exc}"[:200]
        outcome.ended = time.monotonic()
        return outcome


async def _read_stream(response: aiohttp.ClientResponse, outcome: Outcome) -> None:
    async for raw in response.content:
        line = raw.strip()
        if line.startswith(b"event: error"):
            outcome.error_event = True
        if not line.startswith(b"data: "):
            continue
        data = line[len(b"data: "):]
        if data == b"[DONE]":
            outcome.complete = True
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if "error" in event:
            outcome.error_event = True
            outcome.failure = str((event.get("error") or {}).get("message", ""))[:200]
        for choice in event.get("choices") or []:
            outcome.delivered_chars += len((choice.get("delta") or {}).get("content") or "")


def _read_json(raw: bytes, outcome: Outcome) -> None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        outcome.failure = f"not JSON: {raw[:80]!r}"
        return
    if outcome.status == 200:
        outcome.complete = True
        message = ((body.get("choices") or [{}])[0].get("message") or {})
        outcome.delivered_chars = len(message.get("content") or "")
    else:
        error = body.get("error") if isinstance(body, dict) else None
        outcome.failure = (error or {}).get("message", "")[:200] if isinstance(error, dict) else \
            "an error body without an error object"


# -- what a list of outcomes says ---------------------------------------------------------------

def by_label(outcomes: list[Outcome]) -> Counter:
    return Counter(o.label for o in outcomes)


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def summary(outcomes: list[Outcome]) -> str:
    """`N requests: 200 x95, 504 x5; p50 40 ms, p99 2.1 s`."""
    counts = ", ".join(f"{label} x{n}" for label, n in sorted(by_label(outcomes).items()))
    seconds = [o.seconds for o in outcomes if o.ended]
    return (f"{len(outcomes)} requests: {counts or 'none'}; "
            f"p50 {_duration(percentile(seconds, .5))}, p99 {_duration(percentile(seconds, .99))}")


def _duration(seconds: float) -> str:
    if seconds != seconds:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def recovered_after(outcomes: list[Outcome], since: float) -> float | None:
    """Seconds from `since` until the end of the last failed request (0: none failed)."""
    failed = [o.ended for o in outcomes if not o.ok]
    return max(0.0, max(failed) - since) if failed else 0.0
