"""The `anthropic` provider type: request translation, answer and stream decoding, and the HTTP
exchanges replayed from cassettes/test_provider_anthropic/ (hand-written from Anthropic's docs)."""
from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from conftest import write_config
from costr.cli.main import main
from costr.wire.conversation import (
    BlockStart, BlockStop, ChatRequest, Image, Message, MessageEnd, MessageStart, ResponseFormat,
    StreamFailure, Text, TextDelta, Thinking, ThinkingDelta, Tool, ToolArgumentsDelta, ToolCall,
    ToolChoice, ToolResult,
)
from costr.errors import InvalidRequest, UpstreamError
from costr.plugins import collect, make_plugin_manager
from costr.wire.providers import ModelSpec, Price, ProviderSettings
from costr.testing import use_cassette
from costr.wire.upstream import Upstream
import costr_anthropic
from costr_anthropic import AnthropicProvider
from costr_anthropic.wire_request import request_to_wire
from costr_anthropic.wire_response import response_from_wire, usage_from_wire
from costr_anthropic.wire_stream import StreamDecoder

KEY = "sk-ant-test"
SETTINGS = ProviderSettings(name="anthropic", type="anthropic", base_url="https://api.anthropic.com",
                            api_key=KEY, api_key_env="ANTHROPIC_API_KEY")
HAIKU = ModelSpec(id="claude-haiku-4-5", provider="anthropic", tier="small",
                  price=Price(input=1.0, output=5.0, cached_input=0.1, cache_write=1.25),
                  context_window=200_000, max_output_tokens=64_000,
                  upstream_name="claude-haiku-4-5-20251001",
                  capabilities=frozenset({"tools", "vision", "reasoning"}))
PLAIN = ModelSpec(id="claude-3-haiku", provider="anthropic", tier="small", price=Price(0.25, 1.25),
                  context_window=200_000, upstream_name="claude-3-haiku-20240307",
                  capabilities=frozenset({"tools"}))
WEATHER = Tool(name="get_weather", description="Get the current weather in a given location",
               parameters={"type": "object",
                           "properties": {"location": {"type": "string", "description": "City and country"},
                                          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                           "required": ["location"]})
LOCAL_TIME = Tool(name="get_local_time", description="Get the current local time in a time zone",
                  parameters={"type": "object",
                              "properties": {"timezone": {"type": "string", "description": "IANA time zone"}},
                              "required": ["timezone"]})
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[Message("user", [Text(text)])], **kw)


class SpyUpstream:
    """Forwards to the real Upstream (which vcr replays) and keeps what was sent."""

    def __init__(self, http: Upstream):
        self.http = http
        self.sent: list[dict] = []

    async def request(self, method, url, **kw):
        self._keep(url, kw)
        return await self.http.request(method, url, **kw)

    def stream(self, url, **kw):
        self._keep(url, kw)
        return self.http.stream(url, **kw)

    def _keep(self, url, kw):
        self.sent.append({"url": url, "headers": kw["headers"], "body": orjson.loads(kw["body"])})


def run_with_provider(cassette: str, action):
    """Replay `cassette`, run `action(provider)`, and return (result, spy, recorded request bodies)."""
    async def main():
        http = await Upstream.open()
        try:
            spy = SpyUpstream(http)
            return await action(AnthropicProvider(SETTINGS, spy)), spy
        finally:
            await http.close()
    with use_cassette(__file__, cassette) as recorded:
        result, spy = asyncio.run(main())
    return result, spy, [json.loads(request.body) for request in recorded.requests]


async def collect_frames(frames) -> list:
    return [frame async for frame in frames]


def events_of(frames) -> list:
    return [event for frame in frames for event in frame.events]


def arguments_by_index(events) -> dict[int, str]:
    pieces: dict[int, str] = {}
    for event in events:
        if isinstance(event, ToolArgumentsDelta):
            pieces[event.index] = pieces.get(event.index, "") + event.fragment
    return pieces


# ---- plugin registration ---------------------------------------------------------------------

