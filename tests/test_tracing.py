"""OpenTelemetry traces: one server span per request carrying the routing facts, one child span
per upstream attempt (two when the first upstream fails and the next answers), the caller's
trace continued from its traceparent, and spans exported over OTLP/HTTP when
OTEL_EXPORTER_OTLP_ENDPOINT is set, with no tracing at all when it is not."""
from __future__ import annotations

import threading

import httpx
import openai
import pytest
from aiohttp import web

from costr.testing import AUTH, TEST_KEY, running_gateway
from costr.testing.fake_upstream import FakeUpstream

from conftest import LOCAL_POOL, write_config

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from costr.server.tracing import open_tracing  # noqa: E402

ASK = [{"role": "user", "content": "Reply exactly: ok"}]


@pytest.fixture
def traced(tmp_path, fake_upstream):
    """(base URL, span exporter, fake upstream) for a gateway traced into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url)),
                         tracer_provider=provider, cache="none") as base:
        yield base, exporter, fake_upstream


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=TEST_KEY, max_retries=0)


def server_spans(exporter) -> list:
    return [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]


def children(exporter, parent) -> list:
    return sorted((s for s in exporter.get_finished_spans()
                   if s.parent is not None and s.parent.span_id == parent.context.span_id),
                  key=lambda s: s.start_time)


def test_one_span_per_request_with_the_routing_attributes(traced):
    base, exporter, _ = traced
    raw = client(base).chat.completions.with_raw_response.create(model="auto", messages=ASK)
    request_id = raw.headers["x-request-id"]
    span, = server_spans(exporter)
    attrs = span.attributes
    assert span.name == "POST /v1/chat/completions"
    assert attrs["costr.request_id"] == request_id
    assert attrs["costr.requested_model"] == "auto"
    assert attrs["costr.routed_model"] == raw.headers["x-costr-routed-model"]
    assert attrs["costr.provider"] == "local"
    assert attrs["costr.tier"] == raw.headers["x-costr-tier"]
    assert attrs["costr.policy"] == "balanced"
    assert 0 <= attrs["costr.confidence"] <= 1
    assert attrs["costr.cache_hit"] is False
    assert attrs["http.response.status_code"] == 200
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["costr.cost_usd"] >= 0
    assert len(attrs["costr.key_id"]) == 16 and TEST_KEY not in str(dict(attrs))
    attempt, = children(exporter, span)
    assert attempt.kind == SpanKind.CLIENT
    assert attempt.attributes["costr.model"] == attrs["costr.routed_model"]
    assert attempt.attributes["costr.outcome"] == "ok"
    assert span.start_time <= attempt.start_time <= attempt.end_time <= span.end_time


def test_a_fallback_is_two_attempt_spans(traced):
    base, exporter, fake = traced
    fake.enqueue({"status": 500, "error": "the budget upstream is down"})
    raw = client(base).chat.completions.with_raw_response.create(model="auto", messages=ASK)
    assert raw.headers["x-costr-routed-model"] == "local-standard"
    span, = server_spans(exporter)
    failed, answered = children(exporter, span)
    assert failed.attributes["costr.model"] == "local-mini"
    assert failed.attributes["costr.outcome"] == "error"
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.status.status_code == StatusCode.ERROR
    assert answered.attributes["costr.model"] == "local-standard"
    assert answered.attributes["costr.outcome"] == "ok"
    assert failed.end_time <= answered.start_time
    assert span.attributes["costr.fallbacks"].startswith("local-mini")


def test_a_streamed_request_and_a_refused_one(traced):
    base, exporter, _ = traced
    assert list(client(base).chat.completions.create(model="local-mini", messages=ASK, stream=True))
    assert httpx.post(f"{base}/v1/chat/completions", json={"model": "auto", "messages": ASK},
                      timeout=20).status_code == 401
    streamed, refused = sorted(server_spans(exporter), key=lambda s: s.start_time)
    assert streamed.attributes["costr.routed_model"] == "local-mini"
    assert streamed.attributes["costr.ttft_ms"] > 0
    assert streamed.attributes["gen_ai.usage.output_tokens"] > 0
    assert len(children(exporter, streamed)) == 1
    assert refused.attributes["http.response.status_code"] == 401
    assert "costr.request_id" not in refused.attributes
    assert children(exporter, refused) == []


def test_the_callers_trace_is_continued(traced):
    base, exporter, _ = traced
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    httpx.get(f"{base}/v1/models", headers={**AUTH, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
              timeout=20)
    span, = server_spans(exporter)
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.name == "GET /v1/models"


def test_no_tracing_without_an_otlp_endpoint(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert open_tracing() is None


def test_spans_go_over_otlp_when_the_endpoint_is_set(tmp_path, monkeypatch):
    """A collector on loopback receives the request's spans, with the service named costr."""
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[bytes] = []
    with collector(received) as endpoint, FakeUpstream() as fake:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake.url))) as base:
            client(base).chat.completions.create(model="local-mini", messages=ASK)
        # the gateway's shutdown flushed the batch
    spans, services = [], set()
    for body in received:
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes
                         if a.key == "service.name"}
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert services == {"costr"}
    names = {s.name for s in spans}
    assert "POST /v1/chat/completions" in names and "upstream local-mini" in names


class collector:
    """An OTLP/HTTP trace collector on loopback keeping each export's body."""

    def __init__(self, received: list):
        self.received = received

    def __enter__(self) -> str:
        import asyncio
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def traces(request: web.Request) -> web.Response:
            self.received.append(await request.read())
            return web.Response(body=b"", content_type="application/x-protobuf")

        async def serve():
            app = web.Application()
            app.router.add_post("/v1/traces", traces)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(serve()),
                                                       self.loop.run_forever()), daemon=True)
        self.thread.start()
        ready.wait(10)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        import asyncio
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
