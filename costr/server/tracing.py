"""OpenTelemetry traces (the optional `otel` extra: pip install 'costr[otel]').

One SERVER span per HTTP request, with the routing facts as attributes, and one CLIENT child
span per upstream attempt (skipped candidates included), built when the request is over from
its ledger record and the route's attempts, with their own start and end times: the request
path carries no tracing code. A `traceparent` header the client sent makes the span part of
the client's trace.

Traces are on when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set
and the extra is installed; they go over OTLP/HTTP, configured by the standard OTEL_*
variables (OTEL_SERVICE_NAME, default "costr"; OTEL_EXPORTER_OTLP_HEADERS;
OTEL_TRACES_SAMPLER ...). Otherwise nothing here is imported and requests pay nothing.
"""
from __future__ import annotations

import logging
import os

from costr.accounts.records import MICROS
from costr.server.observability import Served

log = logging.getLogger("costr")
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
CONTEXT_HEADERS = (b"traceparent", b"tracestate", b"baggage")
FAILED_ATTEMPTS = ("error", "timeout")


def open_tracing(tracer_provider=None) -> Tracing | None:
    """Tracing through `tracer_provider` (tests pass one with an in-memory exporter), or
    through an OTLP exporter when the environment asks for one, or None."""
    if tracer_provider is not None:
        return Tracing(tracer_provider, owned=False)
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return None
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set, but the OpenTelemetry packages are not "
                    "installed: pip install 'costr[otel]'. No traces are sent.")
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "costr"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Tracing(provider, owned=True)


class Tracing:
    def __init__(self, provider, owned: bool):
        from opentelemetry import propagate, trace
        self.provider, self.owned = provider, owned
        self.tracer = provider.get_tracer("costr")
        self._trace, self._propagate = trace, propagate

    def observe(self, served: Served) -> None:
        """The spans of one finished request."""
        trace = self._trace
        carrier = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in served.headers if name in CONTEXT_HEADERS}
        parent = self._propagate.extract(carrier) if carrier else None
        span = self.tracer.start_span(
            f"{served.method} {served.endpoint}", context=parent, kind=trace.SpanKind.SERVER,
            start_time=served.started_ns, attributes=request_attributes(served))
        status = served.outcome_status
        if status >= 500:
            entry = served.entry
            error = entry.record.error if entry is not None else None
            span.set_status(trace.Status(trace.StatusCode.ERROR, error or f"status {status}"))
        if served.entry is not None:
            inside = trace.set_span_in_context(span)
            for attempt in getattr(served.entry.route, "attempts", ()):
                self._attempt_span(attempt, inside)
        span.end(end_time=served.started_ns + int(served.seconds * 1e9))

    def _attempt_span(self, attempt, context) -> None:
        trace = self._trace
        started = int(attempt.started * 1e9)
        ended = int(attempt.ended * 1e9) if attempt.ended else started
        attributes = {"costr.provider": attempt.provider, "costr.model": attempt.model,
                      "costr.outcome": attempt.outcome}
        if attempt.upstream_status is not None:
            attributes["http.response.status_code"] = attempt.upstream_status
        if attempt.error:
            attributes["costr.error"] = attempt.error
        child = self.tracer.start_span(f"upstream {attempt.model}", context=context,
                                       kind=trace.SpanKind.CLIENT, start_time=started,
                                       attributes=attributes)
        if attempt.outcome in FAILED_ATTEMPTS:
            child.set_status(trace.Status(trace.StatusCode.ERROR, attempt.error or attempt.outcome))
        child.end(end_time=max(ended, started))

    def close(self) -> None:
        """Send what is still queued (a provider this module made only)."""
        if self.owned:
            self.provider.shutdown()


def request_attributes(served: Served) -> dict:
    """The request span's attributes: HTTP, then the ledger record's routing facts (never the
    key itself: its id)."""
    out = {"http.request.method": served.method, "http.route": served.endpoint,
           "url.path": served.path, "http.response.status_code": served.status}
    entry = served.entry
    if entry is None:
        return out
    r = entry.record
    out.update({
        "costr.request_id": r.id, "costr.key_id": r.key_id, "costr.family": r.family,
        "costr.requested_model": r.requested_model, "costr.routed_model": r.routed_model,
        "costr.provider": r.provider, "costr.cache_hit": r.cache_hit, "costr.status": r.status,
        "gen_ai.usage.input_tokens": r.input_tokens, "gen_ai.usage.output_tokens": r.output_tokens,
        "costr.cost_usd": r.cost_micros / MICROS, "costr.savings_percent": r.savings_percent,
    })
    optional = {"costr.tier": r.tier, "costr.policy": r.policy, "costr.confidence": r.confidence,
                "costr.complexity": r.complexity, "costr.rule": r.policy_rule,
                "costr.ttft_ms": r.ttft_ms, "costr.fallbacks": r.fallbacks,
                "costr.error": r.error}
    out.update({name: value for name, value in optional.items() if value is not None})
    return out