def test_plugin_registers_the_anthropic_provider_type():
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(costr_anthropic, name="anthropic")
    assert collect(pm).provider_types == {"anthropic": AnthropicProvider}
    assert AnthropicProvider.wire_format == "anthropic-messages"


KEYLESS_POOL = """\
tiers: [budget, standard, premium]
baseline: claude-haiku-4-5
providers:
  claude: {type: anthropic, api_key_env: COSTR_TEST_UNSET_ANTHROPIC_KEY}
models:
  - {id: claude-haiku-4-5, provider: claude, tier: budget, price: {input: 1, output: 5},
     context_window: 200000}
"""


def test_a_missing_key_leaves_the_config_valid_with_a_note(tmp_path, capsys, monkeypatch):
    # Costr leaves a provider without its key out of routing and says so; the provider type
    # does not also refuse the configuration for it.
    monkeypatch.delenv("COSTR_TEST_UNSET_ANTHROPIC_KEY", raising=False)
    providers, policies = write_config(tmp_path, KEYLESS_POOL)
    assert main(["check", "--providers", str(providers), "--policies", str(policies)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines()[1:] == [
        "note: provider claude is left out of routing until COSTR_TEST_UNSET_ANTHROPIC_KEY is set."]


# ---- complete() against recorded exchanges -------------------------------------------------------

def test_text_answer_counts_cached_tokens_inside_input():
    request = ChatRequest(
        system=[Text("You are a contracts assistant for Harbor & Finch LLP. Answer from the contract "
                     "below only, citing clause numbers.", cache_control={"type": "ephemeral"}),
                Text("MASTER SERVICES AGREEMENT ... 9.2 Limitation of Liability. Each party's "
                     "aggregate liability shall not exceed the fees paid in the twelve (12) months "
                     "preceding the claim. ...", cache_control={"type": "ephemeral"}),
                Text("")],
        messages=[Message("user", [Text("Which clause limits liability? Answer in one sentence.")])],
        max_tokens=1024, temperature=0.2)
    response, spy, recorded = run_with_provider(
        "text_with_cache", lambda provider: provider.complete(request, HAIKU))

    sent = spy.sent[0]
    assert sent["url"] == "https://api.anthropic.com/v1/messages"
    assert sent["headers"]["x-api-key"] == KEY
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["body"] == recorded[0]
    assert "stream" not in sent["body"]

    assert response.id == "msg_01QZ5M8rXkqVjfcW7H3nPu2d"
    assert response.model == "claude-haiku-4-5-20251001"
    assert response.content == [Text("Clause 9.2 caps each party's total liability at the fees paid "
                                     "in the twelve months before the claim.")]
    assert response.stop_reason == "end_turn"
    assert response.usage.input_tokens == 24 + 2048 + 312
    assert response.usage.cached_input_tokens == 2048
    assert response.usage.cache_write_tokens == 312
    assert response.usage.output_tokens == 27
    assert response.raw_format == "anthropic-messages"
    assert response.raw["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 312,
                                                       "ephemeral_1h_input_tokens": 0}


def test_tool_use_answer_keeps_arguments_as_compact_json():
    request = ask("What's the weather like in San Francisco?", tools=[WEATHER],
                  tool_choice=ToolChoice("auto"), max_tokens=1024)
    response, spy, recorded = run_with_provider(
        "tool_use", lambda provider: provider.complete(request, HAIKU))

    assert spy.sent[0]["body"] == recorded[0]
    assert response.stop_reason == "tool_use"
    assert response.content == [
        Text("I'll check the current weather in San Francisco for you."),
        ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather",
                 '{"location":"San Francisco, CA","unit":"celsius"}')]
    assert response.usage.input_tokens == 412 and response.usage.output_tokens == 71


def test_complete_passes_an_anthropic_clients_body_through_without_stream():
    raw = {"model": "auto", "max_tokens": 256, "stream": True, "service_tier": "auto",
           "messages": [{"role": "user", "content": "Reply with the single word: ready"}]}
    request = ask("Reply with the single word: ready", source_format="anthropic-messages", raw=raw)
    response, spy, recorded = run_with_provider(
        "passthrough", lambda provider: provider.complete(request, HAIKU))
    assert spy.sent[0]["body"] == recorded[0]
    assert "stream" not in spy.sent[0]["body"] and spy.sent[0]["body"]["service_tier"] == "auto"
    assert raw["stream"] is True and raw["model"] == "auto"  # the client's body is not modified
    assert response.content == [Text("ready")]


def test_upstream_400_raises_with_anthropics_message():
    with pytest.raises(UpstreamError) as caught:
        run_with_provider("error_400", lambda provider: provider.complete(
            ask("Summarise the attached logs.", max_tokens=1024), HAIKU))
    error = caught.value
    assert error.upstream_status == 400
    assert error.retryable is False
    assert "400" in error.message
    assert "prompt is too long: 215312 tokens > 200000 maximum" in error.message
    assert KEY not in error.message


# ---- stream() against recorded exchanges -----------------------------------------------------------

def test_stream_of_text_then_two_tool_calls():
    request = ask("What's the weather in Paris, and what time is it there?",
                  tools=[WEATHER, LOCAL_TIME], max_tokens=2048)
    frames, spy, recorded = run_with_provider(
        "stream_tool_calls", lambda provider: collect_frames(provider.stream(request, HAIKU)))

    assert spy.sent[0]["body"] == recorded[0]
    assert spy.sent[0]["body"]["stream"] is True
    assert all(frame.raw_format == "anthropic-messages" for frame in frames)
    assert len(frames) == 20  # one per SSE event, ping included
    events = events_of(frames)
    assert events[0] == MessageStart("msg_014p7gG3wDgGV9EUtLvnow3U", "claude-haiku-4-5-20251001",
                                     usage_from_wire({"input_tokens": 640, "output_tokens": 2}))
    assert [e for e in events if isinstance(e, BlockStart)] == [
        BlockStart(0, "text"),
        BlockStart(1, "tool_call", tool_call_id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", tool_name="get_weather"),
        BlockStart(2, "tool_call", tool_call_id="toolu_01LQm3Ng7Hb5VvXe2sRkD9cP", tool_name="get_local_time")]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == \
        "I'll look up the weather and the local time in Paris."
    arguments = arguments_by_index(events)
    assert json.loads(arguments[1]) == {"location": "Paris, France", "unit": "celsius"}
    assert json.loads(arguments[2]) == {"timezone": "Europe/Paris"}
    assert [e.index for e in events if isinstance(e, BlockStop)] == [0, 1, 2]
    end = events[-1]
    assert isinstance(end, MessageEnd)
    assert end.stop_reason == "tool_use"
    assert end.usage.input_tokens == 640  # message_delta repeats input: replaced, not added
    assert end.usage.output_tokens == 118
    assert not any(isinstance(e, StreamFailure) for e in events)


def test_stream_of_thinking_with_signature():
    request = ask("Is 1,001 a prime number?", max_tokens=8192, reasoning_effort="medium")
    frames, spy, recorded = run_with_provider(
        "stream_thinking", lambda provider: collect_frames(provider.stream(request, HAIKU)))

    assert spy.sent[0]["body"] == recorded[0]
    events = events_of(frames)
    assert events[1] == BlockStart(0, "thinking")
    thinking = [e for e in events if isinstance(e, ThinkingDelta)]
    assert "".join(e.text for e in thinking) == \
        "1001 = 7 × 143, and 143 = 11 × 13. So 1001 = 7 × 11 × 13: not prime."
    signatures = [e.signature for e in thinking if e.signature]
    assert len(signatures) == 1 and signatures[0].startswith("EqQBCgIYAhIM")
    assert BlockStart(1, "text") in events
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == \
        "No. 1,001 = 7 × 11 × 13, so it is not prime."
    assert events[-1] == MessageEnd("end_turn", usage_from_wire({"input_tokens": 18, "output_tokens": 187}))


def test_stream_passes_an_anthropic_clients_body_through():
    raw = {"model": "auto", "max_tokens": 32000,
           "messages": [{"role": "user", "content": "Say hi."}],
           "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."}],
           "metadata": {"user_id": "user_4b1e_account__session_9f2c"},
           "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
           "stream": True}
    request = ask("Say hi.", source_format="anthropic-messages", raw=raw, stream=True)
    frames, spy, recorded = run_with_provider(
        "stream_passthrough", lambda provider: collect_frames(provider.stream(request, HAIKU)))

    assert spy.sent[0]["body"] == dict(raw, model="claude-haiku-4-5-20251001") == recorded[0]
    assert raw["model"] == "auto"  # the client's body is not modified
    ping = frames[2]
    assert ping.events == [] and ping.raw == {"type": "ping"}
    assert frames[0].raw["type"] == "message_start"
    assert frames[-1].raw == {"type": "message_stop"}


