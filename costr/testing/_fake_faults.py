"""Faults the fake upstream injects on command, for fault drills and breaker tests.

`POST /_fault {"mode": ..., "count": N, "status": S}` (or `FakeUpstream.set_fault`) sets how
the next answers misbehave; `GET /_fault` says what is set. Modes:

- `ok`: answer normally (and release every request held by `hang`);
- `hang`: accept the request and never answer (until the mode changes; then it answers);
- `truncate`: a stream stops after its first events and the connection is closed without the
  stream's end; a JSON answer is cut in half under its full Content-Length;
- `error`: answer `status` (default 503) in the provider's error shape.

With `count`, only that many chat answers misbehave, then the mode is `ok` again. Faults apply
to chat answers in every wire format; models, embeddings and token counts answer normally.
"""
from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

MODES = ("ok", "hang", "truncate", "error")


class Faults:
    """What the fake does wrong now. Lives on the fake's event loop."""

    def __init__(self) -> None:
        self.mode, self.count, self.status = "ok", None, 503
        self.injected = 0                  # answers that misbehaved so far
        self._released = asyncio.Event()   # what the requests held by `hang` now wait for

    def set(self, mode: str, count: int | None = None, status: int | None = None) -> None:
        """Set the fault; every request held by an earlier `hang` is released (answered)."""
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; modes: {', '.join(MODES)}")
        if count is not None and (type(count) is not int or count < 1):
            raise ValueError("count is a whole number of answers, at least 1")
        if status is not None and not (type(status) is int and 400 <= status <= 599):
            raise ValueError("status is an HTTP error status, 400-599")
        self.mode, self.count, self.status = mode, count, status or 503
        self.release()

    def take(self) -> tuple[str, int, asyncio.Event]:
        """The fault for this answer ("ok": none), its status, and what a hung answer waits
        for; counts the fault down (when it runs out the mode is "ok", releasing nobody)."""
        taken = (self.mode, self.status, self._released)
        if self.mode != "ok":
            self.injected += 1
            if self.count is not None:
                self.count -= 1
                if self.count <= 0:
                    self.mode, self.count = "ok", None
        return taken

    def release(self) -> None:
        self._released.set()
        self._released = asyncio.Event()

    def describe(self) -> dict:
        return {"mode": self.mode, "count": self.count, "status": self.status,
                "injected": self.injected}

    async def endpoint(self, request: web.Request) -> web.Response:
        """GET /_fault: what is set; POST /_fault {"mode", "count"?, "status"?}: set it."""
        if request.method == "POST":
            try:
                body = orjson.loads(await request.read())
                if not isinstance(body, dict):
                    raise ValueError("the body is a JSON object: {\"mode\": ...}")
                self.set(str(body.get("mode")), body.get("count"), body.get("status"))
            except (orjson.JSONDecodeError, ValueError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.Response(body=orjson.dumps(self.describe()), content_type="application/json")


async def faulty_answer(faults: Faults, request: web.Request, error_body, chunks: list | None,
                        payload) -> web.StreamResponse | None:
    """The answer the fault set now calls for, or None to answer normally (at once, or once a
    hang is released). `chunks`: a stream's events (None: a JSON answer); `payload`: the JSON
    answer's bytes, or a function making them; `error_body(status, message)`: the provider's
    error shape."""
    mode, status, released = faults.take()
    if mode == "hang":
        await released.wait()
        if request.transport is None or request.transport.is_closing():
            return web.Response(status=204)   # the caller gave up: nobody to answer
    elif mode == "error":
        return web.Response(body=orjson.dumps(error_body(status, f"injected fault: {status}")),
                            status=status, content_type="application/json")
    elif mode == "truncate":
        if chunks is not None:
            return await truncated_stream(request, chunks)
        return await truncated_json(request, payload() if callable(payload) else payload)
    return None


async def truncated_stream(request: web.Request, chunks: list[bytes]) -> web.StreamResponse:
    """The stream's first events (half of them, at least one, at most three), then the
    connection closes with the chunked body unfinished, as when an upstream dies mid-answer."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    keep = max(1, min(len(chunks) // 2, 3))
    try:
        for chunk in chunks[:keep]:
            await response.write(chunk)
            await asyncio.sleep(0.01)   # sent as separate events, not one burst
    except ConnectionError:
        pass
    _cut(request)
    return response


async def truncated_json(request: web.Request, payload: bytes) -> web.StreamResponse:
    """Half the answer under the whole answer's Content-Length, then the connection closes."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(payload)
    await response.prepare(request)
    try:
        await response.write(payload[:len(payload) // 2])
    except ConnectionError:
        pass
    _cut(request)
    return response


def _cut(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()
