"""The worked-example plugin, plugins/costr-ollama, installed as its own distribution
(`pip install -e plugins/costr-ollama`), found through the `costr` entry-point group and
replayed against recorded Ollama answers in cassettes/test_plugin_example/."""
import asyncio
import json
import re
from pathlib import Path

import pytest

from costr.wire.conversation import (
    BlockStart, BlockStop, ChatRequest, EmbeddingRequest, Image, Message, MessageEnd,
    MessageStart, ResponseFormat, StreamFailure, Text, TextDelta, Thinking, ThinkingDelta, Tool,
    ToolArgumentsDelta, ToolCall, ToolChoice, ToolResult,
)
from costr.errors import InvalidRequest, UpstreamError
from costr.plugins import collect, make_plugin_manager, plugin_origin
from costr.wire.providers import ModelSpec, Price, ProviderSettings
from costr.testing import use_cassette
from costr.wire.upstream import Upstream

try:
    import costr_ollama
    from costr_ollama.translate import StreamDecoder, encode_request
except ImportError as exc:  # fail loudly: a skip would hide a missing install step
    raise ImportError("install the example plugin: pip install -e plugins/costr-ollama") from exc

BASE_URL = "http://ollama.test:11434"  # not localhost: costr.testing lets localhost through
WEATHER_TOOL = Tool("get_temperature", "Current temperature for a city",
                    {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]})


def settings(**overrides) -> ProviderSettings:
    values = {"name": "local", "type": "ollama", "base_url": BASE_URL, "api_key": None}
    return ProviderSettings(**(values | overrides))


def model(wire_name: str) -> ModelSpec:
    return ModelSpec(id=f"local/{wire_name}", provider="local", tier="cheap",
                     price=Price(0, 0), context_window=8192, upstream_name=wire_name)


def ask(text: str, **fields) -> ChatRequest:
    return ChatRequest(messages=[Message("user", [Text(text)])], **fields)


def run_with_provider(use, provider_settings=None):
    """Build the provider from the registry, as Costr does, and run `use(provider)`."""
    async def main():
        registry = collect(make_plugin_manager())
        http = await Upstream.open()
        try:
            provider = registry.provider_types["ollama"](provider_settings or settings(), http)
            return await use(provider)
        finally:
            await http.close()
    return asyncio.run(main())


def collect_stream(provider, request, spec):
    async def frames():
        return [frame async for frame in provider.stream(request, spec)]
    return frames()


# ---- discovery ----------------------------------------------------------------------------

def test_installed_plugin_registers_provider_type(monkeypatch):
    monkeypatch.setenv("COSTR_LOAD_PLUGINS", "ollama")
    pm = make_plugin_manager()
    registry = collect(pm)
    assert registry.provider_types["ollama"] is costr_ollama.OllamaProvider
    assert registry.origins[("provider type", "ollama")] == "ollama"
    assert plugin_origin(pm, pm.get_plugin("ollama")).startswith("costr-ollama ")
    # COSTR_LOAD_PLUGINS kept every other installed plugin out.
    assert [name for name, plugin in pm.list_name_plugin() if plugin is not None] == ["ollama"]


def test_plugin_loads_alongside_the_builtins():
    registry = collect(make_plugin_manager())
    assert registry.origins[("provider type", "ollama")] == "ollama"


# ---- against recorded answers ---------------------------------------------------------------

def test_plain_answer_with_usage():
    with use_cassette(__file__, "chat_plain"):
        response = run_with_provider(
            lambda p: p.complete(ask("Why is the sky blue? One sentence."), model("llama3.2")))
    assert [type(part) for part in response.content] == [Text]
    assert response.content[0].text.startswith("Sunlight scatters")
    assert response.stop_reason == "end_turn"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (33, 15)
    assert response.model == "llama3.2"
    assert response.raw_format == "ollama" and response.raw["done"] is True


