"""The response cache in the request path: which requests may be answered from it, under what
key, how an answer is stored and replayed, and what happens when the backend fails.

A hit is exactly a request that would have been answered the same way: the key hashes the
client's body as sent (minus fields that cannot change the answer: stream flags, user ids),
the client headers Costr forwards upstream with it when it passes through to the routed model
(`forward_headers`: whatever its API format keeps for the upstream, such as beta features, which
change the answer as much as the body does), its API format, the requested model and, for
`auto`, the policy in force and the model the router chose. Entries are scoped to the calling
key unless the operator chooses `shared`. Errors, streams that failed or were cut short, and
answers over MAX_ENTRY_CHARS are never stored. Identical requests that arrive while the first
is still being answered wait for it instead of calling the upstream.
A backend that fails degrades to no cache, with a warning in the log; requests never fail
because of it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson

from costr.cache.backends import CacheBackend, cache_key
from costr.wire.conversation import (BlockStart, BlockStop, ChatRequest, ChatResponse, Frame, MessageEnd,
                           MessageStart, Text, TextDelta, Thinking, ThinkingDelta,
                           ToolArgumentsDelta, ToolCall, Usage)
from costr.errors import InvalidRequest
from costr.routing.live import LiveConfig
from costr.routing.route import Route

log = logging.getLogger("costr.cache")
# Fields that do not change what the model answers.
VOLATILE = frozenset({"stream", "stream_options", "user", "metadata"})
WARN_EVERY_SECONDS = 60.0
WAIT_FOR_IDENTICAL_SECONDS = 600.0   # then answer it separately
# An answer larger than this is not stored (nor collected from a stream to be stored): one
# such entry would push hundreds of ordinary ones out of a 64 MB memory cache.
MAX_ENTRY_CHARS = 16 * 1024 * 1024
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


@dataclass(slots=True)
class CachePlan:
    key: str
    ttl: int
    leader: bool = False   # this request is the one answering for identical ones waiting


class ResponseCache:
    def __init__(self, backend: CacheBackend | None):
        self.backend = backend
        self._inflight: dict[str, asyncio.Future] = {}
        self._warned_at = 0.0

    def plan(self, live: LiveConfig, request: ChatRequest, route: Route, key_id: str,
             headers) -> CachePlan | None:
        """The cache key and lifetime for this request, or None when the cache is not used
        (off in config, no backend, `x-no-cache: true`). A bad header is a 400."""
        settings = live.config.cache
        no_cache = headers.get("x-no-cache", "").strip().lower()
        if no_cache not in TRUE | FALSE:
            raise InvalidRequest("x-no-cache must be true or false.", param="x-no-cache")
        ttl = _ttl(headers.get("x-cache-ttl"), settings)
        if self.backend is None or not settings.enabled or no_cache in TRUE or request.raw is None:
            return None
        body = {k: v for k, v in request.raw.items() if k not in VOLATILE}
        scope = key_id if settings.scope == "key" else "shared"
        model = route.candidates[0]
        forwarded = request.forward_headers if live.passes_through(request, model) else {}
        return CachePlan(cache_key(scope, request.source_format, request.model, route.policy,
                                   model.id, body, forwarded), ttl)

    async def lookup(self, plan: CachePlan) -> tuple[ChatResponse, str] | None:
        """A stored answer and the model that gave it; or, when an identical request is being
        answered now, its answer once it has one; else None, and this request becomes the one
        that answers."""
        stored = await self._guarded(self.backend.get(plan.key))
        if stored:
            try:
                return load_answer(stored)
            except (ValueError, KeyError, TypeError):
                self._warn("an unreadable cache entry was ignored")
        pending = self._inflight.get(plan.key)
        if pending is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(pending), WAIT_FOR_IDENTICAL_SECONDS)
            except asyncio.TimeoutError:
                return None
        self._inflight[plan.key] = asyncio.get_running_loop().create_future()
        plan.leader = True
        return None

    async def store(self, plan: CachePlan, answer: ChatResponse, served_by: str) -> None:
        self._release(plan, (answer, served_by))
        entry = dump_answer(answer, served_by)
        if len(entry) <= MAX_ENTRY_CHARS:
            await self._guarded(self.backend.set(plan.key, entry, plan.ttl))

    def abandon(self, plan: CachePlan | None) -> None:
        """The answer failed: requests waiting on it go to the upstream themselves."""
        if plan is not None:
            self._release(plan, None)

    def _release(self, plan: CachePlan, answer: tuple[ChatResponse, str] | None) -> None:
        if plan.leader:
            plan.leader = False
            pending = self._inflight.pop(plan.key, None)
            if pending is not None and not pending.done():
                pending.set_result(answer)

    async def _guarded(self, call):
        try:
            return await call
        except Exception as exc:  # the cache is an optimisation: it may fail, requests may not
            self._warn(f"the cache backend failed ({type(exc).__name__}: {exc}); "
                       "answering without it")
            return None

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning(message)

    async def close(self) -> None:
        if self.backend is not None:
            await self._guarded(self.backend.close())


def _ttl(value: str | None, settings) -> int:
    if value is None:
        return settings.default_ttl
    try:
        ttl = int(value.strip())
    except ValueError:
        ttl = 0
    if not 1 <= ttl <= settings.max_ttl:
        raise InvalidRequest(f"x-cache-ttl must be a whole number of seconds from 1 to "
                             f"{settings.max_ttl} (got {value!r}).", param="x-cache-ttl")
    return ttl


# ---- stored answers ------------------------------------------------------------------------

def dump_answer(answer: ChatResponse, served_by: str) -> bytes:
    parts = []
    for part in answer.content:
        if isinstance(part, Text):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCall):
            parts.append({"type": "tool_call", "id": part.id, "name": part.name,
                          "arguments": part.arguments})
        elif isinstance(part, Thinking):
            parts.append({"type": "thinking", "text": part.text, "signature": part.signature,
                          "redacted_data": part.redacted_data})
    return orjson.dumps({"v": 1, "served_by": served_by, "id": answer.id, "model": answer.model, "content": parts,
                         "stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence,
                         "usage": answer.usage, "created": answer.created,
                         "raw": answer.raw, "raw_format": answer.raw_format})


def load_answer(data: bytes) -> tuple[ChatResponse, str]:
    stored = orjson.loads(data)
    if stored.get("v") != 1:
        raise ValueError("unknown cache entry version")
    content = []
    for part in stored["content"]:
        kind = part["type"]
        if kind == "text":
            content.append(Text(part["text"]))
        elif kind == "tool_call":
            content.append(ToolCall(part["id"], part["name"], part["arguments"]))
        elif kind == "thinking":
            content.append(Thinking(part["text"], part["signature"], part["redacted_data"]))
    answer = ChatResponse(id=stored["id"], model=stored["model"], content=content,
                          stop_reason=stored["stop_reason"], stop_sequence=stored["stop_sequence"],
                          usage=Usage(**stored["usage"]), created=stored["created"],
                          raw=stored["raw"], raw_format=stored["raw_format"])
    return answer, stored["served_by"]


def replay_frames(answer: ChatResponse) -> list[Frame]:
    """A stored answer as one neutral stream, for a client that asked for `stream: true`."""
    usage = answer.usage
    events: list = [MessageStart(answer.id, answer.model, Usage(
        input_tokens=usage.input_tokens, cached_input_tokens=usage.cached_input_tokens,
        cache_write_tokens=usage.cache_write_tokens))]
    for index, part in enumerate(answer.content):
        if isinstance(part, Text):
            events += [BlockStart(index, "text"), TextDelta(index, part.text)]
        elif isinstance(part, ToolCall):
            events += [BlockStart(index, "tool_call", tool_call_id=part.id, tool_name=part.name),
                       ToolArgumentsDelta(index, part.arguments)]
        elif part.redacted_data is not None:
            events.append(BlockStart(index, "redacted_thinking", redacted_data=part.redacted_data))
        else:
            events += [BlockStart(index, "thinking"), ThinkingDelta(index, part.text)]
            if part.signature:
                events.append(ThinkingDelta(index, signature=part.signature))
        events.append(BlockStop(index))
    events.append(MessageEnd(answer.stop_reason, usage, answer.stop_sequence))
    return [Frame(events)]
