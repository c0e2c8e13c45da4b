"""Malformed request bodies found by probing a running Costr (issue 15, hardening): each once
crashed a decoder, or something after it, into a 500 in OpenAI's shape on either surface. Each
must be a 400 in its family's shape that names the field."""
from __future__ import annotations

import httpx
import pytest

from costr.testing import AUTH

ASK = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
CALLED = {"role": "assistant", "content": None}


def chat(**fields) -> dict:
    return {"model": "auto", "messages": ASK, **fields}


def after_a_call(function_call: dict) -> dict:
    return chat(messages=[*ASK, {**CALLED, "function_call": function_call}, *ASK])


def document(source) -> dict:
    content = [{"type": "document", "source": source}, {"type": "text", "text": "sum up"}]
    return {"model": "auto", "max_tokens": 16, "messages": [{"role": "user", "content": content}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from costr.testing import running_gateway
    from costr.testing.fake_upstream import FakeUpstream

    from conftest import LOCAL_POOL, write_config
    with FakeUpstream() as fake:
        files = write_config(tmp_path_factory.mktemp("malformed"), LOCAL_POOL.format(url=fake.url))
        with running_gateway(*files) as base_url, httpx.Client(base_url=base_url, headers=AUTH,
                                                                timeout=10) as client:
            yield client


@pytest.mark.parametrize("body, param", [
    (chat(tools=[{"type": "function", "function": {"name": "f", "description": 5}}]),
     "tools[0].function.description"),
    (chat(tools=[TOOL], tool_choice={"type": "function", "function": "f"}), "tool_choice.function"),
    (chat(tools=[TOOL], tool_choice={"type": "function", "function": ["f"]}), "tool_choice.function"),
    (chat(response_format={"type": "json_schema", "json_schema": "s"}), "response_format.json_schema"),
    (chat(response_format={"type": "json_schema", "json_schema": ["s"]}),
     "response_format.json_schema"),
    (chat(response_format={"type": "json_schema", "json_schema": {"name": 5, "schema": {}}}),
     "response_format.json_schema.name"),
    (chat(functions=[{"name": 5}]), "functions[0].name"),
    (chat(functions=[{"name": "f", "description": 5}]), "functions[0].description"),
    (chat(functions=[{"name": "f"}], function_call={"name": 5}), "function_call.name"),
    (chat(function_call="sometimes"), "function_call"),
    (after_a_call({"name": 5}), "messages[1].function_call.name"),
    (after_a_call({"name": "f", "arguments": 5}), "messages[1].function_call.arguments"),
    (after_a_call("f"), "messages[1].function_call"),
    (chat(messages=[*ASK, {**CALLED, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": 5}}]}, *ASK]),
     "messages[1].tool_calls[0].function.arguments"),
    (chat(stream="yes"), "stream"),
    # found by tests/test_request_fuzz.py: a falsy value of the wrong type once passed as absent
    (chat(messages=[*ASK, {**CALLED, "tool_calls": 0}, *ASK]), "messages[1].tool_calls"),
    (chat(response_format={"type": "json_schema", "json_schema": 0}), "response_format.json_schema"),
])
def test_malformed_openai_bodies_are_400s_naming_the_field(gateway, body, param):
    response = gateway.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert param in error["message"]


@pytest.mark.parametrize("body, field", [
    (document("a text"), "messages.0.content.0.source"),
    (document(["a text"]), "messages.0.content.0.source"),
    (document({"type": "text", "media_type": "text/plain", "data": 5}),
     "messages.0.content.0.source.data"),
    (document({"type": "content", "content": [{"type": "text", "text": 5}]}),
     "messages.0.content.0.source.content.0.text"),
    (document({"type": "content", "content": 5}), "messages.0.content.0.source.content"),
    ({"model": "auto", "max_tokens": 16, "messages": ASK, "stream": "yes"}, "stream"),
    ({"model": "auto", "max_tokens": 16, "messages": [
        {"role": "user", "content": "read a"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": 0}]}]},
     "messages.2.content.0.content"),
])
def test_malformed_anthropic_bodies_are_400s_naming_the_field(gateway, body, field):
    response = gateway.post("/v1/messages", json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["type"] == "error" and answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"].startswith(f"{field}: "), answer


def test_a_document_given_as_content_blocks_or_a_string_still_reads(gateway):
    for content in ([{"type": "text", "text": "Paris "}, {"type": "text", "text": "is big"}],
                    "Paris is big"):
        response = gateway.post("/v1/messages", json=document({"type": "content", "content": content}))
        assert response.status_code == 200, response.text
