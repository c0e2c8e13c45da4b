"""More of what a hostile or unlucky client (or upstream) could do, each found by probing a
running Costr: the response cache answered a request with another's answer given under
different beta features; /v1/embeddings and /v1/messages/count_tokens ignored the key's rate
limits (and counting spent the operator's upstream key unmetered); and an upstream answer of
any size was read whole (200 MB: +655 MB in the gateway), while one stream event over 512 KB
gave the client a 500."""
from __future__ import annotations

import asyncio
import secrets

import httpx
import orjson
import pytest
from aiohttp import web

from costr.server.streaming import StreamTally
from costr.testing import AUTH, running_gateway, seed_key
from costr.testing.fake_upstream import FakeUpstream
from costr.wire.conversation import BlockStart, Frame, MessageEnd, MessageStart, TextDelta, Usage

from conftest import LOCAL_POOL, write_config

ENV = "COSTR_TEST_HARDENING_MORE_ANTHROPIC_KEY"
ANTHROPIC_POOL = """\
tiers: [budget, standard, premium]
baseline: claude-large
providers:
  claude: {{type: anthropic, base_url: "{url}", api_key_env: %s}}
  local: {{type: openai, base_url: "{url}/v1"}}
models:
  - {{id: claude-small, provider: claude, tier: budget, price: {{input: 1.0, output: 5.0}},
     context_window: 200000, max_output_tokens: 8192}}
  - {{id: local-small, provider: local, tier: standard, price: {{input: 1.0, output: 5.0}},
     context_window: 200000, max_output_tokens: 8192}}
  - {{id: claude-large, provider: claude, tier: premium, price: {{input: 3.0, output: 15.0}},
     context_window: 200000, max_output_tokens: 8192}}
  - {{id: embed, provider: local, mode: embedding, price: {{input: 1.0, output: 0}},
     context_window: 8000}}
default_embedding_model: embed
""" % ENV
ASK = [{"role": "user", "content": "Reply exactly: ok"}]


@pytest.fixture
def gateway(tmp_path, fake_upstream, monkeypatch):
    """(base URL, data dir, fake upstream), with the default (memory) response cache."""
    monkeypatch.setenv(ENV, "sk-ant-test")
    data = str(tmp_path / "data")
    with running_gateway(*write_config(tmp_path, ANTHROPIC_POOL.format(url=fake_upstream.url)),
                         data_dir=data) as base:
        yield base, data, fake_upstream


def new_key(data: str, **limits) -> dict:
    secret = "cr-" + secrets.token_urlsafe(32)
    asyncio.run(seed_key(None, data, secret, name="limited", admin=False, **limits))
    return {"authorization": f"Bearer {secret}"}


def message(base: str, model: str = "claude-small", **headers) -> httpx.Response:
    body = {"model": model, "max_tokens": 50, "messages": ASK}
    return httpx.post(f"{base}/v1/messages", json=body, timeout=20,
                      headers={**AUTH, "anthropic-version": "2023-06-01", **headers})


# -- the cache and the headers that change the answer -------------------------------------------

def test_a_request_with_other_beta_features_is_not_answered_from_the_cache(gateway):
    base, data, fake = gateway
    first = message(base, **{"anthropic-beta": "feature-a-2025-01-01"})
    other = message(base, **{"anthropic-beta": "feature-b-2025-01-01"})
    none = message(base)
    assert [r.headers["x-costr-cache-hit"] for r in (first, other, none)] == ["false"] * 3
    assert [r.headers.get("anthropic-beta") for r in fake.requests] == [
        "feature-a-2025-01-01", "feature-b-2025-01-01", None]
    again = message(base, **{"anthropic-beta": "feature-b-2025-01-01"})
    assert again.headers["x-costr-cache-hit"] == "true" and len(fake.requests) == 3


