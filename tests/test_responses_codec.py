"""The Responses API codec without a server: decoding odd inputs, encoding answers and streams
the `openai` SDK's own types and stream reader accept, and what the response store keeps."""
from __future__ import annotations

import orjson
import pytest
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent

from costr import (BlockStart, BlockStop, ChatResponse, CostrError, Frame, InvalidRequest,
                   MessageEnd, MessageStart, RoutingFacts, Text, TextDelta, Thinking,
                   ThinkingDelta, ToolArgumentsDelta, ToolCall, Usage)
from costr_openai.response_store import ResponseStore
from costr_openai.responses_format import OpenAIResponsesFormat

FACTS = RoutingFacts("auto", "local-mini", "local", "budget", 0.9, 50.0)
USAGE = Usage(input_tokens=12, output_tokens=7, cached_input_tokens=4, reasoning_tokens=3)


def decode(fmt: OpenAIResponsesFormat, **body):
    return fmt.decode_request(orjson.dumps({"model": "auto", **body}), {})


def events_of(stream: bytes) -> list[dict]:
    """The `data` of each SSE event, checked against its `event:` line."""
    events = []
    for block in stream.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            payload = orjson.loads(data.removeprefix("data: "))
            assert name == f"event: {payload['type']}"
            events.append(payload)
    return events


def read_like_the_sdk(events: list[dict]) -> ResponseStreamState:
    """Feed the events to the SDK's own stream accumulator (what `responses.stream` uses)."""
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in events:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))
    return state


@pytest.mark.parametrize("item, param", [
    ({"type": "reasoning", "summary": 5}, "input[0].summary"),
    ({"role": "user", "content": [{"type": ["input_text"]}]}, "input[0].content[0].type"),
    ({"role": "user", "content": [{"type": "input_image", "image_url": {"url": "x"}}]},
     "input[0].content[0].image_url"),
    ({"role": "user", "content": [{"type": "input_image", "image_url": "https://x/a.png",
                                   "detail": "max"}]}, "input[0].content[0].detail"),
])
def test_odd_input_items_are_a_400_naming_the_field(item, param):
    with pytest.raises(InvalidRequest) as err:
        decode(OpenAIResponsesFormat(), input=[item])
    assert err.value.param == param and err.value.status == 400


def test_items_become_one_conversation():
    request = decode(OpenAIResponsesFormat(), instructions="Be brief.", input=[
        {"role": "developer", "content": "Use metric units."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Hm."}]},
        {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "opaque"},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1",
         "output": [{"type": "input_text", "text": "42"}]}])
    assert [p.text for p in request.system] == ["Be brief.", "Use metric units."]
    assert [m.role for m in request.messages] == ["user", "assistant", "user"]
    assert request.messages[1].parts == [Thinking("Hm."), ToolCall("call_1", "f", "{}")]
    assert request.messages[2].parts[0].content == [Text("42")]


def test_an_answer_is_a_response_the_sdk_validates():
    fmt = OpenAIResponsesFormat()
    request = decode(fmt, input="hi", tools=[{"type": "function", "name": "f",
                                              "parameters": {"type": "object"}}])
    answer = ChatResponse("x", "m", [Thinking("Let me see.", "sig"), Text("Calling."),
                                     ToolCall("call_9", "f", '{"a":1}')], "tool_use", usage=USAGE)
    body = fmt.encode_response(answer, FACTS, request)
    response = Response.model_validate(body)
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    assert response.output[0].summary[0].text == "Let me see."
    assert response.output_text == "Calling." and response.status == "completed"
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 3
    assert response.usage.total_tokens == 19 and body["x_routing"]["routed_model"] == "local-mini"
    # the whole answer is kept, the thinking's signature included, for previous_response_id
    assert fmt.store.conversation(response.id)[-1].parts[0] == Thinking("Let me see.", "sig")


def test_an_answer_cut_at_max_output_tokens_is_incomplete():
    fmt = OpenAIResponsesFormat()
    request = decode(fmt, input="hi", max_output_tokens=5)
    body = fmt.encode_response(ChatResponse("x", "m", [Text("partial")], "max_tokens"), FACTS,
                               request)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}


