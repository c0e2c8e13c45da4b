"""Every rule for an Anthropic Messages client whose request meets another wire format, both
ways: what an `openai`-type upstream received (through a running gateway), and what the client
gets back from OpenAI answers and streams (the shipped decoders feeding the Anthropic encoder).
Then the same-format rules: what an `anthropic`-type upstream received, passed through."""
from __future__ import annotations

import asyncio
import dataclasses
import json

import anthropic
import httpx
import orjson
import pytest

from costr.wire.conversation import (BlockStart, BlockStop, ChatRequest, ChatResponse, Frame,
                                Message, MessageEnd, MessageStart, StreamFailure, Text, TextDelta,
                                ToolArgumentsDelta, ToolCall, Usage)
from costr.errors import (AuthenticationFailed, CostrError, InsufficientCredits, InvalidRequest,
                          NoUsableProvider, NotFound, PermissionDenied, RateLimited, UpstreamError,
                          UpstreamTimeout)
from costr.wire.formats import RoutingFacts
from costr.plugins import collect, make_plugin_manager
from costr.wire.providers import ModelSpec, Price, Provider
from costr.testing import AUTH, TEST_KEY, running_gateway
from costr_anthropic.api_format import AnthropicMessagesFormat
from costr_anthropic.client_request import decode_request
from costr_anthropic.client_response import encode_error, encode_response
from costr_anthropic.client_stream import StreamEncoder
from costr_anthropic.wire_request import request_to_wire
from costr_openai.api_format import OpenAIChatFormat
from costr_openai.chat_response import response_from_wire as openai_response
from costr_openai.chat_stream import StreamDecoder as OpenAIStreamDecoder

from conftest import write_config

FACTS = RoutingFacts("auto", "local-mini", "local", "budget", 0.9, 90.0)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
READ_FILE = {"name": "read_file", "description": "Read a file",
             "input_schema": {"type": "object", "properties": {"path": {"type": "string"}},
                              "required": ["path"]}}
ASK_OK = [{"role": "user", "content": "Reply exactly: ok"}]
CLAUDE_CODE_USER = ("user_4b1e0c5d2f7a9e3b6c8d1f0a2e4b6c8d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e_account_"
                    "1f2e3d4c-5b6a-7988-a7b6-c5d4e3f2a1b0_session_9f2c1e3d-4b5a-6c7d-8e9f-0a1b2c3d4e5f")


# ---- Anthropic client -> openai upstream: what the upstream received -----------------------------

def sent_upstream(base_url: str, fake, body: dict, headers: dict | None = None) -> dict:
    response = httpx.post(f"{base_url}/v1/messages", json=body, headers={**AUTH, **(headers or {})})
    assert response.status_code == 200, response.text
    return fake.requests[-1].body


def test_system_blocks_become_one_leading_system_message(local_gateway, fake_upstream):
    sent = sent_upstream(local_gateway, fake_upstream, {
        "model": "auto", "max_tokens": 64, "messages": ASK_OK,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Answer in English."}]})
    assert sent["messages"] == [{"role": "system", "content": "You are terse.\n\nAnswer in English."},
                                {"role": "user", "content": "Reply exactly: ok"}]
    assert "system" not in sent


def test_tool_results_become_tool_messages_and_their_images_a_user_message(local_gateway, fake_upstream):
    sent = sent_upstream(local_gateway, fake_upstream, {
        "model": "auto", "max_tokens": 64, "tools": [READ_FILE],
        "messages": [
            {"role": "user", "content": "Screenshot the page and read the log"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Doing both."},
                {"type": "tool_use", "id": "toolu_01A", "name": "screenshot", "input": {}},
                {"type": "tool_use", "id": "toolu_01B", "name": "read_file", "input": {"path": "x.log"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": [
                    {"type": "text", "text": "Here it is."},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "no such file", "is_error": True},
                {"type": "text", "text": "What do you see?"}]}]})
    assert sent["model"] == "local-standard"  # the image needs a vision model
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": "Doing both.", "tool_calls": [
            {"id": "toolu_01A", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}},
            {"id": "toolu_01B", "type": "function",
             "function": {"name": "read_file", "arguments": '{"path":"x.log"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "Here it is."},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "Error: no such file"},
        {"role": "user", "content": [
            {"type": "text", "text": "Images returned by the tool calls above:"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "text", "text": "What do you see?"}]}]
    assert "base64" not in json.dumps(sent["messages"][2:4])  # never an image as tool text


def test_tools_tool_choice_and_disable_parallel_tool_use(local_gateway, fake_upstream):
    sent = sent_upstream(local_gateway, fake_upstream, {
        "model": "auto", "max_tokens": 64, "messages": ASK_OK, "tools": [READ_FILE],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True}})
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "read_file", "description": "Read a file", "parameters": READ_FILE["input_schema"]}}]
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False

    named = sent_upstream(local_gateway, fake_upstream, {
        "model": "auto", "max_tokens": 64, "messages": ASK_OK, "tools": [READ_FILE],
        "tool_choice": {"type": "tool", "name": "read_file"}})
    assert named["tool_choice"] == {"type": "function", "function": {"name": "read_file"}}
    assert "parallel_tool_calls" not in named


