"""Tool call ids a provider refuses (OpenAI: over 40 characters; Anthropic: outside
`^[a-zA-Z0-9_-]+$`) go upstream as stable stand-ins, the call and its result still paired,
whether Costr translates the request or forwards the client's own body."""
from __future__ import annotations

import copy
import json
import re

import pytest

from costr.wire.conversation import ChatRequest, Message, Text, ToolCall, ToolResult
from costr.wire.providers import ModelSpec, Price
from costr.wire.tool_call_ids import ToolCallIdRule
from costr_anthropic import client_request as anthropic_client
from costr_anthropic.passthrough import passthrough_request
from costr_anthropic.wire_request import TOOL_CALL_IDS as ANTHROPIC
from costr_anthropic.wire_request import request_to_wire as anthropic_body
from costr_openai import chat_request as openai_client
from costr_openai.upstream_request import TOOL_CALL_IDS as OPENAI
from costr_openai.upstream_request import request_to_wire as openai_body

GEMINI_ID = "call_0123456789abcdef01234567__sig__" + "CrsFPJeLIV7qmnmglBCbA-jWeEKN_zH" * 30
DOTTED = "functions.read_file:0"
MODEL = ModelSpec(id="m", provider="p", tier="budget", price=Price(1, 1), context_window=8000,
                  max_output_tokens=1024, capabilities=frozenset({"tools"}))


def test_stand_ins_fit_the_rule_and_are_stable_and_distinct():
    long_twin = GEMINI_ID[:-1] + "x"
    assert len(OPENAI.wire_id(GEMINI_ID)) == 40 and OPENAI.wire_id(GEMINI_ID) == OPENAI.wire_id(GEMINI_ID)
    assert OPENAI.wire_id(long_twin) != OPENAI.wire_id(GEMINI_ID)
    assert OPENAI.wire_id(DOTTED) == DOTTED and OPENAI.wire_id("call_" + "a" * 35) == "call_" + "a" * 35
    assert re.fullmatch(r"functions_read_file_0_[0-9a-f]{16}", ANTHROPIC.wire_id(DOTTED))
    assert ANTHROPIC.wire_id(GEMINI_ID) == GEMINI_ID  # no length limit documented
    assert ANTHROPIC.wire_id("toolu_01A09q90qw90lq917835lq9") == "toolu_01A09q90qw90lq917835lq9"
    assert re.fullmatch(r"_[0-9a-f]{16}", ANTHROPIC.wire_id(""))


def test_a_limit_leaving_no_room_for_a_stand_in_is_refused():
    with pytest.raises(ValueError):
        ToolCallIdRule(limit=17)


def loop(call_id: str) -> ChatRequest:
    return ChatRequest(messages=[
        Message("user", [Text("Read the readme")]),
        Message("assistant", [ToolCall(call_id, "read_file", '{"path": "README.md"}')]),
        Message("user", [ToolResult(call_id, [Text("# Costr")])])], max_tokens=256)


def test_openai_gets_one_short_stand_in_for_the_call_and_its_result():
    messages = openai_body(loop(GEMINI_ID), MODEL, stream=False)["messages"]
    (call,) = messages[1]["tool_calls"]
    assert call["id"] == OPENAI.wire_id(GEMINI_ID) and messages[2]["tool_call_id"] == call["id"]


def test_openai_clients_own_body_is_forwarded_with_the_stand_ins_and_left_unchanged():
    raw = {"model": "auto", "messages": [
        {"role": "user", "content": "Read the readme"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": GEMINI_ID, "type": "function", "function": {"name": "read_file", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": GEMINI_ID, "content": "# Costr"}]}
    request = openai_client.decode_request(json.dumps(raw).encode())
    before = copy.deepcopy(request.raw)
    messages = openai_body(request, MODEL, stream=True)["messages"]
    assert messages[1]["tool_calls"][0]["id"] == OPENAI.wire_id(GEMINI_ID) == messages[2]["tool_call_id"]
    assert request.raw == before  # the client's body, kept for the answer and the cache


def test_anthropic_gets_one_stand_in_for_the_tool_use_and_its_result():
    messages = anthropic_body(loop(DOTTED), MODEL)["messages"]
    (use,) = messages[1]["content"]
    (result,) = messages[2]["content"]
    assert use["id"] == ANTHROPIC.wire_id(DOTTED) == result["tool_use_id"]


def test_anthropic_clients_own_body_is_forwarded_with_the_stand_ins_and_left_unchanged():
    raw = {"model": "auto", "max_tokens": 256, "messages": [
        {"role": "user", "content": "Read the readme"},
        {"role": "assistant", "content": [{"type": "text", "text": "Reading."}, {
            "type": "tool_use", "id": DOTTED, "name": "read_file", "input": {"path": "README.md"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": DOTTED, "content": "# Costr"},
                                     {"type": "text", "text": "Go on."}]}]}
    request = anthropic_client.decode_request(json.dumps(raw).encode())
    before = copy.deepcopy(request.raw)
    body, _ = passthrough_request(request.raw, MODEL, {})
    text, use = body["messages"][1]["content"]
    result, go_on = body["messages"][2]["content"]
    assert use["id"] == ANTHROPIC.wire_id(DOTTED) == result["tool_use_id"]
    assert (text, go_on) == (raw["messages"][1]["content"][0], raw["messages"][2]["content"][1])
    assert request.raw == before
