"""The `gemini` provider type: request translation, answer decoding, streaming, and the HTTP
exchanges replayed from cassettes/test_provider_gemini/ (hand-written from Google's docs)."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson
import pytest

from conftest import write_config
from costr.config.files import load_config
from costr.wire.conversation import (
    BlockStart, BlockStop, ChatRequest, EmbeddingRequest, Image, Message, MessageEnd,
    MessageStart, ResponseFormat, StreamFailure, Text, TextDelta, Thinking, ThinkingDelta, Tool,
    ToolArgumentsDelta, ToolCall, ToolChoice, ToolResult,
)
from costr.errors import InvalidRequest, UpstreamError
from costr.routing.live import LiveConfig
from costr.plugins import collect as collect_plugins, make_plugin_manager
from costr.wire.providers import ModelSpec, Price, ProviderSettings
from costr.testing import use_cassette
from costr.wire.upstream import Reply, Upstream
from costr_gemini import GeminiProvider, register_provider_types
from costr_gemini.schema import sanitise_schema
from costr_gemini.stream import StreamDecoder
from costr_gemini.thought_signatures import model_tag, signature_in
from costr_gemini.wire import request_to_wire, response_from_wire, usage_from_wire

KEY = "test-gemini-key"
SETTINGS = ProviderSettings(name="google", type="gemini",
                            base_url="https://generativelanguage.googleapis.com/v1beta",
                            api_key=KEY, api_key_env="GEMINI_API_KEY")
FLASH = ModelSpec(id="gemini-2.5-flash", provider="google", tier="cheap",
                  price=Price(input=0.30, output=2.50, cached_input=0.075),
                  context_window=1_048_576, max_output_tokens=65_536,
                  capabilities=frozenset({"tools", "vision", "json_output", "reasoning"}))
LITE = ModelSpec(id="flash-lite", provider="google", tier="cheap", price=Price(0.1, 0.4),
                 context_window=1_048_576, max_output_tokens=8192,
                 upstream_name="gemini-2.0-flash-lite", capabilities=frozenset({"tools"}))
EMBEDDER = ModelSpec(id="gemini-embedding-001", provider="google", tier=None,
                     price=Price(0.15, 0.0), context_window=2048, mode="embedding")
WEATHER = Tool(name="get_weather", description="Current weather for a city", parameters={
    "type": "object",
    "properties": {"city": {"type": "string"},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city"]})


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[Message("user", [Text(text)])], **kw)


def with_provider(fn):
    """Run `fn(provider)` against a real Upstream (replayed by vcr) and close it after."""
    async def main():
        http = await Upstream.open()
        try:
            return await fn(GeminiProvider(SETTINGS, http))
        finally:
            await http.close()
    return asyncio.run(main())


async def collect(frames) -> list:
    return [frame async for frame in frames]


# ---- neutral -> Gemini --------------------------------------------------------------------

def test_system_becomes_system_instruction_and_empty_text_is_skipped():
    request = ask("Hi", system=[Text("Be brief."), Text(""), Text("Answer in French.")])
    body = request_to_wire(request, FLASH)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]
    assert "tools" not in body and "generationConfig" not in body


def test_roles_are_mapped_and_consecutive_turns_merged():
    request = ChatRequest(messages=[
        Message("user", [Text("one")]), Message("user", [Text("two"), Text("")]),
        Message("assistant", [Thinking("hmm", signature="sig"), Text("three")]),
        Message("assistant", [Text("four")]), Message("user", [Text("five")])])
    assert request_to_wire(request, FLASH)["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "three"}, {"text": "four"}]},
        {"role": "user", "parts": [{"text": "five"}]}]


def test_tool_results_become_function_responses_named_after_their_call():
    request = ChatRequest(messages=[
        Message("user", [Text("Weather in Paris and a chart?")]),
        Message("assistant", [Text("Checking."),
                              ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
                              ToolCall("call_2", "draw_chart", "")]),
        Message("user", [
            Text("thanks"),
            ToolResult("call_1", [Text("18"), Text(" C")]),
            ToolResult("call_2", [Text("chart service down")], is_error=True, name="draw_chart_v2"),
            ToolResult("call_3", [Image(media_type="image/png", data="iVBORw0KGgo=")], name="snap"),
        ])])
    contents = request_to_wire(request, FLASH)["contents"]
    assert contents[1] == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "draw_chart", "args": {}}}]}
    assert contents[2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"content": "18 C"}}},
        {"functionResponse": {"name": "draw_chart_v2", "response": {"error": "chart service down"}}},
        {"functionResponse": {"name": "snap", "response": {"content": ""}}},
        {"text": "thanks"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]}


def test_tool_result_answering_no_call_is_an_invalid_request():
    request = ChatRequest(messages=[Message("user", [ToolResult("call_x", [Text("42")])])])
    with pytest.raises(InvalidRequest, match="call_x"):
        request_to_wire(request, FLASH)


def test_arguments_that_are_not_a_json_object_are_kept_readable():
    request = ChatRequest(messages=[Message("assistant", [ToolCall("c", "f", "[1, 2")])])
    part = request_to_wire(request, FLASH)["contents"][0]["parts"][0]
    assert part == {"functionCall": {"name": "f", "args": {"arguments": "[1, 2"}}}


def test_images_become_inline_data_or_file_data():
    request = ChatRequest(messages=[Message("user", [
        Image(url="data:image/webp;base64,UklGRg=="),
        Image(media_type="image/gif", data="R0lGOD=="),
        Image(url="https://example.com/cat.png?size=large"),
        Image(url="https://example.com/photo")])])
    assert request_to_wire(request, FLASH)["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "image/gif", "data": "R0lGOD=="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png?size=large"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}}]


def test_tools_are_declared_with_sanitised_parameters():
    pydantic_style = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"Address": {"type": "object", "additionalProperties": False,
                              "properties": {"street": {"type": "string", "examples": ["1 Main St"]},
                                             "zip": {"type": ["string", "null"], "default": None}},
                              "required": ["street"]}},
        "type": "object", "additionalProperties": False,
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "Where they live"},
            "work": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]},
            "site": {"type": "string", "format": "uri"},
            "born": {"type": "string", "format": "date-time"},
            "kind": {"const": "person"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5},
        },
        "required": ["home", "ghost"]}
    request = ask("x", tools=[Tool("save", "Save a person", pydantic_style), Tool("ping")])
    declarations = request_to_wire(request, FLASH)["tools"][0]["functionDeclarations"]
    address = {"type": "object", "properties": {"street": {"type": "string"},
                                                "zip": {"nullable": True, "type": "string"}},
               "required": ["street"]}
    assert declarations[0] == {"name": "save", "description": "Save a person", "parameters": {
        "type": "object",
        "properties": {
            "home": {**address, "description": "Where they live"},
            "work": {"nullable": True, **address},
            "site": {"type": "string"},
            "born": {"type": "string", "format": "date-time"},
            "kind": {"enum": ["person"], "type": "string", "format": "enum"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5},
        },
        "required": ["home"]}}
    assert declarations[1] == {"name": "ping"}  # no properties: no parameters at all


def test_recursive_references_stop_at_an_untyped_object():
    tree = {"$defs": {"Node": {"type": "object", "properties": {
        "label": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
        "$ref": "#/$defs/Node"}
    assert sanitise_schema(tree) == {"type": "object", "properties": {
        "label": {"type": "string"},
        "children": {"type": "array", "items": {"type": "object"}}}}


@pytest.mark.parametrize("choice, expected", [
    (ToolChoice("auto"), {"mode": "AUTO"}),
    (ToolChoice("any"), {"mode": "ANY"}),
    (ToolChoice("tool", "get_weather"), {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    (ToolChoice("none"), {"mode": "NONE"}),
])
def test_tool_choice_modes(choice, expected):
    body = request_to_wire(ask("x", tools=[WEATHER], tool_choice=choice), FLASH)
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_generation_config_mapping():
    request = ask("x", max_tokens=100_000, temperature=0.2, top_p=0.9, top_k=40,
                  stop=["a", "b", "c", "d", "e", "f"], reasoning_effort="medium")
    assert request_to_wire(request, FLASH)["generationConfig"] == {
        "maxOutputTokens": 65_536, "temperature": 0.2, "topP": 0.9, "topK": 40,
        "stopSequences": ["a", "b", "c", "d", "e"],
        "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True}}


def test_thinking_budget_wins_over_effort_and_needs_the_reasoning_capability():
    request = ask("x", max_tokens=500, thinking_budget=0, reasoning_effort="high")
    assert request_to_wire(request, FLASH)["generationConfig"] == {
        "maxOutputTokens": 500, "thinkingConfig": {"thinkingBudget": 0}}
    assert request_to_wire(ask("x", reasoning_effort="high"), FLASH)["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 24576, "includeThoughts": True}}
    assert request_to_wire(ask("x", max_tokens=9000, reasoning_effort="high"), LITE)[
        "generationConfig"] == {"maxOutputTokens": 8192}


def test_json_output_formats():
    plain_json = ask("x", response_format=ResponseFormat("json_object"))
    assert request_to_wire(plain_json, FLASH)["generationConfig"] == {
        "responseMimeType": "application/json"}
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"answer": {"type": "integer", "minimum": 0}}, "required": ["answer"]}
    shaped = ask("x", response_format=ResponseFormat("json_schema", schema=schema, name="a", strict=True))
    assert request_to_wire(shaped, FLASH)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "object", "properties": {"answer": {"type": "integer", "minimum": 0}},
                           "required": ["answer"]}}


# ---- Gemini -> neutral --------------------------------------------------------------------

def test_answer_with_thoughts_split_text_and_tool_use_prompt_tokens():
    response = response_from_wire({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "Let me think.", "thought": True}, {"text": "Hello, "}, {"text": "world."},
            {"text": "", "thoughtSignature": "Cq0B"}]}, "finishReason": "MAX_TOKENS", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "toolUsePromptTokenCount": 5,
                          "candidatesTokenCount": 3, "thoughtsTokenCount": 7, "totalTokenCount": 25},
        "modelVersion": "gemini-2.5-pro"})
    assert response.content == [Thinking("Let me think."), Text("Hello, world.")]
    assert response.stop_reason == "max_tokens"
    assert response.model == "gemini-2.5-pro" and response.id.startswith("gemini-")
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.reasoning_tokens) == (15, 10, 7)


def test_blocked_prompt_is_a_refusal_with_no_content():
    body = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 11, "totalTokenCount": 11},
            "modelVersion": "gemini-2.5-flash", "responseId": "Zx8kaOa2KqWe1dkP"}
    response = response_from_wire(body)
    assert (response.stop_reason, response.content, response.id) == ("refusal", [], "Zx8kaOa2KqWe1dkP")
    assert response.usage.input_tokens == 11 and response.raw is body


def test_usage_from_wire_of_nothing_is_zero():
    usage = usage_from_wire(None)
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (0, 0, 0)


# ---- stream decoding ----------------------------------------------------------------------

def chunk(*parts, finish=None, usage=None):
    candidate = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    body = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
    if usage:
        body["usageMetadata"] = usage
    return body


def test_stream_thoughts_then_text_open_and_close_blocks_in_order():
    decoder = StreamDecoder()
    events = decoder.feed(chunk({"text": "Plan", "thought": True}, usage={"promptTokenCount": 4}))
    events += decoder.feed(chunk({"text": " it.", "thought": True}, {"text": "Done"}))
    events += decoder.feed(chunk({"text": "!"}, finish="STOP",
                                 usage={"promptTokenCount": 4, "candidatesTokenCount": 2}))
    assert events[0] == MessageStart("r1", "gemini-2.5-flash", usage=usage_from_wire({"promptTokenCount": 4}))
    assert events[1:] == [
        BlockStart(0, "thinking"), ThinkingDelta(0, "Plan"), ThinkingDelta(0, " it."), BlockStop(0),
        BlockStart(1, "text"), TextDelta(1, "Done"), TextDelta(1, "!"), BlockStop(1),
        MessageEnd("end_turn", usage_from_wire({"promptTokenCount": 4, "candidatesTokenCount": 2}))]
    assert decoder.finish() == []


def test_stream_error_chunk_and_missing_finish_become_failures():
    decoder = StreamDecoder()
    decoder.feed(chunk({"text": "Hi"}))
    assert decoder.feed({"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}) == [
        StreamFailure(500, "Internal error")]
    assert decoder.finish() == []
    unfinished = StreamDecoder()
    unfinished.feed(chunk({"text": "Hi"}))
    assert [type(e) for e in unfinished.finish()] == [StreamFailure]


def test_stream_with_blocked_prompt_ends_as_refusal():
    events = StreamDecoder().feed({"promptFeedback": {"blockReason": "SAFETY"},
                                   "usageMetadata": {"promptTokenCount": 9}, "responseId": "r2"})
    assert [type(e) for e in events] == [MessageStart, MessageEnd]
    assert events[1].stop_reason == "refusal" and events[1].usage.input_tokens == 9


# ---- the HTTP exchange --------------------------------------------------------------------

class RecordingUpstream:
    """Stands in for Upstream to show exactly what the provider sends."""

    def __init__(self, answer: dict):
        self.answer = answer
        self.calls: list[dict] = []

    async def request(self, method, url, *, headers, body=None, timeouts=None, secret=None):
        self.calls.append({"method": method, "url": url, "headers": headers,
                           "body": orjson.loads(body), "secret": secret})
        return Reply(200, {}, orjson.dumps(self.answer))


def test_api_key_goes_in_a_header_and_never_in_the_url():
    http = RecordingUpstream({"candidates": [], "promptFeedback": {"blockReason": "OTHER"}})
    provider = GeminiProvider(SETTINGS, http)
    asyncio.run(provider.complete(ask("Hi"), FLASH))
    call = http.calls[0]
    assert call["url"] == ("https://generativelanguage.googleapis.com/v1beta/models/"
                           "gemini-2.5-flash:generateContent")
    assert call["headers"]["x-goog-api-key"] == KEY and call["secret"] == KEY
    assert "key=" not in call["url"] and KEY not in call["url"]
    assert call["body"] == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    stream_url = provider.endpoint(LITE, "streamGenerateContent", sse=True)
    assert stream_url.endswith("/models/gemini-2.0-flash-lite:streamGenerateContent?alt=sse")


KEYLESS_POOL = """\
tiers: [budget, standard, premium]
baseline: gemini-2.5-flash
providers:
  google: {type: gemini, api_key_env: COSTR_TEST_UNSET_GEMINI_KEY}
