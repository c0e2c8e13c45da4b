"""Keeping prompts, so that ratings of Costr's routing can train a scorer. Opt-in: off unless
providers.yaml says `feedback: {keep_prompts: true}`.

What is kept of an answered, auto-routed request is its conversation as text-only chat
messages, in the shape of the routing-eval records (`{"role", "content"}`, tool calls as
`tool_calls` and tool results as `role: tool`), keyed by request id. Scorers read the user's
turns, so those are kept whole; tool results, tool-call arguments and the assistant's text are
cut to their first KEEP_CHARS characters (an agent resends its whole history with every request,
file contents and all). Not kept: any header (so no key), the leading system prompt (the longest
and most operator-private part), tool schemas, reasoning, and images (a placeholder marks where
each was).

The conversation is turned into JSON text when the request is answered (3 us for a short chat,
80 us for a 40-turn agent conversation), so the request's objects die with it: queueing them for
the writer instead kept thousands of objects alive past several garbage collections, and the
full collections that followed paused the event loop for 20 ms. The text is written in
batches off the request path, as the ledger is; once an hour what is older than
`feedback.keep_days` is deleted.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import orjson

from costr.accounts.records import KeptPrompt, LedgerRecord, Store
from costr.config.files import FeedbackEntry
from costr.wire.conversation import ChatRequest, Image, Message, Text, ToolCall, ToolResult
from costr.accounts.ledger import BatchWriter
from costr.routing.route import Route

log = logging.getLogger("costr.prompts")

IMAGE_PLACEHOLDER = "[image]"
KEEP_CHARS = 1000     # of each tool result, tool call's arguments and assistant turn
BATCH = 100           # conversations written in one transaction
MAX_QUEUED = 10_000   # conversations held while the database is away; older ones are dropped
PURGE_EVERY_SECONDS = 3600
DAY_SECONDS = 86400


def text_only_messages(messages: list[Message]) -> list[dict]:
    """Chat messages that decode back to the same user turns (what scorers read). Tool results
    become `role: tool` messages before the turn that carried them, as the chat shape has it."""
    out: list[dict] = []
    for message in messages:
        texts: list[str] = []
        calls: list[dict] = []
        had_results = False
        for part in message.parts:
            if isinstance(part, Text):
                texts.append(part.text)
            elif isinstance(part, Image):
                texts.append(IMAGE_PLACEHOLDER)
            elif isinstance(part, ToolCall):
                calls.append({"id": part.id, "type": "function",
                              "function": {"name": part.name, "arguments": _cut(part.arguments)}})
            elif isinstance(part, ToolResult):
                had_results = True
                out.append({"role": "tool", "tool_call_id": part.tool_call_id,
                            "content": _cut(_text(part.content))})
        text = "".join(texts)
        if text or calls or not had_results:
            turn: dict = {"role": message.role,
                          "content": _cut(text) if message.role == "assistant" else text}
            if calls:
                turn["tool_calls"] = calls
            out.append(turn)
    return out


def _text(parts: list) -> str:
    return "".join(p.text if isinstance(p, Text) else IMAGE_PLACEHOLDER
                   for p in parts if isinstance(p, (Text, Image)))


def _cut(text: str) -> str:
    if len(text) <= KEEP_CHARS:
        return text
    return f"{text[:KEEP_CHARS]}...[{len(text) - KEEP_CHARS} more characters not kept]"


class PromptKeeper(BatchWriter):
    what = "kept prompts"

    def __init__(self, store: Store, keep_days: Callable[[], int]):
        """`keep_days()`: the retention in force (the configuration can change while serving)."""
        super().__init__(store.keep_prompts, batch_size=BATCH, max_pending=MAX_QUEUED)
        self.store, self.keep_days = store, keep_days
        self._purged_at = float("-inf")   # time.monotonic() of the last purge

    def keep(self, settings: FeedbackEntry, request: ChatRequest, route: Route,
             record: LedgerRecord) -> None:
        """Queue the conversation of an answered, auto-routed request, if the operator keeps
        prompts; never waits."""
        if settings.keep_prompts and route.complexity is not None and record.status == 200:
            messages = orjson.dumps(text_only_messages(request.messages)).decode()
            self.record(KeptPrompt(record.id, record.key_id, record.ts, messages))

    async def between_batches(self) -> None:
        if time.monotonic() - self._purged_at >= PURGE_EVERY_SECONDS:
            self._purged_at = time.monotonic()
            await self.purge()

    async def purge(self) -> int:
        """Delete kept prompts older than the retention; returns how many."""
        try:
            cutoff = time.time() - self.keep_days() * DAY_SECONDS
            deleted = await self.store.forget_prompts_before(cutoff)
        except Exception:  # the database is away: the next purge catches up
            log.exception("could not delete expired kept prompts; will retry in an hour")
            return 0
        if deleted:
            log.info("deleted %d kept prompts older than %d days", deleted, self.keep_days())
        return deleted