def test_stream_error_event_becomes_a_stream_failure():
    frames, _, _ = run_with_provider("stream_overloaded_midway", lambda provider: collect_frames(
        provider.stream(ask("Write a haiku about rain.", max_tokens=1024), HAIKU)))
    events = events_of(frames)
    assert TextDelta(0, "Soft rain on the roof") in events
    assert events[-1] == StreamFailure(529, "Overloaded")
    assert frames[-1].raw["error"]["type"] == "overloaded_error"
    assert sum(isinstance(e, StreamFailure) for e in events) == 1


def test_stream_cut_short_ends_with_a_failure():
    frames, _, _ = run_with_provider("stream_cut_short", lambda provider: collect_frames(
        provider.stream(ask("Write a haiku about rain.", max_tokens=1024), HAIKU)))
    events = events_of(frames)
    assert TextDelta(0, "Soft rain on the roof") in events
    assert not any(isinstance(e, MessageEnd) for e in events)
    assert events[-1] == StreamFailure(502, "upstream stream ended early")
    assert frames[-1].raw is None


def test_stream_529_raises_before_the_first_frame():
    async def first_frame(provider):
        async for frame in provider.stream(ask("Write a haiku about rain.", max_tokens=1024), HAIKU):
            return frame
    with pytest.raises(UpstreamError) as caught:
        run_with_provider("stream_529", first_frame)
    assert caught.value.upstream_status == 529
    assert caught.value.retryable is True
    assert "529" in caught.value.message and "Overloaded" in caught.value.message


