"""OpenAI's Responses API (`POST /v1/responses`), driven by the real `openai` SDK against a
running Costr: what the OpenAI Agents SDK and the Vercel AI SDK's `openai(...)` models call."""
from __future__ import annotations

import json

import httpx
import openai
import pytest
from costr.testing import AUTH, TEST_KEY, running_gateway

from conftest import write_config
from test_cross_provider_tool_loops import KEY_ENV, POOL

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
ROUTING = {"requested_model", "routed_model", "routed_provider", "tier", "confidence",
           "savings_percent"}


@pytest.fixture
def client(local_gateway):
    return openai.OpenAI(api_key=TEST_KEY, base_url=f"{local_gateway}/v1", max_retries=0)


def calls_of(response) -> list:
    return [item for item in response.output if item.type == "function_call"]


def test_a_string_input_with_instructions_is_answered_and_routed(client, local_gateway,
                                                                  fake_upstream):
    raw = client.responses.with_raw_response.create(
        model="auto", input="Reply exactly: ok", instructions="You are terse.")
    response = raw.parse()
    assert response.output_text == "ok" and response.status == "completed"
    assert response.id.startswith("resp_") and response.model == "local-mini"
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert ROUTING <= set(response.model_extra["x_routing"])
    assert raw.headers["x-costr-routed-model"] == "local-mini"
    sent = fake_upstream.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "You are terse."}
    assert sent[-1]["content"] == "Reply exactly: ok"


def test_a_tool_loop_sending_the_items_back(client):
    first = client.responses.create(model="auto", input="What is the weather in Paris?",
                                    tools=[WEATHER])
    (call,) = calls_of(first)
    assert call.name == "get_weather" and call.arguments == '{"city":"test"}'
    assert call.id.startswith("fc_") and call.call_id
    history = [{"role": "user", "content": "What is the weather in Paris?"},
               *[item.model_dump(exclude_none=True) for item in first.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}]
    second = client.responses.create(model="auto", input=history, tools=[WEATHER])
    assert second.output_text == "Done: sunny, 21 C"


def test_a_tool_loop_through_previous_response_id(client, fake_upstream):
    first = client.responses.create(model="auto", input="What is the weather in Oslo?",
                                    tools=[WEATHER])
    (call,) = calls_of(first)
    second = client.responses.create(
        model="auto", previous_response_id=first.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "snow"}])
    assert second.output_text == "Done: snow" and second.previous_response_id == first.id
    sent = fake_upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[0]["content"] == "What is the weather in Oslo?"
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    # and the conversation goes on from the second answer
    third = client.responses.create(model="auto", previous_response_id=second.id,
                                    input="Reply exactly: thanks")
    assert third.output_text == "thanks"
    assert len(fake_upstream.requests[-1].body["messages"]) == 5


def test_output_items_can_be_sent_back_by_reference(client):
    first = client.responses.create(model="auto", input="Weather in Rome?", tools=[WEATHER])
    (call,) = calls_of(first)
    second = client.responses.create(model="auto", tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Rome?"}, {"type": "item_reference", "id": call.id},
        {"type": "function_call_output", "call_id": call.call_id, "output": "hot"}])
    assert second.output_text == "Done: hot"


def test_store_false_keeps_nothing_to_continue_from(client):
    first = client.responses.create(model="auto", input="Reply exactly: a", store=False)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="auto", input="more", previous_response_id=first.id)
    assert err.value.body["code"] == "previous_response_not_found"
    assert err.value.body["param"] == "previous_response_id"


def test_a_streamed_answer_follows_the_responses_event_sequence(client):
    with client.responses.stream(model="auto", input="Reply exactly: one two three four") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == "one two three four"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.output_text == "one two three four" and final.usage.output_tokens > 0
    assert ROUTING <= set(events[-1].response.model_extra["x_routing"])


def test_on_the_wire_each_event_is_named_and_there_is_no_done_line(local_gateway):
    body = {"model": "auto", "input": "Reply exactly: one two", "stream": True}
    with httpx.stream("POST", f"{local_gateway}/v1/responses", json=body, headers=AUTH,
                      timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-costr-routed-model"] == "local-mini"
        blocks = response.read().decode().strip().split("\n\n")
    for block in blocks:
        name, data = block.split("\n")
        assert name == f"event: {json.loads(data.removeprefix('data: '))['type']}"
    assert blocks[-1].startswith("event: response.completed") and "[DONE]" not in blocks[-1]


def test_a_streamed_tool_call_then_its_result_by_previous_response_id(client):
    with client.responses.stream(model="auto", input="Weather in Lima?", tools=[WEATHER]) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    (call,) = calls_of(first)
    assert call.arguments == '{"city":"test"}'
    with client.responses.stream(model="auto", previous_response_id=first.id, tools=[WEATHER],
                                 input=[{"type": "function_call_output", "call_id": call.call_id,
                                         "output": "fog"}]) as stream:
        second = stream.get_final_response()
    assert second.output_text == "Done: fog"


def test_a_stream_the_upstream_cuts_ends_in_error_then_response_failed(client, fake_upstream):
    fake_upstream.set_fault("truncate", count=1)
    with client.responses.stream(model="auto", input="Reply exactly: a b c d e f") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError, match="response.completed"):
            stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-2:] == ["error", "response.failed"]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.message == events[-2].message
    assert failed.id == events[0].response.id
    with pytest.raises(openai.BadRequestError) as err:   # a failed answer is not kept
        client.responses.create(model="auto", input="go on", previous_response_id=failed.id)
    assert err.value.body["code"] == "previous_response_not_found"


