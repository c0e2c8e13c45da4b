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

from .conversation import BlockStart, ChatRequest, ChatResponse, ToolCall


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
        cleaned = re.sub(f"[^{self.chars}]", "_", name)
        if not re.match(f"[{self.first}]", cleaned):
            cleaned = "_" + cleaned
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        return f"{cleaned[:self.limit - 9]}_{digest}"

    def originals(self, request: ChatRequest) -> dict[str, str]:
        """Stand-in -> original, for the request's tools whose names are replaced."""
        return {wire: t.name for t in request.tools if (wire := self.wire_name(t.name)) != t.name}


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
