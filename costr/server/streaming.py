"""Watching an upstream stream as it passes through: its usage, its end, a failure, whether a
frame carries any of the answer, the answer it adds up to (for the cache), and keep-alives
while it is quiet."""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

from costr.cache.responses import MAX_ENTRY_CHARS as COLLECT_LIMIT_CHARS
from costr.wire.conversation import (BlockStart, ChatResponse, Frame, MessageEnd, MessageStart,
                           StreamFailure, Text, TextDelta, Thinking, ThinkingDelta,
                           ToolArgumentsDelta, ToolCall, Usage)


def with_keepalives(frames: AsyncIterator[Frame], every: float | None) -> AsyncIterator:
    """The frames, with None wherever the upstream stayed quiet for `every` seconds (without
    `every`, the frames themselves: no layer to pass through)."""
    return _with_keepalives(frames, every) if every else frames


async def _with_keepalives(frames: AsyncIterator[Frame], every: float):
    pending = asyncio.ensure_future(frames.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield None
                continue
            try:
                frame = pending.result()
            except StopAsyncIteration:
                return
            yield frame
            pending = asyncio.ensure_future(frames.__anext__())
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


class StreamTally:
    """Watches a stream's events for its usage, its end and a failure; with `collect`, also
    puts the answer together, block by block, for the cache: up to `collect_limit` characters,
    past which the pieces are let go and there is no answer to store (a stream is relayed as it
    comes, and must not be held whole because the cache would like it)."""

    def __init__(self, collect: bool = False, collect_limit: int = COLLECT_LIMIT_CHARS):
        self.usage: Usage | None = None
        self.input_usage: Usage | None = None
        self.output_chars = 0
        self.ended = False
        self.collect = collect
        self.collect_limit = collect_limit
        self.too_large = False   # collecting stopped at the limit
        self.start: MessageStart | None = None
        self.end: MessageEnd | None = None
        self.blocks: dict[int, list] = {}   # index -> [kind, id, name, texts, signature, redacted]

    def observe(self, frame: Frame) -> StreamFailure | None:
        if self.collect and self.output_chars > self.collect_limit:
            self.collect, self.too_large, self.blocks = False, True, {}
        for event in frame.events:
            if isinstance(event, (TextDelta, ThinkingDelta)):
                self.output_chars += len(event.text)
                if self.collect:
                    block = self.blocks[event.index]
                    block[3].append(event.text)
                    if isinstance(event, ThinkingDelta) and event.signature:
                        block[4] = event.signature
            elif isinstance(event, ToolArgumentsDelta):
                self.output_chars += len(event.fragment)
                if self.collect:
                    self.blocks[event.index][3].append(event.fragment)
            elif isinstance(event, BlockStart):
                if self.collect:
                    self.blocks[event.index] = [event.kind, event.tool_call_id, event.tool_name,
                                                [], None, event.redacted_data]
            elif isinstance(event, MessageStart):
                self.start = event
                self.input_usage = event.usage or self.input_usage
            elif isinstance(event, MessageEnd):
                self.usage, self.ended, self.end = event.usage, True, event
            elif isinstance(event, StreamFailure):
                return event
        return None

    def reported(self) -> Usage:
        """The usage the upstream reported (at its end, or its input up front), nothing
        estimated: zeros when it reported none."""
        usage = self.usage or Usage()
        if self.input_usage and not usage.input_tokens:
            usage.input_tokens = self.input_usage.input_tokens
            usage.cached_input_tokens = self.input_usage.cached_input_tokens
            usage.cache_write_tokens = self.input_usage.cache_write_tokens
        return usage

    def settled(self, prompt_tokens: int) -> Usage:
        """What the stream used: as reported, or estimated from what passed when nothing was."""
        return fill_estimates(self.reported(), prompt_tokens, self.output_chars)

    def answer(self, usage: Usage) -> ChatResponse | None:
        """The whole answer the stream carried (`collect` must have been on); None when it was
        too large to collect."""
        if self.too_large:
            return None
        content: list = []
        for index in sorted(self.blocks):
            kind, call_id, name, texts, signature, redacted = self.blocks[index]
            text = "".join(texts)
            if kind == "text":
                content.append(Text(text))
            elif kind == "tool_call":
                content.append(ToolCall(call_id or f"call_{index}", name or "", text or "{}"))
            else:
                content.append(Thinking(text, signature, redacted))
        start, end = self.start, self.end
        return ChatResponse(id=start.id if start else "", model=start.model if start else "",
                            content=content, stop_reason=end.stop_reason if end else None,
                            stop_sequence=end.stop_sequence if end else None, usage=usage)


def carries_content(frame: Frame) -> bool:
    """Whether the frame holds any of the answer (text, reasoning, a tool call), not only its
    framing (start, block boundaries, end, usage)."""
    for event in frame.events:
        if isinstance(event, (TextDelta, ThinkingDelta)) and event.text:
            return True
        if isinstance(event, ToolArgumentsDelta) or (
                isinstance(event, BlockStart) and event.kind in ("tool_call", "redacted_thinking")):
            return True
    return False


def settled_usage(usage: Usage, prompt_tokens: int, response: ChatResponse) -> Usage:
    chars = sum(len(getattr(p, "text", "") or getattr(p, "arguments", "")) for p in response.content)
    return fill_estimates(usage, prompt_tokens, chars)


def fill_estimates(usage: Usage, prompt_tokens: int, output_chars: int) -> Usage:
    """An upstream that reported no usage gets an estimate, flagged as such."""
    if usage.input_tokens == 0 and usage.output_tokens == 0:
        return Usage(input_tokens=prompt_tokens, output_tokens=(output_chars + 3) // 4, estimated=True)
    return usage
