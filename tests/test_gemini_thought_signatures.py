"""Gemini 3's thought signatures: taken from the answer (whole and streamed), carried to the
client inside the tool call id Costr mints, and put back on the right functionCall part of the
next request; calls with nothing to carry get Google's sentinel, on Gemini 3 models only."""
from __future__ import annotations

import base64
import math
import re

import orjson
import pytest

from costr.wire.conversation import (BlockStart, ChatRequest, Message, Text, ToolArgumentsDelta,
                                ToolCall, ToolResult)
from costr.wire.providers import ModelSpec, Price
from costr_gemini.stream import StreamDecoder
from costr_gemini.thought_signatures import (SKIP_VALIDATION, call_id_with_signature,
                                             model_tag, requires_signatures, signature_in)
from costr_gemini.wire import request_to_wire, response_from_wire

# Standard base64 with '+', '/' and padding, the length of a real signature.
SIGNATURE = base64.b64encode(b"\n\xfe\x07" + bytes(range(256)) * 4).decode()
BASE = "call_0123456789abcdef01234567"


def gemini(name: str, **options) -> ModelSpec:
    return ModelSpec(id=name, provider="google", tier="budget", price=Price(0.1, 0.4),
                     context_window=1_048_576, capabilities=frozenset({"tools"}), options=options)


GEMINI_3, GEMINI_25 = gemini("gemini-3-flash-preview"), gemini("gemini-2.5-flash")


def function_call(name: str, args: dict, signature: str | None = None, **extra) -> dict:
    part: dict = {"functionCall": {"name": name, "args": args, **extra}}
    if signature:
        part["thoughtSignature"] = signature
    return part


def answer(*parts: dict) -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": list(parts)},
                            "finishReason": "STOP", "index": 0}],
            "modelVersion": "gemini-3-flash-preview", "responseId": "r3"}


# ---- the id -------------------------------------------------------------------------------

def test_a_signature_rides_in_the_call_id_and_comes_back_as_gemini_sent_it():
    tag = model_tag(GEMINI_3)
    call_id = call_id_with_signature(BASE, SIGNATURE, tag)
    assert call_id.startswith(f"{BASE}__sig__{tag}__") and len(tag) == 8
    assert re.fullmatch(r"[A-Za-z0-9_-]+", call_id)  # what Anthropic's tool_use ids allow
    raw_bytes = len(base64.b64decode(SIGNATURE))
    assert len(call_id) == len(BASE) + len("__sig__") + 10 + math.ceil(raw_bytes * 4 / 3)
    assert signature_in(call_id, tag) == SIGNATURE


def test_a_signature_goes_back_only_to_the_model_that_made_it():
    call_id = call_id_with_signature(BASE, SIGNATURE, model_tag(GEMINI_3))
    assert signature_in(call_id, model_tag(gemini("gemini-3-pro-preview"))) is None
    assert signature_in(call_id) is None


@pytest.mark.parametrize("call_id", [
    BASE, "toolu_01A09q90qw90lq917835lq9", "functions.read_file:0", BASE + "__sig__",
    "__sig__" + "A" * 40, BASE + "__sig__A", BASE + "__sig__!!not*base64"])
def test_other_ids_carry_no_signature(call_id):
    assert signature_in(call_id) is None


def test_nothing_or_something_unreadable_to_carry_leaves_the_id_as_it_was():
    assert call_id_with_signature(BASE, None) == BASE
    assert call_id_with_signature(BASE, "not base64 at all ***") == BASE


# ---- Gemini -> neutral --------------------------------------------------------------------

def test_only_the_first_of_parallel_calls_carries_the_answers_signature():
    response = response_from_wire(answer(
        {"text": "Both at once."},
        function_call("get_weather", {"city": "Paris"}, SIGNATURE),
        function_call("get_weather", {"city": "Tokyo"})))
    _, paris, tokyo = response.content
    assert signature_in(paris.id) == SIGNATURE and signature_in(tokyo.id) is None
    assert re.fullmatch(r"call_[0-9a-f]{24}", tokyo.id) and paris.id[:29] != tokyo.id
    assert response.stop_reason == "tool_use"


def test_gemini_own_call_id_is_the_base_of_the_minted_one():
    response = response_from_wire(answer(function_call("f", {}, SIGNATURE, id="fc-7x2k")))
    (call,) = response.content
    assert call.id.startswith("fc-7x2k__sig__") and signature_in(call.id) == SIGNATURE


def test_a_streamed_call_carries_its_signature_in_the_block_id():
    decoder = StreamDecoder()
    events = decoder.feed(answer(function_call("get_weather", {"city": "Paris"}, SIGNATURE),
                                 function_call("get_weather", {"city": "Tokyo"})))
    first, second = [e for e in events if isinstance(e, BlockStart)]
    assert signature_in(first.tool_call_id) == SIGNATURE
    assert signature_in(second.tool_call_id) is None
    fragments = [orjson.loads(e.fragment) for e in events if isinstance(e, ToolArgumentsDelta)]
    assert fragments == [{"city": "Paris"}, {"city": "Tokyo"}]


# ---- neutral -> Gemini --------------------------------------------------------------------

