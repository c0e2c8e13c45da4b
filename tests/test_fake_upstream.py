"""The fake upstream speaks each provider's wire format, follows its script, then its defaults."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from costr.testing._fake_answers import arguments_from_schema
from costr.testing.fake_upstream import FakeUpstream
from costr.testing import sse_events

READ_FILE_SCHEMA = {"type": "object", "required": ["file_path"],
                    "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}}}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": READ_FILE_SCHEMA}}]


@pytest.fixture
def fake():
    with FakeUpstream() as running:
        yield running


@pytest.fixture
def client(fake):
    with httpx.Client(base_url=fake.url, timeout=10) as http:
        yield http


def sse_data(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def test_openai_chat_answers_reply_exactly_with_usage(client):
    body = {"model": "m1", "messages": [{"role": "user", "content": "Reply exactly: hello there"}]}
    answer = client.post("/v1/chat/completions", json=body).json()
    assert answer["object"] == "chat.completion" and answer["model"] == "m1"
    choice = answer["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "hello there", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert answer["usage"]["prompt_tokens"] == 7  # ceil(26 chars / 4)
    assert answer["usage"]["completion_tokens"] == 3  # ceil(11 / 4)
    assert answer["usage"]["total_tokens"] == 10


def test_openai_stream_has_deltas_usage_chunk_and_done(client):
    body = {"model": "m1", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Reply exactly: a longer answer to split"}]}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        data = sse_data(response)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    assert all(c["usage"] is None for c in chunks[:-1])
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1]]
    assert "".join(deltas) == "a longer answer to split" and len([d for d in deltas if d]) >= 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_openai_stream_without_include_usage_has_no_usage(client):
    body = {"model": "m1", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        chunks = [json.loads(d) for d in sse_data(response)[:-1]]
    assert all("usage" not in c for c in chunks) and chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_openai_tool_call_streams_id_and_name_first_then_argument_fragments(client):
    body = {"model": "m1", "stream": True, "tools": OPENAI_TOOLS,
            "messages": [{"role": "user", "content": "look at the readme"}]}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        chunks = [json.loads(d) for d in sse_data(response)[:-1]]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
             if c["choices"][0]["delta"].get("tool_calls")]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "read_file"
    assert all(set(c) == {"index", "function"} and set(c["function"]) == {"arguments"} for c in calls[1:])
    assert len(calls) >= 3
    arguments = json.loads("".join(c["function"]["arguments"] for c in calls))
    assert arguments == {"file_path": "README.md", "limit": 1}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_tool_result_is_summarised(client):
    result = "line one\n" + "x" * 200
    messages = [{"role": "user", "content": "read it"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                 "function": {"name": "read_file", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": result}]
    answer = client.post("/v1/chat/completions",
                         json={"model": "m", "tools": OPENAI_TOOLS, "messages": messages}).json()
    text = answer["choices"][0]["message"]["content"]
    assert text.startswith("Done: line one xxx") and len(text) == len("Done: ") + 80


def test_openai_embeddings_and_models(client):
    answer = client.post("/v1/embeddings", json={"model": "e", "input": ["a", "b", "a"]}).json()
    assert answer["object"] == "list" and [d["index"] for d in answer["data"]] == [0, 1, 2]
    vectors = [d["embedding"] for d in answer["data"]]
    assert vectors[0] == vectors[2] != vectors[1] and len(vectors[0]) == 16
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"


def test_anthropic_message_and_count_tokens_agree(client):
    body = {"model": "claude-x", "max_tokens": 100, "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Reply exactly: yes"}]}]}
    answer = client.post("/v1/messages", json=body).json()
    assert answer["type"] == "message" and answer["id"].startswith("msg_")
    assert answer["content"] == [{"type": "text", "text": "yes"}]
    assert answer["stop_reason"] == "end_turn" and answer["stop_sequence"] is None
    counted = client.post("/v1/messages/count_tokens", json=body).json()
    assert counted == {"input_tokens": answer["usage"]["input_tokens"]}


def test_anthropic_tool_use_stream_has_the_full_event_sequence(client):
    body = {"model": "claude-x", "max_tokens": 100, "stream": True,
            "tools": [{"name": "read_file", "input_schema": READ_FILE_SCHEMA}],
            "messages": [{"role": "user", "content": "read the readme"}]}
    with client.stream("POST", "/v1/messages", json=body) as response:
        events = sse_events(response)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    block = events[1][1]["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "read_file" and block["input"] == {}
    fragments = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert len(fragments) >= 3 and json.loads("".join(fragments))["file_path"] == "README.md"
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_sdk_reads_the_stream(fake):
    anthropic = pytest.importorskip("anthropic")
    sdk = anthropic.Anthropic(base_url=fake.url, api_key="sk-test-secret")
    with sdk.messages.stream(model="claude-x", max_tokens=50,
                             messages=[{"role": "user", "content": "Reply exactly: streamed fine"}]) as stream:
        message = stream.get_final_message()
    assert message.content[0].text == "streamed fine" and message.usage.output_tokens == 4
    assert "x-api-key" not in fake.requests[-1].headers  # credentials are never recorded


def test_openai_sdk_reads_the_stream(fake):
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=fake.url + "/v1", api_key="sk-test-secret")
    stream = sdk.chat.completions.create(model="m", stream=True, stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "Reply exactly: fine"}])
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "fine"
    assert chunks[-1].usage.total_tokens > 0
    assert "authorization" not in fake.requests[-1].headers


def test_gemini_generate_stream_embed_and_count(fake, client):
    contents = [{"role": "user", "parts": [{"text": "Reply exactly: gemini says hi"}]}]
    base = "/v1beta/models/gemini-x"
    answer = client.post(f"{base}:generateContent", json={"contents": contents}).json()
    candidate = answer["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": "gemini says hi"}], "role": "model"}
    assert candidate["finishReason"] == "STOP" and answer["modelVersion"] == "gemini-x"
    usage = answer["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]

    with client.stream("POST", f"{base}:streamGenerateContent?alt=sse&key=secret",
                       json={"contents": contents}) as response:
        chunks = [json.loads(d) for d in sse_data(response)]
    assert len(chunks) >= 3 and "[DONE]" not in chunks
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == "gemini says hi"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "finishReason" not in chunks[0]["candidates"][0]
    assert fake.requests[-1].path == f"{base}:streamGenerateContent?alt=sse"  # key dropped

    requests = [{"model": "models/e", "content": {"parts": [{"text": t}]}} for t in ("a", "b")]
    embedded = client.post("/v1beta/models/e:batchEmbedContents", json={"requests": requests}).json()
    assert len(embedded["embeddings"]) == 2 and len(embedded["embeddings"][0]["values"]) == 16
    counted = client.post(f"{base}:countTokens", json={"contents": contents}).json()
    assert counted["totalTokens"] == usage["promptTokenCount"]


def test_gemini_function_call_and_response(client):
    tools = [{"functionDeclarations": [{"name": "read_file", "parameters": {
        "type": "OBJECT", "properties": {"path": {"type": "STRING"}}, "required": ["path"]}}]}]
    contents = [{"role": "user", "parts": [{"text": "read it"}]}]
    url = "/v1beta/models/g:generateContent"
    answer = client.post(url, json={"contents": contents, "tools": tools}).json()
    call = answer["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert call == {"name": "read_file", "args": {"path": "README.md"}}
    contents += [{"role": "model", "parts": [{"functionCall": call}]},
                 {"role": "user", "parts": [{"functionResponse": {"name": "read_file",
                                                                  "response": {"result": "# Costr"}}}]}]
    answer = client.post(url, json={"contents": contents, "tools": tools}).json()
    assert answer["candidates"][0]["content"]["parts"] == [{"text": "Done: # Costr"}]


def test_script_is_used_in_order_then_defaults(client, fake):
    fake.enqueue({"text": "first"},
                 {"tool_calls": [{"name": "search", "arguments": {"q": "costr"}}]})
    ask = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "anything"}]}
    first = client.post("/v1/messages", json=ask).json()
    second = client.post("/v1/messages", json=ask).json()
    third = client.post("/v1/messages", json=ask).json()
    assert first["content"][0]["text"] == "first"
    assert second["content"][0]["type"] == "tool_use" and second["content"][0]["input"] == {"q": "costr"}
    assert second["stop_reason"] == "tool_use"
    assert third["content"][0]["text"] == "ok"


@pytest.mark.parametrize("path, body, check", [
    ("/v1/chat/completions", {"model": "m", "messages": []},
     lambda e: e["error"]["code"] == "rate_limit_exceeded" and e["error"]["message"] == "slow down"),
    ("/v1/messages", {"model": "m", "max_tokens": 5, "messages": []},
     lambda e: e == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
    ("/v1beta/models/g:generateContent", {"contents": []},
     lambda e: e == {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}}),
])
def test_scripted_error_uses_the_providers_shape(client, fake, path, body, check):
    fake.enqueue({"status": 429, "error": "slow down"})
    response = client.post(path, json=body)
    assert response.status_code == 429 and check(response.json())


def test_invalid_json_is_a_400_in_the_providers_shape(client):
    response = client.post("/v1/messages", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


def test_delay_and_fast_mode():
    with FakeUpstream(delay_ms=50, fast=True) as fake, httpx.Client(base_url=fake.url) as http:
        started = time.perf_counter()
        answer = http.post("/v1/chat/completions", json={"model": "auto", "messages": []}).json()
        assert time.perf_counter() - started >= 0.05
        assert answer["choices"][0]["message"]["content"]
        body = {"model": "auto", "stream": True, "stream_options": {"include_usage": True}, "messages": []}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            data = sse_data(response)
        assert data[-1] == "[DONE]" and json.loads(data[-2])["usage"]["total_tokens"] > 0
        assert fake.requests == []  # fast mode records nothing


def test_command_line_serves_a_script_file(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"text": "from the file"}]))
    process = subprocess.Popen([sys.executable, "-m", "costr.testing.fake_upstream", "--port", "0",
                                "--script", str(script)], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split()[-1]
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(url + "/v1/chat/completions", json=body).json()
        assert answer["choices"][0]["message"]["content"] == "from the file"
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_write_config_lets_costr_route_to_the_fake_with_the_shipped_policies(tmp_path):
    """The no-key try-out: the file it writes, with the policies Costr ships, routes `auto`."""
    from costr.config.shipped import SHIPPED_POLICIES
    from costr.testing import AUTH, running_gateway
    process = subprocess.Popen([sys.executable, "-m", "costr.testing.fake_upstream", "--port", "0",
                                "--write-config", "local.yaml"], stdout=subprocess.PIPE,
                               text=True, cwd=tmp_path)
    try:
        wrote, listening = process.stdout.readline(), process.stdout.readline()
        assert wrote.startswith("wrote local.yaml") and "costr serve --providers local.yaml" in wrote
        url = listening.split()[-1]
        assert f"base_url: {url}/v1" in (tmp_path / "local.yaml").read_text()
        with running_gateway(tmp_path / "local.yaml", SHIPPED_POLICIES) as base:
            answer = httpx.post(f"{base}/v1/chat/completions", headers=AUTH, timeout=20, json={
                "model": "auto", "messages": [{"role": "user", "content": "Reply exactly: hi"}]})
    finally:
        process.terminate()
        assert process.wait(10) == 0
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "hi"
    assert answer.json()["x_routing"]["routed_model"].startswith("fake-")


def test_arguments_from_schema_prefers_required_when_there_are_many():
    schema = {"type": "object", "required": ["path", "count"], "properties": {
        "path": {"type": "string"}, "count": {"type": "number"}, "force": {"type": "boolean"},
        "mode": {"type": "string", "enum": ["fast", "slow"]}, "tags": {"type": "array"}}}
    assert arguments_from_schema(schema) == {"path": "README.md", "count": 1}
    few = {"type": "object", "properties": {"force": {"type": "boolean"}, "name": {"type": ["string", "null"]},
                                             "opts": {"type": "object", "properties": {"n": {"type": "integer"}}}}}
    assert arguments_from_schema(few) == {"force": True, "name": "test", "opts": {"n": 1}}


def test_gateway_config_for_the_fake_is_valid(tmp_path):
    from costr.config.files import load_config
    from costr.testing.fake_upstream import write_gateway_config
    providers, policies = write_gateway_config(tmp_path, "http://127.0.0.1:1")
    config = load_config(providers, policies)
    assert [m.tier for m in config.models.values()] == ["budget", "standard", "premium"]
    assert config.providers["fake"].base_url == "http://127.0.0.1:1/v1"
    assert set(config.policies) == {"balanced"}


def test_the_fake_upstream_runs_on_a_plain_install():
    """The README's no-key try-out and `costr bench` start the fake without the test extras."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['vcr'] = None  # as if vcrpy were not installed\n"
            "import costr.testing.fake_upstream, costr.benchmark")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---- the wire rules a tool loop crossing providers meets -----------------------------------

