"""Prometheus metrics: what every request did, counted as it ends, and GET /metrics.

Each finished request (a `Served`, from observability.py) moves the counters and histograms
below; the breakers' states and the credit held are read when Prometheus scrapes. Label values
come from the configuration or from a bounded set (the route's path template, the status, an
attempt's outcome), never from what a client sends: a request for an unknown model is counted
with an empty model label. With PROMETHEUS_MULTIPROC_DIR set (several worker processes), the
values live in that folder and a scrape of any worker answers for all of them
(prometheus_client's multiprocess mode; the directory must be emptied before the workers start).

/metrics is served either by the app, to admin keys only, or, with `costr serve --metrics-port`,
without a key on its own listen address (metrics_listener.py), and then not by the app at all.
"""
from __future__ import annotations

import logging
import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               disable_created_metrics, generate_latest)
from prometheus_client.core import GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from costr.accounts.auth import require_admin
from costr.accounts.records import MICROS
from costr.cache.responses import CachePlan, ResponseCache
from costr.errors import CostrError, default_error_body
from costr.server.gateway import json_response
from costr.server.observability import Served

log = logging.getLogger("costr")

REQUEST_LABELS = ("endpoint", "status", "tier", "model", "provider", "policy")
MODEL_LABELS = ("tier", "model", "provider")
# LLM answers take from milliseconds (a cache hit) to minutes (a long generation).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    """The series one app keeps, on its own registry (in multiprocess mode, in the shared
    folder). Labelled children are kept once made: a request costs dictionary look-ups and
    increments, not prometheus_client's label parsing."""

    def __init__(self):
        disable_created_metrics()   # no *_created series: twice the series for nothing
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "costr_requests", "Requests answered, by route, status, and (for model requests) "
            "the tier, model, provider and policy they were routed to", REQUEST_LABELS,
            registry=registry)
        self.duration = Histogram(
            "costr_request_duration_seconds", "Time from a request's arrival to its last byte",
            ("endpoint", "model"), buckets=LATENCY_BUCKETS, registry=registry)
        self.ttft = Histogram(
            "costr_time_to_first_token_seconds", "Streamed answers: time from the request's "
            "arrival to the upstream's first event", ("model",), buckets=TTFT_BUCKETS,
            registry=registry)
        self.attempts = Counter(
            "costr_upstream_attempts", "Upstream calls and skipped candidates, by outcome "
            "(ok, error, timeout, skipped by an open circuit breaker)",
            ("provider", "model", "outcome"), registry=registry)
        self.cache_hits = Counter("costr_cache_hits", "Response cache look-ups answered from "
                                  "the cache", registry=registry)
        self.cache_misses = Counter("costr_cache_misses", "Response cache look-ups that found "
                                    "nothing", registry=registry)
        self.cost = Counter("costr_cost_usd", "What answers cost at the models' prices (USD)",
                            MODEL_LABELS, registry=registry)
        self.baseline = Counter("costr_baseline_cost_usd", "What the same answers would have "
                                "cost on the baseline model (USD)", MODEL_LABELS, registry=registry)
        self.savings = Counter("costr_savings_usd", "Baseline cost minus cost, over the "
                               "requests that cost less than the baseline would have (USD)",
                               MODEL_LABELS, registry=registry)
        self.tokens = Counter("costr_tokens", "Tokens used, by direction (input, output)",
                              (*MODEL_LABELS, "direction"), registry=registry)
        self._children: dict[tuple, object] = {}
        self.scraped = ScrapeTimeFigures()
        registry.register(self.scraped)

    def _child(self, metric, labels: tuple):
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, served: Served) -> None:
        """Count one finished request."""
        entry = served.entry
        if entry is None:   # not a model request: refused before the books, or Costr's own
            self._child(self.requests, (served.endpoint, served.status, "", "", "", "")).inc()
            self._child(self.duration, (served.endpoint, "")).observe(served.seconds)
            return
        r = entry.record
        model, provider, tier = r.routed_model, r.provider, r.tier or ""
        self._child(self.requests, (served.endpoint, r.status, tier, model, provider,
                                    r.policy or "")).inc()
        self._child(self.duration, (served.endpoint, model)).observe(served.seconds)
        if r.ttft_ms is not None:
            self._child(self.ttft, (model,)).observe(r.ttft_ms / 1000)
        labels = (tier, model, provider)
        if r.cost_micros:
            self._child(self.cost, labels).inc(r.cost_micros / MICROS)
        if r.baseline_micros:
            self._child(self.baseline, labels).inc(r.baseline_micros / MICROS)
            if r.baseline_micros > r.cost_micros:
                self._child(self.savings, labels).inc((r.baseline_micros - r.cost_micros) / MICROS)
        if r.input_tokens:
            self._child(self.tokens, (*labels, "input")).inc(r.input_tokens)
        if r.output_tokens:
            self._child(self.tokens, (*labels, "output")).inc(r.output_tokens)
        for attempt in getattr(entry.route, "attempts", ()):
            self._child(self.attempts, (attempt.provider, attempt.model, attempt.outcome)).inc()

    async def render(self, gateway) -> Response:
        """The exposition, with the figures read at scrape time brought up to date."""
        await self.scraped.refresh(gateway)
        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self.scraped)
        return Response(generate_latest(registry), headers={"content-type": CONTENT_TYPE_LATEST})


