"""Fields that change what the upstream charges (issue 15, hardening): a client could forward
OpenAI's `service_tier: "priority"`, Anthropic's web search server tool or the 1M-context beta
through Costr, which billed its configured per-token price. Found by probing a running Costr:
each was forwarded and billed at list price. Now each is priced from providers.yaml's
`billing:`, or refused (the default) or stripped when the operator set no price."""
from __future__ import annotations

import asyncio
import json
import secrets
import threading
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from costr.config.files import load_config
from costr.errors import ConfigError
from costr.testing import AUTH, running_gateway, seed_key

from conftest import write_config

ENV = "COSTR_TEST_BILLING_ANTHROPIC_KEY"
PRICE = 1000.0   # USD per million tokens: one token is a tenth of a cent, plain in the books
POOL = """\
tiers: [budget, standard, premium]
baseline: claude-big
providers:
  claude: {{type: anthropic, base_url: "{url}", api_key_env: %s}}
  gpt: {{type: openai, base_url: "{url}/v1"}}
models:
  - {{id: claude-small, provider: claude, tier: budget, price: {{input: %s, output: %s}},
     context_window: 200000, max_output_tokens: 100}}
  - {{id: gpt-small, provider: gpt, tier: standard, price: {{input: %s, output: %s}},
     context_window: 200000, max_output_tokens: 100}}
  - {{id: claude-big, provider: claude, tier: premium, price: {{input: 3000, output: 3000}},
     context_window: 200000, max_output_tokens: 100}}
""" % (ENV, PRICE, PRICE, PRICE, PRICE)
PRICED = """\
billing:
  surcharges:
    web_search: {per_use: 0.01}
    long_context: {multiplier: {input: 2.0, output: 1.5}, above_input_tokens: 0}
    priority_processing: {multiplier: 2.0}
  models:
    gpt-small: {priority_processing: {multiplier: 3.0}}
"""
SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
ASK = [{"role": "user", "content": "Reply exactly: ok"}]
ANTHROPIC = {"anthropic-version": "2023-06-01"}


def key_with(data: str, credits_usd: float | None = 10.0) -> dict:
    secret = "cr-" + secrets.token_urlsafe(32)
    asyncio.run(seed_key(None, data, secret, name="billing", admin=False, credits_usd=credits_usd))
    return {"authorization": f"Bearer {secret}"}


@pytest.fixture
def gateway(tmp_path, fake_upstream, monkeypatch, request):
    """(base URL, data dir, fake upstream) with the billing section the test gives with
    `billing(...)` (none: the default, which refuses what it cannot price)."""
    monkeypatch.setenv(ENV, "sk-ant-test")
    pool = POOL.format(url=fake_upstream.url) + getattr(request, "param", "")
    data = str(tmp_path / "data")
    with running_gateway(*write_config(tmp_path, pool), data_dir=data, cache="none") as base:
        yield base, data, fake_upstream


def billing(section: str):
    """The gateway of the decorated test has this billing section in providers.yaml."""
    return pytest.mark.parametrize("gateway", [section], indirect=True, ids=["billing"])


def message(base, key, body, **headers) -> httpx.Response:
    body = {"model": "claude-small", "max_tokens": 20, "messages": ASK, **body}
    return httpx.post(f"{base}/v1/messages", json=body, headers={**key, **ANTHROPIC, **headers},
                      timeout=20)


def chat(base, key, body) -> httpx.Response:
    body = {"model": "gpt-small", "max_tokens": 20, "messages": ASK, **body}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=key, timeout=20)


def last_record(base, key) -> dict:
    return httpx.get(f"{base}/v1/requests?limit=1", headers=key, timeout=20).json()["data"][0]


def list_price(record) -> float:
    return (record["input_tokens"] + record["output_tokens"]) * PRICE / 1e6


# -- unpriced: refused by default, with the field named, in the caller's shape ------------------

