"""The one HTTP client Costr uses to reach upstreams, owned by the app's lifespan.

Built on aiohttp: in a bare Starlette relay on this project's 2-core benchmark machine it cost
0.17 ms of CPU per request at 32 clients against httpx's 1.4-1.6 ms (docs/benchmark.md).
Providers see only this small interface, never aiohttp.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import AsyncIterator, Callable, TypeVar

import aiohttp
import orjson

from costr.errors import UpstreamError, UpstreamTimeout
from costr.wire.capped_reads import (DEFAULT_MAX_ANSWER_BYTES, capped_lines, read_capped,
                                     read_error_body)
from costr.wire.sse import SSEParser

log = logging.getLogger("costr.upstream")
T = TypeVar("T")


@dataclass(slots=True)
class Timeouts:
    connect: float = 10.0
    read: float = 300.0  # longest silence allowed between bytes of an answer
    # longest wait for a streamed answer's first event (None: `read`); the router applies it
    first_byte: float | None = None


# What a decoder raises when a JSON answer is not the shape it reads (a list for an object, a
# string for a list, a missing key).
UNREADABLE = (AttributeError, KeyError, IndexError, TypeError, ValueError)


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str = ""   # what was asked; only its host goes into messages

    def json(self):
        """The body as JSON. A body that is not JSON (an upstream answering 200 with an HTML
        page or a cut-off body) is the upstream's fault, which another upstream need not
        share: a retryable UpstreamError, so the router falls back, and 502 if none is left."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise self.unreadable("a body that is not JSON") from None

    def decoded(self, decode: Callable[[dict], T]) -> T:
        """`decode(body)` for a JSON object body; a body the decoder cannot read (not an
        object, or an object of the wrong shape) is a retryable UpstreamError too."""
        body = self.json()
        if not isinstance(body, dict):
            raise self.unreadable(f"JSON that is not an object ({type(body).__name__})")
        try:
            return decode(body)
        except UNREADABLE as exc:
            log.warning("cannot read the answer of %s", _host(self.url), exc_info=True)
            raise self.unreadable(f"an answer Costr cannot read ({type(exc).__name__}: "
                                  f"{str(exc)[:200]})") from None

    def unreadable(self, what: str) -> UpstreamError:
        return UpstreamError(f"the upstream at {_host(self.url) or 'the provider'} answered "
                             f"{self.status} with {what}", upstream_status=self.status,
                             retryable=True)


class Upstream:
    """`max_answer_bytes` caps a whole answer and each event (or line) of a streamed one; an
    upstream sending more gets a retryable 502, and Costr never holds more of it
    (costr.wire.capped_reads)."""

    def __init__(self, session: aiohttp.ClientSession,
                 max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES):
        self._session = session
        self.max_answer_bytes = max_answer_bytes

    @classmethod
    async def open(cls, limit: int = 0,
                   max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> "Upstream":
        # limit 0, no cap: a capped pool queues the streams past it behind minutes-long ones.
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                        skip_auto_headers=("User-Agent",), json_serialize=_dumps)
        return cls(session, max_answer_bytes)

    async def close(self) -> None:
        await self._session.close()

    async def request(self, method: str, url: str, *, headers: dict[str, str],
                      body: bytes | None = None, timeouts: Timeouts = Timeouts(),
                      secret: str | None = None) -> Reply:
        """Send a request and read the whole answer. Raises UpstreamError for a status >= 400."""
        try:
            async with self._session.request(method, url, data=body, headers=headers,
                                             timeout=_client_timeout(timeouts)) as resp:
                payload = await (read_error_body(resp) if resp.status >= 400 else
                                 read_capped(resp, self.max_answer_bytes, _host(url)))
                reply = Reply(resp.status, dict(resp.headers), payload, url)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"the upstream at {_host(url)} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"could not reach the upstream at {_host(url)}: {_describe(exc)}") from None
        if reply.status >= 400:
            raise error_from_reply(reply, url, secret)
        return reply

    @asynccontextmanager
    async def stream(self, url: str, *, headers: dict[str, str], body: bytes,
                     timeouts: Timeouts = Timeouts(), secret: str | None = None,
                     framing: str = "sse") -> AsyncIterator[AsyncIterator]:
        """POST and yield the answer's server-sent events (`framing="sse"`, SSEvent items) or
        its non-empty lines (`framing="lines"`, bytes items, for NDJSON upstreams). An error
        status raises before the first item; a timeout or disconnect mid-stream raises from
        the iterator."""
        try:
            ctx = self._session.post(url, data=body, headers=headers, timeout=_client_timeout(timeouts))
            resp = await ctx.__aenter__()
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"the upstream at {_host(url)} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"could not reach the upstream at {_host(url)}: {_describe(exc)}") from None
        try:
            if resp.status >= 400:
                reply = Reply(resp.status, dict(resp.headers), await read_error_body(resp))
                raise error_from_reply(reply, url, secret)
            cap = self.max_answer_bytes
            if framing == "sse":
                yield _events(resp.content, SSEParser(cap, cap, _host(url)), url)
            else:
                yield _guarded(_lines(capped_lines(resp.content, cap, _host(url))), url)
        finally:
            await ctx.__aexit__(None, None, None)


