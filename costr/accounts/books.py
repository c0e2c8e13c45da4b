"""The books of one request: who called, what was held against their credit, what the answer
cost, and the ledger record that says so.

Credits cannot be overspent: before the upstream is called, the request's worst-case cost
(its input plus its output-token limit at the dearest model it may be sent to) is held
atomically against the key's balance, or the request is refused with 402; afterwards the hold
is settled to the actual cost, never more than was held. Keys without a balance skip both
database writes, and a key's identity is cached, so an unlimited key costs no database round
trip on the request path. Ledger records are queued, never written on the response path.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import anyio
import orjson

from costr.accounts.records import MICROS, ApiKey, LedgerRecord, Store
from costr.accounts.auth import KeyCache
from costr.accounts.keys import MAX_BALANCE_MICROS
from costr.wire.conversation import ChatRequest, Usage
from costr.errors import CostrError, InsufficientCredits, UpstreamError
from costr.wire.formats import RoutingFacts
from costr.accounts.ledger import LedgerWriter
from costr.accounts.limits import Limiter, enforce
from costr.config.pricing import cost_usd
from costr.wire.providers import ModelSpec
from costr.routing.route import Route

DEFAULT_OUTPUT_LIMIT = 4096   # held for a model with no max_output_tokens when the request sets none
INPUT_MARGIN = 1.25           # the offline token estimate is held with room to spare


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


@dataclass
class Entry:
    """One request's books, from authentication to its ledger record."""
    key: ApiKey
    record: LedgerRecord
    started: float = field(default_factory=time.monotonic)
    held_micros: int = 0
    settled: bool = False
    route: Route | None = None   # once routed: its failed attempts go on the record at the end

    @property
    def headers(self) -> dict[str, str]:
        return {"x-request-id": self.record.id}

    def routed(self, request: ChatRequest, route: Route) -> None:
        r = self.record
        r.requested_model, r.policy, r.policy_rule = request.model, route.policy, route.rule
        r.tier, r.confidence = route.tier, route.confidence
        r.complexity = route.complexity.score if route.complexity else None
        if route.complexity and route.complexity.signals:
            r.routing_signals = orjson.dumps(route.complexity.signals, default=str).decode()
        r.input_tokens = route.prompt_tokens
        self.route = route

    def fallbacks(self) -> str | None:
        """The attempts that failed before the answer (or before giving up), for the ledger."""
        return "; ".join(self.route.failed)[:1000] if self.route and self.route.failed else None

    def first_byte(self) -> None:
        if self.record.ttft_ms is None:
            self.record.ttft_ms = round((time.monotonic() - self.started) * 1000, 2)


class Books:
    def __init__(self, store: Store, keys: KeyCache, ledger: LedgerWriter, limiter: Limiter):
        self.store, self.keys, self.ledger, self.limiter = store, keys, ledger, limiter

    def open(self, family: str, key: ApiKey) -> Entry:
        """Start the record of a request by `key` (authenticated from its headers before its
        body was read)."""
        now = time.time()
        day = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")
        return Entry(key, LedgerRecord(id=new_request_id(), key_id=key.id, ts=now, day=day,
                                       family=family))

    async def admit(self, entry: Entry, route: Route, request: ChatRequest, attempts: int) -> None:
        """Apply the key's rate limits (429), then hold the worst-case cost (402)."""
        key = entry.key
        await enforce(self.limiter, key.id, key.rpm, key.tpm)
        if not key.unlimited:
            await self.hold(entry, max(worst_case_micros(m, route.prompt_tokens, request.max_tokens)
                                       for m in route.candidates[:attempts]))

    async def hold(self, entry: Entry, micros: int) -> None:
        """Hold `micros` against a limited key's balance, or refuse with 402."""
        if entry.key.unlimited:
            return
        if not await self.store.reserve(entry.key.id, micros):
            raise InsufficientCredits(
                f"This key's credit does not cover this request: up to ${micros / MICROS:.6f} "
                "would be needed. Top it up (costr keys top-up) or lower max_tokens.")
        entry.held_micros = micros

    async def admit_hit(self, entry: Entry, model: ModelSpec, usage: Usage, charge: bool) -> None:
        """A cache hit counts against the key's rate limits; it is paid for only when the
        operator charges hits, at what the answer first cost."""
        key = entry.key
        await enforce(self.limiter, key.id, key.rpm, key.tpm)
        if charge:
            await self.hold(entry, max(1, round(cost_usd(model, usage) * MICROS)))

    async def settle(self, entry: Entry, model: ModelSpec, baseline: ModelSpec, usage: Usage,
                     facts: RoutingFacts, status: int = 200, error: str | None = None,
                     free: bool = False) -> None:
        """Debit what the answer cost (at most what was held) and queue the ledger record.
        `free`: a cache hit not charged for; what it would have cost is recorded as saved."""
        cost = round(cost_usd(model, usage) * MICROS)
        r = entry.record
        if free:
            cost, r.cache_saved_micros = 0, cost
        r.routed_model, r.provider, r.tier = model.id, model.provider, model.tier
        r.input_tokens, r.output_tokens = usage.input_tokens, usage.output_tokens
        r.cached_tokens, r.usage_estimated = usage.cached_input_tokens, usage.estimated
        r.cost_micros, r.baseline_micros = cost, round(cost_usd(baseline, usage) * MICROS)
        r.savings_percent, r.cache_hit = facts.savings_percent, facts.cache_hit
        r.status, r.error = status, error
        r.fallbacks = entry.fallbacks()
        r.charged_micros = min(cost, entry.held_micros)
        await self._finish(entry, r.charged_micros)
        if entry.key.tpm is not None:
            await self.limiter.add_tokens(entry.key.id, usage.input_tokens + usage.output_tokens)

    async def fail(self, entry: Entry, err: CostrError) -> None:
        """A request that got no answer: nothing is charged; the error is on the books."""
        err.headers.setdefault("x-request-id", entry.record.id)
        if entry.settled:
            return
        entry.record.status, entry.record.error = err.status, err.message[:1000]
        entry.record.fallbacks = entry.fallbacks()
        # No answer, no usage: the prompt estimate routed() put here is not tokens anyone used,
        # and /v1/usage would count it.
        entry.record.input_tokens = 0
        if isinstance(err, UpstreamError) and err.upstream_status:
            entry.record.upstream_status = err.upstream_status
        await self._finish(entry, 0)

    async def _finish(self, entry: Entry, charge_micros: int) -> None:
        entry.settled = True
        entry.record.latency_ms = round((time.monotonic() - entry.started) * 1000, 2)
        if entry.held_micros or charge_micros:
            with anyio.CancelScope(shield=True):  # a client that hung up still gets billed right
                await self.store.settle(entry.key.id, entry.held_micros, charge_micros)
        self.ledger.record(entry.record)


def worst_case_micros(model: ModelSpec, prompt_tokens: int, max_tokens: int | None) -> int:
    """The most this model can cost for this prompt. No model writes more than its output
    limit, nor more than its context window holds: a max_tokens of 2**62 asks for no more
    than that, and the hold never exceeds what a balance can be (nor overflows a BIGINT)."""
    output = max_tokens or model.max_output_tokens or DEFAULT_OUTPUT_LIMIT
    for ceiling in (model.max_output_tokens, model.context_window):
        if ceiling:
            output = min(output, ceiling)
    usage = Usage(input_tokens=int(prompt_tokens * INPUT_MARGIN) + 16, output_tokens=output)
    return min(MAX_BALANCE_MICROS, max(1, round(cost_usd(model, usage) * MICROS)))