def test_stop_sequences_become_stop_and_top_k_is_dropped(local_gateway, fake_upstream):
    sent = sent_upstream(local_gateway, fake_upstream, {
        "model": "auto", "max_tokens": 64, "messages": ASK_OK, "stop_sequences": ["END", "\n\n"],
        "temperature": 0.3, "top_p": 0.9, "top_k": 40})
    assert sent["stop"] == ["END", "\n\n"] and "stop_sequences" not in sent
    assert "top_k" not in sent and sent["temperature"] == 0.3 and sent["top_p"] == 0.9


@pytest.mark.parametrize("thinking, output_config, effort", [
    ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
    ({"type": "enabled", "budget_tokens": 2048}, None, "medium"),
    ({"type": "enabled", "budget_tokens": 10000}, None, "high"),
    ({"type": "adaptive"}, {"effort": "low"}, "low"),
    ({"type": "adaptive"}, {"effort": "max"}, "high"),
    ({"type": "adaptive"}, None, None),  # adaptive leaves the effort to the model
])
def test_thinking_becomes_a_reasoning_effort(local_gateway, fake_upstream, thinking, output_config, effort):
    body = {"model": "local-large", "max_tokens": 16000, "messages": ASK_OK, "thinking": thinking}
    if output_config:
        body["output_config"] = output_config
    sent = sent_upstream(local_gateway, fake_upstream, body)
    assert sent.get("reasoning_effort") == effort
    assert "thinking" not in sent and "output_config" not in sent
    assert sent["max_completion_tokens"] == 16000  # a reasoning model's limit field


def test_thinking_is_dropped_for_a_model_without_reasoning(local_gateway, fake_upstream):
    sent = sent_upstream(local_gateway, fake_upstream, {
        "model": "local-mini", "max_tokens": 64000, "messages": ASK_OK,
        "thinking": {"type": "enabled", "budget_tokens": 8000}})
    assert "reasoning_effort" not in sent and "thinking" not in sent
    assert sent["max_tokens"] == 8192  # clamped to the model's output limit


def test_metadata_user_id_becomes_user(local_gateway, fake_upstream):
    sent = sent_upstream(local_gateway, fake_upstream, {
        "model": "auto", "max_tokens": 64, "messages": ASK_OK, "metadata": {"user_id": "u-42"}})
    assert sent["user"] == "u-42" and "metadata" not in sent
    long = [sent_upstream(local_gateway, fake_upstream, {
        "model": "auto", "max_tokens": 64, "messages": ASK_OK,
        "metadata": {"user_id": CLAUDE_CODE_USER}})["user"] for _ in range(2)]
    assert long[0] == long[1] and len(long[0]) <= 64  # OpenAI refuses a longer `user`