WEATHER_DECLARATION = {"functionDeclarations": [{"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}


def gemini_loop(model_step: dict, model: str = "gemini-3-flash-preview") -> tuple[str, dict]:
    """A Gemini request whose current turn holds one model step, answered by its result."""
    return (f"/v1beta/models/{model}:generateContent", {"tools": [WEATHER_DECLARATION], "contents": [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {"role": "model", "parts": [model_step]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"content": "18 C"}}}]}]})


def test_gemini_3_signs_the_first_of_its_calls_and_wants_it_back(client, fake):
    fake.enqueue({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}},
                                 {"name": "get_weather", "arguments": {"city": "Tokyo"}}]})
    path, body = gemini_loop({})
    first = client.post(path, json={**body, "contents": body["contents"][:1]}).json()
    signed, unsigned = first["candidates"][0]["content"]["parts"]
    assert len(signed["thoughtSignature"]) > 500 and "thoughtSignature" not in unsigned
    _, answered = gemini_loop(signed)
    assert client.post(path, json=answered).status_code == 200

    _, missing = gemini_loop({"functionCall": signed["functionCall"]})
    refused = client.post(path, json=missing)
    assert refused.status_code == 400 and refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert refused.json()["error"]["message"].startswith(
        "Function call is missing a thought_signature in functionCall parts.")
    assert "function call `default_api:get_weather` , position 2." in refused.text


