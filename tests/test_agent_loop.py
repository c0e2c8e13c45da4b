"""A scripted agent loop, streamed and driven by the `anthropic` SDK, through a Costr whose only
upstream speaks OpenAI: ask, tool_use, tool_result, final answer, as a coding agent runs it."""
from __future__ import annotations

import json

import anthropic
import pytest
from costr.testing import TEST_KEY

READ_FILE = {"name": "read_file", "description": "Read a file from the workspace",
             "input_schema": {"type": "object", "properties": {"path": {"type": "string"}},
                              "required": ["path"]}}
SESSION = {"x-claude-code-session-id": "5f1c9a8e-agent-loop"}


@pytest.fixture
def client(local_gateway):
    return anthropic.Anthropic(api_key=TEST_KEY, base_url=local_gateway, max_retries=0)


def run_turn(client, messages):
    """One streamed turn: the final message, the tool input JSON as it arrived in pieces, and
    the routing facts from the final message_delta."""
    pieces: dict[int, str] = {}
    routing = None
    with client.messages.stream(model="auto", max_tokens=1024, tools=[READ_FILE],
                                messages=messages, extra_headers=SESSION) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                pieces[event.index] = pieces.get(event.index, "") + event.delta.partial_json
            elif event.type == "message_delta":
                routing = event.x_routing
        final = stream.get_final_message()
    return final, pieces, routing


def as_param(message) -> dict:
    return {"role": "assistant", "content": [block.model_dump(exclude_none=True)
                                             for block in message.content]}


def test_ask_tool_use_tool_result_answer(client, fake_upstream):
    messages = [{"role": "user", "content": "Read README.md and tell me what the project is."}]
    first, pieces, routing = run_turn(client, messages)
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use" and call.name == "read_file"
    assert call.input == {"path": "README.md"} and json.loads(pieces[0]) == call.input  # whole
    assert first.usage.input_tokens > 0

    messages += [as_param(first), {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": "Costr is a self-hosted LLM cost router."}]}]
    final, _, loop_routing = run_turn(client, messages)
    assert final.stop_reason == "end_turn"
    assert [block.type for block in final.content] == ["text"]
    assert final.content[0].text == "Done: Costr is a self-hosted LLM cost router."
    assert loop_routing["routed_model"] == routing["routed_model"]  # the loop keeps its model

    sent = fake_upstream.requests[-1].body["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id,
                        "content": "Costr is a self-hosted LLM cost router."}


def test_two_parallel_tool_calls_then_an_answer(client, fake_upstream):
    fake_upstream.enqueue({"text": "Reading both files.", "tool_calls": [
        {"name": "read_file", "arguments": {"path": "README.md"}},
        {"name": "read_file", "arguments": {"path": "pyproject.toml"}}]})
    messages = [{"role": "user", "content": "Compare README.md with pyproject.toml."}]
    first, pieces, _ = run_turn(client, messages)
    assert first.stop_reason == "tool_use"
    text, *calls = first.content
    assert text.type == "text" and text.text == "Reading both files."
    assert [(c.type, c.input) for c in calls] == [("tool_use", {"path": "README.md"}),
                                                  ("tool_use", {"path": "pyproject.toml"})]
    assert {json.loads(p)["path"] for p in pieces.values()} == {"README.md", "pyproject.toml"}
    assert calls[0].id != calls[1].id

    messages += [as_param(first), {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": calls[0].id, "content": "# Costr"},
        {"type": "tool_result", "tool_use_id": calls[1].id, "content": [{"type": "text", "text": "[project]"}]}]}]
    final, _, _ = run_turn(client, messages)
    assert final.stop_reason == "end_turn" and final.content[0].text == "Done: [project]"
    sent = fake_upstream.requests[-1].body["messages"]
    assert [(m["role"], m.get("tool_call_id")) for m in sent[-2:]] == [
        ("tool", calls[0].id), ("tool", calls[1].id)]
