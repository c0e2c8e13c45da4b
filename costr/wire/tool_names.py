"""Tool names a provider refuses, and the stable stand-ins sent in their place.

Clients name tools as they like (MCP tools such as `mcp__server__tool` grow long; Anthropic
clients may use dots), while providers accept a pattern: OpenAI `^[a-zA-Z0-9_-]{1,64}$`,
Gemini letters, digits, `_ . : -`, at most 64, starting with a letter or `_`. A provider plugin
describes its rule once; a name that breaks it is sent as a cleaned, cut form with a hash of the
original (the same every time, so earlier turns' tool calls match without any state), and the
names in the answer are mapped back before the client sees them.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from costr.wire.conversation import BlockStart, ChatRequest, ChatResponse, ToolCall


@dataclass(frozen=True)
class ToolNameRule:
    chars: str            # a regex character-class body: the characters allowed
    first: str            # the same, for the first character
    limit: int = 64
    _valid: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        pattern = re.compile(f"[{self.first}][{self.chars}]{{0,{self.limit - 1}}}")
        object.__setattr__(self, "_valid", pattern)

    def wire_name(self, name: str) -> str:
        """`name` if the provider accepts it, else its stand-in."""
        if self._valid.fullmatch(name):
            return name
        return stand_in(name, self.chars, first=self.first, limit=self.limit, digest=8)

    def originals(self, request: ChatRequest) -> dict[str, str]:
        """Stand-in -> original, for the request's tools whose names are replaced."""
        return {wire: t.name for t in request.tools if (wire := self.wire_name(t.name)) != t.name}


def stand_in(original: str, chars: str | None, *, first: str | None = None,
             limit: int | None = None, digest: int = 8) -> str:
    """What a provider gets in place of a name or id it refuses: `original` with every character
    outside `chars` (a regex character-class body; None: any) made `_`, led by `_` if its first
    character is outside `first`, cut to fit `limit` with `digest` hex of its SHA-256 after it.
    The same original always gives the same stand-in, so no state is kept."""
    cleaned = re.sub(f"[^{chars}]", "_", original) if chars else original
    if first and not re.match(f"[{first}]", cleaned):
        cleaned = "_" + cleaned
    if limit:
        cleaned = cleaned[:limit - digest - 1]
    return f"{cleaned}_{hashlib.sha256(original.encode()).hexdigest()[:digest]}"


def restore_in_response(response: ChatResponse, originals: dict[str, str]) -> ChatResponse:
    for part in response.content:
        if isinstance(part, ToolCall):
            part.name = originals.get(part.name, part.name)
    return response


def restore_in_events(events: list, originals: dict[str, str]) -> list:
    for event in events:
        if isinstance(event, BlockStart) and event.tool_name:
            event.tool_name = originals.get(event.tool_name, event.tool_name)
    return events