models:
  - {id: gemini-2.5-flash, provider: google, tier: budget, price: {input: 0.3, output: 2.5},
     context_window: 1048576}
"""


def test_no_api_key_leaves_the_config_valid_and_the_provider_out_of_routing(tmp_path):
    registry = collect_plugins(make_plugin_manager())
    config = load_config(*write_config(tmp_path, KEYLESS_POOL), registry, environ={})
    assert config.missing_credentials() == {"google": "COSTR_TEST_UNSET_GEMINI_KEY"}
    assert LiveConfig.build(config, registry, http=None).usable == frozenset()
    provider = GeminiProvider(config.providers["google"], http=None)
    assert "x-goog-api-key" not in provider.headers()
    assert provider.endpoint(FLASH, "countTokens").startswith("https://generativelanguage.googleapis.com/v1beta/")


def test_plugin_registers_the_gemini_type():
    registered = {}
    register_provider_types(register=lambda name, factory: registered.setdefault(name, factory))
    assert registered == {"gemini": GeminiProvider}


def test_plain_answer_with_cached_tokens():
    with use_cassette(__file__, "plain_answer") as cassette:
        response = with_provider(lambda p: p.complete(
            ask("What is the capital of France? One sentence."), FLASH))
    assert cassette.play_count == 1
    assert response.content == [Text("The capital of France is Paris.")]
    assert response.stop_reason == "end_turn"
    assert (response.id, response.model) == ("Yh0kaNmRBrKs1dkP7Ly5wQ8", "gemini-2.5-flash")
    usage = response.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens,
            usage.reasoning_tokens) == (2214, 2048, 62, 54)
    assert response.raw_format == "gemini" and response.raw["usageMetadata"]["totalTokenCount"] == 2276


def test_function_call_answer():
    with use_cassette(__file__, "function_call"):
        response = with_provider(lambda p: p.complete(
            ask("What's the weather in Paris, in celsius?", tools=[WEATHER]), FLASH))
    [call] = response.content
    assert isinstance(call, ToolCall) and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    # Gemini 2.5 signs while thinking: the id Costr mints carries the signature for next time.
    assert re.fullmatch(r"call_[0-9a-f]{24}__sig__[A-Za-z0-9_-]+", call.id)
    assert signature_in(call.id, model_tag(FLASH)) == "CiIBVKhc7oVmY0cQ1gS6bWz3mJv0yQ0u0l3Jb3sE0fC2xqFQ"
    assert response.stop_reason == "tool_use"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (96, 85)


GEMINI_3 = ModelSpec(id="gemini-3-pro", provider="google", tier="premium", price=Price(2.0, 12.0),
                     context_window=1_048_576, upstream_name="gemini-3-pro-preview",
                     capabilities=frozenset({"tools", "reasoning"}))


def test_gemini_3_parallel_calls_give_their_signature_back_on_the_next_step():
    question = ask("Compare the weather in Paris and Tokyo.", tools=[WEATHER])
    with use_cassette(__file__, "gemini_3_parallel_calls") as cassette:
        first = with_provider(lambda p: p.complete(question, GEMINI_3))
        paris, tokyo = first.content
        signed = first.raw["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
        tag = model_tag(GEMINI_3)
        assert len(signed) > 900 and signature_in(paris.id, tag) == signed
        assert signature_in(tokyo.id, tag) is None  # parallel calls: only the first is signed
        question.messages += [Message("assistant", first.content), Message("user", [
            ToolResult(paris.id, [Text("18 C, light rain")]),
            ToolResult(tokyo.id, [Text("24 C, clear")])])]
        second = with_provider(lambda p: p.complete(question, GEMINI_3))
    assert second.content == [Text("Tokyo is warmer: 24 °C and clear, while Paris has 18 °C "
                                    "and light rain.")]
    model_turn = cassette.sent[1].json()["contents"][1]
    assert model_turn == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": signed},
        {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo", "unit": "celsius"}}}]}
    for sent, recorded in zip(cassette.sent, cassette.requests):  # exactly what the cassette shows
        assert sent.json() == orjson.loads(recorded.body)


def test_streamed_text_then_two_function_calls():
    with use_cassette(__file__, "stream_text_then_two_calls"):
        frames = with_provider(lambda p: collect(p.stream(
            ask("Compare the weather in Paris and Tokyo.", tools=[WEATHER]), FLASH)))
    assert len(frames) == 4 and all(f.raw_format == "gemini" for f in frames)
    assert frames[3].raw["candidates"][0]["finishReason"] == "STOP"
    events = [e for f in frames for e in f.events]
    start = events[0]
    assert isinstance(start, MessageStart) and start.id == "8x4kaPalJ-6W1dkPpubq-Qs"
    assert start.usage.input_tokens == 112
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "I'll look up both cities at once."
    starts = [e for e in events if isinstance(e, BlockStart)]
    assert [(s.index, s.kind, s.tool_name) for s in starts] == [
        (0, "text", None), (1, "tool_call", "get_weather"), (2, "tool_call", "get_weather")]
    assert starts[1].tool_call_id != starts[2].tool_call_id
    arguments = {e.index: orjson.loads(e.fragment) for e in events if isinstance(e, ToolArgumentsDelta)}
    assert arguments == {1: {"city": "Paris"}, 2: {"city": "Tokyo", "unit": "celsius"}}
    assert [e.index for e in events if isinstance(e, BlockStop)] == [0, 1, 2]
    end = events[-1]
    assert isinstance(end, MessageEnd) and end.stop_reason == "tool_use"
    assert (end.usage.input_tokens, end.usage.output_tokens, end.usage.reasoning_tokens) == (112, 178, 131)


def test_stream_cut_short_ends_with_a_failure_frame():
    with use_cassette(__file__, "stream_cut_short"):
        frames = with_provider(lambda p: collect(p.stream(ask("Write a long poem."), FLASH)))
    assert [type(e) for e in frames[0].events] == [MessageStart, BlockStart, TextDelta]
    assert frames[-1].raw is None and [type(e) for e in frames[-1].events] == [StreamFailure]


def test_stream_error_before_any_frame_raises():
    with use_cassette(__file__, "stream_error_first"):
        with pytest.raises(UpstreamError) as caught:
            with_provider(lambda p: collect(p.stream(ask("Hello"), FLASH)))
    assert caught.value.upstream_status == 503 and caught.value.retryable
    assert "The model is overloaded" in caught.value.message


def test_safety_blocked_answer_is_a_refusal():
    with use_cassette(__file__, "safety_block"):
        response = with_provider(lambda p: p.complete(ask("[a request the filters block]"), FLASH))
    assert response.stop_reason == "refusal" and response.content == []
    assert response.usage.input_tokens == 17


def test_upstream_400_carries_googles_message():
    with use_cassette(__file__, "error_400"):
        with pytest.raises(UpstreamError) as caught:
            with_provider(lambda p: p.complete(ask("Hello"), FLASH))
    error = caught.value
    assert error.upstream_status == 400 and error.retryable is False
    assert "API key not valid. Please pass a valid API key." in error.message


def test_embeddings():
    request = EmbeddingRequest(inputs=["cheap routing", "expensive routing"], dimensions=8)
    with use_cassette(__file__, "embeddings"):
        response = with_provider(lambda p: p.embed(request, EMBEDDER))
    assert len(response.vectors) == 2 and all(len(v) == 8 for v in response.vectors)
    assert response.vectors[0][:2] == [0.0131, -0.0257]
    assert response.model == "gemini-embedding-001"
    assert response.usage.estimated and response.usage.input_tokens == 7


def test_count_tokens():
    with use_cassette(__file__, "count_tokens"):
        assert with_provider(lambda p: p.count_tokens(ask("How many tokens is this?"), FLASH)) == 31


def test_count_tokens_failure_is_none():
    gone = ModelSpec(id="gemini-0.9-nonexistent", provider="google", tier=None,
                     price=Price(1, 1), context_window=1000)
    with use_cassette(__file__, "count_tokens_unknown_model"):
        assert with_provider(lambda p: p.count_tokens(ask("Hi"), gone)) is None


def test_cassettes_hold_no_key():
    folder = Path(__file__).resolve().parents[1] / "cassettes" / "test_provider_gemini"
    texts = [path.read_text() for path in folder.glob("*.yaml")]
    assert len(texts) == 11
    assert not any(KEY in text or "key=" in text or "x-goog-api-key" in text for text in texts)