def answer_frames(stop_reason: str = "end_turn", end: bool = True) -> list[Frame]:
    events = [MessageStart("up", "local-mini"),
              BlockStart(0, "thinking"), ThinkingDelta(0, "Think"), ThinkingDelta(0, "ing."),
              ThinkingDelta(0, signature="sig"), BlockStop(0),
              BlockStart(1, "text"), TextDelta(1, "Hel"), TextDelta(1, "lo"), BlockStop(1),
              BlockStart(2, "tool_call", tool_call_id="call_1", tool_name="f"),
              ToolArgumentsDelta(2, '{"a":'), ToolArgumentsDelta(2, "1}"), BlockStop(2)]
    if end:
        events.append(MessageEnd(stop_reason, USAGE))
    return [Frame(events[:5]), Frame(events[5:])]


def test_a_stream_the_sdk_accumulates_with_reasoning_text_and_a_call():
    fmt = OpenAIResponsesFormat()
    encoder = fmt.stream_encoder(decode(fmt, input="hi", stream=True))
    stream = b"".join(encoder.encode(frame) for frame in answer_frames())
    events = events_of(stream + encoder.finish(FACTS, USAGE))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert "response.reasoning_summary_text.delta" in kinds and kinds[-1] == "response.completed"
    final = read_like_the_sdk(events)._completed_response
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    assert final.output_text == "Hello" and final.output[2].arguments == '{"a":1}'
    assert final.usage.output_tokens == 7 and events[-1]["response"]["x_routing"]
    kept = fmt.store.conversation(final.id)[-1].parts
    assert kept[0] == Thinking("Thinking.", "sig") and kept[1] == Text("Hello")


def test_a_stream_cut_at_max_output_tokens_ends_incomplete():
    fmt = OpenAIResponsesFormat()
    encoder = fmt.stream_encoder(decode(fmt, input="hi", stream=True))
    stream = b"".join(encoder.encode(frame) for frame in answer_frames("max_tokens"))
    last = events_of(stream + encoder.finish(FACTS, USAGE))[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_failure_before_any_output_still_opens_the_response_first():
    fmt = OpenAIResponsesFormat()
    encoder = fmt.stream_encoder(decode(fmt, input="hi", stream=True))
    encoder.encode(Frame([MessageStart("up", "local-mini")]))
    events = events_of(encoder.fail(CostrError("the upstream broke off")))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "error",
                                           "response.failed"]
    read_like_the_sdk(events)   # the SDK's reader takes it: no "expected response.created"
    failed = Response.model_validate(events[-1]["response"])
    assert failed.status == "failed" and failed.error.message == "the upstream broke off"
    assert fmt.store.conversation(failed.id) is None


def test_a_stream_whose_client_left_before_its_end_is_not_remembered():
    fmt = OpenAIResponsesFormat()
    encoder = fmt.stream_encoder(decode(fmt, input="hi", stream=True))
    stream = b"".join(encoder.encode(frame) for frame in answer_frames(end=False))
    last = events_of(stream + encoder.finish(FACTS, USAGE))[-1]
    assert fmt.store.conversation(last["response"]["id"]) is None


def test_store_false_keeps_nothing():
    fmt = OpenAIResponsesFormat()
    request = decode(fmt, input="hi", store=False)
    body = fmt.encode_response(ChatResponse("x", "m", [Text("ok")]), FACTS, request)
    assert fmt.store.conversation(body["id"]) is None
    assert fmt.store.item(body["output"][0]["id"]) is None


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_store_forgets_after_its_time_and_past_its_size():
    clock = Clock()
    store = ResponseStore(keep_seconds=60, max_responses=2, max_items=2, clock=clock)
    for n in range(3):
        store.remember(f"resp_{n}", [], [{"id": f"msg_{n}"}])
    assert store.conversation("resp_0") is None and store.item("msg_0") is None  # least recent
    assert store.conversation("resp_1") == [] and store.item("msg_2") == {"id": "msg_2"}
    clock.now = 61
    assert store.conversation("resp_2") is None and store.item("msg_2") is None


def test_an_expired_previous_response_is_refused_as_not_found():
    clock = Clock()
    fmt = OpenAIResponsesFormat(ResponseStore(keep_seconds=60, clock=clock))
    body = fmt.encode_response(ChatResponse("x", "m", [Text("ok")]), FACTS,
                               decode(fmt, input="hi"))
    assert decode(fmt, input="more", previous_response_id=body["id"]).messages[1].role == "assistant"
    clock.now = 61
    with pytest.raises(InvalidRequest) as err:
        decode(fmt, input="more", previous_response_id=body["id"])
    assert err.value.code == "previous_response_not_found"
    assert err.value.message == f"Previous response with id '{body['id']}' not found."