def test_an_unpriced_server_tool_is_refused_naming_it_and_never_reaches_the_upstream(gateway):
    base, data, fake = gateway
    response = message(base, AUTH, {"tools": [SEARCH]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "tools.0" in error["message"] and "billing.surcharges.web_search" in error["message"]
    assert fake.requests == []


def test_an_unpriced_long_context_beta_is_refused_but_ordinary_betas_pass(gateway):
    base, data, fake = gateway
    refused = message(base, AUTH, {}, **{"anthropic-beta": "context-1m-2025-08-07"})
    assert refused.status_code == 400 and "long_context" in refused.json()["error"]["message"]
    claude_code = "claude-code-20250219,interleaved-thinking-2025-05-14,effort-2025-11-24"
    assert message(base, AUTH, {}, **{"anthropic-beta": claude_code}).status_code == 200


def test_unpriced_service_tiers_in_openai_shape_and_flex_which_is_never_dearer(gateway):
    base, data, fake = gateway
    for tier in ("priority", "scale"):
        response = chat(base, AUTH, {"service_tier": tier})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "service_tier"
    assert chat(base, AUTH, {"service_tier": "flex"}).status_code == 200
    assert chat(base, AUTH, {"service_tier": "default"}).status_code == 200
    bad = chat(base, AUTH, {"service_tier": ["priority"]})
    assert bad.status_code == 400 and "valid string" in bad.json()["error"]["message"]


def test_a_field_the_routed_upstream_never_sees_is_not_refused(gateway):
    """An OpenAI client's service_tier routed to an Anthropic model is translated away."""
    base, data, fake = gateway
    response = chat(base, AUTH, {"model": "claude-small", "service_tier": "priority"})
    assert response.status_code == 200, response.text
    assert "service_tier" not in fake.requests[-1].body


@billing("billing: {on_unpriced: strip}\n")
def test_strip_takes_the_field_out_with_the_beta_that_pairs_with_it(gateway):
    base, data, fake = gateway
    code = {"type": "code_execution_20250825", "name": "code_execution"}
    betas = "code-execution-2025-08-25,context-1m-2025-08-07,interleaved-thinking-2025-05-14"
    response = message(base, AUTH, {"tools": [code, SEARCH], "tool_choice": {"type": "auto"}},
                       **{"anthropic-beta": betas})
    assert response.status_code == 200, response.text
    sent = fake.requests[-1]
    assert "tools" not in sent.body and "tool_choice" not in sent.body
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert chat(base, AUTH, {"service_tier": "priority"}).status_code == 200
    assert "service_tier" not in fake.requests[-1].body


@billing("billing: {on_unpriced: allow}\n")
def test_allow_forwards_it_at_list_price(gateway):
    base, data, fake = gateway
    key = key_with(data)
    assert chat(base, key, {"service_tier": "priority"}).status_code == 200
    assert fake.requests[-1].body["service_tier"] == "priority"
    record = last_record(base, key)
    assert record["cost_usd"] == pytest.approx(list_price(record))


# -- priced: what the books charge ------------------------------------------------------------

@billing(PRICED)
def test_a_priced_service_tier_is_charged_its_multiplier_per_model(gateway):
    base, data, fake = gateway
    key = key_with(data)
    assert chat(base, key, {"service_tier": "priority"}).status_code == 200
    assert fake.requests[-1].body["service_tier"] == "priority"
    record = last_record(base, key)
    assert record["cost_usd"] == pytest.approx(3.0 * list_price(record))   # gpt-small's own
    balance = httpx.get(f"{base}/v1/credits", headers=key, timeout=20).json()
    assert balance["balance_usd"] == pytest.approx(10.0 - record["cost_usd"])
    assert balance["reserved_usd"] == 0


@billing(PRICED)
def test_the_long_context_beta_is_charged_above_its_threshold(gateway):
    base, data, fake = gateway
    key = key_with(data)
    response = message(base, key, {}, **{"anthropic-beta": "context-1m-2025-08-07"})
    assert response.status_code == 200, response.text
    assert fake.requests[-1].headers["anthropic-beta"] == "context-1m-2025-08-07"
    record = last_record(base, key)
    expected = (2.0 * record["input_tokens"] + 1.5 * record["output_tokens"]) * PRICE / 1e6
    assert record["cost_usd"] == pytest.approx(expected)


@billing(PRICED)
def test_a_limited_key_must_bound_a_per_use_tool(gateway):
    base, data, fake = gateway
    key = key_with(data)
    unbounded = {"type": "web_search_20250305", "name": "web_search"}
    response = message(base, key, {"tools": [unbounded]})
    assert response.status_code == 400
    assert "max_uses" in response.json()["error"]["message"] and fake.requests == []
    assert message(base, AUTH, {"tools": [unbounded]}).status_code == 200   # unlimited: fine


@billing(PRICED)
def test_the_hold_covers_every_use_the_request_allows(gateway):
    """500 searches at $0.01 ($5) cannot be held against a balance of $0.30, though the
    tokens alone could."""
    base, data, fake = gateway
    key = key_with(data, credits_usd=0.3)
    response = message(base, key, {"tools": [{**SEARCH, "max_uses": 500}]})
    assert response.status_code == 402, response.text
    assert fake.requests == []


# -- per use: counted from the upstream's answer ------------------------------------------------

class SearchingUpstream:
    """An Anthropic upstream whose every answer says it ran `searches` web searches."""

    def __init__(self, searches: int):
        self.searches, self.url = searches, ""
        self._loop = asyncio.new_event_loop()

    def __enter__(self):
        app = web.Application()
        app.router.add_post("/v1/messages", self._answer)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._runner = runner
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _answer(self, request):
        body = await request.json()
        usage = {"input_tokens": 10, "output_tokens": 5,
                 "server_tool_use": {"web_search_requests": self.searches}}
        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                   "content": [{"type": "text", "text": "found it"}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return web.json_response(message)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        start = {**message, "content": [], "usage": {"input_tokens": 10, "output_tokens": 1}}
        for name, data in [
                ("message_start", {"type": "message_start", "message": start}),
                ("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": "found it"}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "usage": usage,
                                   "delta": {"stop_reason": "end_turn"}}),
                ("message_stop", {"type": "message_stop"})]:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        return response


@pytest.mark.parametrize("stream", [False, True])
def test_web_searches_are_charged_per_use_as_the_answer_reports_them(tmp_path, monkeypatch,
                                                                     stream):
    monkeypatch.setenv(ENV, "sk-ant-test")
    data = str(tmp_path / "data")
    with SearchingUpstream(searches=3) as upstream, running_gateway(
            *write_config(tmp_path, POOL.format(url=upstream.url) + PRICED), data_dir=data,
            cache="none") as base:
        key = key_with(data)
        response = message(base, key, {"tools": [SEARCH], "stream": stream})
        assert response.status_code == 200, response.text
        record = last_record(base, key)
        assert record["input_tokens"] == 10 and record["output_tokens"] == 5
        assert record["cost_usd"] == pytest.approx(list_price(record) + 3 * 0.01)
        credits = httpx.get(f"{base}/v1/credits", headers=key, timeout=20).json()
        assert credits["balance_usd"] == pytest.approx(10.0 - record["cost_usd"])


# -- the configuration ------------------------------------------------------------------------

@pytest.mark.parametrize("section, problem", [
    ("billing: {models: {no-such-model: {web_search: {per_use: 0.01}}}}\n",
     "billing.models.no-such-model: 'no-such-model' is not a model id"),
    ("billing: {on_unpriced: ignore}\n", "billing.on_unpriced"),
    ("billing: {surcharges: {web_search: {per_search: 0.01}}}\n",
     "billing.surcharges.web_search.per_search: unknown key"),
    ("billing: {surcharges: {fast_mode: {multiplier: 0}}}\n", "billing.surcharges.fast_mode"),
])
def test_billing_mistakes_are_reported_at_their_line(tmp_path, section, problem):
    providers, policies = write_config(tmp_path, POOL.format(url="http://127.0.0.1:9") + section)
    with pytest.raises(ConfigError) as raised:
        load_config(providers, policies)
    assert problem in str(raised.value)


def test_the_shipped_pool_prices_what_the_agents_send():
    """Claude Code's web search tool and OpenAI's priority tier work with the shipped file."""
    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "providers.yaml", root / "routing_policies")
    for name in ("web_search", "long_context", "priority_processing", "fast_mode"):
        assert config.billing.price(name, "claude-sonnet-4-5") is not None, name
    assert config.billing.on_unpriced == "refuse"