def test_decode_names_the_session_and_the_user():
    body = orjson.dumps({"model": "auto", "max_tokens": 8, "messages": ASK_OK,
                         "metadata": {"user_id": "u-1"}})
    by_header = decode_request(body, {"x-claude-code-session-id": "s-9", "anthropic-beta": "b1"})
    assert by_header.session == "s-9" and by_header.user == "u-1"
    assert by_header.forward_headers == {"anthropic-beta": "b1"}
    assert decode_request(body, {}).session == "u-1"


def test_decode_keeps_blocks_in_neutral_form():
    request = decode_request(orjson.dumps({
        "model": "auto", "max_tokens": 8, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": ""}]},
                     {"role": "assistant", "content": [
                         {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                         {"type": "redacted_thinking", "data": "opaque"},
                         {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                         {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}],
        "tools": [READ_FILE, {"type": "web_search_20250305", "name": "web_search"}],
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}))
    assert [t.text for t in request.system] == ["Be brief."]
    assert request.messages[0].parts == [Text("hi")]
    thinking, redacted, call = request.messages[1].parts
    assert (thinking.text, thinking.signature, redacted.redacted_data) == ("hmm", "sig", "opaque")
    assert call == ToolCall("toolu_1", "read_file", '{"path":"a"}')
    assert request.messages[2].parts[0].name == "read_file"  # for upstreams that need the name
    assert [t.name for t in request.tools] == ["read_file"]  # a server tool has no neutral form
    assert request.response_format.type == "json_schema"


@pytest.mark.parametrize("body, message", [
    ({"model": "auto", "messages": ASK_OK}, "max_tokens: Field required"),
    ({"model": "auto", "max_tokens": 8}, "messages: Field required"),
    ({"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "tool_use", "id": "t", "name": "n", "input": {}}]}]},
     "messages.0.content.0.type: `tool_use` blocks are not allowed in `user` messages"),
    ({"model": "auto", "max_tokens": 8, "messages": ASK_OK, "tool_choice": {"type": "tool"}},
     "tool_choice.tool.name: Field required"),
    ({"model": "auto", "max_tokens": 8, "messages": ASK_OK, "tools": [{"name": "x"}]},
     "tools.0.input_schema: Field required"),
])
def test_decode_errors_name_the_field(body, message):
    with pytest.raises(InvalidRequest) as caught:
        decode_request(orjson.dumps(body), {})
    assert caught.value.message == message


def test_count_requests_need_no_max_tokens():
    fmt = AnthropicMessagesFormat()
    body = orjson.dumps({"model": "auto", "messages": ASK_OK})
    assert fmt.decode_count_request(body, {}).max_tokens is None
    assert fmt.encode_token_count(12) == {"input_tokens": 12}


def test_each_format_recognises_only_its_own_bodies():
    anthropic_fmt, openai_fmt = AnthropicMessagesFormat(), OpenAIChatFormat()
    tool_loop = {"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]}
    with_system = {"model": "auto", "system": "x", "messages": ASK_OK}
    openai_body = {"model": "auto", "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": [
        {"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    for body, headers, anthropic_like in [(tool_loop, {}, True), (with_system, {}, True),
                                          ({"model": "auto", "messages": ASK_OK}, {"anthropic-version": "2023-06-01"}, True),
                                          (openai_body, {}, False)]:
        assert anthropic_fmt.recognises(body, headers) is anthropic_like
        assert openai_fmt.recognises(body, headers) is not anthropic_like


# ---- openai upstream answers -> Anthropic client -------------------------------------------------

def openai_body(message: dict, finish: str = "stop", usage: dict | None = None) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


@pytest.mark.parametrize("finish, stop_reason", [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("content_filter", "refusal")])
def test_stop_reasons(finish, stop_reason):
    answer = encode_response(openai_response(openai_body({"content": "x"}, finish)), FACTS)
    assert answer["stop_reason"] == stop_reason
    events = encode_stream(openai_chunks([{"content": "x"}], finish))
    assert message_delta(events)["delta"]["stop_reason"] == stop_reason


def test_cached_usage_is_split_out_of_input_tokens():
    usage = {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050,
             "prompt_tokens_details": {"cached_tokens": 600}}
    answer = encode_response(openai_response(openai_body({"content": "x"}, usage=usage)), FACTS)
    assert answer["usage"] == {"input_tokens": 400, "output_tokens": 50,
                               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 600}
    # input = total - cache read - cache written, in the stream's final usage too
    settled = Usage(input_tokens=1000, output_tokens=50, cached_input_tokens=600, cache_write_tokens=100)
    events = encode_stream(openai_chunks([{"content": "x"}], "stop"), usage=settled)
    assert message_delta(events)["usage"] == {"input_tokens": 300, "output_tokens": 50,
                                              "cache_creation_input_tokens": 100,
                                              "cache_read_input_tokens": 600}


def test_reasoning_becomes_an_unsigned_thinking_block():
    answer = encode_response(openai_response(openai_body(
        {"reasoning_content": "2 and 2 make 4.", "content": "4"})), FACTS)
    assert answer["content"] == [{"type": "thinking", "thinking": "2 and 2 make 4.", "signature": ""},
                                 {"type": "text", "text": "4"}]
    events = encode_stream(openai_chunks([{"reasoning_content": "2 and 2 "},
                                          {"reasoning_content": "make 4."}, {"content": "4"}], "stop"))
    content = rebuild(events)
    assert content == [{"type": "thinking", "thinking": "2 and 2 make 4.", "signature": ""},
                       {"type": "text", "text": "4"}]
    assert not [d for _, d in events if d.get("delta", {}).get("type") == "signature_delta"]


def test_interleaved_parallel_tool_calls_become_whole_sequential_blocks():
    def call(index, **fn):
        return {"tool_calls": [{"index": index, **({"id": fn.pop("id")} if "id" in fn else {}),
                                "function": fn}]}
    events = encode_stream(openai_chunks([
        {"content": "Reading both."},
        call(0, id="call_a", name="read_file", arguments=""),
        call(1, id="call_b", name="read_file", arguments=""),
        call(0, arguments='{"pa'), call(1, arguments='{"path":'),
        call(0, arguments='th":"a.md"}'), call(1, arguments='"b.md"}')], "tool_calls"))
    assert rebuild(events) == [
        {"type": "text", "text": "Reading both."},
        {"type": "tool_use", "id": "call_a", "name": "read_file", "input": {"path": "a.md"}},
        {"type": "tool_use", "id": "call_b", "name": "read_file", "input": {"path": "b.md"}}]
    assert message_delta(events)["delta"]["stop_reason"] == "tool_use"


def test_interleaved_text_and_tool_blocks_keep_their_start_order():
    encoder = StreamEncoder(100)
    out = encoder.encode(Frame([MessageStart("m1", "x"), BlockStart(0, "text"),
                                BlockStart(1, "tool_call", tool_call_id="c1", tool_name="f"),
                                TextDelta(0, "a"), ToolArgumentsDelta(1, '{"k":'), TextDelta(0, "b"),
                                BlockStop(1), ToolArgumentsDelta(1, "ignored"), BlockStop(0),
                                BlockStart(2, "text"), TextDelta(2, "c"), BlockStop(2),
                                MessageEnd("tool_use", Usage(10, 2))]))
    events = parse_sse(out + encoder.finish(FACTS, Usage(10, 2)))
    assert rebuild(events, strict_json=False) == [
        {"type": "text", "text": "ab"}, {"type": "tool_use", "id": "c1", "name": "f", "input": '{"k":'},
        {"type": "text", "text": "c"}]


def test_no_empty_text_blocks():
    tool = {"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "read_file",
                                                                     "arguments": '{"path":"a"}'}}]}
    events = encode_stream(openai_chunks([{"role": "assistant", "content": ""}, {"content": "\n\n"}, tool],
                                         "tool_calls"))
    assert [b["type"] for b in rebuild(events)] == ["tool_use"]
    assert events[1][1]["index"] == 0
    answer = encode_response(openai_response(openai_body(
        {"content": " \n", "tool_calls": [{"id": "call_a", "type": "function",
                                           "function": {"name": "read_file", "arguments": "{}"}}]},
        "tool_calls")), FACTS)
    assert [b["type"] for b in answer["content"]] == ["tool_use"]
    # Whitespace before real text is kept, in the one block it belongs to.
    events = encode_stream(openai_chunks([{"content": "\n"}, {"content": "Hi"}], "stop"))
    assert rebuild(events) == [{"type": "text", "text": "\nHi"}]


def test_message_start_carries_upstream_input_usage_else_the_estimate():
    upfront = StreamEncoder(77).encode(Frame([MessageStart(
        "msg_1", "m", Usage(input_tokens=500, cached_input_tokens=200))]))
    assert parse_sse(upfront)[0][1]["message"]["usage"]["input_tokens"] == 300
    assert parse_sse(upfront)[0][1]["message"]["usage"]["cache_read_input_tokens"] == 200
    estimated = StreamEncoder(77).encode(Frame([MessageStart("chatcmpl-1", "m")]))
    start = parse_sse(estimated)[0][1]["message"]
    assert start["usage"]["input_tokens"] == 77 and start["id"].startswith("msg_")


def test_a_failure_after_the_stream_began_is_an_error_event():
    encoder = StreamEncoder(10)
    out = encoder.fail(UpstreamError("Overloaded", upstream_status=529))
    assert parse_sse(out) == [("error", {"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}})]
    assert encoder.keepalive() == b'event: ping\ndata: {"type":"ping"}\n\n'


@pytest.mark.parametrize("error, status, kind", [
    (InvalidRequest("bad"), 400, "invalid_request_error"),
    (AuthenticationFailed("who"), 401, "authentication_error"),
    (InsufficientCredits("broke"), 402, "billing_error"),
    (PermissionDenied("no"), 403, "permission_error"),
    (NotFound("gone"), 404, "not_found_error"),
    (CostrError("huge", status=413), 413, "request_too_large"),
    (RateLimited("slow down"), 429, "rate_limit_error"),
    (CostrError("oops"), 500, "api_error"),
    (UpstreamError("upstream broke", upstream_status=500), 502, "api_error"),
    (NoUsableProvider("set OPENAI_KEY"), 503, "api_error"),
    (UpstreamTimeout("too slow"), 504, "timeout_error"),
])
def test_errors_in_anthropic_shape(error, status, kind):
    assert encode_error(error) == (status, {"type": "error", "error": {"type": kind, "message": error.message}})


def test_anthropic_upstream_errors_are_relayed_and_others_reshaped():
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert encode_error(UpstreamError("x", upstream_status=529, upstream_body=body)) == (529, body)
    openai_error = {"error": {"message": "bad key", "type": "invalid_request_error"}}
    status, reshaped = encode_error(UpstreamError("upstream said: bad key", upstream_status=401,
                                                  upstream_body=openai_error))
    assert status == 502 and reshaped["error"] == {"type": "api_error", "message": "upstream said: bad key"}


# ---- Anthropic client -> anthropic upstream: passed through ------------------------------------

KEY_ENV = "COSTR_TEST_TRANSLATION_ANTHROPIC_KEY"
CLAUDE_POOL = """\
tiers: [budget, standard, premium]
baseline: claude-thinker
providers:
  claude: {{type: anthropic, base_url: "{url}", api_key_env: {env}}}
models:
  - {{id: claude-plain, provider: claude, tier: budget, upstream_name: fake-plain,
     price: {{input: 1.0, output: 5.0}}, context_window: 200000, max_output_tokens: 8192,
     capabilities: [tools, vision]}}
  - {{id: claude-thinker, provider: claude, tier: premium, upstream_name: fake-thinker,
     price: {{input: 3.0, output: 15.0}}, context_window: 200000, max_output_tokens: 64000,
     capabilities: [tools, vision, reasoning]}}
  - {{id: claude-adaptive, provider: claude, tier: premium, upstream_name: fake-adaptive,
     price: {{input: 5.0, output: 25.0}}, context_window: 200000, max_output_tokens: 64000,
     capabilities: [tools, vision, reasoning], options: {{thinking: adaptive}}}}
"""


@pytest.fixture
def claude_gateway(tmp_path, fake_upstream, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ant-fake")
    with running_gateway(*write_config(tmp_path, CLAUDE_POOL.format(url=fake_upstream.url,
                                                                     env=KEY_ENV))) as base_url:
        yield base_url


def test_passthrough_keeps_unknown_fields_and_forwards_beta_headers(claude_gateway, fake_upstream):
    body = {"model": "claude-thinker", "max_tokens": 32000, "messages": ASK_OK,
            "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
            "thinking": {"type": "enabled", "budget_tokens": 4000}, "top_k": 5,
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "metadata": {"user_id": CLAUDE_CODE_USER}, "x_future_field": {"anything": [1, 2]}}
    betas = "context-management-2025-06-27,interleaved-thinking-2025-05-14"
    response = httpx.post(f"{claude_gateway}/v1/messages?beta=true", json=body, headers={**AUTH, 
        "anthropic-version": "2023-06-01", "anthropic-beta": betas, "x-app": "cli"})
    assert response.status_code == 200, response.text
    sent = fake_upstream.requests[-1]
    assert sent.body == dict(body, model="fake-thinker")  # only the model replaced
    assert sent.headers["anthropic-beta"] == betas and sent.headers["anthropic-version"] == "2023-06-01"
    assert "x-app" not in sent.headers
    answer = response.json()
    assert answer["model"] == "fake-thinker" and answer["x_routing"]["routed_model"] == "claude-thinker"


def test_passthrough_clamps_max_tokens(claude_gateway, fake_upstream):
    sent = sent_upstream(claude_gateway, fake_upstream, {
        "model": "claude-plain", "max_tokens": 32000, "messages": ASK_OK})
    assert sent["max_tokens"] == 8192


def test_passthrough_drops_thinking_and_effort_with_their_betas_for_a_model_without_reasoning(
        claude_gateway, fake_upstream):
    sent = sent_upstream(claude_gateway, fake_upstream, {
        "model": "claude-plain", "max_tokens": 1000, "messages": ASK_OK,
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
        headers={"anthropic-beta": "interleaved-thinking-2025-05-14, effort-2025-11-24,context-management-2025-06-27"})
    assert "thinking" not in sent and "output_config" not in sent
    assert fake_upstream.requests[-1].headers["anthropic-beta"] == "context-management-2025-06-27"


def test_passthrough_gives_adaptive_thinking_as_a_budget_to_a_model_without_it(claude_gateway, fake_upstream):
    body = {"model": "claude-thinker", "max_tokens": 32000, "messages": ASK_OK,
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}
    sent = sent_upstream(claude_gateway, fake_upstream, body,
                         headers={"anthropic-beta": "effort-2025-11-24,interleaved-thinking-2025-05-14"})
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024} and "output_config" not in sent
    assert fake_upstream.requests[-1].headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    sent = sent_upstream(claude_gateway, fake_upstream, {**body, "output_config": {}})
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}  # medium without an effort
    # A model marked `options: {thinking: adaptive}` takes it as sent.
    assert sent_upstream(claude_gateway, fake_upstream, {**body, "model": "claude-adaptive"}) == \
        dict(body, model="fake-adaptive")


def test_other_clients_reasoning_effort_is_adaptive_thinking_for_an_adaptive_model():
    adaptive = ModelSpec(id="a", provider="claude", tier=None, price=Price(1, 1), context_window=200_000,
                         max_output_tokens=64_000, capabilities=frozenset({"reasoning"}),
                         options={"thinking": "adaptive"})
    ask = [Message("user", [Text("hi")])]
    body = request_to_wire(ChatRequest(ask, max_tokens=500, reasoning_effort="high", temperature=0.5), adaptive)
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "high"}
    assert body["max_tokens"] == 500 and "temperature" not in body
    budgeted = request_to_wire(ChatRequest(ask, max_tokens=500, reasoning_effort="high"),
                               dataclasses.replace(adaptive, options={}))
    assert budgeted["thinking"]["type"] == "enabled" and "output_config" not in budgeted


def test_passthrough_never_replays_unsigned_thinking(claude_gateway, fake_upstream):
    loop = [{"role": "user", "content": "Read a.md"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "from another model", "signature": ""},
                {"type": "text", "text": "  "},
                {"type": "tool_use", "id": "call_1", "name": "read_file", "input": {"path": "a.md"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "hi"}]}]
    sent = sent_upstream(claude_gateway, fake_upstream, {
        "model": "claude-thinker", "max_tokens": 8000, "messages": loop, "tools": [READ_FILE],
        "thinking": {"type": "enabled", "budget_tokens": 2000}},
        headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert sent["messages"][1]["content"] == [loop[1]["content"][2]]
    # Anthropic needs the tool-calling turn to open with thinking while thinking is on: off it goes.
    assert "thinking" not in sent and "anthropic-beta" not in fake_upstream.requests[-1].headers
    signed = [loop[0], {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "mine", "signature": "EqQBCgIYAh"}, loop[1]["content"][2]]}, loop[2]]
    sent = sent_upstream(claude_gateway, fake_upstream, {
        "model": "claude-thinker", "max_tokens": 8000, "messages": signed, "tools": [READ_FILE],
        "thinking": {"type": "enabled", "budget_tokens": 2000}})
    assert sent["messages"] == signed and sent["thinking"]["budget_tokens"] == 2000


def test_passthrough_stream_is_relayed_with_routing_in_the_final_message_delta(claude_gateway):
    with httpx.stream("POST", f"{claude_gateway}/v1/messages", json={
            "model": "claude-plain", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "Reply exactly: relayed"}]}, headers=AUTH) as response:
        events = parse_sse(response.read())
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert events[0][1]["message"]["model"] == "fake-plain"  # the upstream's event, as sent
    assert rebuild(events) == [{"type": "text", "text": "relayed"}]
    delta = message_delta(events)
    assert delta["x_routing"]["routed_model"] == "claude-plain" and delta["delta"]["stop_reason"] == "end_turn"


def test_passthrough_message_start_without_input_usage_gets_the_estimate():
    encoder = StreamEncoder(321)
    out = encoder.encode(Frame([], raw={"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
        "usage": {"input_tokens": 0, "output_tokens": 1}}}, raw_format="anthropic-messages"))
    assert parse_sse(out)[0][1]["message"]["usage"] == {"input_tokens": 321, "output_tokens": 1}


def test_passthrough_answer_is_the_upstreams_body_plus_routing():
    raw = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "container": None,
           "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 3, "output_tokens": 1, "service_tier": "standard"}}
    response = ChatResponse("msg_1", "m", [Text("hi")], raw=raw, raw_format="anthropic-messages")
    assert encode_response(response, FACTS) == {**raw, "x_routing": FACTS.as_dict()}


# ---- the whole stream through a gateway: pings while quiet, an error event on failure -----------

class QuietProvider(Provider):
    """Streams a greeting with a pause mid-answer, then ends or fails as its model's name says."""
    wire_format = "scripted"

    async def stream(self, request, model):
        yield Frame([MessageStart("s1", model.id), BlockStart(0, "text"), TextDelta(0, "Hello")])
        await asyncio.sleep(0.35)
        yield Frame([TextDelta(0, " world"), BlockStop(0)])
        if model.id == "failing":
            yield Frame([StreamFailure(529, "Overloaded")])
        else:
            yield Frame([MessageEnd("end_turn", Usage(12, 2))])


@pytest.fixture
def quiet_gateway(tmp_path):
    registry = collect(make_plugin_manager())
    registry.provider_types["scripted"] = QuietProvider
    registry.api_formats["anthropic-messages"] = AnthropicMessagesFormat(keepalive_seconds=0.1)
    pool = """\
tiers: [budget, standard, premium]
baseline: quiet
providers:
  scripted: {type: scripted}
models:
  - {id: quiet, provider: scripted, tier: budget, price: {input: 1, output: 1}, context_window: 1000}
  - {id: failing, provider: scripted, tier: budget, price: {input: 9, output: 9}, context_window: 1000}
"""
    with running_gateway(*write_config(tmp_path, pool), registry=registry) as base_url:
        yield base_url


def stream_raw(base_url: str, model: str) -> list[tuple[str, dict]]:
    with httpx.stream("POST", f"{base_url}/v1/messages", json={
            "model": model, "max_tokens": 16, "stream": True, "messages": ASK_OK}, headers=AUTH) as response:
        assert response.status_code == 200
        return parse_sse(response.read())


def test_pings_while_the_upstream_is_quiet(quiet_gateway):
    names = [name for name, _ in stream_raw(quiet_gateway, "quiet")]
    first, last = names.index("content_block_delta"), len(names) - names[::-1].index("content_block_delta") - 1
    assert "ping" in names[first:last]
    assert [n for n in names if n != "ping"][-2:] == ["message_delta", "message_stop"]
    with anthropic.Anthropic(api_key=TEST_KEY, base_url=quiet_gateway, max_retries=0).messages.stream(
            model="quiet", max_tokens=16, messages=ASK_OK) as stream:
        assert stream.get_final_text() == "Hello world"


def test_a_failure_mid_stream_reaches_the_client_as_an_error_event(quiet_gateway):
    events = stream_raw(quiet_gateway, "failing")
    assert events[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error",
                                                               "message": "Overloaded"}})
    assert "message_stop" not in [name for name, _ in events]
    client = anthropic.Anthropic(api_key=TEST_KEY, base_url=quiet_gateway, max_retries=0)
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        with client.messages.stream(model="failing", max_tokens=16, messages=ASK_OK) as stream:
            stream.get_final_message()


