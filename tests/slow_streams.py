"""For the tests of what becomes of requests still running when their instance crashes or shuts
down (test_credit_holds.py, test_shutdown_streams.py): an OpenAI-wire upstream whose streams
take their time, and `costr serve` processes to crash or stop.

The last user message says what to do:

- `slow N GAP`: a role chunk, then N content chunks `w0 `, `w1 `, ... GAP seconds apart, then
  the finish chunk, a usage chunk (10 prompt tokens, N completion tokens) and `[DONE]`;
- `cut-after N`: a role chunk and N content chunks, then the connection closes mid-stream.

Anything else is answered at once, streamed or not, with "ok".
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
from aiohttp import web

PROMPT_TOKENS = 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chunk(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    payload = {"id": "chatcmpl-slow", "object": "chat.completion.chunk",
               "created": int(time.time()), "model": "fake",
               "choices": [] if delta is None else
               [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _usage(completion: int) -> dict:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion}


async def _chat(request: web.Request) -> web.StreamResponse:
    body = orjson.loads(await request.read())
    words = str(body["messages"][-1]["content"]).split()
    if not body.get("stream"):
        return web.json_response({
            "id": "chatcmpl-slow", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"), "usage": _usage(1), "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "ok"}}]})
    count, gap, cut = 1, 0.0, False
    if words[:1] == ["slow"]:
        count, gap = int(words[1]), float(words[2])
    elif words[:1] == ["cut-after"]:
        count, cut = int(words[1]), True
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    try:
        await response.write(_chunk({"role": "assistant", "content": ""}))
        for i in range(count):
            if gap:
                await asyncio.sleep(gap)
            await response.write(_chunk({"content": f"w{i} " if words[:1] != ["ok"] else "ok"}))
        if cut:
            await asyncio.sleep(0.05)
            request.transport.close()
            return response
        await response.write(_chunk({}, "stop"))
        await response.write(_chunk(None, usage=_usage(count)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass
    return response


class SlowUpstream:
    """Serves on a free loopback port from a background thread; `url` is its base URL."""

    def __init__(self):
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "SlowUpstream":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.add_routes([web.post("/v1/chat/completions", _chat)])
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def __exit__(self, *exc) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


# `costr serve` exactly, but for uvicorn's graceful-shutdown limit, shortened from 30 s so a
# test of what happens at the limit does not wait 30 s.
SERVE_WITH_GRACE = """
import sys, uvicorn
grace = float(sys.argv[1])
original = uvicorn.Config.__init__
def with_grace(self, *args, **kw):
    kw["timeout_graceful_shutdown"] = grace
    original(self, *args, **kw)
uvicorn.Config.__init__ = with_grace
from costr.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


class Instance:
    """A `costr serve` process on a free port, its output in `log`."""

    def __init__(self, directory: Path, providers: Path, policies: Path, database: str, *,
                 grace_seconds: float | None = None, env: dict[str, str] | None = None,
                 name: str = "costr"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / f"{name}-{self.port}.log"
        serve = ["serve", "--port", str(self.port), "--providers", str(providers), "--policies",
                 str(policies), "--database", database, "--log-level", "info"]
        command = ([sys.executable, "-c", SERVE_WITH_GRACE, str(grace_seconds), *serve]
                   if grace_seconds is not None else [sys.executable, "-m", "costr", *serve])
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/v1/router/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
