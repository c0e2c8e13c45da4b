"""Agent sessions: a tool loop keeps the tier it started in.

An agent's loop is one user ask followed by many requests whose last message is only tool
results. Scored alone, those continuations often look easy ("here is the file"), and routing
them to a weaker model mid-task breaks the task; so a continuation gets at least the tier its
loop started with. Each API format names the session when it decodes a request
(`ChatRequest.session`: an agent's session header, or the request's user).

A session id is the client's word, so the memory is kept per API key: one key naming another
key's session id must not raise (or lower) the tier that key's loop gets. Ids longer than
MAX_SESSION_ID_CHARS are not remembered at all (real ones are UUIDs or short user ids), so
neither the entry count nor what each entry holds is up to the client.
"""
from __future__ import annotations

import time
from collections import OrderedDict

from costr.wire.conversation import ChatRequest, ToolResult

MAX_SESSION_ID_CHARS = 256


def continues_tool_loop(request: ChatRequest) -> bool:
    """The last message is the client returning tool results, and nothing else."""
    last = request.messages[-1] if request.messages else None
    return bool(last and last.role == "user" and last.parts
                and all(isinstance(p, ToolResult) for p in last.parts))


class SessionTiers:
    """The tier each recent session's current loop started in, per API key (see `of_key`):
    bounded, and forgetting a session idle for `ttl_seconds`. One event loop uses it, so it
    needs no lock."""

    def __init__(self, max_sessions: int = 10_000, ttl_seconds: float = 3600.0, clock=time.monotonic):
        self.max_sessions, self.ttl, self.clock = max_sessions, ttl_seconds, clock
        self._tiers: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def of_key(self, key_id: str) -> KeySessions:
        """The sessions of one API key: what routing reads and writes for that key's requests."""
        return KeySessions(self, key_id)

    def started_tier(self, key: str | tuple[str, str]) -> str | None:
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

    def remember(self, key: str | tuple[str, str], tier: str) -> None:
        self._tiers[key] = (tier, self.clock())
        self._tiers.move_to_end(key)
        while len(self._tiers) > self.max_sessions:
            self._tiers.popitem(last=False)


class KeySessions:
    """One API key's view of the session memory: its session ids never meet another key's,
    and an id too long to be a real one is neither looked up nor kept."""

    def __init__(self, tiers: SessionTiers, key_id: str):
        self.tiers, self.key_id = tiers, key_id

    def started_tier(self, session: str) -> str | None:
        if len(session) > MAX_SESSION_ID_CHARS:
            return None
        return self.tiers.started_tier((self.key_id, session))

    def remember(self, session: str, tier: str) -> None:
        if len(session) <= MAX_SESSION_ID_CHARS:
            self.tiers.remember((self.key_id, session), tier)
