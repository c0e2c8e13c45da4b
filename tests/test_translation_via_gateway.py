"""A Chat Completions client (the real `openai` SDK) reaching each provider type through
Costr: requests translated out, answers and streams translated back, usage in OpenAI form.
Upstreams are replayed from cassettes written in each provider's documented wire format."""
from __future__ import annotations

import json

import openai
import pytest

from costr.testing import TEST_KEY, running_gateway, use_cassette

from conftest import REPO

READ_FILE = {"type": "function", "function": {
    "name": "read_file", "description": "Read a file",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}


@pytest.fixture(scope="module")
def client():
    """The shipped providers.yaml, with every provider's key set."""
    with pytest.MonkeyPatch.context() as mp:
        for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
            mp.setenv(env, f"test-{env.lower()}")
        with running_gateway(REPO / "providers.yaml", REPO / "routing_policies") as base:
            yield openai.OpenAI(api_key=TEST_KEY, base_url=f"{base}/v1", max_retries=0)


def collect_stream(stream):
    text, calls, finish, chunks = "", {}, None, []
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                entry["id"] = tc.id or entry["id"]
                entry["name"] = (tc.function.name if tc.function else None) or entry["name"]
                entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
    return text, calls, finish, chunks


def test_anthropic_answer_with_cached_usage_in_openai_form(client):
    with use_cassette(__file__, "anthropic_plain") as cassette:
        completion = client.chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "system", "content": "Be terse."},
                                                {"role": "user", "content": "Reply exactly: ok"}],
            max_tokens=32, stop=["END"])
    assert completion.choices[0].message.content == "ok"
    assert completion.choices[0].finish_reason == "stop"
    # Anthropic's input_tokens excludes cache reads and writes; OpenAI's prompt_tokens includes them.
    assert completion.usage.prompt_tokens == 14 + 2048 + 312
    assert completion.usage.prompt_tokens_details.cached_tokens == 2048
    assert completion.x_routing["routed_provider"] == "anthropic"
    sent = cassette.sent[0].json()
    assert sent["system"] == [{"type": "text", "text": "Be terse."}]
    assert sent["stop_sequences"] == ["END"] and "stop" not in sent
    assert sent["max_tokens"] == 32 and sent["model"] == "claude-haiku-4-5"
    assert cassette.sent[0].headers.get("anthropic-version") == "2023-06-01"


def test_anthropic_stream_of_two_tool_calls_becomes_openai_tool_call_chunks(client):
    with use_cassette(__file__, "anthropic_stream_two_tools"):
        text, calls, finish, chunks = collect_stream(client.chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "Read README and pyproject"}],
            tools=[READ_FILE], stream=True, stream_options={"include_usage": True}))
    assert text == "Reading both files."
    assert finish == "tool_calls"
    assert [calls[i]["name"] for i in (0, 1)] == ["read_file", "read_file"]
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert json.loads(calls[0]["arguments"]) == {"path": "README.md"}
    assert json.loads(calls[1]["arguments"]) == {"path": "pyproject.toml"}
    assert chunks[-1].usage.prompt_tokens == 472 and chunks[-1].usage.completion_tokens == 89
    assert chunks[-1].x_routing["routed_model"] == "claude-haiku-4-5"


def test_gemini_function_call_becomes_an_openai_tool_call(client):
    with use_cassette(__file__, "gemini_function_call") as cassette:
        completion = client.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "Show me the readme"}],
            tools=[READ_FILE], tool_choice="required")
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "read_file" and call.id
    assert json.loads(call.function.arguments) == {"path": "README.md"}
    assert completion.usage.prompt_tokens == 61 and completion.usage.completion_tokens == 16
    sent = cassette.sent[0].json()
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "read_file"
    assert sent["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"
    assert "key=" not in cassette.sent[0].uri


def test_gemini_stream_becomes_openai_chunks(client):
    with use_cassette(__file__, "gemini_stream_text"):
        text, calls, finish, chunks = collect_stream(client.chat.completions.create(
            model="gemini-2.5-flash", messages=[{"role": "user", "content": "Say hello"}],
            stream=True, stream_options={"include_usage": True}))
    assert text == "Hello from Gemini." and finish == "stop" and not calls
    assert chunks[-1].usage.prompt_tokens == 9 and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].x_routing["routed_provider"] == "google"


def test_openai_stream_is_relayed_as_sent_with_routing_added(client):
    with use_cassette(__file__, "openai_stream_tool_call") as cassette:
        text, calls, finish, chunks = collect_stream(client.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "Show me the readme"}],
            tools=[READ_FILE], stream=True, max_tokens=400,
            extra_body={"store": False, "reasoning_effort": "low"}))
    assert finish == "tool_calls"
    assert calls[0]["id"] == "call_Qm3vX8sK2pL9rT4nW7yB1cZd"
    assert json.loads(calls[0]["arguments"]) == {"path": "README.md"}
    assert chunks[0].model == "gpt-5-mini-2025-08-07"  # the upstream's chunk, as it sent it
    assert chunks[-1].x_routing["routed_model"] == "gpt-5-mini"
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    sent = cassette.sent[0].json()
    # Same format: unknown fields pass through; a reasoning model gets max_completion_tokens.
    assert sent["store"] is False and sent["reasoning_effort"] == "low"
    assert sent["max_completion_tokens"] == 400 and "max_tokens" not in sent
    assert sent["stream_options"] == {"include_usage": True}


def test_openai_answer_keeps_upstream_fields(client):
    with use_cassette(__file__, "openai_plain"):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "Reply exactly: ok"}])
    body = json.loads(raw.text)
    assert body["choices"][0]["message"]["annotations"] == []
    assert body["service_tier"] == "default"
    assert body["x_routing"]["routed_model"] == "gpt-5-mini"
    assert raw.headers["x-costr-routed-provider"] == "openai"
