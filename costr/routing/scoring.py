"""What a complexity scorer is and returns, and the request facts scorers and the router share."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from costr.wire.conversation import ChatRequest, Image, Text, ToolCall, ToolResult, Thinking, text_of


@dataclass(slots=True)
class Complexity:
    score: float          # 0 (trivial) .. 1 (needs the strongest model)
    confidence: float     # 0 .. 1, how sure the scorer is
    signals: dict = field(default_factory=dict)


@runtime_checkable
class Scorer(Protocol):
    """What a `register_scorers` factory returns."""

    def score(self, request: ChatRequest) -> Complexity:
        """How hard `request` is; `signals` may carry what a policy reads (`form`)."""


@runtime_checkable
class TrainedScorer(Scorer, Protocol):
    """A scorer fitted on data, which names it, so `costr eval` can warn when that same data is
    evaluated (the figures would be in-sample)."""
    trained_on: frozenset[str]   # SHA-256 hex digests of the training files


# Agents wrap context they inject into the user's turn (file listings, reminders, memory) in
# these tags, or in <<<BEGIN_NAME>>> ... <<<END_NAME>>> markers (some send such a block as a user
# turn of its own, after the real ask); it is boilerplate, not the ask.
_INJECTED = re.compile(r"<(system-reminder|context|environment_details)>.*?</\1>"
                       r"|<<<BEGIN_([A-Z][A-Z_]*)>>>.*?<<<END_\2>>>", re.S)
# ... and some stamp each ask with when it was sent (`[Fri 2026-12-04 03:56 UTC] ask`) or end it
# with a line of their own state (`Runtime: agent=main | session=... | shell=bash`).
_SENT_AT = re.compile(r"\s*\[[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?(?: [\w+:/-]+)?\]\s*")
_STATE_LINE = re.compile(r"\n+[A-Z][a-z]+: \w+=[^\n]*(?: \| \w+=[^\n|]*)+\s*\Z")


def user_ask(request: ChatRequest, limit: int = 12_000) -> str:
    """What the user asked: the text of the last user turn that has text of its own (tool
    results are the agent loop talking, not the user), without agent-injected context.
    Long asks keep head and tail."""
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        text = "".join(p.text for p in message.parts if isinstance(p, Text))
        if "<" in text:
            text = _INJECTED.sub("", text)
        sent_at = _SENT_AT.match(text)
        if sent_at:
            text = _STATE_LINE.sub("", text[sent_at.end():])
        if text.strip():
            return text if len(text) <= limit else text[: limit // 2] + "\n" + text[-limit // 2:]
    return ""


def estimate_tokens(request: ChatRequest) -> int:
    """An offline estimate of the prompt's tokens (about 4 characters a token, plus framing),
    used to check context windows and to reserve cost; never downloads a tokenizer."""
    chars = sum(len(t.text) for t in request.system)
    images = 0
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, Text):
                chars += len(part.text)
            elif isinstance(part, ToolCall):
                chars += len(part.arguments) + len(part.name)
            elif isinstance(part, ToolResult):
                chars += len(text_of(part.content))
                images += sum(isinstance(p, Image) for p in part.content)
            elif isinstance(part, Thinking):
                chars += len(part.text)
            elif isinstance(part, Image):
                images += 1
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(str(tool.parameters))
    return chars // 4 + 4 * len(request.messages) + 1000 * images + 8