# ---- count_tokens() ---------------------------------------------------------------------------------

def count_request() -> ChatRequest:
    return ChatRequest(system=[Text("You are a concise assistant.")],
                       messages=[Message("user", [Text("What's the weather like in San Francisco?")])],
                       tools=[WEATHER], max_tokens=1024, temperature=0.5)


def test_count_tokens_sends_only_the_fields_the_endpoint_accepts():
    count, spy, recorded = run_with_provider(
        "count_tokens", lambda provider: provider.count_tokens(count_request(), HAIKU))
    assert count == 403
    assert spy.sent[0]["url"] == "https://api.anthropic.com/v1/messages/count_tokens"
    assert spy.sent[0]["body"] == recorded[0]
    assert "max_tokens" not in spy.sent[0]["body"] and "temperature" not in spy.sent[0]["body"]


def test_count_tokens_failure_returns_none():
    count, _, _ = run_with_provider(
        "count_tokens_failure", lambda provider: provider.count_tokens(count_request(), HAIKU))
    assert count is None


# ---- request_to_wire: one test per translation rule ------------------------------------------------

def test_system_blocks_keep_cache_control_and_drop_empty_text():
    body = request_to_wire(ChatRequest(
        system=[Text("Be brief.", cache_control={"type": "ephemeral"}), Text("  "), Text("Use SI units.")],
        messages=[Message("user", [Text("hi")])]), HAIKU)
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                              {"type": "text", "text": "Use SI units."}]
    assert "system" not in request_to_wire(ask("hi", system=[Text("")]), HAIKU)


