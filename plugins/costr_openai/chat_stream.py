"""OpenAI Chat Completions streams: decoding an upstream's chunks into neutral events, and
encoding frames for a client (verbatim when the upstream spoke the same format)."""
from __future__ import annotations

import time
import uuid

import orjson

from costr import (BlockStart, BlockStop, CostrError, Frame, MessageEnd, MessageStart, RoutingFacts,
                   StreamFailure, TextDelta, ThinkingDelta, ToolArgumentsDelta, Usage, data_line,
                   default_error_body)

from .chat_request import FORMAT
from .chat_response import STOP_FROM_WIRE, STOP_TO_WIRE, usage_from_wire, usage_to_wire

DONE = b"data: [DONE]\n\n"


class StreamDecoder:
    """Chunks in, neutral events out. Tool-call fragments are keyed by the upstream's index,
    and a new id at an index already in use starts a new call (some servers send every call
    at index 0)."""

    def __init__(self):
        self.started = False
        self.next_block = 0
        self.open_kind: str | None = None   # kind of the open text/thinking block
        self.open_index = -1
        self.calls: dict[int, tuple[str, int]] = {}   # upstream index -> (call id, block index)
        self.stop = None
        self.usage = Usage(estimated=True)
        self.ended = False

    def feed(self, chunk: dict) -> list:
        events: list = []
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"]
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            return [StreamFailure(502, f"upstream error mid-stream: {message}")]
        if not self.started:
            self.started = True
            events.append(MessageStart(chunk.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
                                       chunk.get("model", "")))
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events += self._flow("thinking", ThinkingDelta, reasoning)
            if delta.get("content"):
                events += self._flow("text", TextDelta, delta["content"])
            for call in delta.get("tool_calls") or []:
                events += self._tool_fragment(call)
            if choice.get("finish_reason"):
                self.stop = STOP_FROM_WIRE.get(choice["finish_reason"], "end_turn")
        if chunk.get("usage"):
            self.usage = usage_from_wire(chunk["usage"])
        return events

    def _flow(self, kind: str, event_type, text: str) -> list:
        events = []
        if self.open_kind != kind:
            events += self._close_open()
            self.open_kind, self.open_index = kind, self._new_block()
            events.append(BlockStart(self.open_index, kind))
        events.append(event_type(self.open_index, text))
        return events

    def _tool_fragment(self, call: dict) -> list:
        events = []
        key = call.get("index", 0)
        fn = call.get("function") or {}
        known = self.calls.get(key)
        if known is None or (call.get("id") and call["id"] != known[0]):
            events += self._close_open()
            block = self._new_block()
            call_id = call.get("id") or f"call_{uuid.uuid4().hex[:24]}"
            self.calls[key] = (call_id, block)
            events.append(BlockStart(block, "tool_call", tool_call_id=call_id,
                                     tool_name=fn.get("name", "")))
        if fn.get("arguments"):
            events.append(ToolArgumentsDelta(self.calls[key][1], fn["arguments"]))
        return events

    def _close_open(self) -> list:
        if self.open_kind is None:
            return []
        self.open_kind = None
        return [BlockStop(self.open_index)]

    def _new_block(self) -> int:
        self.next_block += 1
        return self.next_block - 1

    def finish(self) -> list:
        """At [DONE] or the end of the body: close every block and end the message."""
        if self.ended:
            return []
        self.ended = True
        if self.stop is None:
            return [StreamFailure(502, "the upstream stream ended before the answer was complete")]
        events = self._close_open()
        events += [BlockStop(block) for _, block in self.calls.values()]
        if self.stop == "end_turn" and self.calls:
            self.stop = "tool_use"
        return events + [MessageEnd(self.stop, self.usage)]


class StreamEncoder:
    """Frames in, client chunks out. The finish chunk and usage chunk are held back so the
    final chunk can carry usage as accounted and `x_routing`."""

    def __init__(self, include_usage: bool):
        self.include_usage = include_usage
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = ""
        self.sent_role = False
        self.tool_index: dict[int, int] = {}   # block index -> OpenAI tool_calls index
        self.finish_chunk: dict | None = None
        self.stop = None

    def encode(self, frame: Frame) -> bytes:
        if frame.raw_format == FORMAT and isinstance(frame.raw, dict):
            return self._relay(frame.raw)
        return b"".join(self._translate(event) for event in frame.events)

    def _relay(self, chunk: dict) -> bytes:
        self.id = chunk.get("id") or self.id
        self.model = chunk.get("model") or self.model
        choices = chunk.get("choices") or []
        if not choices:
            return b""  # the usage chunk: rebuilt in finish()
        if "usage" in chunk:  # asked for by Costr, not necessarily by the client
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
        if any(c.get("finish_reason") for c in choices):
            self.finish_chunk = chunk
            return b""
        return data_line(chunk)

    def _translate(self, event) -> bytes:
        if isinstance(event, MessageStart):
            self.model = self.model or event.model
            return b""
        delta: dict
        if isinstance(event, TextDelta):
            delta = {"content": event.text}
        elif isinstance(event, ThinkingDelta):
            if not event.text:
                return b""
            delta = {"reasoning_content": event.text}
        elif isinstance(event, BlockStart) and event.kind == "tool_call":
            self.tool_index[event.index] = len(self.tool_index)
            delta = {"tool_calls": [{"index": self.tool_index[event.index], "id": event.tool_call_id,
                                     "type": "function",
                                     "function": {"name": event.tool_name, "arguments": ""}}]}
        elif isinstance(event, ToolArgumentsDelta):
            delta = {"tool_calls": [{"index": self.tool_index[event.index],
                                     "function": {"arguments": event.fragment}}]}
        elif isinstance(event, MessageEnd):
            self.stop = event.stop_reason
            return b""
        else:
            return b""
        return data_line(self._chunk(delta))

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        if not self.sent_role:
            self.sent_role = True
            delta = {"role": "assistant", **delta}
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish}]}

    def finish(self, facts: RoutingFacts, usage: Usage) -> bytes:
        self.model = self.model or facts.routed_model
        final = self.finish_chunk or self._chunk(
            {}, STOP_TO_WIRE.get(self.stop or "end_turn", "stop"))
        out = b""
        if self.include_usage:
            out += data_line(final)
            final = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                     "model": self.model, "choices": [], "usage": usage_to_wire(usage)}
        final["x_routing"] = facts.as_dict()
        return out + data_line(final) + DONE

    def fail(self, error: CostrError) -> bytes:
        return data_line(default_error_body(error)) + DONE


def parse_chunk(data: str) -> dict | None:
    """An SSE data payload as a chunk dict; None for [DONE]."""
    if data.strip() == "[DONE]":
        return None
    return orjson.loads(data)
