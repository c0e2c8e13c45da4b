"""Answers and errors for an Anthropic Messages client: the upstream's own body when it spoke
the same format, else the neutral ChatResponse encoded as a Messages API body."""
from __future__ import annotations

import uuid

from costr import (ChatResponse, CostrError, RoutingFacts, Text, Thinking, ToolCall, UpstreamError,
                   Usage)

from .wire_request import tool_input_to_wire
from .wire_response import STOP_REASONS_FROM_WIRE, WIRE_FORMAT
from .wire_stream import ERROR_STATUS_BY_TYPE

ERROR_TYPE_BY_STATUS = {status: kind for kind, status in ERROR_STATUS_BY_TYPE.items()}


def encode_response(response: ChatResponse, facts: RoutingFacts) -> dict:
    if response.raw_format == WIRE_FORMAT and response.raw is not None:
        return {**response.raw, "x_routing": facts.as_dict()}  # as the upstream sent it
    return {
        "id": message_id(response.id),
        "type": "message",
        "role": "assistant",
        "model": facts.routed_model,
        "content": [block for part in response.content if (block := content_block(part))],
        "stop_reason": stop_reason_to_wire(response.stop_reason),
        "stop_sequence": response.stop_sequence,
        "usage": usage_to_wire(response.usage),
        "x_routing": facts.as_dict(),
    }


def message_id(upstream_id: str) -> str:
    if upstream_id.startswith("msg_"):
        return upstream_id
    return f"msg_{upstream_id}" if upstream_id else f"msg_{uuid.uuid4().hex}"


def content_block(part) -> dict | None:
    """One content block, or None for a part the client must not get (whitespace-only text:
    Anthropic rejects such a block when the client sends the conversation back)."""
    if isinstance(part, Text):
        return {"type": "text", "text": part.text} if part.text.strip() else None
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name,
                "input": tool_input_to_wire(part.arguments)}
    if isinstance(part, Thinking):
        if part.redacted_data:
            return {"type": "redacted_thinking", "data": part.redacted_data}
        if not part.text and not part.signature:
            return None
        # Reasoning from another model has no signature; the anthropic provider drops unsigned
        # thinking before anything reaches Anthropic, so the client may send it back safely.
        return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
    return None


def stop_reason_to_wire(reason: str | None) -> str:
    return reason if reason in STOP_REASONS_FROM_WIRE else "end_turn"


def usage_to_wire(usage: Usage) -> dict:
    """The neutral input count includes cached tokens; Anthropic's `input_tokens` leaves out
    the tokens read from and written to the cache (the inverse of wire_response.usage_from_wire)."""
    fresh = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
    return {"input_tokens": max(0, fresh), "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cached_input_tokens}


# ---- errors -----------------------------------------------------------------------------------

def encode_error(error: CostrError) -> tuple[int, dict]:
    """An Anthropic upstream's error as it sent it; any other in Anthropic's shape, its type
    chosen by status as Anthropic does (502 and 503, which Anthropic does not use, are
    api_error: a Costr 503 means no provider has credentials, which retrying will not fix)."""
    if isinstance(error, UpstreamError) and error.upstream_status and _is_error_body(error.upstream_body):
        return error.upstream_status, error.upstream_body
    return error.status, error_body(error_type(error.status), error.message)


def stream_error(error: CostrError) -> dict:
    """The `error` event's data for a failure after the stream began."""
    status = getattr(error, "upstream_status", 0) or error.status
    if isinstance(error, UpstreamError) and _is_error_body(error.upstream_body):
        return error.upstream_body
    return error_body(error_type(status), error.message)


def error_type(status: int) -> str:
    return ERROR_TYPE_BY_STATUS.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _is_error_body(body) -> bool:
    return (isinstance(body, dict) and body.get("type") == "error"
            and isinstance(body.get("error"), dict) and "type" in body["error"])
