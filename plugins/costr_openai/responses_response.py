"""OpenAI Responses API answers: the Response object, its output items and usage, built from
the neutral answer, and remembered for `previous_response_id` (response_store.py)."""
from __future__ import annotations

import secrets
import time

from costr import ChatRequest, ChatResponse, Message, RoutingFacts, Text, Thinking, ToolCall, Usage

from .response_store import ResponseStore


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def usage_to_wire(usage: Usage) -> dict:
    return {"input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_input_tokens,
                                     "cache_write_tokens": usage.cache_write_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens}


def message_item(text: str, status: str = "completed", item_id: str | None = None) -> dict:
    return {"id": item_id or new_id("msg"), "type": "message", "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
            if status == "completed" else []}


def call_item(call_id: str, name: str, arguments: str, status: str = "completed",
              item_id: str | None = None) -> dict:
    return {"id": item_id or new_id("fc"), "type": "function_call", "status": status,
            "call_id": call_id, "name": name, "arguments": arguments}


def reasoning_item(text: str, item_id: str | None = None) -> dict:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"id": item_id or new_id("rs"), "type": "reasoning", "summary": summary}


def output_items(content: list) -> list[dict]:
    """The answer's parts as output items, in order; adjacent text parts are one message."""
    items: list[dict] = []
    for part in content:
        if isinstance(part, Text):
            if items and items[-1]["type"] == "message":
                items[-1]["content"][0]["text"] += part.text
            else:
                items.append(message_item(part.text))
        elif isinstance(part, ToolCall):
            items.append(call_item(part.id, part.name, part.arguments))
        elif isinstance(part, Thinking) and part.text:
            items.append(reasoning_item(part.text))
    return items


def response_object(response_id: str, request: ChatRequest, model: str, *, status: str,
                    output: list[dict], usage: Usage | None, created_at: int,
                    facts: RoutingFacts | None = None, stop_reason: str | None = None,
                    error: dict | None = None) -> dict:
    """The Response object, echoing the request's settings as OpenAI does; `x_routing` once
    the answer is complete (`facts`)."""
    raw = request.raw or {}
    incomplete = {"reason": "max_output_tokens"} if stop_reason == "max_tokens" else None
    body = {
        "id": response_id, "object": "response", "created_at": created_at,
        "status": "incomplete" if incomplete and status == "completed" else status,
        "background": False, "error": error, "incomplete_details": incomplete,
        "instructions": raw.get("instructions"),
        "max_output_tokens": raw.get("max_output_tokens"), "metadata": raw.get("metadata") or {},
        "model": model, "output": output,
        "parallel_tool_calls": raw.get("parallel_tool_calls", True),
        "previous_response_id": raw.get("previous_response_id"),
        "reasoning": {"effort": (raw.get("reasoning") or {}).get("effort"), "summary": None},
        "store": raw.get("store", True), "temperature": raw.get("temperature"),
        "text": raw.get("text") or {"format": {"type": "text"}},
        "tool_choice": raw.get("tool_choice", "auto"), "tools": raw.get("tools") or [],
        "top_p": raw.get("top_p"), "truncation": raw.get("truncation", "disabled"),
        "usage": usage_to_wire(usage) if usage is not None else None,
        "user": raw.get("user"),
    }
    if facts is not None:
        body["x_routing"] = facts.as_dict()
    return body


def encode_response(response: ChatResponse, facts: RoutingFacts, request: ChatRequest,
                    store: ResponseStore) -> dict:
    output = output_items(response.content)
    response_id = new_id("resp")
    remember(store, response_id, request, response.content, output)
    return response_object(response_id, request, facts.routed_model, status="completed",
                           output=output, usage=response.usage, facts=facts,
                           created_at=response.created or int(time.time()),
                           stop_reason=response.stop_reason)


def remember(store: ResponseStore, response_id: str, request: ChatRequest, answer: list,
             output: list[dict]) -> None:
    """Keep the conversation with its answer, unless the client said `store: false`."""
    if (request.raw or {}).get("store") is False:
        return
    store.remember(response_id, [*request.messages, Message("assistant", list(answer))], output)