def conversation(signed: str) -> ChatRequest:
    """A tool loop over three providers' steps; `signed` is the id of the signed Gemini call."""
    return ChatRequest(messages=[
        Message("user", [Text("Compare the weather in Paris and Tokyo, then plan a trip.")]),
        # A step another provider answered: nothing to carry.
        Message("assistant", [ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", '{"city": "Oslo"}')]),
        Message("user", [ToolResult("toolu_01A09q90qw90lq917835lq9", [Text("2 C")])]),
        # A Gemini 3 step with parallel calls: only the first was signed.
        Message("assistant", [ToolCall(signed, "get_weather", '{"city": "Paris"}'),
                              ToolCall("call_fedcba9876543210fedcba98", "get_weather", '{"city": "Tokyo"}')]),
        Message("user", [ToolResult(signed, [Text("18 C")]),
                         ToolResult("call_fedcba9876543210fedcba98", [Text("24 C")])]),
        # A Gemini step from before signatures were carried: text first, then an unsigned call.
        Message("assistant", [Text("Now the trains."), ToolCall("call_00000000000000000000aaaa", "trains", "{}")]),
        Message("user", [ToolResult("call_00000000000000000000aaaa", [Text("none")])]),
    ])


def model_parts(model: ModelSpec, signer: ModelSpec | None = None) -> list[list[dict]]:
    """The model turns sent to `model` of a conversation whose Gemini call `signer` (by default
    `model` itself) signed."""
    signed = call_id_with_signature(BASE, SIGNATURE, model_tag(signer or model))
    contents = request_to_wire(conversation(signed), model)["contents"]
    return [content["parts"] for content in contents if content["role"] == "model"]


def test_gemini_3_gets_each_signature_back_on_its_part_and_the_sentinel_where_none_was_carried():
    oslo, (paris, tokyo), (text, trains) = model_parts(GEMINI_3)
    assert oslo == [function_call("get_weather", {"city": "Oslo"}, SKIP_VALIDATION)]
    assert paris == function_call("get_weather", {"city": "Paris"}, SIGNATURE)  # beside functionCall
    assert tokyo == function_call("get_weather", {"city": "Tokyo"})  # parallel: no signature
    assert text == {"text": "Now the trains."}
    assert trains == function_call("trains", {}, SKIP_VALIDATION)  # the step's first call


def test_gemini_2_5_gets_its_signatures_back_but_never_the_sentinel():
    oslo, (paris, tokyo), (_, trains) = model_parts(GEMINI_25)
    assert paris == function_call("get_weather", {"city": "Paris"}, SIGNATURE)
    assert [oslo, tokyo, trains] == [[function_call("get_weather", {"city": "Oslo"})],
                                     function_call("get_weather", {"city": "Tokyo"}),
                                     function_call("trains", {})]
    signed = call_id_with_signature(BASE, SIGNATURE, model_tag(GEMINI_25))
    assert SKIP_VALIDATION not in str(request_to_wire(conversation(signed), GEMINI_25))


def test_another_models_signature_is_not_sent_the_call_counts_as_unsigned():
    """A session may move a Gemini 3 Flash tool loop up to Gemini 3 Pro, which would refuse
    Flash's signature as corrupted."""
    pro = gemini("gemini-3-pro-preview")
    _, (paris, tokyo), _ = model_parts(pro, signer=GEMINI_3)
    assert paris == function_call("get_weather", {"city": "Paris"}, SKIP_VALIDATION)
    assert tokyo == function_call("get_weather", {"city": "Tokyo"})
    _, (paris, _), _ = model_parts(GEMINI_25, signer=GEMINI_3)
    assert paris == function_call("get_weather", {"city": "Paris"})


@pytest.mark.parametrize("name, required", [
    ("gemini-3-pro-preview", True), ("gemini-3-flash", True), ("gemini-3.1-pro-preview", True),
    ("models/gemini-3-flash-preview", True), ("gemini-4-ultra", True), ("gemini-10-pro", True),
    ("gemini-2.5-flash", False), ("gemini-2.0-flash-lite", False), ("gemini-1.5-pro", False),
    ("gemini-flash-latest", True), ("gemini-pro-latest", True), ("gemini-flash-lite-latest", True),
    ("models/gemini-flash-latest", True), ("gemini-1.5-flash-latest", False),
    ("tunedModels/my-model", False), ("gemini-exp-1206", False), ("gemma-3-27b-it", False)])
def test_which_models_require_signatures_by_name(name, required):
    assert requires_signatures(gemini(name)) is required


def test_a_models_option_in_providers_yaml_wins_over_its_name():
    assert requires_signatures(gemini("gemini-2.5-flash", requires_thought_signatures=True))
    assert not requires_signatures(gemini("gemini-flash-latest", requires_thought_signatures=False))
    assert not requires_signatures(gemini("gemini-3-pro-preview", requires_thought_signatures=False))
    # Anything but true or false leaves the decision to the name.
    assert requires_signatures(gemini("gemini-3-pro-preview", requires_thought_signatures="no"))
    upstream = ModelSpec(id="fast", provider="google", tier="budget", price=Price(0.1, 0.4),
                         context_window=1000, upstream_name="gemini-3-flash-preview")
    assert requires_signatures(upstream)  # the name Google knows the model by decides
