"""A scripted local LLM upstream speaking the OpenAI, Anthropic and Gemini wire formats.

In a test::

    with FakeUpstream(script=[{"text": "hi"}]) as fake:
        ...  # point a provider at fake.url; inspect fake.requests afterwards

From a shell: `python -m costr.testing.fake_upstream --port 9100 [--script FILE]
[--delay-ms N] [--fast] [--token-interval-ms MS --stream-seconds S] [--write-config local.yaml]`;
`--write-config` writes a providers file pointing at the fake, for `costr serve --providers
local.yaml` with no API key at all.

Without a script (or once it is used up) the fake calls the first offered tool, summarises
a tool result as "Done: ...", answers `Reply exactly: X` with X, and anything else with "ok".
Like the real providers, it refuses with their error shapes what they refuse: tool names they
do not accept, OpenAI tool call ids over 40 characters, Anthropic tool_use ids outside its
pattern, unpaired calls and results, and (for `gemini-3*` models, which sign their function
calls) a current-turn step whose signature is missing or not its own. `--fast` answers OpenAI
chat from precomputed bytes, so a benchmark measures the gateway in front of it rather than
the fake. `POST /_fault {"mode": "hang"|"truncate"|"error"|"ok"}` (or `set_fault`) makes
its chat answers misbehave on command (costr/testing/_fake_faults.py). With
`--token-interval-ms 50 --stream-seconds 20` every streamed OpenAI chat answer is slow: one
content chunk every 50 ms for 20 s, then its closing chunks (costr/testing/_fake_pace.py); the
script is not consulted for those, and everything else is answered as usual.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import orjson
from aiohttp import web

from . import SECRET_HEADERS
from . import _fake_anthropic as anthropic
from . import _fake_gemini as gemini
from . import _fake_openai as openai
from ._fake_answers import Answer, Ask, Script
from ._fake_config import DEFAULT_MODELS, PROVIDER_TYPE, providers_yaml, write_gateway_config
from ._fake_faults import Faults, faulty_answer
from ._fake_pace import Pace

__all__ = ["DEFAULT_MODELS", "PROVIDER_TYPE", "FakeUpstream", "Pace", "Received",
           "load_script", "main", "new_event_loop", "providers_yaml", "write_gateway_config"]


class Received(NamedTuple):
    path: str            # with its query string, minus any `key` (a Gemini credential)
    headers: dict[str, str]  # lower-cased names, credentials removed
    body: object         # the parsed JSON body, None without one


class FakeUpstream:
    """The fake as an object: `start()` serves it from a background thread with its own event
    loop; `make_app()` gives the bare aiohttp application."""

    def __init__(self, port: int = 0, script: list[dict] | str | os.PathLike | None = None, *,
                 host: str = "127.0.0.1", delay_ms: float = 0, fast: bool = False,
                 models: list[str] | None = None, record: bool = True,
                 token_interval_ms: float = 0, stream_seconds: float = 0):
        self.host, self.port = host, port
        self.script = Script(load_script(script))
        self.delay = delay_ms / 1000
        self.fast, self.record = fast, record
        self.models = models or DEFAULT_MODELS
        self.requests: list[Received] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._fast_replies = _precomputed_replies()
        self.faults = Faults()   # hang, truncate, error on command (POST /_fault)
        self.pace = Pace.from_options(token_interval_ms, stream_seconds)  # None: streams at once

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def enqueue(self, *entries: dict) -> None:
        """Add script entries; safe to call while the fake is serving."""
        self.script.extend(list(entries))

    def set_fault(self, mode: str, count: int | None = None, status: int | None = None) -> None:
        """Make the next chat answers (`count` of them, or all) hang, truncate or fail
        (costr/testing/_fake_faults.py); "ok" ends it. Safe to call while serving."""
        if self._loop is None:
            self.faults.set(mode, count, status)
            return
        async def set_on_loop():
            self.faults.set(mode, count, status)
        asyncio.run_coroutine_threadsafe(set_on_loop(), self._loop).result(10)

    # -- lifecycle -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes([
            web.post("/v1/chat/completions", self._openai_chat),
            web.post("/v1/embeddings", self._openai_embeddings),
            web.get("/v1/models", self._openai_models),
            web.post("/v1/messages", self._anthropic_messages),
            web.post("/v1/messages/count_tokens", self._anthropic_count_tokens),
            web.post("/v1beta/models/{target}", self._gemini),
            web.post("/v1/models/{target}", self._gemini),
            web.get("/_fault", self.faults.endpoint), web.post("/_fault", self.faults.endpoint),
        ])
        return app

    async def open(self) -> web.AppRunner:
        """Bind and serve on the running loop; `self.port` becomes the real port."""
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, backlog=1024).start()
        self.port = runner.addresses[0][1]
        return runner

    def start(self) -> "FakeUpstream":
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve_in_thread, args=(ready, failure),
                                        name="costr-fake-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self.faults.release)  # hung answers end now
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve_in_thread(self, ready: threading.Event, failure: list) -> None:
        loop = self._loop = new_event_loop()
        try:
            runner = loop.run_until_complete(self.open())
        except BaseException as exc:  # report a bind failure to start(), not to stderr
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    # -- handlers --------------------------------------------------------------------------

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        if self.fast:
            return await self._fast_openai_chat(request)
        body = await self._read(request, openai.error_body)
        if isinstance(body, web.Response):
            return body
        refused = openai.invalid_tool_name(body)
        if refused:
            return _json(openai.error_body(400, refused), 400)
        refused_calls = openai.invalid_tool_calls(body)
        if refused_calls:
            return _json(refused_calls, 400)
        ask = openai.read_ask(body)
        if ask.stream and self.pace:
            return await self._paced_openai_chat(request, ask)
        return await self._answer(request, ask, openai.error_body, openai.chat_body, openai.chat_stream)

    async def _fast_openai_chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if body.get("stream") and self.pace:
            return await self._paced_openai_chat(request, openai.read_ask(body))
        if self.delay:
            await asyncio.sleep(self.delay)
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = self._fast_replies["usage" if usage else "stream"] if body.get("stream") else None
        faulty = await faulty_answer(self.faults, request, openai.error_body, chunks,
                                     self._fast_replies["body"])
        if faulty is not None:
            return faulty
        if chunks is None:
            return web.Response(body=self._fast_replies["body"], content_type="application/json")
        return await _stream(request, chunks)

    async def _paced_openai_chat(self, request: web.Request, ask: Ask) -> web.StreamResponse:
        """A slow streamed answer: `pace.tokens` content chunks, one per interval."""
        if self.delay:
            await asyncio.sleep(self.delay)
        chunks = openai.paced_chat_stream(ask, self.pace.tokens, Pace.WORD)
        faulty = await faulty_answer(self.faults, request, openai.error_body, chunks, None)
        if faulty is not None:
            return faulty
        return await _stream(request, chunks, self.pace)

    async def _openai_embeddings(self, request: web.Request) -> web.Response:
        body = await self._read(request, openai.error_body)
        return body if isinstance(body, web.Response) else _json(openai.embeddings_body(body))

    async def _openai_models(self, request: web.Request) -> web.Response:
        self._remember(request, None)
        return _json(openai.models_body(self.models))

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request, anthropic.error_body)
        if isinstance(body, web.Response):
            return body
        refused = anthropic.invalid_tool_use(body)
        if refused:
            return _json(anthropic.error_body(400, refused), 400)
        ask = anthropic.read_ask(body)
        return await self._answer(request, ask, anthropic.error_body, anthropic.message_body,
                                  anthropic.message_stream)

    async def _anthropic_count_tokens(self, request: web.Request) -> web.Response:
        body = await self._read(request, anthropic.error_body)
        return body if isinstance(body, web.Response) else _json(
            anthropic.count_tokens_body(anthropic.read_ask(body)))

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["target"].partition(":")
        body = await self._read(request, gemini.error_body)
        if isinstance(body, web.Response):
            return body
        if action in ("generateContent", "streamGenerateContent"):
            refused = gemini.invalid_tool_name(body) or gemini.invalid_thought_signature(body, model)
            if refused:
                return _json(gemini.error_body(400, refused), 400)
            ask = gemini.read_ask(body, model, stream=action == "streamGenerateContent")
            as_sse = request.query.get("alt") == "sse"
            stream = (lambda a, k: gemini.sse(gemini.content_stream(a, k))) if as_sse else None
            return await self._answer(request, ask, gemini.error_body, _gemini_body, stream)
        if action == "countTokens":
            return _json(gemini.count_tokens_body(body, model))
        if action == "embedContent":
            return _json(gemini.embed_body(body))
        if action == "batchEmbedContents":
            return _json(gemini.batch_embed_body(body))
        return _json(gemini.error_body(404, f"unknown method {action!r}"), 404)

    # -- shared steps ----------------------------------------------------------------------

    async def _read(self, request: web.Request, error_body: Callable) -> dict | web.Response:
        """The request's JSON object, or an error response in the caller's provider shape."""
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self._remember(request, body)
        if not isinstance(body, dict):
            return _json(error_body(400, "the request body is not a JSON object"), 400)
        return body

    def _remember(self, request: web.Request, body) -> None:
        if not self.record:
            return
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS}
        query = {k: v for k, v in request.query.items() if k != "key"}
        path = str(request.rel_url.with_query(query)) if query else request.path
        self.requests.append(Received(path, headers, body))

    async def _answer(self, request: web.Request, ask: Ask, error_body: Callable,
                      body_fn: Callable, stream_fn: Callable | None) -> web.StreamResponse:
        answer = self.script.next_answer(ask)
        delay = self.delay + answer.delay_ms / 1000
        if delay:
            await asyncio.sleep(delay)
        if answer.is_error:
            return _json(error_body(answer.status, answer.error), answer.status)
        chunks = list(stream_fn(answer, ask)) if ask.stream and stream_fn is not None else None
        faulty = await faulty_answer(self.faults, request, error_body, chunks,
                                     lambda: orjson.dumps(body_fn(answer, ask)))
        if faulty is not None:
            return faulty
        if chunks is not None:
            return await _stream(request, chunks)
        return _json(body_fn(answer, ask))


def _gemini_body(answer: Answer, ask: Ask):
    # streamGenerateContent without alt=sse answers one JSON array of the chunks.
    return gemini.content_stream(answer, ask) if ask.stream else gemini.content_body(answer, ask)


def _json(payload, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


async def _stream(request: web.Request, chunks: Iterable[bytes],
                  pace: Pace | None = None) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        if pace is None:
            for chunk in chunks:  # one write per event, as a real upstream sends them
                await response.write(chunk)
        else:
            await pace.write(response, chunks)
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away mid-stream; nothing to clean up
    return response


def _precomputed_replies() -> dict:
    """Fixed OpenAI chat answers for --fast: built once, sent as bytes."""
    ask = Ask(model="fake-fast", prompt_chars=48)
    answer = Answer(text="This is a short answer from the fake upstream.")
    streamed = Ask(model="fake-fast", prompt_chars=48, stream=True, include_usage=True)
    plain = Ask(model="fake-fast", prompt_chars=48, stream=True)
    return {"body": orjson.dumps(openai.chat_body(answer, ask)),
            "usage": list(openai.chat_stream(answer, streamed)),
            "stream": list(openai.chat_stream(answer, plain))}


def load_script(script: list[dict] | str | os.PathLike | None) -> list[dict]:
    if script is None:
        return []
    if isinstance(script, (str, os.PathLike)):
        script = json.loads(Path(script).read_text())
    if not isinstance(script, list) or not all(isinstance(e, dict) for e in script):
        raise ValueError("a fake-upstream script is a JSON list of objects")
    return script


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # installed with uvicorn[standard]; halves the fake's own CPU
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costr.testing.fake_upstream",
                                     description="A scripted local LLM upstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--script", help="a JSON list of canned answers, used in order")
    parser.add_argument("--delay-ms", type=float, default=0, help="latency added to each answer")
    parser.add_argument("--fast", action="store_true",
                        help="answer OpenAI chat from precomputed bytes (for benchmarks)")
    parser.add_argument("--token-interval-ms", type=float, default=0,
                        help="stream OpenAI chat answers slowly: one content chunk every MS "
                             "milliseconds (with --stream-seconds)")
    parser.add_argument("--stream-seconds", type=float, default=0,
                        help="how long each slow streamed answer lasts (with --token-interval-ms)")
    parser.add_argument("--write-config", metavar="FILE",
                        help="write a providers file pointing at this fake (a model per tier), "
                             "for `costr serve --providers FILE`; overwrites FILE")
    args = parser.parse_args(argv)
    try:
        Pace.from_options(args.token_interval_ms, args.stream_seconds)
    except ValueError as exc:
        parser.error(str(exc))
    # Recording every request would grow without bound in a long agent run.
    fake = FakeUpstream(args.port, args.script, host=args.host, delay_ms=args.delay_ms,
                        fast=args.fast, record=False, token_interval_ms=args.token_interval_ms,
                        stream_seconds=args.stream_seconds)
    loop = new_event_loop()
    runner = loop.run_until_complete(fake.open())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    try:
        if args.write_config:  # once bound: with --port 0 the address is only known now
            _write_config(Path(args.write_config), fake.url)
        print(f"fake upstream listening on {fake.url}", flush=True)  # a parent waits for this
        loop.run_forever()
    except OSError as exc:
        print(f"fake upstream: cannot write {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()
    return 0


def _write_config(path: Path, url: str) -> None:
    path.write_text(providers_yaml(url))
    print(f"wrote {path}: a providers file pointing at this fake; serve it with "
          f"`costr serve --providers {path}`", flush=True)


if __name__ == "__main__":
    sys.exit(main())