def test_max_output_tokens_bounds_the_upstream_answer(client, fake_upstream):
    response = client.responses.create(model="auto", input="hello", max_output_tokens=16)
    assert response.max_output_tokens == 16
    assert fake_upstream.requests[-1].body["max_tokens"] == 16


def test_a_bad_key_is_openais_authentication_error(local_gateway):
    stranger = openai.OpenAI(api_key="cr-not-a-key", base_url=f"{local_gateway}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        stranger.responses.create(model="auto", input="hello")
    assert err.value.status_code == 401 and err.value.body["type"] == "authentication_error"


@pytest.mark.parametrize("body, param", [
    ({"model": "auto"}, "input"),
    ({"model": "auto", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"model": "auto", "input": "x", "previous_response_id": "resp_unknown"}, "previous_response_id"),
    ({"model": "auto", "input": "x", "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "auto", "input": "x", "background": True}, "background"),
    ({"model": "auto", "input": [{"type": "computer_call_output"}]}, "input[0].type"),
    ({"model": "auto", "input": [{"type": "function_call_output", "output": "x"}]},
     "input[0].call_id"),
    ({"model": "auto", "input": [{"type": "item_reference", "id": "fc_unknown"}]}, "input[0].id"),
    ({"model": "auto", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "auto", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "auto", "input": []}, "input"),
])
def test_bad_input_is_a_400_naming_the_field(local_gateway, body, param):
    response = httpx.post(f"{local_gateway}/v1/responses", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_it_is_accounted_and_cached_like_chat_completions(client, local_gateway, fake_upstream):
    first = client.responses.create(model="auto", input="Reply exactly: cached answer")
    again = client.responses.create(model="auto", input="Reply exactly: cached answer")
    assert again.output_text == "cached answer" and again.id != first.id
    assert first.model_extra["x_routing"]["cache_hit"] is False
    assert again.model_extra["x_routing"]["cache_hit"] is True
    records = httpx.get(f"{local_gateway}/v1/requests?limit=2", headers=AUTH, timeout=10).json()
    newest, older = records["data"]
    assert newest["family"] == older["family"] == "openai-responses"
    assert newest["cache_hit"] is True and older["cache_hit"] is False
    assert older["input_tokens"] == first.usage.input_tokens
    assert older["output_tokens"] == first.usage.output_tokens


def test_dry_run_recognises_a_responses_body(local_gateway):
    response = httpx.post(f"{local_gateway}/v1/router/dry-run", headers=AUTH, timeout=10,
                          json={"model": "auto", "input": "Reply exactly: ok"})
    assert response.status_code == 200 and response.json()["format"] == "openai-responses"


@pytest.fixture
def mixed_gateway(tmp_path, fake_upstream, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")
    with running_gateway(*write_config(tmp_path, POOL.format(url=fake_upstream.url,
                                                             env=KEY_ENV))) as base_url:
        yield base_url


@pytest.mark.parametrize("model", ["claude-large", "gemini-3-flash", "local-standard"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_loop_reaches_each_upstream_type(mixed_gateway, fake_upstream, model, stream):
    client = openai.OpenAI(api_key=TEST_KEY, base_url=f"{mixed_gateway}/v1", max_retries=0)

    def ask(**request):
        if not stream:
            return client.responses.create(model=model, tools=[WEATHER], **request)
        with client.responses.stream(model=model, tools=[WEATHER], **request) as events:
            return events.get_final_response()
    first = ask(input="Weather in Kyoto?")
    (call,) = calls_of(first)
    second = ask(input=[{"role": "user", "content": "Weather in Kyoto?"},
                        *[item.model_dump(exclude_none=True) for item in first.output],
                        {"type": "function_call_output", "call_id": call.call_id,
                         "output": "cherry blossoms"}])
    assert second.output_text == "Done: cherry blossoms"
    assert second.model_extra["x_routing"]["routed_model"] == model
