"""Tool names a provider refuses (OpenAI and Gemini: over 64 characters; OpenAI: dots) from
Anthropic clients: sent as stable stand-ins, and given back to the client as they were."""
from __future__ import annotations

import anthropic
import httpx
import pytest

from costr.testing import TEST_KEY, running_gateway
from costr_gemini.wire import TOOL_NAMES as GEMINI
from costr_openai.upstream_request import TOOL_NAMES as OPENAI

from conftest import LOCAL_POOL, write_config
from test_messages_api import GEMINI_POOL

LONG = "mcp__workspace-filesystem__read_text_file_with_line_numbers_and_encoding_detection"
DOTTED = "files.read"
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


@pytest.fixture(params=["openai", "gemini"])
def upstream(request, tmp_path, fake_upstream):
    """(base URL of a running Costr, its fake upstream, the provider's tool-name rule)."""
    pool, rule = ((LOCAL_POOL, OPENAI) if request.param == "openai" else (GEMINI_POOL, GEMINI))
    with running_gateway(*write_config(tmp_path, pool.format(url=fake_upstream.url))) as base:
        yield base, fake_upstream, rule


def sdk(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=TEST_KEY, base_url=base_url, max_retries=0)


def sent_names(fake) -> list[str]:
    body = fake.requests[-1].body
    if "messages" in body:
        return [t["function"]["name"] for t in body["tools"]]
    return [d["name"] for t in body["tools"] for d in t["functionDeclarations"]]


def test_stand_ins_fit_are_stable_and_distinct():
    other = LONG.replace("encoding", "charset")
    for rule in (OPENAI, GEMINI):
        assert len(rule.wire_name(LONG)) == 64 and rule.wire_name(LONG) == rule.wire_name(LONG)
        assert rule.wire_name(other) != rule.wire_name(LONG)
        assert rule.wire_name(other)[:40] == rule.wire_name(LONG)[:40]
        assert rule.wire_name("read_file") == "read_file"
    assert OPENAI.wire_name(DOTTED).startswith("files_read_") and GEMINI.wire_name(DOTTED) == DOTTED
    assert GEMINI.wire_name("9lives").startswith("_9lives_")   # Gemini: a letter or _ first


def test_a_long_tool_name_round_trips(upstream):
    base, fake, rule = upstream
    message = sdk(base).messages.create(
        model="auto", max_tokens=256, tools=[{"name": LONG, "input_schema": SCHEMA}],
        messages=[{"role": "user", "content": "Show me the readme"}])
    assert sent_names(fake) == [rule.wire_name(LONG)]
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert message.stop_reason == "tool_use" and call.name == LONG and "path" in call.input

    # The next turn replays that call: the upstream sees the same stand-in in every place.
    follow_up = sdk(base).messages.create(
        model="auto", max_tokens=256, tools=[{"name": LONG, "input_schema": SCHEMA}],
        messages=[{"role": "user", "content": "Show me the readme"},
                  {"role": "assistant", "content": [c.model_dump() for c in message.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                "content": "# Costr"}]}])
    sent = str(fake.requests[-1].body)
    assert LONG not in sent and sent.count(rule.wire_name(LONG)) >= 2
    assert follow_up.stop_reason == "end_turn" and "# Costr" in follow_up.content[0].text


def test_a_long_tool_name_round_trips_in_a_stream(upstream):
    base, fake, rule = upstream
    with sdk(base).messages.stream(
            model="auto", max_tokens=256, tools=[{"name": LONG, "input_schema": SCHEMA}],
            tool_choice={"type": "tool", "name": LONG},
            messages=[{"role": "user", "content": "Show me the readme"}]) as stream:
        final = stream.get_final_message()
    assert sent_names(fake) == [rule.wire_name(LONG)] and LONG not in str(fake.requests[-1].body)
    assert [(b.type, b.name) for b in final.content] == [("tool_use", LONG)]


def test_a_dotted_name_is_replaced_only_where_refused(upstream):
    base, fake, rule = upstream
    message = sdk(base).messages.create(
        model="auto", max_tokens=256, tools=[{"name": DOTTED, "input_schema": SCHEMA}],
        messages=[{"role": "user", "content": "Show me the readme"}])
    assert sent_names(fake) == [rule.wire_name(DOTTED)]
    assert [b.name for b in message.content if b.type == "tool_use"] == [DOTTED]


def test_the_fakes_refuse_what_the_providers_refuse(fake_upstream):
    openai_reply = httpx.post(f"{fake_upstream.url}/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": LONG, "parameters": SCHEMA}}]})
    assert openai_reply.status_code == 400
    assert "maximum length 64" in openai_reply.json()["error"]["message"]
    gemini_reply = httpx.post(f"{fake_upstream.url}/v1beta/models/m:generateContent", json={
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": LONG}]}]})
    assert gemini_reply.status_code == 400 and "Invalid function name" in gemini_reply.text