@pytest.mark.parametrize("cassette, call_id", [
    ("chat_stream_tool_call", "call_k2x9v1aq"),   # tool call in its own object, then done
    ("chat_stream_tool_call_in_done", None),      # tool call inside the done object, no id
])
def test_streamed_tool_call(cassette, call_id):
    request = ask("What is the temperature in Paris?", tools=[WEATHER_TOOL], stream=True)
    with use_cassette(__file__, cassette):
        frames = run_with_provider(lambda p: collect_stream(p, request, model("qwen3")))
    assert all(f.raw_format == "ollama" and isinstance(f.raw, dict) for f in frames)
    events = [e for f in frames for e in f.events]
    assert [type(e) for e in events] == [
        MessageStart, BlockStart, TextDelta, TextDelta, BlockStop,
        BlockStart, ToolArgumentsDelta, BlockStop, MessageEnd]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me check."
    start = events[5]
    assert (start.index, start.kind, start.tool_name) == (1, "tool_call", "get_temperature")
    assert start.tool_call_id == call_id if call_id else start.tool_call_id.startswith("call_")
    assert json.loads(events[6].fragment) == {"city": "Paris"}
    end = events[-1]
    assert end.stop_reason == "tool_use"  # Ollama itself says done_reason "stop"
    assert (end.usage.input_tokens, end.usage.output_tokens) == (161, 26)


def test_stream_cut_off_before_done_reports_failure():
    with use_cassette(__file__, "chat_stream_cut_off"):
        frames = run_with_provider(
            lambda p: collect_stream(p, ask("Count to three.", stream=True), model("llama3.2")))
    last = frames[-1].events
    assert len(last) == 1 and isinstance(last[0], StreamFailure)
    assert not any(isinstance(e, MessageEnd) for f in frames for e in f.events)


def test_unknown_model_raises_upstream_error():
    with use_cassette(__file__, "model_not_found"):
        with pytest.raises(UpstreamError) as info:
            run_with_provider(lambda p: p.complete(ask("Hi"), model("llama9")))
    assert info.value.upstream_status == 404 and not info.value.retryable
    assert "not found, try pulling it first" in info.value.message


def test_embeddings():
    with use_cassette(__file__, "embed"):
        result = run_with_provider(
            lambda p: p.embed(EmbeddingRequest(inputs=["hello", "world"]), model("all-minilm")))
    assert len(result.vectors) == 2 and len(result.vectors[0]) == 3
    assert result.usage.input_tokens == 4


# ---- request translation ------------------------------------------------------------------

def test_options_and_format_mapping():
    request = ask("Reply in JSON", temperature=0.2, top_p=0.9, top_k=40, max_tokens=128,
                  stop=["###"], response_format=ResponseFormat("json_object"))
    body = encode_request(request, "llama3.2", stream=False,
                          defaults={"num_ctx": 8192, "temperature": 1.0, "keep_alive": "10m"})
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.2, "top_p": 0.9, "top_k": 40,
                               "num_predict": 128, "stop": ["###"]}
    assert body["format"] == "json"
    assert body["keep_alive"] == "10m"
    assert body["stream"] is False and body["model"] == "llama3.2"


def test_json_schema_format_and_no_empty_options():
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    body = encode_request(ask("Age?", response_format=ResponseFormat("json_schema", schema)),
                          "llama3.2", stream=True)
    assert body["format"] == schema
    assert "options" not in body and "tools" not in body and "think" not in body


def test_system_and_images():
    png = "iVBORw0KGgoAAAANSUhEUg=="
    request = ChatRequest(system=[Text("Be brief.")], messages=[Message("user", [
        Text("What is in these?"),
        Image(media_type="image/png", data=png),
        Image(url=f"data:image/png;base64,{png}"),
    ])])
    messages = encode_request(request, "llava", stream=False)["messages"]
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is in these?", "images": [png, png]},
    ]


def test_image_urls_are_refused():
    request = ChatRequest(messages=[Message("user", [Image(url="https://example.com/a.png")])])
    with pytest.raises(InvalidRequest):
        encode_request(request, "llava", stream=False)