def test_headers_a_translated_request_never_forwards_do_not_split_the_cache(gateway):
    """Routed to an OpenAI-format model, the beta header goes nowhere: a hit is still a hit."""
    base, data, fake = gateway
    first = message(base, model="local-small", **{"anthropic-beta": "feature-a-2025-01-01"})
    second = message(base, model="local-small", **{"anthropic-beta": "feature-b-2025-01-01"})
    assert first.headers["x-costr-cache-hit"] == "false"
    assert second.headers["x-costr-cache-hit"] == "true" and len(fake.requests) == 1


# -- the key's rate limits on embeddings and token counting ------------------------------------

def test_embeddings_count_against_the_keys_requests_per_minute(gateway):
    base, data, fake = gateway
    key = new_key(data, rpm=2)
    codes = [httpx.post(f"{base}/v1/embeddings", json={"model": "auto", "input": "hi"},
                        headers=key, timeout=20) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    refused = codes[-1]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error" or \
        refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert sum(r.path == "/v1/embeddings" for r in fake.requests) == 2


def test_embeddings_count_their_tokens_against_the_keys_tokens_per_minute(gateway):
    base, data, fake = gateway
    key = new_key(data, tpm=20)
    first = httpx.post(f"{base}/v1/embeddings", json={"model": "auto", "input": "word " * 200},
                       headers=key, timeout=20)
    assert first.status_code == 200 and first.json()["usage"]["prompt_tokens"] > 20
    second = httpx.post(f"{base}/v1/embeddings", json={"model": "auto", "input": "hi"},
                        headers=key, timeout=20)
    assert second.status_code == 429 and "20 tokens per minute" in second.text


def test_token_counting_counts_against_the_keys_requests_per_minute(gateway):
    base, data, fake = gateway
    key = new_key(data, rpm=2)
    body = {"model": "claude-small", "messages": ASK}
    headers = {**key, "anthropic-version": "2023-06-01"}
    codes = [httpx.post(f"{base}/v1/messages/count_tokens", json=body, headers=headers,
                        timeout=20) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    refused = codes[-1]
    assert refused.json()["type"] == "error"   # Anthropic's shape, for Anthropic's endpoint
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) >= 1
    assert sum("count_tokens" in r.path for r in fake.requests) == 2   # the third never left


def test_counts_and_chats_share_the_minute(gateway):
    base, data, fake = gateway
    key = new_key(data, rpm=1)
    headers = {**key, "anthropic-version": "2023-06-01"}
    assert httpx.post(f"{base}/v1/messages/count_tokens", headers=headers, timeout=20,
                      json={"model": "claude-small", "messages": ASK}).status_code == 200
    chat = httpx.post(f"{base}/v1/messages", headers=headers, timeout=20,
                      json={"model": "claude-small", "max_tokens": 20, "messages": ASK})
    assert chat.status_code == 429


# -- the size of an upstream's answer ------------------------------------------------------------

MB = 1024 * 1024


class OversizedUpstream(FakeUpstream):
    """The fake, except that its first answer is `size` bytes: a JSON answer declared with its
    Content-Length (`declared`) or sent in chunks (`chunked`), or one stream event (`event`).
    `sent` is how many bytes of it left before the gateway hung up."""

    def __init__(self, how: str, size: int):
        super().__init__()
        self.how, self.size, self.oversized, self.sent = how, size, 1, 0

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def oversize(request, handler):
            if self.oversized <= 0:
                return await handler(request)
            self.oversized -= 1
            text = "a" * self.size
            if self.how == "declared":
                return web.json_response(_completion(text))
            response = web.StreamResponse(headers={"content-type": "text/event-stream"
                                                   if self.how == "event" else "application/json"})
            await response.prepare(request)
            data = (b"data: " + orjson.dumps(_chunk(text)) + b"\n\n" + END if self.how == "event"
                    else orjson.dumps(_completion(text)))
            try:
                for start in range(0, len(data), MB):
                    await response.write(data[start:start + MB])
                    self.sent = start + MB
            except (ConnectionError, RuntimeError):
                pass
            return response
        app.middlewares.append(oversize)
        return app


END = (b'data: {"id":"big","object":"chat.completion.chunk","created":0,"model":"local-mini",'
       b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
       b'"usage":{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10}}\n\ndata: [DONE]\n\n')


def _completion(text: str) -> dict:
    return {"id": "big", "object": "chat.completion", "created": 0, "model": "local-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}


def _chunk(text: str) -> dict:
    return {"id": "big", "object": "chat.completion.chunk", "created": 0, "model": "local-mini",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                         "finish_reason": None}]}


