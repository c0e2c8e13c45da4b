"""The books of one request: who called, what was held against their credit, what the answer
cost, and the ledger record that says so.

Credits cannot be overspent: before the upstream is called, the request's worst-case cost
(its input plus its output-token limit at the dearest model it may be sent to) is held
atomically against the key's balance, or the request is refused with 402; afterwards the hold
is settled to the actual cost, never more than was held, in the same step as the request's
ledger record is written (a charge never goes without its record). Settles are queued with the
ledger records and written in batches (ledger.py), never on the response path: until then the
hold keeps the credit covered, and closing the books at shutdown writes them all. Each hold
names this instance and expires unless renewed (credit_holds.py), so a crash leaves nothing
held for good (what a killed instance answered but had not yet written is then charged
nothing). Keys without a balance skip the reserve, and a key's identity is cached, so an
unlimited key costs no database round trip on the request path.
"""
from __future__ import annotations

import asyncio
import itertools
import secrets
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

from costr.accounts.records import MICROS, ApiKey, CreditHold, LedgerRecord, Store
from costr.accounts.auth import KeyCache
from costr.accounts.keys import MAX_BALANCE_MICROS
from costr.wire.conversation import ChatRequest, Usage
from costr.errors import CostrError, InsufficientCredits, UpstreamError
from costr.wire.formats import RoutingFacts
from costr.accounts.ledger import LedgerWriter
from costr.accounts.limits import Limiter, enforce
from costr.accounts import observers
from costr.config.pricing import cost_usd
from costr.config.surcharges import Charges
from costr.wire.providers import ModelSpec
from costr.routing.route import Route

DEFAULT_OUTPUT_LIMIT = 4096   # held for a model with no max_output_tokens when the request sets none
INPUT_MARGIN = 1.25           # the offline token estimate is held with room to spare
HOLD_SECONDS = 300.0          # a hold not renewed for this long is released (credit_holds.py)
MAX_UNSETTLED = 10_000        # reserves the database failed, kept to release (beyond: they expire)


_ID_PREFIX = "req_" + secrets.token_hex(8)   # this process's; a count follows
_ids = itertools.count(int.from_bytes(secrets.token_bytes(4), "big"))


def new_request_id() -> str:
    """Unique across instances and restarts (64 random bits a process, then a count), and far
    cheaper than a uuid4 per request; 32 hex digits like one."""
    return f"{_ID_PREFIX}{next(_ids) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