class ScrapeTimeFigures:
    """What is read when Prometheus scrapes rather than counted per request: each circuit
    breaker's state (this instance's), and the credit held by requests in flight (the store's,
    shared by every instance)."""

    def __init__(self):
        self.breakers: list[tuple[str, str, int]] = []   # (provider, model, state)
        self.reserved_usd: float | None = None

    async def refresh(self, gateway) -> None:
        self.breakers = breaker_states(gateway)
        try:
            keys = await gateway.books.store.list_keys()
            self.reserved_usd = sum(k.reserved_micros for k in keys) / MICROS
        except Exception as exc:   # a scrape must not fail because the database did
            log.warning("metrics: could not read the credit held: %s", exc)
            self.reserved_usd = None

    def collect(self):
        states = GaugeMetricFamily(
            "costr_breaker_state", "Circuit breaker state on this instance: 0 closed, "
            "1 half-open, 2 open (model empty: the provider's own breaker)",
            labels=("provider", "model"))
        for provider, model, state in self.breakers:
            states.add_metric((provider, model), state)
        yield states
        if self.reserved_usd is not None:
            yield GaugeMetricFamily(
                "costr_credits_reserved_usd", "Credit held against limited keys' balances by "
                "requests in flight, over every key and instance (USD)", value=self.reserved_usd)


def breaker_states(gateway) -> list[tuple[str, str, int]]:
    """(provider, model, state) for each configured provider (model "") and chat model."""
    breakers, config = gateway.breakers, gateway.config.current.config
    out = [(name, "", BREAKER_STATES.get(breakers.of("provider:" + name).state, 0))
           for name in config.providers]
    out += [(m.provider, m.id, BREAKER_STATES.get(breakers.of("model:" + m.id).state, 0))
            for m in config.models.values() if m.mode == "chat"]
    return out


class CountedResponseCache(ResponseCache):
    """The response cache, its look-ups counted as hits or misses."""

    def __init__(self, backend, metrics: Metrics):
        super().__init__(backend)
        self._hits, self._misses = metrics.cache_hits, metrics.cache_misses

    async def lookup(self, plan: CachePlan):
        found = await super().lookup(plan)
        (self._hits if found else self._misses).inc()
        return found


def metrics_route(metrics: Metrics) -> Route:
    """GET /metrics on the app, for admin keys."""
    async def metrics_endpoint(request: Request):
        gateway = request.app.state.gateway
        try:
            require_admin(await gateway.books.keys.authenticate(request.headers))
        except CostrError as err:
            return json_response(default_error_body(err), status=err.status, headers=err.headers)
        return await metrics.render(gateway)
    return Route("/metrics", metrics_endpoint, methods=["GET"])
