"""The OpenAI Chat Completions surface, driven by the real `openai` SDK against a running
Costr whose upstream is a local OpenAI-compatible server."""
from __future__ import annotations

import json

import openai
import pytest
from costr.testing import AUTH, TEST_KEY

SIX_FIELDS = {"requested_model", "routed_model", "routed_provider", "tier", "confidence",
              "savings_percent"}
READ_FILE = {"type": "function", "function": {
    "name": "read_file", "description": "Read a file from the workspace",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}},
                   "required": ["path"]}}}
HARD_PROMPT = "Prove that for every prime p > 3, p^2 - 1 is divisible by 24."


@pytest.fixture
def client(local_gateway):
    return openai.OpenAI(api_key=TEST_KEY, base_url=f"{local_gateway}/v1", max_retries=0)


def test_seed_example_prints_answer_and_routing(client, fake_upstream):
    completion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Reply exactly: ok"}], max_tokens=32)
    assert completion.choices[0].message.content == "ok"
    routing = completion.x_routing
    assert SIX_FIELDS <= set(routing)
    assert routing["requested_model"] == "auto"
    assert routing["routed_model"] == "local-mini" and routing["tier"] == "budget"
    assert routing["routed_provider"] == "local"
    assert 0 < routing["confidence"] <= 1
    # 0.1/0.4 against the 3.0/15.0 baseline on the same usage
    assert 96 < routing["savings_percent"] < 98
    assert routing["policy"] == "balanced" and 0 <= routing["complexity"] <= 1
    sent = fake_upstream.requests[-1].body
    assert sent["model"] == "local-mini" and sent["max_tokens"] == 32


def test_routing_facts_are_also_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Reply exactly: ok"}])
    assert raw.headers["x-costr-routed-model"] == "local-mini"
    assert raw.headers["x-costr-tier"] == "budget"
    assert raw.headers["x-costr-policy"] == "balanced"
    assert float(raw.headers["x-costr-savings-percent"]) == raw.parse().x_routing["savings_percent"]


def test_stream_with_usage_ends_with_routing_and_done(client):
    chunks = list(client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Reply exactly: streaming works"}],
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streaming works"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    final = chunks[-1]
    assert final.choices == [] and final.usage.completion_tokens > 0
    assert SIX_FIELDS <= set(final.x_routing)
    assert all(not getattr(c, "x_routing", None) for c in chunks[:-1])


def test_stream_without_usage_carries_routing_on_finish_chunk(client, fake_upstream):
    chunks = list(client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Reply exactly: hi"}], stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].x_routing["routed_model"] == "local-mini"
    # Costr asks the upstream for usage anyway, to account for the request.
    assert fake_upstream.requests[-1].body["stream_options"] == {"include_usage": True}


def test_tool_call_is_well_formed(client):
    completion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Show me the readme"}],
        tools=[READ_FILE], tool_choice="auto")
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "read_file" and call.id
    assert json.loads(call.function.arguments) == {"path": "README.md"}


def test_streamed_tool_call_arrives_whole(client):
    stream = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Show me the readme"}],
        tools=[READ_FILE], stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
                entry["id"] = tc.id or entry["id"]
                if tc.function and tc.function.name:
                    entry["name"] = tc.function.name
                entry["args"] += (tc.function.arguments or "") if tc.function else ""
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "read_file" and calls[0]["id"]
    assert json.loads(calls[0]["args"]) == {"path": "README.md"}


def test_tool_loop_continues_with_tool_result(client):
    messages = [{"role": "user", "content": "Show me the readme"}]
    first = client.chat.completions.create(model="auto", messages=messages, tools=[READ_FILE])
    call = first.choices[0].message.tool_calls[0]
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "# Costr\nA cost router."}]
    second = client.chat.completions.create(model="auto", messages=messages, tools=[READ_FILE])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith("Done: # Costr")