def test_tool_calls_and_results():
    request = ChatRequest(tools=[WEATHER_TOOL], messages=[
        Message("user", [Text("Temperature in Paris?")]),
        Message("assistant", [Thinking("Need the tool."),
                              ToolCall("call_1", "get_temperature", '{"city": "Paris"}')]),
        # OpenAI clients do not name the tool in results: the name comes from the call.
        Message("user", [ToolResult("call_1", [Text("22°C")]), Text("And in Fahrenheit?")]),
    ])
    body = encode_request(request, "qwen3", stream=False)
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_temperature", "description": "Current temperature for a city",
        "parameters": WEATHER_TOOL.parameters}}]
    assert body["messages"][1:] == [
        {"role": "assistant", "content": "", "thinking": "Need the tool.",
         "tool_calls": [{"function": {"name": "get_temperature", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "22°C", "tool_name": "get_temperature"},
        {"role": "user", "content": "And in Fahrenheit?"},
    ]


def test_tool_choice_none_sends_no_tools_and_reasoning_turns_thinking_on():
    request = ask("Hi", tools=[WEATHER_TOOL], tool_choice=ToolChoice("none"),
                  reasoning_effort="high")
    body = encode_request(request, "qwen3", stream=False)
    assert "tools" not in body and body["think"] is True


def test_unparseable_tool_arguments_are_refused():
    request = ChatRequest(messages=[Message("assistant", [ToolCall("c", "f", "{not json")])])
    with pytest.raises(InvalidRequest):
        encode_request(request, "qwen3", stream=False)


def test_stream_decoder_separates_thinking_from_text():
    decoder = StreamDecoder()
    events = []
    for chunk in [{"model": "qwen3", "message": {"thinking": "Hmm"}, "done": False},
                  {"model": "qwen3", "message": {"content": "Hi"}, "done": False},
                  {"model": "qwen3", "message": {"content": ""}, "done": True,
                   "done_reason": "length", "prompt_eval_count": 3, "eval_count": 2}]:
        events += decoder.decode(chunk)
    assert [type(e) for e in events] == [MessageStart, BlockStart, ThinkingDelta, BlockStop,
                                         BlockStart, TextDelta, BlockStop, MessageEnd]
    assert [e.kind for e in events if isinstance(e, BlockStart)] == ["thinking", "text"]
    assert events[-1].stop_reason == "max_tokens"


def test_headers_send_bearer_only_when_a_key_is_set():
    provider = costr_ollama.OllamaProvider(settings(), http=None)
    assert "authorization" not in provider._headers()
    keyed = costr_ollama.OllamaProvider(settings(api_key="sk-local"), http=None)
    assert keyed._headers()["authorization"] == "Bearer sk-local"


def test_check_settings_catches_the_openai_compatible_url():
    assert costr_ollama.OllamaProvider(settings(), http=None).check_settings() == []
    problems = costr_ollama.OllamaProvider(
        settings(base_url="http://127.0.0.1:11434/v1"), http=None).check_settings()
    assert problems and "/v1" in problems[0]


# ---- the guide quotes the example as it is ------------------------------------------------

GUIDE = Path(__file__).resolve().parent.parent / "plugins" / "README.md"
EXAMPLE = Path(costr_ollama.__file__).resolve().parent.parent


def guide_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", GUIDE.read_text(), re.M | re.S)


def test_guide_shows_the_real_pyproject_and_hookimpl():
    assert (EXAMPLE / "pyproject.toml").read_text() in guide_blocks("toml")
    assert (EXAMPLE / "costr_ollama" / "__init__.py").read_text() in guide_blocks("python")


def test_guide_provider_excerpts_match_the_source():
    source = (EXAMPLE / "costr_ollama" / "provider.py").read_text()
    excerpts = [b for b in guide_blocks("python") if "self.http" in b]
    assert excerpts
    for block in excerpts:
        for line in filter(str.strip, block.splitlines()):
            assert line in source, f"plugins/README.md quotes a line provider.py lacks: {line!r}"