@dataclass
class Entry:
    """One request's books, from authentication to its ledger record."""
    key: ApiKey
    record: LedgerRecord
    started: float = field(default_factory=time.monotonic)
    held_micros: int = 0
    hold: CreditHold | None = None   # what is held against a limited key, until settled
    settled: bool = False
    route: Route | None = None   # once routed: its failed attempts go on the record at the end
    charges: Charges | None = None   # the billing-changing fields it carries, priced

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
    """The requests' books. `instance`: this process's id, the owner of the holds it takes
    (a fresh uuid per start); `hold_seconds`: how long a hold lasts unless renewed."""

    def __init__(self, store: Store, keys: KeyCache, ledger: LedgerWriter, limiter: Limiter,
                 *, instance: str | None = None, hold_seconds: float = HOLD_SECONDS):
        self.store, self.keys, self.ledger, self.limiter = store, keys, ledger, limiter
        self.instance = instance or uuid.uuid4().hex
        self.hold_seconds = hold_seconds
        # By request id: the requests opened and not yet settled (weakly: one whose request
        # ended by a path that never settles it drops out, and its hold expires).
        self.open_entries: weakref.WeakValueDictionary[str, Entry] = weakref.WeakValueDictionary()
        # Reserves the database failed, whose outcome is unknown (it may have taken the hold and
        # lost the connection before saying so), oldest first: released once it is back
        # (credit_holds.py retries them); past MAX_UNSETTLED the oldest is dropped, and its hold
        # expires and is released instead.
        self.unsettled: deque[CreditHold] = deque(maxlen=MAX_UNSETTLED)

    def open(self, family: str, key: ApiKey) -> Entry:
        """Start the record of a request by `key` (authenticated from its headers before its
        body was read)."""
        now = time.time()
        entry = Entry(key, LedgerRecord(id=new_request_id(), key_id=key.id, ts=now,
                                        day=utc_day(now), family=family))
        self.open_entries[entry.record.id] = entry
        observers.opened(entry)   # the server's metrics, traces and access log hear of it
        return entry

    async def admit(self, entry: Entry, route: Route, request: ChatRequest, attempts: int) -> None:
        """Apply the key's rate limits (429), then hold the worst-case cost (402)."""
        key = entry.key
        await enforce(self.limiter, key.id, key.rpm, key.tpm)
        if not key.unlimited:
            await self.hold(entry, max(worst_case_micros(m, route.prompt_tokens, request.max_tokens,
                                                         entry.charges)
                                       for m in route.candidates[:attempts]))

    async def hold(self, entry: Entry, micros: int) -> None:
        """Hold `micros` against a limited key's balance, or refuse with 402."""
        if entry.key.unlimited:
            return
        hold = CreditHold(entry.record.id, entry.key.id, micros, self.instance,
                          time.time() + self.hold_seconds)
        try:
            reserved = await self.store.reserve(hold)
            if not reserved and self.ledger.settling(entry.key.id):
                # Answered requests' holds not yet settled (queued, ledger.py) may be what the
                # balance lacks: settle them now and look again, so no request is refused for
                # credit its predecessors no longer need.
                await self.ledger.flush()
                reserved = await self.store.reserve(hold)
        except Exception:
            # The database may have taken the hold and lost the connection before saying so:
            # release it (if it exists) once the database answers again, nothing charged.
            self.unsettled.append(hold)
            raise
        if not reserved:
            raise InsufficientCredits(
                f"This key's credit does not cover this request: up to ${micros / MICROS:.6f} "
                "would be needed. Top it up (costr keys top-up) or lower max_tokens.")
        entry.hold, entry.held_micros = hold, micros

    async def admit_hit(self, entry: Entry, model: ModelSpec, usage: Usage, charge: bool) -> None:
        """A cache hit counts against the key's rate limits; it is paid for only when the
        operator charges hits, at what the answer first cost."""
        key = entry.key
        await enforce(self.limiter, key.id, key.rpm, key.tpm)
        if charge:
            await self.hold(entry, max(1, round(cost_usd(model, usage, entry.charges) * MICROS)))

    async def settle(self, entry: Entry, model: ModelSpec, baseline: ModelSpec, usage: Usage,
                     facts: RoutingFacts, status: int = 200, error: str | None = None,
                     free: bool = False, charge: bool = True) -> None:
        """Debit what the answer cost (at most what was held) and queue the ledger record.
        `free`: a cache hit not charged for; what it would have cost is recorded as saved.
        `charge=False`: the answer's cost is recorded, and nothing is debited (a stream that
        ended before any of its content reached the client)."""
        cost = round(cost_usd(model, usage, entry.charges) * MICROS)
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
        r.charged_micros = min(cost, entry.held_micros) if charge else 0
        self._finish(entry, r.charged_micros)
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
        self._finish(entry, 0)

    def _finish(self, entry: Entry, charge_micros: int) -> None:
        """Close the entry and queue its record, with the settle of its hold if it has one:
        nothing here waits, so a request cancelled as it ends is on the books all the same."""
        entry.settled = True
        entry.record.latency_ms = round((time.monotonic() - entry.started) * 1000, 2)
        self.open_entries.pop(entry.record.id, None)
        self.ledger.record(entry.record, settle=(entry.hold, charge_micros) if entry.hold else None)
        observers.finished(entry)

    def held_ids(self) -> list[str]:
        """The holds of the requests still open here, and of those queued to be settled, to renew."""
        return [*(e.hold.id for e in list(self.open_entries.values()) if e.hold and not e.settled),
                *self.ledger.pending_holds()]

    async def wait_for_open_entries(self, timeout_seconds: float) -> int:
        """Wait (at most `timeout_seconds`) for the requests still open to settle, as those
        cancelled at shutdown do; returns how many are still open."""
        deadline = time.monotonic() + timeout_seconds
        while self.open_entries and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return len(self.open_entries)


_cached_day = [0.0, -1.0, ""]   # the UTC day last asked for: [its start, its end, YYYY-MM-DD]


def utc_day(ts: float) -> str:
    """The UTC date of `ts`, YYYY-MM-DD: formatted once a day, not per request."""
    if not _cached_day[0] <= ts < _cached_day[1]:
        start = ts - ts % 86400
        _cached_day[:] = [start, start + 86400,
                          datetime.fromtimestamp(start, timezone.utc).strftime("%Y-%m-%d")]
    return _cached_day[2]


def worst_case_micros(model: ModelSpec, prompt_tokens: int, max_tokens: int | None,
                      charges: Charges | None = None) -> int:
    """The most this model can cost for this prompt. No model writes more than its output
    limit, nor more than its context window holds: a max_tokens of 2**62 asks for no more
    than that, and the hold never exceeds what a balance can be (nor overflows a BIGINT)."""
    output = max_tokens or model.max_output_tokens or DEFAULT_OUTPUT_LIMIT
    for ceiling in (model.max_output_tokens, model.context_window):
        if ceiling:
            output = min(output, ceiling)
    usage = Usage(input_tokens=int(prompt_tokens * INPUT_MARGIN) + 16, output_tokens=output)
    cost = cost_usd(model, usage, charges, worst_case=True)   # surcharges at their most
    return min(MAX_BALANCE_MICROS, max(1, round(cost * MICROS)))