def test_gemini_3_takes_the_sentinel_but_no_signature_it_did_not_issue(client):
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    path, sentinel = gemini_loop({**call, "thoughtSignature": "skip_thought_signature_validator"})
    assert client.post(path, json=sentinel).status_code == 200
    _, forged = gemini_loop({**call, "thoughtSignature": "CiIBVKhc7oVmY0cQ1gS6bWz3mJv0yQ0u0l3Jb3sE"})
    refused = client.post(path, json=forged)
    assert refused.status_code == 400 and refused.json()["error"] == {
        "code": 400, "message": "Corrupted thought signature.", "status": "INVALID_ARGUMENT"}
    _, garbled = gemini_loop({**call, "thoughtSignature": "not base64!"})
    assert "Base64 decoding failed" in client.post(path, json=garbled).text


def test_gemini_2_5_neither_signs_nor_checks(client):
    path, unsigned = gemini_loop({"functionCall": {"name": "get_weather", "args": {}}},
                                 model="gemini-2.5-flash")
    assert client.post(path, json=unsigned).status_code == 200
    first = client.post(path, json={**unsigned, "contents": unsigned["contents"][:1]}).json()
    assert "thoughtSignature" not in str(first)


def test_openai_refuses_a_tool_call_id_over_40_characters_and_an_unanswered_call(client):
    def chat(call_id: str, answered_by: str) -> httpx.Response:
        return client.post("/v1/chat/completions", json={"model": "m1", "messages": [
            {"role": "user", "content": "Read it"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function",
             "function": {"name": "read_file", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": answered_by, "content": "# Costr"}]})
    long_id = "call_" + "a" * 48
    refused = chat(long_id, long_id)
    assert refused.status_code == 400 and refused.json()["error"] == {
        "message": "Invalid 'messages[1].tool_calls[0].id': string too long. Expected a string "
                   "with maximum length 40, but got a string with length 53 instead.",
        "type": "invalid_request_error", "param": "messages[1].tool_calls[0].id",
        "code": "string_above_max_length"}
    unanswered = chat("call_1", "call_2")
    assert unanswered.status_code == 400 and "did not have response messages: call_1" in unanswered.text
    assert chat("call_" + "a" * 35, "call_" + "a" * 35).status_code == 200


def test_anthropic_refuses_tool_use_ids_outside_its_pattern_and_unpaired_results(client):
    def messages(use_id: str, result_id: str) -> httpx.Response:
        return client.post("/v1/messages", json={"model": "m1", "max_tokens": 64, "messages": [
            {"role": "user", "content": "Read it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": use_id, "name": "read_file",
                                               "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": result_id,
                                          "content": "# Costr"}]}]})
    refused = messages("functions.read_file:0", "functions.read_file:0")
    assert refused.status_code == 400 and refused.json()["error"] == {
        "type": "invalid_request_error",
        "message": "messages.1.content.0.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"}
    unpaired = messages("toolu_01", "toolu_02")
    assert unpaired.status_code == 400 and "unexpected `tool_use_id` found" in unpaired.text
    assert messages("toolu_01", "toolu_01").status_code == 200