def test_json_schema_response_format_becomes_a_final_system_instruction():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    body = request_to_wire(ask("2+2?", system=[Text("Be brief.")],
                               response_format=ResponseFormat("json_schema", schema=schema, name="a")), HAIKU)
    assert body["system"][0] == {"type": "text", "text": "Be brief."}
    instruction = body["system"][-1]["text"]
    assert instruction.startswith("Respond with only a JSON value that conforms to this JSON Schema")
    assert instruction.endswith(
        '{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}')
    plain = request_to_wire(ask("2+2?", response_format=ResponseFormat("json_object")), HAIKU)
    assert plain["system"] == [{"type": "text", "text": "Respond with only a valid JSON object, "
                                                        "with no other text and no code fences."}]
    assert "system" not in request_to_wire(ask("2+2?", response_format=ResponseFormat("text")), HAIKU)


def test_consecutive_messages_of_one_role_are_merged():
    body = request_to_wire(ChatRequest(messages=[
        Message("user", [Text("first")]), Message("user", [Text("second")]),
        Message("assistant", [Text("")]),  # empty: dropped, so its neighbours merge too
        Message("user", [Text("third")]), Message("assistant", [Text("ok")])]), HAIKU)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"},
                                     {"type": "text", "text": "third"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]


def test_tool_results_open_the_user_turn_and_carry_images():
    body = request_to_wire(ChatRequest(messages=[
        Message("user", [Text("Compare the two charts.")]),
        Message("assistant", [Text("Fetching both."), ToolCall("toolu_01A", "fetch_chart", '{"id": 1}'),
                              ToolCall("toolu_01B", "fetch_chart", '{"id":2}')]),
        Message("user", [Text("Here they are."),
                         ToolResult("toolu_01A", [Text("chart 1"), Image(media_type="image/png", data=PNG)])]),
        Message("user", [ToolResult("toolu_01B", [Text("not found")], is_error=True)])]), HAIKU)
    assert body["messages"][1]["content"][1:] == [
        {"type": "tool_use", "id": "toolu_01A", "name": "fetch_chart", "input": {"id": 1}},
        {"type": "tool_use", "id": "toolu_01B", "name": "fetch_chart", "input": {"id": 2}}]
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": [
            {"type": "text", "text": "chart 1"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
        {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [{"type": "text", "text": "not found"}],
         "is_error": True},
        {"type": "text", "text": "Here they are."}]}
    assert len(body["messages"]) == 3


def test_empty_tool_result_content_is_left_out():
    body = request_to_wire(ChatRequest(messages=[
        Message("assistant", [ToolCall("toolu_01C", "ping", "")]),
        Message("user", [ToolResult("toolu_01C", [Text("")])])]), PLAIN)
    assert body["messages"][0]["content"] == [
        {"type": "tool_use", "id": "toolu_01C", "name": "ping", "input": {}}]
    assert body["messages"][1]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_01C"}]


def test_tool_arguments_that_are_not_a_json_object_are_kept_under_raw():
    body = request_to_wire(ChatRequest(messages=[
        Message("assistant", [ToolCall("toolu_01D", "search", '{"q": "rain'),
                              ToolCall("toolu_01E", "search", '["rain"]')])]), HAIKU)
    inputs = [block["input"] for block in body["messages"][0]["content"]]
    assert inputs == [{"_raw": '{"q": "rain'}, {"_raw": '["rain"]'}]


def test_thinking_is_replayed_only_when_signed_or_redacted():
    body = request_to_wire(ChatRequest(messages=[
        Message("user", [Text("q")]),
        Message("assistant", [Thinking("unsigned musings"), Thinking("signed", signature="sig=="),
                              Thinking(redacted_data="EmwKAhgB"), Text("a")])]), HAIKU)
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "signed", "signature": "sig=="},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "text", "text": "a"}]


def test_a_final_assistant_prefill_loses_trailing_whitespace():
    body = request_to_wire(ChatRequest(messages=[
        Message("user", [Text("Name a colour.")]), Message("assistant", [Text("The colour is ")])]), HAIKU)
    assert body["messages"][-1]["content"] == [{"type": "text", "text": "The colour is"}]


