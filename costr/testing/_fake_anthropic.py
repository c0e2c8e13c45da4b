"""Anthropic Messages wire format for the fake upstream."""
from __future__ import annotations

import re
import secrets
import string
from typing import Iterator

import orjson

from ._fake_answers import Answer, Ask, Tool, pieces, tool_result_text

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 504: "timeout_error",
               529: "overloaded_error"}
_ALPHABET = string.ascii_letters + string.digits
TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def read_ask(body: dict) -> Ask:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts = [_content_text(m.get("content")) for m in messages]
    last = messages[-1] if messages else {}
    results = [b for b in _blocks(last.get("content")) if b.get("type") == "tool_result"]
    system = _content_text(body.get("system"))
    choice = (body.get("tool_choice") or {}).get("type")
    return Ask(
        model=str(body.get("model") or ""),
        tools=[] if choice == "none" else _tools(body),
        last_is_tool_result=last.get("role") == "user" and bool(results),
        last_text=_content_text(results[-1].get("content")) if results else (texts[-1] if texts else ""),
        prompt_chars=len(system) + sum(map(len, texts)),
        stream=bool(body.get("stream")),
    )


def invalid_tool_use(body: dict) -> str | None:
    """Anthropic's 400 message for a tool_use id outside its pattern, or for a tool_result
    that answers no tool_use of the message before it; None when the request passes."""
    previous_ids: set = set()
    for i, message in enumerate(body.get("messages") or []):
        blocks = _blocks(message.get("content") if isinstance(message, dict) else None)
        for j, block in enumerate(blocks):
            key = {"tool_use": "id", "tool_result": "tool_use_id"}.get(block.get("type"))
            if key and not TOOL_USE_ID.fullmatch(str(block.get(key) or "")):
                return (f"messages.{i}.content.{j}.{block['type']}.{key}: String should match "
                        f"pattern '{TOOL_USE_ID.pattern}'")
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in previous_ids:
                return (f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                        "block must have a corresponding `tool_use` block in the previous message.")
        previous_ids = {b.get("id") for b in blocks if b.get("type") == "tool_use"}
    return None


def _tools(body: dict) -> list[Tool]:
    # Server tools (web search, code execution...) have no input_schema and are not ours to call.
    return [Tool(t["name"], t.get("input_schema") or {})
            for t in body.get("tools") or [] if t.get("name") and "input_schema" in t]


def _blocks(content) -> list[dict]:
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _content_text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return tool_result_text(content)
    parts = []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "text":
            parts.append(block.get("text") or "")
        elif kind == "tool_use":
            parts.append(orjson.dumps(block.get("input") or {}).decode())
        elif kind == "tool_result":
            parts.append(_content_text(block.get("content")))
    return "".join(parts)


def _message_id() -> str:
    return "msg_01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def _tool_id(call) -> str:
    return call.id or "toolu_01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def _usage(ask: Ask, output_tokens: int) -> dict:
    return {"input_tokens": ask.input_tokens, "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def _stop_reason(answer: Answer) -> str:
    return "tool_use" if answer.tool_calls else "end_turn"


def message_body(answer: Answer, ask: Ask) -> dict:
    content: list[dict] = [{"type": "text", "text": answer.text}] if answer.text else []
    content += [{"type": "tool_use", "id": _tool_id(c), "name": c.name, "input": c.arguments}
                for c in answer.tool_calls]
    if not content:
        content = [{"type": "text", "text": ""}]
    return {"id": _message_id(), "type": "message", "role": "assistant", "model": ask.model,
            "content": content, "stop_reason": _stop_reason(answer), "stop_sequence": None,
            "usage": _usage(ask, answer.output_tokens)}


def message_stream(answer: Answer, ask: Ask) -> Iterator[bytes]:
    """The documented event sequence: message_start, a ping, each content block as
    start/delta.../stop, message_delta with the stop reason and usage, message_stop."""
    start = {"id": _message_id(), "type": "message", "role": "assistant", "model": ask.model,
             "content": [], "stop_reason": None, "stop_sequence": None, "usage": _usage(ask, 1)}
    yield _event("message_start", {"type": "message_start", "message": start})
    index = 0
    if answer.text or not answer.tool_calls:
        yield _event("content_block_start", {"type": "content_block_start", "index": 0,
                                             "content_block": {"type": "text", "text": ""}})
        yield _event("ping", {"type": "ping"})
        for piece in pieces(answer.text):
            yield _delta(0, {"type": "text_delta", "text": piece})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        index = 1
    for offset, call in enumerate(answer.tool_calls):
        block = {"type": "tool_use", "id": _tool_id(call), "name": call.name, "input": {}}
        yield _event("content_block_start", {"type": "content_block_start",
                                             "index": index + offset, "content_block": block})
        if index + offset == 0:
            yield _event("ping", {"type": "ping"})
        for piece in pieces(call.arguments_json):
            yield _delta(index + offset, {"type": "input_json_delta", "partial_json": piece})
        yield _event("content_block_stop", {"type": "content_block_stop", "index": index + offset})
    yield _event("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
                                   "usage": {"output_tokens": answer.output_tokens}})
    yield _event("message_stop", {"type": "message_stop"})


def _delta(index: int, delta: dict) -> bytes:
    return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _event(name: str, payload: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def error_body(status: int, message: str) -> dict:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def count_tokens_body(ask: Ask) -> dict:
    return {"input_tokens": ask.input_tokens}
