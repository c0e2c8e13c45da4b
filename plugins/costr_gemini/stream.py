"""Gemini's streamed answer (`:streamGenerateContent?alt=sse`) as neutral stream events.

Every SSE data is a whole GenerateContentResponse holding the next parts. Text and thought
summaries arrive in pieces; a functionCall always arrives whole in one chunk, with its
thoughtSignature on the same part, so its block is opened, filled and closed at once. The chunk
carrying `finishReason` is the last one and carries the final usageMetadata, so the message ends
there.
"""
from __future__ import annotations

from costr import (BlockStart, BlockStop, Event, MessageEnd, MessageStart, StreamFailure, TextDelta,
                   ThinkingDelta, ToolArgumentsDelta, Usage)

from .wire import response_id, stop_reason, tool_call_from_wire, usage_from_wire


class StreamDecoder:
    """Feed each chunk with `feed`; call `finish` when the upstream stream ends."""

    def __init__(self, tag: str = "") -> None:
        self.tag = tag   # the answering model's (thought_signatures.model_tag), for call ids
        self.started = False
        self.ended = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # (kind, index) of the open block
        self._saw_tool_call = False
        self._usage = Usage()

    def feed(self, chunk: dict) -> list[Event]:
        if self.ended:
            return []
        if "error" in chunk:
            return self._fail(chunk["error"])
        events: list[Event] = []
        if "usageMetadata" in chunk:
            self._usage = usage_from_wire(chunk["usageMetadata"])
        if not self.started:
            self.started = True
            usage = self._usage if "usageMetadata" in chunk else None
            events.append(MessageStart(id=response_id(chunk), model=chunk.get("modelVersion", ""),
                                       usage=usage))
        candidates = chunk.get("candidates") or []
        if not candidates:
            if (chunk.get("promptFeedback") or {}).get("blockReason"):
                events += self._end("refusal")  # the prompt was blocked: nothing will follow
            return events
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or []:
            events += self._part(part)
        if candidate.get("finishReason"):
            events += self._end(stop_reason(candidate["finishReason"], self._saw_tool_call))
        return events

    def finish(self) -> list[Event]:
        """Events owed once the upstream stream is over: a failure if it never finished."""
        if self.ended:
            return []
        self.ended = True
        return [StreamFailure(status=502, message="the Gemini stream ended before it finished")]

    def _part(self, part: dict) -> list[Event]:
        if "functionCall" in part:
            self._saw_tool_call = True
            call = tool_call_from_wire(part, self.tag)  # its id carries the part's signature
            events = self._close()
            index = self._take_index()
            return events + [
                BlockStart(index, "tool_call", tool_call_id=call.id, tool_name=call.name),
                ToolArgumentsDelta(index, call.arguments), BlockStop(index)]
        text = part.get("text")
        if not text:  # e.g. an empty part that only carries a thoughtSignature
            return []
        kind = "thinking" if part.get("thought") else "text"
        events = self._open_block(kind)
        index = self._open[1]
        events.append(ThinkingDelta(index, text) if kind == "thinking" else TextDelta(index, text))
        return events

    def _open_block(self, kind: str) -> list[Event]:
        if self._open and self._open[0] == kind:
            return []
        events = self._close()
        self._open = (kind, self._take_index())
        return events + [BlockStart(self._open[1], kind)]

    def _close(self) -> list[Event]:
        if not self._open:
            return []
        index = self._open[1]
        self._open = None
        return [BlockStop(index)]

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _end(self, reason) -> list[Event]:
        self.ended = True
        return self._close() + [MessageEnd(stop_reason=reason, usage=self._usage)]

    def _fail(self, error) -> list[Event]:
        self.ended = True
        if isinstance(error, dict):
            return [StreamFailure(status=int(error.get("code") or 502),
                                  message=str(error.get("message") or error))]
        return [StreamFailure(status=502, message=str(error))]
