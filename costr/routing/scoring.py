"""What a complexity scorer is and returns, and the request facts scorers and the router share."""
from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from costr.wire.conversation import ChatRequest, Image, Text, ToolCall, ToolResult, Thinking, text_of


@dataclass(slots=True)
class Complexity:
    score: float          # 0 (trivial) .. 1 (needs the strongest model)
    confidence: float     # 0 .. 1, how sure the scorer is
    signals: dict = field(default_factory=dict)
    # 0 .. 1, how like the data the scorer was fitted on the request is (1: as like as its own
    # training prompts); x_routing.confidence is scaled by it, whatever decided the tier
    familiar: float = 1.0


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
_OPENER = re.compile(r"<(system-reminder|context|environment_details)>|<<<BEGIN_([A-Z][A-Z_]*)>>>")
_CLOSER = re.compile(r"</(system-reminder|context|environment_details)>|<<<END_([A-Z][A-Z_]*)>>>")
# ... and some stamp each ask with when it was sent (`[Fri 2026-12-04 03:56 UTC] ask`) and end it
# with a line of their own state (`Runtime: agent=main | session=... | shell=bash`).
_SENT_AT = re.compile(r"\s*\[[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?(?: [\w+:/-]+)?\]\s*")
_STATE_LINE = re.compile(r"[A-Z][a-z]+: \w+=[^\n|]*(?: \| \w+=[^\n|]*)+")


def user_ask(request: ChatRequest, limit: int = 12_000) -> str:
    """What the user asked: the text of the last user turn that has text of its own (tool
    results are the agent loop talking, not the user), without agent-injected context.
    Long asks keep head and tail."""
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        text = "".join(p.text for p in message.parts if isinstance(p, Text))
        if "<" in text:
            text = _without_injected(text)
        sent_at = _SENT_AT.match(text)
        if sent_at:
            text = _without_state_line(text[sent_at.end():])
        if text.strip():
            return text if len(text) <= limit else text[: limit // 2] + "\n" + text[-limit // 2:]
    return ""


def _without_injected(text: str) -> str:
    """`text` less every injected block, each from its opener to the nearest closer after it.
    One pass over the openers and one over the closers, whatever the text holds: a regex with
    `.*?` rescans to the end for every opener left unclosed, and a client can send many."""
    closers: dict[str, list[int]] = {}
    for closer in _CLOSER.finditer(text):
        closers.setdefault(closer[1] or closer[2], []).append(closer.start())
    if not closers:
        return text
    pieces, start, pos = [], 0, 0
    while (opener := _OPENER.search(text, pos)):
        name = opener[1] or opener[2]
        ends = closers.get(name, ())
        i = bisect_left(ends, opener.end())
        if i == len(ends):
            pos = opener.end()
            continue
        pieces.append(text[start:opener.start()])
        start = pos = ends[i] + len(f"</{name}>" if opener[1] else f"<<<END_{name}>>>")
    return "".join(pieces) + text[start:]


def _without_state_line(text: str) -> str:
    head, newline, last = text.rstrip().rpartition("\n")
    return head.rstrip("\n") if newline and _STATE_LINE.fullmatch(last) else text


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