# ---- helpers ----------------------------------------------------------------------------------------

def openai_chunks(deltas: list[dict], finish: str) -> list[dict]:
    head = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}
    chunks = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({**head, "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 7,
                                                    "total_tokens": 27}})
    return chunks


def encode_stream(chunks: list[dict], usage: Usage | None = None) -> list[tuple[str, dict]]:
    """OpenAI chunks through the openai decoder and the Anthropic encoder, as SSE events."""
    decoder, encoder = OpenAIStreamDecoder(), StreamEncoder(50)
    out = b"".join(encoder.encode(Frame(decoder.feed(chunk))) for chunk in chunks)
    out += encoder.encode(Frame(decoder.finish()))
    return parse_sse(out + encoder.finish(FACTS, usage or Usage(20, 7)))


def parse_sse(data: bytes) -> list[tuple[str, dict]]:
    events = []
    for record in data.decode().split("\n\n"):
        if record.strip():
            name, payload = record.split("\n")
            events.append((name.removeprefix("event: "), json.loads(payload.removeprefix("data: "))))
    return events


def message_delta(events) -> dict:
    return next(data for name, data in events if name == "message_delta")


def rebuild(events, strict_json: bool = True) -> list[dict]:
    """The content a client builds from the events, checking Anthropic's rules on the way:
    blocks numbered in order, one open at a time, deltas only to the open one."""
    assert events[0][0] == "message_start"
    content, open_index, json_text = [], None, {}
    for name, data in events:
        assert data["type"] == name
        if name == "content_block_start":
            assert open_index is None and data["index"] == len(content)
            open_index = data["index"]
            content.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            assert data["index"] == open_index
            block, delta = content[open_index], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                json_text[open_index] = json_text.get(open_index, "") + delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index
            if open_index in json_text:
                text = json_text[open_index]
                content[open_index]["input"] = json.loads(text) if strict_json else text
            open_index = None
    assert open_index is None and [n for n, _ in events][-2:] == ["message_delta", "message_stop"]
    for block in content:
        assert block["type"] != "text" or block["text"].strip()
    return content
