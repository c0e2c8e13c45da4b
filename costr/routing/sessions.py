"""Agent sessions: a tool loop keeps the tier it started in.

An agent's loop is one user ask followed by many requests whose last message is only tool
results. Scored alone, those continuations often look easy ("here is the file"), and routing
them to a weaker model mid-task breaks the task; so a continuation gets at least the tier its
loop started with. Each API format names the session when it decodes a request
(`ChatRequest.session`: an agent's session header, or the request's user).
"""
from __future__ import annotations

import time
from collections import OrderedDict

from costr.wire.conversation import ChatRequest, ToolResult

def continues_tool_loop(request: ChatRequest) -> bool:
    """The last message is the client returning tool results, and nothing else."""
    last = request.messages[-1] if request.messages else None
    return bool(last and last.role == "user" and last.parts
                and all(isinstance(p, ToolResult) for p in last.parts))


class SessionTiers:
    """The tier each recent session's current loop started in: bounded, and forgetting a
    session idle for `ttl_seconds`. One event loop uses it, so it needs no lock."""

    def __init__(self, max_sessions: int = 10_000, ttl_seconds: float = 3600.0, clock=time.monotonic):
        self.max_sessions, self.ttl, self.clock = max_sessions, ttl_seconds, clock
        self._tiers: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def started_tier(self, key: str) -> str | None:
        entry = self._tiers.get(key)
        if entry is None:
            return None
        tier, seen = entry
        if self.clock() - seen > self.ttl:
            del self._tiers[key]
            return None
        self._tiers[key] = (tier, self.clock())
        self._tiers.move_to_end(key)
        return tier

    def remember(self, key: str, tier: str) -> None:
        self._tiers[key] = (tier, self.clock())
        self._tiers.move_to_end(key)
        while len(self._tiers) > self.max_sessions:
            self._tiers.popitem(last=False)
