"""Tool call ids a provider refuses, and the stable stand-ins sent in their place.

An agent's tool loop moves between providers, and every earlier call keeps the id the provider
that made it minted, so one conversation holds ids of every style. Providers accept fewer:
OpenAI caps them at 40 characters, Anthropic allows only `^[a-zA-Z0-9_-]+$`, and ids Costr
mints itself may carry data for a later request (and run long). A provider plugin states its
rule once; an id that breaks it goes upstream as a cleaned, cut form with a hash of the
original. The same id always gives the same stand-in, so a call and its result stay paired
within a request and across requests, with no state. Answers need no mapping back: the
provider mints ids of its own for new calls.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from costr.wire.tool_names import stand_in

_DIGEST_CHARS = 16  # hex digits of the original's hash that end a stand-in


@dataclass(frozen=True)
class ToolCallIdRule:
    chars: str | None = None   # a regex character-class body of the characters allowed; None: any
    limit: int | None = None   # the longest id accepted; None: no limit
    _valid: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.limit is not None and self.limit <= _DIGEST_CHARS + 1:
            raise ValueError(f"a tool call id limit under {_DIGEST_CHARS + 2} leaves no room for a stand-in")
        chars = f"[{self.chars}]" if self.chars else "."
        count = f"{{1,{self.limit}}}" if self.limit else "+"
        object.__setattr__(self, "_valid", re.compile(chars + count, re.S))

    def wire_id(self, call_id: str) -> str:
        """`call_id` if the provider accepts it, else its stand-in."""
        if self._valid.fullmatch(call_id):
            return call_id
        return stand_in(call_id, self.chars, limit=self.limit, digest=_DIGEST_CHARS)
