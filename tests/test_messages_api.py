"""The Anthropic Messages surface (`/v1/messages`), driven by the real `anthropic` SDK against a
running Costr, routed to an `anthropic`-type upstream (same format: passthrough) and to an
`openai`-type upstream (translated)."""
from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from costr.testing import AUTH, TEST_KEY, running_gateway, sse_events

from conftest import LOCAL_POOL, write_config

SIX_FIELDS = {"requested_model", "routed_model", "routed_provider", "tier", "confidence",
              "savings_percent"}
KEY_ENV = "COSTR_TEST_MESSAGES_ANTHROPIC_KEY"
ANTHROPIC_POOL = """\
tiers: [budget, standard, premium]
baseline: claude-large
providers:
  claude: {{type: anthropic, base_url: "{url}", api_key_env: {env}}}
models:
  - {{id: claude-small, provider: claude, tier: budget, upstream_name: fake-claude-small,
     price: {{input: 1.0, output: 5.0, cached_input: 0.1}}, context_window: 200000,
     max_output_tokens: 8192, capabilities: [tools, vision]}}
  - {{id: claude-large, provider: claude, tier: premium, price: {{input: 3.0, output: 15.0}},
     context_window: 200000, max_output_tokens: 64000, capabilities: [tools, vision, reasoning]}}
"""
GEMINI_POOL = """\
tiers: [budget, standard, premium]
baseline: gemini-large
providers:
  google: {{type: gemini, base_url: "{url}/v1beta"}}
models:
  - {{id: gemini-small, provider: google, tier: budget, price: {{input: 0.1, output: 0.4}},
     context_window: 1000000, max_output_tokens: 8192, capabilities: [tools, vision]}}
  - {{id: gemini-large, provider: google, tier: premium, price: {{input: 1.25, output: 10.0}},
     context_window: 1000000, max_output_tokens: 65536, capabilities: [tools, vision, reasoning]}}
"""
READ_FILE = {"name": "read_file", "description": "Read a file from the workspace",
             "input_schema": {"type": "object", "properties": {"path": {"type": "string"}},
                              "required": ["path"]}}
ASK_OK = [{"role": "user", "content": "Reply exactly: ok"}]


@pytest.fixture(params=["anthropic", "openai", "gemini"])
def upstream(request, tmp_path, fake_upstream, monkeypatch):
    """(base URL of a running Costr, its fake upstream, the upstream's provider type)."""
    if request.param == "anthropic":
        monkeypatch.setenv(KEY_ENV, "sk-ant-fake")
        pool = ANTHROPIC_POOL.format(url=fake_upstream.url, env=KEY_ENV)
    elif request.param == "gemini":
        pool = GEMINI_POOL.format(url=fake_upstream.url)
    else:
        pool = LOCAL_POOL.format(url=fake_upstream.url)
    with running_gateway(*write_config(tmp_path, pool)) as base_url:
        yield base_url, fake_upstream, request.param