def test_images_by_data_url_by_url_and_inline():
    body = request_to_wire(ChatRequest(messages=[Message("user", [
        Image(url=f"data:image/jpeg;base64,{PNG}"),
        Image(url="https://upload.wikimedia.org/ant.jpg"),
        Image(data=PNG)])]), HAIKU)
    assert [block["source"] for block in body["messages"][0]["content"]] == [
        {"type": "base64", "media_type": "image/jpeg", "data": PNG},
        {"type": "url", "url": "https://upload.wikimedia.org/ant.jpg"},
        {"type": "base64", "media_type": "image/png", "data": PNG}]  # sniffed from the data
    with pytest.raises(InvalidRequest):
        request_to_wire(ChatRequest(messages=[
            Message("user", [Image(url="data:image/svg+xml,<svg/>")])]), HAIKU)


def test_sampling_stop_sequences_and_user():
    body = request_to_wire(ask("hi", stop=["\n\nHuman:"], temperature=1.7, top_k=40, user="user-42"), HAIKU)
    assert body["stop_sequences"] == ["\n\nHuman:"]
    assert body["temperature"] == 1.0  # clamped to Anthropic's range
    assert body["top_k"] == 40
    assert body["metadata"] == {"user_id": "user-42"}
    assert "stop" not in body and "user" not in body
    assert request_to_wire(ask("hi", top_p=0.9), HAIKU)["top_p"] == 0.9
    both = request_to_wire(ask("hi", temperature=0.3, top_p=0.9), HAIKU)
    assert both["temperature"] == 0.3 and "top_p" not in both


def test_tools_and_tool_choice():
    body = request_to_wire(ask("weather?", tools=[WEATHER, Tool("noop")],
                               tool_choice=ToolChoice("tool", "get_weather")), HAIKU)
    assert body["tools"] == [
        {"name": "get_weather", "description": "Get the current weather in a given location",
         "input_schema": WEATHER.parameters},
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}

    def choice(**kw):
        return request_to_wire(ask("weather?", tools=[WEATHER], **kw), HAIKU).get("tool_choice")
    assert choice() is None
    assert choice(tool_choice=ToolChoice("auto")) == {"type": "auto"}
    assert choice(tool_choice=ToolChoice("any")) == {"type": "any"}
    assert choice(tool_choice=ToolChoice("none")) == {"type": "none"}
    assert choice(parallel_tool_calls=False) == {"type": "auto", "disable_parallel_tool_use": True}
    assert choice(tool_choice=ToolChoice("any"), parallel_tool_calls=False) == \
        {"type": "any", "disable_parallel_tool_use": True}
    assert choice(tool_choice=ToolChoice("none"), parallel_tool_calls=False) == {"type": "none"}
    assert "tool_choice" not in request_to_wire(ask("hi", tool_choice=ToolChoice("auto")), HAIKU)


def test_max_tokens_defaults_and_clamps():
    assert request_to_wire(ask("hi", max_tokens=500), HAIKU)["max_tokens"] == 500
    assert request_to_wire(ask("hi", max_tokens=200_000), HAIKU)["max_tokens"] == 64_000
    assert request_to_wire(ask("hi"), HAIKU)["max_tokens"] == 64_000
    assert request_to_wire(ask("hi"), PLAIN)["max_tokens"] == 4096


