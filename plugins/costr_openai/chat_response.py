"""OpenAI Chat Completions answers: decoding an upstream's body, encoding one for a client."""
from __future__ import annotations

import time
import uuid

from costr import ChatResponse, RoutingFacts, Text, Thinking, ToolCall, Usage

from .chat_request import FORMAT

STOP_FROM_WIRE = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                  "function_call": "tool_use", "content_filter": "refusal"}
STOP_TO_WIRE = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop"}


def usage_from_wire(usage: dict | None) -> Usage:
    if not usage:
        return Usage(estimated=True)
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(input_tokens=usage.get("prompt_tokens") or 0,
                 output_tokens=usage.get("completion_tokens") or 0,
                 cached_input_tokens=prompt_details.get("cached_tokens") or 0,
                 reasoning_tokens=completion_details.get("reasoning_tokens") or 0)


def usage_to_wire(usage: Usage) -> dict:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens}}


def response_from_wire(body: dict) -> ChatResponse:
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append(Thinking(reasoning))
    text = message.get("content") or message.get("refusal")
    if text:
        content.append(Text(text))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append(ToolCall(call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                                fn.get("name", ""), fn.get("arguments") or "{}"))
    stop = STOP_FROM_WIRE.get(choice.get("finish_reason"), "end_turn")
    if stop == "end_turn" and any(isinstance(p, ToolCall) for p in content):
        stop = "tool_use"  # some compatible servers say "stop" after a tool call
    return ChatResponse(id=body.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
                        model=body.get("model", ""), content=content, stop_reason=stop,
                        usage=usage_from_wire(body.get("usage")), created=body.get("created") or 0,
                        raw=body, raw_format=FORMAT)


def encode_response(response: ChatResponse, facts: RoutingFacts, usage: Usage | None = None) -> dict:
    usage = usage or response.usage
    if response.raw_format == FORMAT and response.raw is not None:
        body = dict(response.raw)  # same format: the upstream's answer as it sent it
        if not body.get("usage"):
            body["usage"] = usage_to_wire(usage)
        body["x_routing"] = facts.as_dict()
        return body
    text = "".join(p.text for p in response.content if isinstance(p, Text))
    reasoning = "".join(p.text for p in response.content if isinstance(p, Thinking))
    calls = [{"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}}
             for p in response.content if isinstance(p, ToolCall)]
    message: dict = {"role": "assistant", "content": text or None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return {
        "id": response.id if response.id.startswith("chatcmpl") else f"chatcmpl-{response.id}",
        "object": "chat.completion",
        "created": response.created or int(time.time()),
        "model": facts.routed_model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": STOP_TO_WIRE.get(response.stop_reason or "end_turn", "stop")}],
        "usage": usage_to_wire(usage),
        "x_routing": facts.as_dict(),
    }