@pytest.mark.parametrize("how, stream", [("declared", False), ("chunked", False),
                                         ("event", True)])
def test_an_answer_over_the_limit_falls_back_without_being_read_whole(tmp_path, how, stream):
    with OversizedUpstream(how, 40 * MB) as fake:
        with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake.url)),
                             cache="none", max_answer_bytes=2 * MB) as base:
            response = httpx.post(f"{base}/v1/chat/completions", headers=AUTH, timeout=60,
                                  json={"model": "auto", "messages": ASK, "stream": stream})
    assert response.status_code == 200, response.text[:300]
    assert '"routed_model":"local-standard"' in response.text   # the next model answered
    assert fake.sent < 20 * MB   # the gateway hung up near its limit, not after 40 MB


@pytest.mark.parametrize("path, stream", [("/v1/chat/completions", False),
                                          ("/v1/messages", False), ("/v1/messages", True)])
def test_with_nothing_left_to_try_an_oversized_answer_is_a_502_naming_the_limit(
        tmp_path, path, stream):
    with OversizedUpstream("event" if stream else "chunked", 8 * MB) as fake:
        fake.oversized = 100
        with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake.url)),
                             cache="none", max_answer_bytes=1 * MB) as base:
            response = httpx.post(base + path, timeout=60, json={
                "model": "local-mini", "max_tokens": 20, "messages": ASK, "stream": stream},
                headers={**AUTH, "anthropic-version": "2023-06-01"})
    assert response.status_code == 502, response.text[:300]
    assert "1 MB" in response.text and "--max-answer-mb" in response.text
    if path == "/v1/messages":
        assert response.json()["type"] == "error"
    assert response.headers.get("x-request-id")


def test_a_stream_event_larger_than_aiohttps_line_limit_is_relayed(tmp_path):
    """One 3 MB event (a big tool call sent whole, an image) under the default 64 MB limit
    used to be a 500: aiohttp refuses lines over 512 KB by itself."""
    with OversizedUpstream("event", 3 * MB) as fake:
        with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake.url)),
                             cache="none") as base:
            response = httpx.post(f"{base}/v1/chat/completions", headers=AUTH, timeout=60,
                                  json={"model": "local-mini", "messages": ASK, "stream": True})
    assert response.status_code == 200
    assert response.text.count("a" * 1000) >= 3000 and '"error"' not in response.text


def test_a_stream_too_large_to_cache_is_relayed_but_not_collected():
    tally = StreamTally(collect=True, collect_limit=1000)
    tally.observe(Frame([MessageStart("id", "m"), BlockStart(0, "text")]))
    for _ in range(5):
        tally.observe(Frame([TextDelta(0, "x" * 400)]))
    tally.observe(Frame([MessageEnd("end_turn", Usage(input_tokens=1, output_tokens=500))]))
    assert tally.ended and tally.output_chars == 2000 and tally.blocks == {}
    assert tally.answer(tally.settled(1)) is None
    small = StreamTally(collect=True, collect_limit=1000)
    small.observe(Frame([MessageStart("id", "m"), BlockStart(0, "text"), TextDelta(0, "hi"),
                         MessageEnd("end_turn", Usage(input_tokens=1, output_tokens=1))]))
    assert small.answer(small.settled(1)).content[0].text == "hi"
