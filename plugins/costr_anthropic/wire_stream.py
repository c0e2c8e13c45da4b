"""Anthropic Messages stream events as neutral stream events (`StreamDecoder`).

The neutral block index is Anthropic's own block index. Blocks with no neutral form (server
tool use and results) produce no events at all, so their indices are simply missing.
"""
from __future__ import annotations

from costr import (BlockStart, BlockStop, Event, MessageEnd, MessageStart, StreamFailure, TextDelta,
                   ThinkingDelta, ToolArgumentsDelta)

from .wire_response import compact_json, stop_reason_from_wire, usage_from_wire

BLOCK_KINDS_FROM_WIRE = {"text": "text", "tool_use": "tool_call", "thinking": "thinking",
                         "redacted_thinking": "redacted_thinking"}
# The HTTP status Anthropic uses for each error type, for errors sent inside a stream.
ERROR_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
ENDED_EARLY = "upstream stream ended early"


class StreamDecoder:
    """Feed it each event's parsed `data` in order (Anthropic puts the event name in its
    `type`), then call `finish()` once the upstream closes the stream."""

    def __init__(self) -> None:
        self._usage: dict = {}  # wire usage, merged from message_start and message_delta
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._skipped: set[int] = set()
        self.done = False  # message_stop or an error arrived

    def feed(self, data: dict) -> list[Event]:
        kind = data.get("type")
        if kind == "message_start":
            return self._message_start(data.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(data["index"], data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(data["index"], data.get("delta") or {})
        if kind == "content_block_stop":
            return [] if data["index"] in self._skipped else [BlockStop(data["index"])]
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self.done = True
            return [MessageEnd(stop_reason_from_wire(self._stop_reason),
                               usage_from_wire(self._usage), self._stop_sequence)]
        if kind == "error":
            self.done = True
            return [stream_failure_from_wire(data.get("error") or {})]
        return []  # ping, and event types newer than this decoder

    def finish(self) -> list[Event]:
        """The events owed when the upstream closed: a failure unless the message ended."""
        return [] if self.done else [StreamFailure(502, ENDED_EARLY)]

    def _message_start(self, message: dict) -> list[Event]:
        self._usage = dict(message.get("usage") or {})
        return [MessageStart(message.get("id", ""), message.get("model", ""),
                             usage_from_wire(self._usage))]

    def _message_delta(self, data: dict) -> list[Event]:
        delta = data.get("delta") or {}
        self._stop_reason = delta.get("stop_reason") or self._stop_reason
        self._stop_sequence = delta.get("stop_sequence") or self._stop_sequence
        # Counts here are cumulative: they replace, never add to, what message_start said.
        self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        return []

    def _block_start(self, index: int, block: dict) -> list[Event]:
        kind = BLOCK_KINDS_FROM_WIRE.get(block.get("type"))
        if kind is None:
            self._skipped.add(index)
            return []
        events: list[Event] = [BlockStart(index, kind, tool_call_id=block.get("id"),
                                          tool_name=block.get("name"), redacted_data=block.get("data"))]
        # Anthropic starts blocks empty, but a block that arrives with content must not lose it.
        if kind == "text" and block.get("text"):
            events.append(TextDelta(index, block["text"]))
        elif kind == "tool_call" and block.get("input"):
            events.append(ToolArgumentsDelta(index, compact_json(block["input"])))
        elif kind == "thinking" and (block.get("thinking") or block.get("signature")):
            events.append(ThinkingDelta(index, block.get("thinking", ""),
                                        block.get("signature") or None))
        return events

    def _block_delta(self, index: int, delta: dict) -> list[Event]:
        if index in self._skipped:
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(index, delta.get("text", ""))]
        if kind == "input_json_delta":
            return [ToolArgumentsDelta(index, delta.get("partial_json", ""))]
        if kind == "thinking_delta":
            return [ThinkingDelta(index, text=delta.get("thinking", ""))]
        if kind == "signature_delta":
            return [ThinkingDelta(index, signature=delta.get("signature"))]
        return []  # citations_delta and the like have no neutral form


def stream_failure_from_wire(error: dict) -> StreamFailure:
    status = ERROR_STATUS_BY_TYPE.get(error.get("type"), 500)
    return StreamFailure(status, error.get("message") or f"upstream {error.get('type', 'error')}")
