"""Anthropic Messages streams for a client (`StreamEncoder`): the upstream's events relayed as
sent when it spoke the same format, else neutral events encoded in Anthropic's sequence.

Either way the final `message_delta` is held back until `finish`, which adds `x_routing` to it,
and `message_start` always carries a real input token count: the upstream's when it reports
one up front, else Costr's estimate of the prompt (clients show cost from it; 0 breaks them).
"""
from __future__ import annotations

from costr import (BlockStart, BlockStop, CostrError, Frame, MessageEnd, MessageStart, RoutingFacts,
                   TextDelta, ThinkingDelta, ToolArgumentsDelta, Usage, event_line)

from .client_response import message_id, stop_reason_to_wire, stream_error, usage_to_wire
from .wire_response import WIRE_FORMAT

KEEPALIVE_SECONDS = 10.0
PING = event_line("ping", {"type": "ping"})


def sse(data: dict) -> bytes:
    return event_line(data["type"], data)


class StreamEncoder:
    def __init__(self, estimated_input_tokens: int, keepalive_seconds: float | None = KEEPALIVE_SECONDS):
        self.estimate = max(1, estimated_input_tokens)
        self.keepalive_seconds = keepalive_seconds
        self.started = False
        self.blocks = BlockSequencer()
        self.end: MessageEnd | None = None
        self.held_delta: dict | None = None   # a same-format upstream's message_delta
        self.held_stop: dict | None = None    # ... and its message_stop

    def encode(self, frame: Frame) -> bytes:
        if frame.raw_format == WIRE_FORMAT and isinstance(frame.raw, dict):
            return self._relay(frame.raw)
        return b"".join(self._translate(event) for event in frame.events)

    def keepalive(self) -> bytes:
        return PING

    def finish(self, facts: RoutingFacts, usage: Usage) -> bytes:
        out = b""
        if self.held_delta is None:
            out += self._start_once("", facts.routed_model, None)
            out += b"".join(sse(data) for data in self.blocks.flush())
            end = self.end or MessageEnd("end_turn", usage)
            self.held_delta = {"type": "message_delta",
                               "delta": {"stop_reason": stop_reason_to_wire(end.stop_reason),
                                         "stop_sequence": end.stop_sequence},
                               "usage": usage_to_wire(usage)}
        delta = {**self.held_delta, "x_routing": facts.as_dict()}
        return out + sse(delta) + sse(self.held_stop or {"type": "message_stop"})

    def fail(self, error: CostrError) -> bytes:
        return sse(stream_error(error))

    # -- same format: the upstream's events, as sent -----------------------------------------

    def _relay(self, data: dict) -> bytes:
        kind = data.get("type")
        if kind == "message_delta":
            self.held_delta = data
            return b""
        if kind == "message_stop":
            self.held_stop = data
            return b""
        if kind == "message_start":
            self.started = True
            data = self._with_input_count(data)
        return sse(data) if isinstance(kind, str) else b""

    def _with_input_count(self, data: dict) -> dict:
        message = data.get("message") or {}
        usage = message.get("usage") or {}
        if any(usage.get(k) for k in ("input_tokens", "cache_read_input_tokens",
                                      "cache_creation_input_tokens")):
            return data
        return {**data, "message": {**message, "usage": {**usage, "input_tokens": self.estimate}}}

    # -- another format: neutral events in Anthropic's sequence -------------------------------

    def _translate(self, event) -> bytes:
        if isinstance(event, MessageStart):
            return self._start_once(event.id, event.model, event.usage)
        if isinstance(event, MessageEnd):
            self.end = event
            return b""
        if isinstance(event, (BlockStart, TextDelta, ToolArgumentsDelta, ThinkingDelta, BlockStop)):
            out = self._start_once("", "", None)
            return out + b"".join(sse(data) for data in self.blocks.feed(event))
        return b""

    def _start_once(self, upstream_id: str, model: str, usage: Usage | None) -> bytes:
        if self.started:
            return b""
        self.started = True
        wire_usage = usage_to_wire(usage) if usage and usage.input_tokens else \
            usage_to_wire(Usage(input_tokens=self.estimate))
        wire_usage["output_tokens"] = 0
        return sse({"type": "message_start", "message": {
            "id": message_id(upstream_id), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": wire_usage}})


class BlockSequencer:
    """Neutral block events in, Anthropic content block events out.

    Anthropic blocks are sequential and numbered 0, 1, 2... in order; neutral blocks may
    interleave (parallel tool calls whose arguments arrive in pieces). One block streams live;
    a block that starts while another is live is buffered whole and replayed once the live one
    stops. Text and thinking blocks open only when they have content (text that is more than
    whitespace), so the client never gets an empty block it could not send back."""

    def __init__(self):
        self.live: int | None = None          # the neutral index streaming now
        self.kind = ""
        self.wire_index: int | None = None    # its Anthropic index, once opened
        self.held_text = ""                   # leading whitespace of a text block not yet opened
        self.queued: dict[int, list] = {}     # neutral index -> its buffered events, in start order
        self.next_index = 0

    def feed(self, event) -> list[dict]:
        if isinstance(event, BlockStart) and self.live is not None:
            self.queued[event.index] = [event]
            return []
        if event.index in self.queued:
            self.queued[event.index].append(event)
            return []
        return self._apply(event) + self._drain()

    def flush(self) -> list[dict]:
        """Close everything still open or buffered (at the end of the message)."""
        out = self._apply(BlockStop(self.live)) if self.live is not None else []
        while self.queued:
            out += self._drain()
            if self.live is not None:
                out += self._apply(BlockStop(self.live))
        return out

    def _drain(self) -> list[dict]:
        out = []
        while self.live is None and self.queued:
            index = next(iter(self.queued))
            for event in self.queued.pop(index):
                out += self._apply(event)
        return out

    def _apply(self, event) -> list[dict]:
        if isinstance(event, BlockStart):
            self.live, self.kind, self.wire_index, self.held_text = event.index, event.kind, None, ""
            if event.kind == "tool_call":
                return self._open({"type": "tool_use", "id": event.tool_call_id,
                                   "name": event.tool_name, "input": {}})
            if event.kind == "redacted_thinking":
                return self._open({"type": "redacted_thinking", "data": event.redacted_data or ""})
            return []
        if event.index != self.live:
            return []  # an event after its block stopped
        if isinstance(event, BlockStop):
            out = [] if self.wire_index is None else [
                {"type": "content_block_stop", "index": self.wire_index}]
            self.live, self.wire_index = None, None
            return out
        if isinstance(event, TextDelta) and self.kind == "text":
            return self._text(event.text)
        if isinstance(event, ThinkingDelta) and self.kind == "thinking":
            return self._thinking(event)
        if isinstance(event, ToolArgumentsDelta) and self.kind == "tool_call" and event.fragment:
            return self._delta({"type": "input_json_delta", "partial_json": event.fragment})
        return []

    def _text(self, text: str) -> list[dict]:
        if self.wire_index is None:
            self.held_text += text
            if not self.held_text.strip():
                return []
            text, self.held_text = self.held_text, ""
            return self._open({"type": "text", "text": ""}) + self._delta(
                {"type": "text_delta", "text": text})
        return self._delta({"type": "text_delta", "text": text}) if text else []

    def _thinking(self, event: ThinkingDelta) -> list[dict]:
        if not event.text and not event.signature:
            return []
        out = self._open({"type": "thinking", "thinking": "", "signature": ""}) \
            if self.wire_index is None else []
        if event.text:
            out += self._delta({"type": "thinking_delta", "thinking": event.text})
        if event.signature:
            out += self._delta({"type": "signature_delta", "signature": event.signature})
        return out

    def _open(self, block: dict) -> list[dict]:
        self.wire_index, self.next_index = self.next_index, self.next_index + 1
        return [{"type": "content_block_start", "index": self.wire_index, "content_block": block}]

    def _delta(self, delta: dict) -> list[dict]:
        return [{"type": "content_block_delta", "index": self.wire_index, "delta": delta}]