def test_thinking_budget_and_effort():
    explicit = request_to_wire(ask("hi", thinking_budget=500, max_tokens=8000, temperature=0.5,
                                   top_k=5), HAIKU)
    assert explicit["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert explicit["max_tokens"] == 8000
    assert "temperature" not in explicit and "top_k" not in explicit

    medium = request_to_wire(ask("hi", reasoning_effort="medium", max_tokens=1000), HAIKU)
    assert medium["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert medium["max_tokens"] == 4096 + 1000  # raised so the answer keeps its room

    high = request_to_wire(ask("hi", reasoning_effort="high"), HAIKU)
    assert high["thinking"]["budget_tokens"] == 16384 and high["max_tokens"] == 64_000

    small = ModelSpec(id="s", provider="anthropic", tier=None, price=Price(1, 1), context_window=100_000,
                      max_output_tokens=8192, capabilities=frozenset({"reasoning"}))
    capped = request_to_wire(ask("hi", reasoning_effort="high", max_tokens=4000), small)
    assert capped["max_tokens"] == 8192
    assert capped["thinking"]["budget_tokens"] < capped["max_tokens"]

    assert "thinking" not in request_to_wire(ask("hi", reasoning_effort="high"), PLAIN)
    assert "thinking" not in request_to_wire(ask("hi", thinking_budget=2048), PLAIN)
    assert "thinking" not in request_to_wire(ask("hi", reasoning_effort="low", tools=[WEATHER],
                                                 tool_choice=ToolChoice("any")), HAIKU)
    thinking_with_top_p = request_to_wire(ask("hi", reasoning_effort="low", top_p=0.97), HAIKU)
    assert thinking_with_top_p["top_p"] == 0.97


def test_thinking_stays_off_inside_a_tool_loop_started_without_it():
    loop = [Message("user", [Text("weather?")]),
            Message("assistant", [ToolCall("toolu_01F", "get_weather", '{"location":"Oslo"}')]),
            Message("user", [ToolResult("toolu_01F", [Text("-3°C")])])]
    body = request_to_wire(ChatRequest(messages=loop, tools=[WEATHER], reasoning_effort="high"), HAIKU)
    assert "thinking" not in body
    loop[1].parts.insert(0, Thinking("check Oslo", signature="sig=="))
    body = request_to_wire(ChatRequest(messages=loop, tools=[WEATHER], reasoning_effort="high"), HAIKU)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 16384}


def test_thinking_stays_off_with_a_prefilled_answer():
    prefill = ChatRequest(messages=[Message("user", [Text("Name a colour.")]),
                                    Message("assistant", [Text("The colour is")])],
                          reasoning_effort="high")
    assert "thinking" not in request_to_wire(prefill, HAIKU)


# ---- response_from_wire and StreamDecoder edge cases -----------------------------------------------

def test_response_maps_newer_stop_reasons_and_skips_server_tool_blocks():
    response = response_from_wire({
        "id": "msg_01X", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search",
                     "input": {"query": "x"}},
                    {"type": "text", "text": "Found it."},
                    {"type": "redacted_thinking", "data": "EmwKAhgB"}],
        "stop_reason": "model_context_window_exceeded", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 3, "output_tokens_details": {"thinking_tokens": 2}}})
    assert response.stop_reason == "max_tokens"
    assert response.content == [Text("Found it."), Thinking(redacted_data="EmwKAhgB")]
    assert response.usage.reasoning_tokens == 2


def test_stream_decoder_skips_blocks_without_a_neutral_form():
    decoder = StreamDecoder()
    decoder.feed({"type": "message_start",
                  "message": {"id": "msg_01", "model": "m", "usage": {"input_tokens": 5}}})
    assert decoder.feed({"type": "content_block_start", "index": 0,
                         "content_block": {"type": "server_tool_use", "id": "srvtoolu_01",
                                           "name": "web_search"}}) == []
    assert decoder.feed({"type": "content_block_delta", "index": 0,
                         "delta": {"type": "input_json_delta", "partial_json": "{}"}}) == []
    assert decoder.feed({"type": "content_block_stop", "index": 0}) == []
    decoder.feed({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                  "usage": {"output_tokens": 9, "cache_read_input_tokens": 100}})
    [end] = decoder.feed({"type": "message_stop"})
    assert end.stop_reason == "stop_sequence" and end.stop_sequence == "END"
    assert (end.usage.input_tokens, end.usage.cached_input_tokens, end.usage.output_tokens) == (105, 100, 9)
    assert decoder.finish() == []


def test_a_mid_conversation_system_message_rides_in_a_user_turn():
    from costr.wire.conversation import Message, Text
    request = ChatRequest(messages=[Message("user", [Text("Hello")]),
                                    Message("assistant", [Text("Hi.")]),
                                    Message("system", [Text("Be brief.")]),
                                    Message("user", [Text("Go on")])])
    turns = request_to_wire(request, HAIKU)["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[2]["content"] == [
        {"type": "text", "text": "<system-reminder>\nBe brief.\n</system-reminder>"},
        {"type": "text", "text": "Go on"}]