def test_quality_picks_a_higher_tier_than_low_on_a_hard_prompt(client):
    tiers = {}
    for priority in ("low", "balanced", "quality"):
        completion = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": HARD_PROMPT}],
            extra_headers={"x-cost-priority": priority})
        tiers[priority] = completion.x_routing["tier"]
        assert completion.x_routing["policy"] == priority
    order = ["budget", "standard", "premium"]
    assert order.index(tiers["quality"]) > order.index(tiers["low"])
    assert order.index(tiers["low"]) <= order.index(tiers["balanced"]) <= order.index(tiers["quality"])


def test_explicit_model_is_not_routed_but_is_reported(client, fake_upstream):
    completion = client.chat.completions.create(
        model="local-large", messages=[{"role": "user", "content": "Reply exactly: ok"}])
    assert completion.x_routing["routed_model"] == "local-large"
    assert completion.x_routing["requested_model"] == "local-large"
    assert completion.x_routing["savings_percent"] == 0.0
    assert fake_upstream.requests[-1].body["model"] == "local-large"


def test_images_route_to_a_vision_model(client, fake_upstream):
    png = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
           "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    completion = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Reply exactly: a pixel"},
        {"type": "image_url", "image_url": {"url": png}}]}])
    assert completion.x_routing["routed_model"] == "local-standard"  # the budget model has no vision
    sent = fake_upstream.requests[-1].body["messages"][0]["content"]
    assert sent[1] == {"type": "image_url", "image_url": {"url": png}}


def test_parameters_reach_the_upstream(client, fake_upstream):
    client.chat.completions.create(
        model="auto", messages=[{"role": "system", "content": "Be terse."},
                                {"role": "user", "content": "Reply exactly: ok"}],
        temperature=0.2, top_p=0.9, stop=["\n\n"], max_completion_tokens=64, user="u-42",
        response_format={"type": "json_object"}, parallel_tool_calls=False, tools=[READ_FILE],
        extra_body={"seed": 7})
    sent = fake_upstream.requests[-1].body
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9 and sent["stop"] == ["\n\n"]
    assert sent["user"] == "u-42" and sent["response_format"] == {"type": "json_object"}
    assert sent["parallel_tool_calls"] is False and sent["seed"] == 7
    assert sent["max_tokens"] == 64 and "max_completion_tokens" not in sent  # not a reasoning model
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}


@pytest.mark.parametrize("kwargs, status, param", [
    ({"model": "gpt-nonexistent"}, 404, "model"),
    ({"messages": []}, 400, "messages"),
    ({"temperature": 5}, 400, "temperature"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages[0].role"),
])
def test_client_mistakes_are_clear_4xx(client, kwargs, status, param):
    args = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**args)
    assert info.value.status_code == status
    error = info.value.body
    assert error["param"] == param and error["message"] and error["type"]


def test_bad_cost_priority_lists_allowed_values(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-cost-priority": "cheapest"})
    message = info.value.body["message"]
    assert "low" in message and "balanced" in message and "quality" in message


def test_stream_without_usage_has_no_usage_fields_at_all(local_gateway):
    import httpx
    with httpx.stream("POST", f"{local_gateway}/v1/chat/completions", timeout=20, json={
            "model": "auto", "stream": True,
            "messages": [{"role": "user", "content": "Reply exactly: hi"}]}, headers=AUTH) as response:
        body = response.read().decode()
    assert '"usage"' not in body  # Costr asked the upstream for usage, the client did not
    assert body.endswith("data: [DONE]\n\n")


def test_a_system_message_mid_conversation_keeps_its_place(client, fake_upstream):
    client.chat.completions.create(model="auto", messages=[
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."}, {"role": "system", "content": "Now be formal."},
        {"role": "user", "content": "Reply exactly: ok"}])
    roles = [m["role"] for m in fake_upstream.requests[-1].body["messages"]]
    assert roles == ["system", "user", "assistant", "system", "user"]
