"""OpenAI Responses API streams for a client: neutral events encoded in the Responses event
sequence (`response.created`, `response.in_progress`, per output item `output_item.added`,
its deltas and `.done` events, `output_item.done`; last `response.completed`, or
`response.incomplete` when the answer hit `max_output_tokens`, carrying usage as accounted and
`x_routing`). Each event is `event: <type>` and `data: <json>` with a `sequence_number`."""
from __future__ import annotations

import time

from costr import (BlockStart, BlockStop, ChatRequest, CostrError, Frame, MessageEnd, MessageStart,
                   RoutingFacts, Text, TextDelta, Thinking, ThinkingDelta, ToolArgumentsDelta,
                   ToolCall, Usage, event_line)

from .response_store import ResponseStore
from .responses_response import (call_item, message_item, new_id, reasoning_item, remember,
                                 response_object)


class _Item:
    """One output item being streamed: its wire id, place and what has arrived so far."""
    __slots__ = ("kind", "id", "output_index", "text", "call_id", "name", "started",
                 "signature")

    def __init__(self, kind: str, output_index: int, call_id: str = "", name: str = ""):
        self.kind = kind
        self.id = new_id({"text": "msg", "tool_call": "fc", "thinking": "rs"}[kind])
        self.output_index = output_index
        self.text = ""           # text, arguments or reasoning summary
        self.call_id, self.name = call_id, name
        self.started = False     # a reasoning summary part has been announced
        self.signature = None    # the upstream's signature of its thinking, kept for replay

    def done(self) -> dict:
        if self.kind == "text":
            return message_item(self.text, item_id=self.id)
        if self.kind == "tool_call":
            return call_item(self.call_id, self.name, self.text, item_id=self.id)
        return reasoning_item(self.text, item_id=self.id)

    def part(self) -> Text | ToolCall | Thinking:
        if self.kind == "text":
            return Text(self.text)
        if self.kind == "tool_call":
            return ToolCall(self.call_id, self.name, self.text)
        return Thinking(self.text, self.signature)


