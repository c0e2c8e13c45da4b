"""Circuit breakers for upstreams: a dead or hung upstream is skipped instead of waited on.

One breaker per provider and one per model. A failure with no HTTP answer (could not
connect, timed out, broke off) counts against the provider: its server is not answering,
whatever the model. A failed HTTP answer (429, 5xx, a 200 that cannot be read) counts against
the model: the provider answered, about that model. Only retryable failures count; an upstream
refusing a malformed request (400) is answering, so that counts as a success.

A breaker opens after `failures` failures in a row, or when `failure_rate` of at least
`min_calls` calls in the last `window_seconds` failed, or for as long as an upstream's
Retry-After asks. While open, its candidates are skipped; after `cooldown_seconds` it lets one
probe request through (half-open): success closes it, failure opens it again. The state is in
memory, per instance; shared_breakers.py shares it through Redis. A request with every breaker
closed costs two dictionary look-ups here (`enter`) and one list append per breaker (`record`).
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Callable

from costr.config.files import BreakerEntry
from costr.errors import UpstreamError
from costr.wire.providers import ModelSpec

log = logging.getLogger("costr.breakers")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
RECENT_CALLS = 512              # calls kept per breaker, for its failure rate and latency
LONGEST_RETRY_AFTER = 600.0     # the longest an upstream's Retry-After keeps a model skipped
OK, FAILED, FAILED_ELSEWHERE = 0, 1, 2   # a call's outcome for a breaker (ELSEWHERE: the model's)


class Breaker:
    """One provider's or one model's breaker. Times are epoch seconds."""
    __slots__ = ("key", "state", "in_a_row", "open_until", "changed", "calls", "last_error",
                 "why_open")

    def __init__(self, key: str):
        self.key = key                   # "provider:NAME" or "model:ID"
        self.state = CLOSED
        self.in_a_row = 0                # failures since the last success
        self.open_until = 0.0            # while open: when the probe may go
        self.changed = 0.0               # when the state last changed (the newer one wins)
        self.calls: deque[tuple[float, float, int]] = deque(maxlen=RECENT_CALLS)  # at, s, outcome
        self.last_error: str | None = None
        self.why_open: str | None = None

    @property
    def name(self) -> str:
        """"provider NAME" or "model ID", as messages say it."""
        return self.key.replace(":", " ", 1)

    def passable(self, now: float) -> bool:
        """Whether a request may be let through now: closed, or open past its cool-down with
        no probe in flight."""
        return self.state == CLOSED or (self.state == OPEN and now >= self.open_until)

    def succeeded(self, now: float, seconds: float, outcome: int = OK) -> bool:
        """A call answered; True when that closed the breaker."""
        self.calls.append((now, seconds, outcome))
        self.in_a_row = 0
        if self.state == CLOSED:
            return False
        self.state, self.changed, self.why_open = CLOSED, now, None
        return True

    def failed(self, now: float, seconds: float, settings: BreakerEntry, error: str,
               retry_after: float | None) -> bool:
        """A call failed; True when that opened the breaker (or kept it open longer)."""
        self.calls.append((now, seconds, FAILED))
        self.in_a_row += 1
        self.last_error = error
        asked = now + min(retry_after, LONGEST_RETRY_AFTER) if retry_after else 0.0
        if self.state == OPEN:   # calls that went in before it opened tell nothing new,
            if asked <= self.open_until:   # unless the upstream asks for a longer wait
                return False
            self.open_until, self.changed = asked, now
            self.why_open = f"the upstream asked to retry after {retry_after:g} s"
            return True
        why, until = None, 0.0
        if self.state == HALF_OPEN:
            why = "its probe request failed"
        elif self.in_a_row >= settings.failures:
            why = f"{self.in_a_row} failure{'s' if self.in_a_row > 1 else ''} in a row"
        else:
            why = self._rate_exceeded(now, settings)
        if why:
            until = now + settings.cooldown_seconds
        if asked > until:
            why, until = f"the upstream asked to retry after {retry_after:g} s", asked
        if not why:
            return False
        self.state, self.open_until, self.changed, self.why_open = OPEN, until, now, why
        return True

    def _rate_exceeded(self, now: float, settings: BreakerEntry) -> str | None:
        since = max(now - settings.window_seconds, self.changed)   # not from before it closed
        outcomes = [outcome for at, _, outcome in self.calls if at >= since]
        failed = outcomes.count(FAILED)
        if len(outcomes) >= settings.min_calls and failed >= settings.failure_rate * len(outcomes):
            return f"{failed} of {len(outcomes)} calls failed in {settings.window_seconds:g} s"
        return None

    def recent(self, now: float, window: float) -> dict:
        """The calls of the last `window` seconds: how many, the share that failed, latency."""
        calls = [(seconds, outcome) for at, seconds, outcome in self.calls if at >= now - window]
        latencies = sorted(seconds for seconds, _ in calls)
        return {"calls": len(calls),
                "error_rate": round(sum(o != OK for _, o in calls) / len(calls), 3) if calls else 0.0,
                "latency_ms": {"p50": _percentile(latencies, 0.50), "p95": _percentile(latencies, 0.95)}}

    def describe(self, now: float) -> dict:
        out: dict = {"state": self.state, "failures_in_a_row": self.in_a_row}
        if self.state != CLOSED:
            out["why"] = self.why_open
            out["probe_in_seconds"] = round(max(0.0, self.open_until - now), 1)
        if self.last_error:
            out["last_error"] = self.last_error
        return out


def _percentile(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)] * 1000, 1)


class Pass:
    """Leave to call one model: its provider's and its own breaker, and which of them this
    call is the probe of (it must end in Breakers.record or Breakers.release)."""
    __slots__ = ("provider", "model", "probes_provider", "probes_model")

    def __init__(self, provider: Breaker, model: Breaker, probes_provider: bool, probes_model: bool):
        self.provider, self.model = provider, model
        self.probes_provider, self.probes_model = probes_provider, probes_model


class Breakers:
    """Every breaker of this instance, by key ("provider:NAME", "model:ID"). `on_change` (set
    by the shared board) hears of every state change this instance makes."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._all: dict[str, Breaker] = {}
        self.on_change: Callable[[str, Breaker], None] | None = None

    def of(self, key: str) -> Breaker:
        breaker = self._all.get(key)
        if breaker is None:
            breaker = self._all[key] = Breaker(key)
        return breaker

    def pair(self, model: ModelSpec) -> tuple[Breaker, Breaker]:
        return self.of("provider:" + model.provider), self.of("model:" + model.id)

    def passable(self, model: ModelSpec) -> bool:
        provider, own = self.pair(model)
        now = self.clock()
        return provider.passable(now) and own.passable(now)

    def enter(self, model: ModelSpec, settings: BreakerEntry) -> Pass | None:
        """Leave to call `model`, or None when a breaker in its way is open (or is letting
        another request's probe through)."""
        provider, own = self.pair(model)
        if (provider.state == CLOSED and own.state == CLOSED) or not settings.enabled:
            return Pass(provider, own, False, False)
        now = self.clock()
        if not (provider.passable(now) and own.passable(now)):
            return None
        probes = []
        for breaker in (provider, own):
            probes.append(breaker.state == OPEN)
            if breaker.state == OPEN:
                breaker.state = HALF_OPEN
        return Pass(provider, own, *probes)

    def record(self, ticket: Pass, error: UpstreamError | None, seconds: float,
               settings: BreakerEntry) -> None:
        """How the call ended: None when it answered."""
        if not settings.enabled:
            return
        now = self.clock()
        provider, own = ticket.provider, ticket.model
        changed = []
        if error is None or not error.retryable:     # an answer, or a refusal of the request
            changed += [b for b in (provider, own) if b.succeeded(now, seconds)]
        elif error.upstream_status:                   # the provider answered, about this model
            if provider.succeeded(now, seconds, FAILED_ELSEWHERE):
                changed.append(provider)
            if own.failed(now, seconds, settings, error.message, error.retry_after):
                changed.append(own)
        else:                                         # no answer: the provider's failure
            if provider.failed(now, seconds, settings, error.message, error.retry_after):
                changed.append(provider)
            self._release(own, ticket.probes_model)   # the model's probe proved nothing
        for breaker in changed:
            self._changed(breaker)

    def release(self, ticket: Pass) -> None:
        """The call ended without an outcome (the request was cancelled): a probe it was goes
        back, so the next request may probe instead."""
        self._release(ticket.provider, ticket.probes_provider)
        self._release(ticket.model, ticket.probes_model)

    @staticmethod
    def _release(breaker: Breaker, was_probe: bool) -> None:
        if was_probe and breaker.state == HALF_OPEN:
            breaker.state = OPEN

    def _changed(self, breaker: Breaker) -> None:
        if breaker.state == OPEN:
            log.warning("circuit breaker of %s opened for %.0f s: %s (last error: %s)",
                        breaker.name, breaker.open_until - self.clock(), breaker.why_open,
                        breaker.last_error)
        else:
            log.warning("circuit breaker of %s closed: it answered again", breaker.name)
        if self.on_change is not None:
            self.on_change(breaker.key, breaker)

    def adopt(self, key: str, state: str, until: float, changed: float,
              why: str | None = None, error: str | None = None) -> None:
        """Another instance's state change (shared_breakers.py), when newer than this one's."""
        breaker = self.of(key)
        if changed <= breaker.changed:
            return
        if state == OPEN and until > self.clock():
            breaker.state, breaker.open_until, breaker.changed = OPEN, until, changed
            breaker.why_open, breaker.last_error = why, error or breaker.last_error
        elif state == CLOSED and breaker.state != CLOSED:
            breaker.state, breaker.in_a_row, breaker.changed, breaker.why_open = CLOSED, 0, changed, None

    def why_skipped(self, model: ModelSpec) -> str:
        """Why `model` is skipped, for the ledger and x_routing."""
        now = self.clock()
        blocking = next((b for b in self.pair(model) if not b.passable(now)),
                        max(self.pair(model), key=lambda b: b.open_until))
        if blocking.state == HALF_OPEN:
            return f"skipped: circuit breaker of {blocking.name} open, its probe request in flight"
        why = f"skipped: circuit breaker of {blocking.name} open ({blocking.why_open}"
        if blocking.last_error:
            why += f", last error: {blocking.last_error}"
        return (why + ")").replace("; ", ", ")   # the ledger separates attempts with "; "

    def wait(self, model: ModelSpec) -> float:
        """Seconds until `model` may be tried again (a probe in flight: the cool-down)."""
        now = self.clock()
        return max(((b.open_until - now if b.state == OPEN else 1.0)
                    for b in self.pair(model) if not b.passable(now)), default=0.0)

    def report(self, providers: list[str], settings: BreakerEntry) -> dict:
        """For /v1/router/health: each provider's breaker and recent calls, and the models
        whose own breaker is not closed."""
        now = self.clock()
        window = settings.window_seconds
        out = {"providers": {}, "models": {}}
        for name in providers:
            breaker = self.of("provider:" + name)
            out["providers"][name] = {**breaker.describe(now), "recent": breaker.recent(now, window)}
        for key, breaker in self._all.items():
            if key.startswith("model:") and breaker.state != CLOSED:
                out["models"][key[len("model:"):]] = {**breaker.describe(now),
                                                       "recent": breaker.recent(now, window)}
        return out
