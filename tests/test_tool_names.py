"""Tool names OpenAI refuses (over 64 characters, or with dots) from Anthropic clients: sent to
an OpenAI-format upstream as stable stand-ins, and given back to the client as they were."""
from __future__ import annotations

import anthropic

from costr.testing import TEST_KEY
from costr_openai.tool_names import wire_name

LONG = "mcp__workspace-filesystem__read_text_file_with_line_numbers_and_encoding_detection"
DOTTED = "files.read"
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


def sdk(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=TEST_KEY, base_url=base_url, max_retries=0)


def sent_names(fake) -> list[str]:
    return [t["function"]["name"] for t in fake.requests[-1].body["tools"]]


def test_stand_ins_fit_are_stable_and_distinct():
    other = LONG.replace("encoding", "charset")
    assert len(wire_name(LONG)) == 64 and wire_name(LONG) == wire_name(LONG)
    assert wire_name(other) != wire_name(LONG) and wire_name(other)[:40] == wire_name(LONG)[:40]
    assert wire_name(DOTTED).startswith("files_read_") and wire_name("read_file") == "read_file"


def test_a_long_tool_name_round_trips(local_gateway, fake_upstream):
    message = sdk(local_gateway).messages.create(
        model="auto", max_tokens=256, tools=[{"name": LONG, "input_schema": SCHEMA}],
        messages=[{"role": "user", "content": "Show me the readme"}])
    assert sent_names(fake_upstream) == [wire_name(LONG)]
    (call,) = [b for b in message.content if b.type == "tool_use"]
    assert message.stop_reason == "tool_use" and call.name == LONG and "path" in call.input

    # The next turn replays that call: the upstream sees the same stand-in in both places.
    follow_up = sdk(local_gateway).messages.create(
        model="auto", max_tokens=256, tools=[{"name": LONG, "input_schema": SCHEMA}],
        messages=[{"role": "user", "content": "Show me the readme"},
                  {"role": "assistant", "content": [c.model_dump() for c in message.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                "content": "# Costr"}]}])
    replayed = [m for m in fake_upstream.requests[-1].body["messages"] if m.get("tool_calls")]
    assert replayed[0]["tool_calls"][0]["function"]["name"] == wire_name(LONG)
    assert follow_up.stop_reason == "end_turn" and "# Costr" in follow_up.content[0].text


def test_a_dotted_tool_name_round_trips_in_a_stream(local_gateway, fake_upstream):
    with sdk(local_gateway).messages.stream(
            model="auto", max_tokens=256, tools=[{"name": DOTTED, "input_schema": SCHEMA}],
            tool_choice={"type": "tool", "name": DOTTED},
            messages=[{"role": "user", "content": "Show me the readme"}]) as stream:
        final = stream.get_final_message()
    assert sent_names(fake_upstream) == [wire_name(DOTTED)]
    assert fake_upstream.requests[-1].body["tool_choice"]["function"]["name"] == wire_name(DOTTED)
    assert [(b.type, b.name) for b in final.content] == [("tool_use", DOTTED)]


def test_the_fake_refuses_what_openai_refuses(fake_upstream):
    import httpx
    reply = httpx.post(f"{fake_upstream.url}/v1/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": LONG, "parameters": SCHEMA}}]})
    assert reply.status_code == 400 and "maximum length 64" in reply.json()["error"]["message"]