class StreamEncoder:
    keepalive_seconds = None

    def __init__(self, request: ChatRequest, store: ResponseStore):
        self.request, self.store = request, store
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.sequence = 0
        self.started = False
        self.items: dict[int, _Item] = {}     # block index -> item
        self.finished: list[_Item] = []       # in output order
        self.stop = None
        self.ended = False  # the upstream's answer reached its end (MessageEnd)
        self.model = ""     # the upstream's model id, until the routed one is known

    def encode(self, frame: Frame) -> bytes:
        return b"".join(self._translate(event) for event in frame.events)

    def finish(self, facts: RoutingFacts, usage: Usage) -> bytes:
        out = self._start(facts)
        for index in sorted(self.items):   # blocks the upstream left open
            out += self._close(index)
        self.finished.sort(key=lambda item: item.output_index)
        output = [item.done() for item in self.finished]
        body = response_object(self.id, self.request, facts.routed_model, status="completed",
                               output=output, usage=usage, created_at=self.created_at,
                               facts=facts, stop_reason=self.stop)
        if self.ended:   # not an answer cut short by the client leaving
            remember(self.store, self.id, self.request, [item.part() for item in self.finished],
                     output)
        kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, response=body)

    def fail(self, error: CostrError) -> bytes:
        """An `error` event, then `response.failed` with the items finished so far; after
        `response.created` in any case, which clients' stream readers expect first. Nothing is
        remembered."""
        out = self._start(None)
        detail = {"code": error.code or "server_error", "message": error.message}
        self.finished.sort(key=lambda item: item.output_index)
        failed = response_object(self.id, self.request, self.model or self.request.model,
                                 status="failed", output=[item.done() for item in self.finished],
                                 usage=None, created_at=self.created_at, error=detail)
        return (out + self._event("error", code=detail["code"], message=error.message,
                                  param=error.param)
                + self._event("response.failed", response=failed))

    # -- events ------------------------------------------------------------------------------

    def _translate(self, event) -> bytes:
        if isinstance(event, BlockStart):
            return self._open(event)
        if isinstance(event, BlockStop):
            return self._close(event.index)
        item = self.items.get(getattr(event, "index", -1))
        if isinstance(event, TextDelta) and item is not None and event.text:
            item.text += event.text
            return self._event("response.output_text.delta", item_id=item.id,
                               output_index=item.output_index, content_index=0, delta=event.text,
                               logprobs=[])
        if isinstance(event, ToolArgumentsDelta) and item is not None and event.fragment:
            item.text += event.fragment
            return self._event("response.function_call_arguments.delta", item_id=item.id,
                               output_index=item.output_index, delta=event.fragment)
        if isinstance(event, ThinkingDelta) and item is not None and event.signature:
            item.signature = event.signature
        if isinstance(event, ThinkingDelta) and item is not None and event.text:
            item.text += event.text
            out = b""
            if not item.started:
                item.started = True
                out += self._event("response.reasoning_summary_part.added", item_id=item.id,
                                   output_index=item.output_index, summary_index=0,
                                   part={"type": "summary_text", "text": ""})
            return out + self._event("response.reasoning_summary_text.delta", item_id=item.id,
                                     output_index=item.output_index, summary_index=0,
                                     delta=event.text)
        if isinstance(event, MessageStart):
            self.model = event.model
        elif isinstance(event, MessageEnd):
            self.stop, self.ended = event.stop_reason, True
        return b""

    def _open(self, event: BlockStart) -> bytes:
        if event.kind == "redacted_thinking":
            return b""  # nothing readable to show
        out = self._start(None)
        item = _Item(event.kind, len(self.items) + len(self.finished),
                     event.tool_call_id or new_id("call"), event.tool_name or "")
        self.items[event.index] = item
        if item.kind == "text":
            out += self._event("response.output_item.added", output_index=item.output_index,
                               item=message_item("", "in_progress", item.id))
            return out + self._event("response.content_part.added", item_id=item.id,
                                     output_index=item.output_index, content_index=0,
                                     part={"type": "output_text", "text": "", "annotations": []})
        if item.kind == "tool_call":
            added = call_item(item.call_id, item.name, "", "in_progress", item.id)
        else:
            added = reasoning_item("", item.id)
        return out + self._event("response.output_item.added", output_index=item.output_index,
                                 item=added)

    def _close(self, index: int) -> bytes:
        item = self.items.pop(index, None)
        if item is None:
            return b""
        self.finished.append(item)
        at = {"item_id": item.id, "output_index": item.output_index}
        out = b""
        if item.kind == "text":
            out += self._event("response.output_text.done", **at, content_index=0, text=item.text,
                               logprobs=[])
            out += self._event("response.content_part.done", **at, content_index=0,
                               part={"type": "output_text", "text": item.text, "annotations": []})
        elif item.kind == "tool_call":
            out += self._event("response.function_call_arguments.done", **at, name=item.name,
                               arguments=item.text)
        elif item.started:
            out += self._event("response.reasoning_summary_text.done", **at, summary_index=0,
                               text=item.text)
            out += self._event("response.reasoning_summary_part.done", **at, summary_index=0,
                               part={"type": "summary_text", "text": item.text})
        return out + self._event("response.output_item.done", output_index=item.output_index,
                                 item=item.done())

    def _start(self, facts: RoutingFacts | None) -> bytes:
        """`response.created` and `response.in_progress`, once, before anything else."""
        if self.started:
            return b""
        self.started = True
        model = facts.routed_model if facts else (self.model or self.request.model)
        shell = response_object(self.id, self.request, model, status="in_progress", output=[],
                                usage=None, created_at=self.created_at)
        return (self._event("response.created", response=shell)
                + self._event("response.in_progress", response=shell))

    def _event(self, kind: str, **fields) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event_line(kind, payload)

