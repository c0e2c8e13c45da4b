"""An Anthropic Messages response body as the neutral ChatResponse (`response_from_wire`), and
the usage and stop-reason mappings the stream decoder shares."""
from __future__ import annotations

import time

import orjson

from costr import ChatResponse, StopReason, Text, Thinking, ToolCall, Usage

WIRE_FORMAT = "anthropic-messages"  # the name same-format passthrough matches on

# The neutral vocabulary is Anthropic's own; only newer reasons need a neutral equivalent.
STOP_REASONS_FROM_WIRE: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "refusal": "refusal",
    "pause_turn": "pause_turn",
    "model_context_window_exceeded": "max_tokens",  # the answer was cut off, as at max_tokens
}
UNKNOWN_STOP_REASON: StopReason = "end_turn"


def stop_reason_from_wire(reason: str | None) -> StopReason | None:
    if reason is None:
        return None
    return STOP_REASONS_FROM_WIRE.get(reason, UNKNOWN_STOP_REASON)


def usage_from_wire(usage: dict) -> Usage:
    """Anthropic's `input_tokens` leaves out the tokens read from and written to the prompt
    cache; the neutral `input_tokens` counts all three."""
    fresh = usage.get("input_tokens") or 0
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_written = usage.get("cache_creation_input_tokens") or 0
    output_details = usage.get("output_tokens_details") or {}
    return Usage(
        input_tokens=fresh + cache_read + cache_written,
        output_tokens=usage.get("output_tokens") or 0,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_written,
        reasoning_tokens=output_details.get("thinking_tokens") or 0,
        server_tool_uses=server_tool_uses(usage.get("server_tool_use")),
    )


def server_tool_uses(counts) -> dict[str, int]:
    """`server_tool_use: {web_search_requests: 3}` as the uses billing prices (`web_search`)."""
    if not isinstance(counts, dict):
        return {}
    return {name.removesuffix("_requests"): n for name, n in counts.items()
            if isinstance(n, int) and not isinstance(n, bool) and n > 0}


def response_from_wire(body: dict) -> ChatResponse:
    return ChatResponse(
        id=body.get("id", ""),
        model=body.get("model", ""),
        content=content_from_wire(body.get("content") or []),
        stop_reason=stop_reason_from_wire(body.get("stop_reason")),
        stop_sequence=body.get("stop_sequence"),
        usage=usage_from_wire(body.get("usage") or {}),
        created=int(time.time()),  # Anthropic sends no timestamp; arrival is the closest thing
        raw=body,
        raw_format=WIRE_FORMAT,
    )


def content_from_wire(blocks: list[dict]) -> list[Text | ToolCall | Thinking]:
    content: list[Text | ToolCall | Thinking] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            content.append(Text(block.get("text", "")))
        elif kind == "tool_use":
            content.append(ToolCall(block["id"], block["name"], compact_json(block.get("input") or {})))
        elif kind == "thinking":
            content.append(Thinking(text=block.get("thinking", ""), signature=block.get("signature")))
        elif kind == "redacted_thinking":
            content.append(Thinking(redacted_data=block.get("data")))
        # Server tool blocks (web search and the like) have no neutral form; `raw` keeps them.
    return content


def compact_json(value) -> str:
    """JSON text with no spaces, as models emit tool arguments."""
    return orjson.dumps(value).decode()