async def _lines(lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for line in lines:
        line = line.strip()
        if line:
            yield line


async def _events(content, parser: SSEParser, url: str) -> AsyncIterator:
    """The answer's server-sent events as its chunks arrive: one generator between the socket
    and the provider, not one per line and one per event (what a streamed token costs is
    mostly these hops)."""
    with _mid_answer(url):
        async for chunk in content.iter_any():
            for event in parser.feed(chunk):
                yield event
        for event in parser.close():
            yield event


async def _guarded(events: AsyncIterator, url: str) -> AsyncIterator:
    with _mid_answer(url):
        async for event in events:
            yield event


@contextmanager
def _mid_answer(url: str):
    """A stream that times out or breaks off as a Costr error naming its upstream's host."""
    try:
        yield
    except asyncio.TimeoutError:
        raise UpstreamTimeout(f"the upstream at {_host(url)} went quiet mid-answer") from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"the upstream at {_host(url)} broke off: {_describe(exc)}") from None


def error_from_reply(reply: Reply, url: str, secret: str | None) -> UpstreamError:
    """An UpstreamError carrying the upstream's own message (never a credential)."""
    message = upstream_message(reply.body) or f"HTTP {reply.status}"
    if secret:
        message = message.replace(secret, "***")
    # 408, 409, 429 and 5xx may succeed elsewhere; other 4xx would fail on any upstream.
    retryable = reply.status in (408, 409, 429) or reply.status >= 500
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        body = None
    return UpstreamError(f"upstream {_host(url)} answered {reply.status}: {message}",
                         upstream_status=reply.status, retryable=retryable, upstream_body=body,
                         retry_after=retry_after(reply.headers))


def retry_after(headers: dict[str, str], now: float | None = None) -> float | None:
    """The seconds an upstream asked to wait: `Retry-After` as seconds or as an HTTP date, or
    the millisecond `retry-after-ms` some send as well; None when absent or unreadable."""
    found = {k.lower(): v for k, v in headers.items() if k.lower() in _RETRY_HEADERS}
    try:
        if "retry-after-ms" in found:
            return _bounded(float(found["retry-after-ms"]) / 1000)
        value = found.get("retry-after", "").strip()
        if not value:
            return None
        if value.replace(".", "", 1).isdigit():
            return _bounded(float(value))
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return _bounded(when.timestamp() - (time.time() if now is None else now))


_RETRY_HEADERS = ("retry-after", "retry-after-ms")


def _bounded(seconds: float) -> float | None:
    """A wait the router can use: a date in the past is no wait, more than a day is a day;
    nonsense (NaN) is ignored."""
    return min(max(0.0, seconds), 86400.0) if seconds == seconds else None


def upstream_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:500]
    if isinstance(data, list) and data:  # Gemini sometimes wraps errors in a list
        data = data[0]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:1000]
        return str(err)[:1000]
    return str(data)[:500]


def _client_timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=t.read)


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _dumps(obj) -> str:
    return orjson.dumps(obj).decode()