@pytest.fixture
def anthropic_gateway(tmp_path, fake_upstream, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ant-fake")
    pool = ANTHROPIC_POOL.format(url=fake_upstream.url, env=KEY_ENV)
    with running_gateway(*write_config(tmp_path, pool)) as base_url:
        yield base_url


def sdk(base_url: str, **kw) -> anthropic.Anthropic:
    kw.setdefault("api_key", TEST_KEY)
    return anthropic.Anthropic(base_url=base_url, max_retries=0, **kw)


# ---- answers ----------------------------------------------------------------------------------

def test_seed_example(upstream):
    base_url, fake, kind = upstream
    client = sdk(base_url)
    message = client.messages.create(model="auto", max_tokens=32, messages=ASK_OK)
    assert message.content[0].text == "ok"
    assert message.stop_reason == "end_turn" and message.usage.input_tokens > 0

    raw = client.messages.with_raw_response.create(model="auto", max_tokens=32, messages=ASK_OK)
    body = json.loads(raw.http_response.text)
    assert SIX_FIELDS <= set(body["x_routing"]) and body["x_routing"]["requested_model"] == "auto"
    assert body["type"] == "message" and body["role"] == "assistant"
    assert raw.headers["x-costr-routed-model"] == body["x_routing"]["routed_model"]
    sent = fake.requests[-1]
    if kind == "anthropic":
        assert sent.path == "/v1/messages" and sent.body["model"] == "fake-claude-small"
        # the client's version header, forwarded unchanged
        assert sent.headers["anthropic-version"] == raw.http_response.request.headers["anthropic-version"]
    elif kind == "openai":
        assert sent.path == "/v1/chat/completions" and sent.body["max_tokens"] == 32
    else:
        assert sent.path == "/v1beta/models/gemini-small:generateContent"
        assert sent.body["generationConfig"]["maxOutputTokens"] == 32


def test_seed_curl_example(upstream):
    base_url, fake, kind = upstream
    response = httpx.post(f"{base_url}/v1/messages", headers={**AUTH, 
        "x-api-key": "cr-test", "anthropic-version": "2023-06-01", "content-type": "application/json",
    }, content=b'{"model": "auto", "max_tokens": 32, '
                b'"messages": [{"role": "user", "content": "Reply exactly: ok"}]}')
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content"][0] == {"type": "text", "text": "ok"}
    assert body["stop_reason"] == "end_turn" and body["x_routing"]["routed_model"]
    if kind == "anthropic":
        assert fake.requests[-1].headers["anthropic-version"] == "2023-06-01"


def test_stream(upstream):
    base_url, _, _ = upstream
    client = sdk(base_url)
    with client.messages.stream(model="auto", max_tokens=64,
                                messages=[{"role": "user", "content": "Reply exactly: streaming works"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streaming works"
    assert final.content[0].text == "streaming works" and final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_stream_event_sequence_carries_input_tokens_and_routing(upstream):
    base_url, _, _ = upstream
    with httpx.stream("POST", f"{base_url}/v1/messages", headers={**AUTH, "anthropic-version": "2023-06-01"},
                      json={"model": "auto", "max_tokens": 64, "stream": True,
                            "messages": [{"role": "user", "content": "Reply exactly: hello there"}]}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names[1:-2] == ["content_block_start"] + ["content_block_delta"] * (len(names) - 5) + [
        "content_block_stop"]
    assert all(data["type"] == name for name, data in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] > 0
    delta = next(data for name, data in events if name == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert SIX_FIELDS <= set(delta["x_routing"]) and delta["usage"]["output_tokens"] > 0


def test_tool_use(upstream):
    base_url, _, _ = upstream
    message = sdk(base_url).messages.create(
        model="auto", max_tokens=256, tools=[READ_FILE],
        messages=[{"role": "user", "content": "Show me the readme"}])
    assert message.stop_reason == "tool_use"
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert call.name == "read_file" and call.id and call.input == {"path": "README.md"}
    assert not [b for b in message.content if b.type == "text" and not b.text.strip()]


def test_streamed_tool_use_arrives_whole(upstream):
    base_url, _, _ = upstream
    with sdk(base_url).messages.stream(model="auto", max_tokens=256, tools=[READ_FILE],
                                       messages=[{"role": "user", "content": "Show me the readme"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.type, b.name, b.input) for b in final.content] == [
        ("tool_use", "read_file", {"path": "README.md"})]


def test_count_tokens(upstream):
    base_url, fake, kind = upstream
    counted = sdk(base_url).messages.count_tokens(
        model="auto", system="You are terse.", messages=[{"role": "user", "content": "Hello " * 40}])
    assert counted.input_tokens > 40
    if kind == "anthropic":  # the upstream's own count, for the model the request routes to
        assert fake.requests[-1].path == "/v1/messages/count_tokens"
        assert "max_tokens" not in fake.requests[-1].body


def test_beta_path(upstream):
    base_url, fake, kind = upstream
    message = sdk(base_url).beta.messages.create(
        model="auto", max_tokens=32, messages=ASK_OK, betas=["context-management-2025-06-27"])
    assert message.content[0].text == "ok"
    if kind == "anthropic":
        assert fake.requests[-1].headers["anthropic-beta"] == "context-management-2025-06-27"


def test_both_credential_headers_are_accepted(upstream):
    base_url, _, _ = upstream
    by_key = sdk(base_url, api_key=TEST_KEY)
    by_token = anthropic.Anthropic(base_url=base_url, auth_token=TEST_KEY, api_key=None, max_retries=0)
    for client in (by_key, by_token):
        assert client.messages.create(model="auto", max_tokens=32, messages=ASK_OK).content[0].text == "ok"


# ---- errors -----------------------------------------------------------------------------------

def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    return body["error"]["message"]


def test_missing_max_tokens_is_a_400(upstream):
    base_url, _, _ = upstream
    response = httpx.post(f"{base_url}/v1/messages", json={"model": "auto", "messages": ASK_OK}, headers=AUTH)
    assert assert_anthropic_error(response, 400, "invalid_request_error") == "max_tokens: Field required"


def test_unknown_model_is_a_404(upstream):
    base_url, _, _ = upstream
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk(base_url).messages.create(model="no-such-model", max_tokens=32, messages=ASK_OK)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert "no-such-model" in caught.value.body["error"]["message"]


def test_bad_cost_priority_is_a_400(upstream):
    base_url, _, _ = upstream
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(base_url).messages.create(model="auto", max_tokens=32, messages=ASK_OK,
                                      extra_headers={"x-cost-priority": "free"})
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "x-cost-priority" in caught.value.body["error"]["message"]


def test_invalid_fields_are_named(upstream):
    base_url, _, _ = upstream
    url = f"{base_url}/v1/messages"
    message = assert_anthropic_error(httpx.post(url, json={
        "model": "auto", "max_tokens": 32, "temperature": 1.5, "messages": ASK_OK}, headers=AUTH), 400,
        "invalid_request_error")
    assert message.startswith("temperature: ")
    message = assert_anthropic_error(httpx.post(url, json={
        "model": "auto", "max_tokens": 32, "messages": [{"role": "wizard", "content": "x"}]}, headers=AUTH), 400,
        "invalid_request_error")
    assert message.startswith("messages.0.role: ")
    assert_anthropic_error(httpx.post(url, content=b"{not json", headers=AUTH), 400, "invalid_request_error")
    # Costr's own 404 for an unknown path stays in its default shape.
    assert httpx.post(f"{base_url}/v1/messagez", json={}, headers=AUTH).json()["error"]["code"] == "unknown_endpoint"


def test_anthropic_upstream_529_is_relayed_unchanged(anthropic_gateway, fake_upstream):
    fake_upstream.enqueue({"status": 529, "error": "Overloaded"})
    with pytest.raises(anthropic.OverloadedError) as caught:
        sdk(anthropic_gateway).messages.create(model="claude-small", max_tokens=32, messages=ASK_OK)
    assert caught.value.status_code == 529
    assert caught.value.body == {"type": "error",
                                 "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_anthropic_upstream_529_before_a_stream_is_relayed_unchanged(anthropic_gateway, fake_upstream):
    fake_upstream.enqueue({"status": 529, "error": "Overloaded"})
    with pytest.raises(anthropic.OverloadedError) as caught:
        with sdk(anthropic_gateway).messages.stream(model="claude-small", max_tokens=32,
                                                    messages=ASK_OK) as stream:
            stream.get_final_message()
    assert caught.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


def test_anthropic_upstream_400_is_relayed_unchanged(anthropic_gateway, fake_upstream):
    fake_upstream.enqueue({"status": 400, "error": "messages.0.content: text content blocks must be non-empty"})
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(anthropic_gateway).messages.create(model="claude-small", max_tokens=32, messages=ASK_OK)
    assert caught.value.body == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "messages.0.content: text content blocks must be non-empty"}}


def test_openai_upstream_failure_is_an_anthropic_shaped_error(local_gateway, fake_upstream):
    fake_upstream.enqueue({"status": 500, "error": "boom"}, {"status": 500, "error": "boom again"})
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk(local_gateway).messages.create(model="local-mini", max_tokens=32, messages=ASK_OK)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "api_error"
    assert "boom" in caught.value.body["error"]["message"]


def test_a_mid_conversation_system_message_keeps_its_place(upstream):
    """Claude Code sends `role: system` inside `messages` (with a beta) for models it does not
    know, such as `auto`: it must be accepted and carried to any upstream."""
    base_url, fake, kind = upstream
    messages = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."},
                {"role": "system", "content": "Available agent types: general."},
                {"role": "user", "content": "Reply exactly: ok"}]
    response = httpx.post(f"{base_url}/v1/messages", json={"model": "auto", "max_tokens": 32,
                          "messages": messages}, headers={**AUTH, "anthropic-version": "2023-06-01"})
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].body
    if kind in ("openai", "anthropic"):  # OpenAI has the role; Anthropic gets the body as sent
        assert sent["messages"][2] == {"role": "system", "content": "Available agent types: general."}
    else:
        assert "Available agent types: general." in str(sent["contents"])
