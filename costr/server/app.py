"""The Starlette host: builds the app, owns the upstream client and the live configuration,
and maps every error to the calling API family's shape."""
from __future__ import annotations

import logging
import re
import time
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.middleware import Middleware
from starlette.routing import Route

from costr.server import endpoints
from costr.errors import CostrError, NotFound, default_error_body
from costr.routing.breakers import Breakers
from costr.routing.live import ConfigHolder
from costr.routing.shared_breakers import share_breakers
from costr.accounts.books import Books
from costr.accounts.auth import KeyCache
from costr.accounts.credit_holds import HoldKeeper, hold_seconds
from costr.cache.backends import open_cache
from costr.accounts.kept_prompts import PromptKeeper
from costr.accounts.ledger import LedgerWriter
from costr.dashboard.app import MOUNT as DASHBOARD, routes as dashboard_routes
from costr.accounts.limits import open_limiter
from costr.server.embeddings import answer_embeddings
from costr.server.fast_lane import CostrApp
from costr.server.gateway import Gateway, json_response
from costr.server.access_log import log_access
from costr.server.metrics import CountedResponseCache, Metrics, metrics_route
from costr.server.metrics_listener import MetricsListener
from costr.server.observability import WatchRequests
from costr.server.tracing import open_tracing
from costr.server.pipeline import answer_chat
from costr.server.token_count import count_input_tokens
from costr.server.request_limits import MB, RequestLimits, check_headers, read_capped_body
from costr.accounts.store import open_store
from costr.routing.sessions import SessionTiers
from costr.plugins import Registry, collect, make_plugin_manager
from costr.wire.formats import EmbeddingsFormat
from costr.wire.upstream import Upstream

log = logging.getLogger("costr")
SETTLE_AT_SHUTDOWN_SECONDS = 10.0


def create_app(*, providers_path: str | Path, policies_dir: str | Path,
               registry: Registry | None = None, watch_seconds: float = 1.0,
               database: str | None = None, data_dir: str | Path | None = None,
               limits: str | None = None, cache: str | None = None,
               dashboard: bool = True, max_body_bytes: int = 32 * MB,
               max_answer_bytes: int = 64 * MB,
               metrics_port: int | None = None, metrics_host: str = "127.0.0.1",
               access_log: bool = False, tracer_provider=None,
               credit_hold_seconds: float | None = None) -> Starlette:
    """`database`: a PostgreSQL URL or sqlite:///PATH (default: SQLite in `data_dir`);
    `limits`: memory:// (default) or redis://HOST:PORT/DB for limits (and the upstreams'
    circuit-breaker state) shared by instances;
    `cache`: the response cache backend's URL (default memory://; `none` turns it off);
    `dashboard`: serve the browser dashboard under /dashboard (False: those paths are 404);
    `max_body_bytes`: larger request bodies are refused with 413 without being read whole;
    `max_answer_bytes`: an upstream answer (or one event of a streamed answer) larger than this
    is a retryable 502, never held whole;
    `metrics_port`: serve GET /metrics without a key on metrics_host:metrics_port (None: the
    app serves it, to admin keys); `access_log`: a `costr.access` log line per request;
    `tracer_provider`: an OpenTelemetry tracer provider to trace requests with (default: one
    exporting over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, else no tracing);
    `credit_hold_seconds`: how long a credit hold lasts unless its instance renews it (default
    $COSTR_CREDIT_HOLD_SECONDS or 300; costr/accounts/credit_holds.py)."""
    registry = registry or collect(make_plugin_manager())
    hold_life = hold_seconds(credit_hold_seconds)
    metrics = Metrics()
    tracing = open_tracing(tracer_provider)
    listener = MetricsListener(metrics, metrics_host, metrics_port) if metrics_port else None

    @asynccontextmanager
    async def lifespan(app: Starlette):
        store = await open_store(database, data_dir)
        if not await store.count_keys():
            log.warning("No API keys exist yet, so every request will get 401. Create the first "
                        "one with: costr keys create --name admin --admin")
        http = await Upstream.open(max_answer_bytes=max_answer_bytes)
        ledger = LedgerWriter(store)
        ledger.start()
        limiter = open_limiter(limits)
        holder = ConfigHolder(Path(providers_path), Path(policies_dir), registry, http, watch_seconds)
        holder.start_watching()
        books = Books(store, KeyCache(store), ledger, limiter, hold_seconds=hold_life)
        holds = HoldKeeper(books)   # releases what stopped instances held; renews ours
        await holds.start()
        responses = CountedResponseCache(_open_cache_backend(cache, registry), metrics)
        prompts = PromptKeeper(store, lambda: holder.current.config.feedback.keep_days)
        prompts.start()
        breakers = Breakers()
        shared_breakers = share_breakers(breakers, limits)   # with redis:// limits
        app.state.gateway = Gateway(config=holder, sessions=SessionTiers(), books=books,
                                    breakers=breakers,
                                    cache=responses, prompts=prompts,
                                    request_limits=RequestLimits(max_body_bytes=max_body_bytes))
        app.state.started = time.time()
        if listener:
            await listener.start(app.state.gateway)
        try:
            yield
        finally:  # requests in flight have finished: write what they put on the books
            # (streams the server cut at its shutdown limit are settling now: wait for them)
            await books.wait_for_open_entries(SETTLE_AT_SHUTDOWN_SECONDS)
            await holds.close()
            if listener:
                await listener.close()
            if tracing:
                tracing.close()
            holder.stop_watching()
            await responses.close()
            await ledger.close()
            await prompts.close()
            await limiter.close()
            if shared_breakers:
                await shared_breakers.close()
            await http.close()
            await store.close()

    routes = []
    for fmt in registry.api_formats.values():
        if getattr(fmt, "count_tokens_path", None):
            routes.append(Route(fmt.count_tokens_path, _format_endpoint(fmt, count_input_tokens),
                                methods=["POST"]))
        routes += [Route(path, _format_endpoint(fmt, answer_chat), methods=["POST"]) for path in fmt.paths]
        if isinstance(fmt, EmbeddingsFormat):
            routes += [Route(path, _format_endpoint(fmt, answer_embeddings), methods=["POST"])
                       for path in fmt.embeddings_paths]
    # Which family answers at each path, so errors raised before an endpoint runs (405) come
    # in the shape that family's clients parse.
    family_by_path = {route.path: route.endpoint.family for route in routes}
    lane = [route for route in routes if "{" not in route.path]   # fixed paths: fast_lane.py
    routes += endpoints.routes(registry)
    if listener is None:
        routes.append(metrics_route(metrics))
    if dashboard:
        routes += dashboard_routes()
    # Every request, refused or answered, is counted, traced and logged when it is over.
    sinks = [metrics.observe, *([tracing.observe] if tracing else []),
             *([log_access] if access_log else [])]
    app = CostrApp(routes=routes, lane_routes=lane, sinks=sinks, on_error=_unexpected_error,
                   lifespan=lifespan, exception_handlers={
                       HTTPException: _http_error, Exception: _unexpected_error},
                   middleware=[Middleware(WatchRequests, sinks=sinks)])
    app.state.family_by_path = family_by_path
    return app


def _open_cache_backend(url: str | None, registry: Registry):
    """The cache backend, or None (no cache) when it is turned off or cannot be opened: the
    cache is an optimisation and never keeps the gateway from serving."""
    if url == "none":
        return None
    try:
        return open_cache(url or "memory://", registry)
    except Exception as exc:
        log.warning("response cache disabled: %s", exc)
        return None


def _format_endpoint(fmt, handler):
    """An endpoint serving `handler(gateway, fmt, body, headers, key)`, errors in fmt's shape.
    The caller's key is checked from the headers before the body is read, and the body is read
    only up to the size limit: neither a stranger nor a key holder can make Costr hold more."""
    async def endpoint(request: Request):
        gateway = request.app.state.gateway
        limits = gateway.request_limits
        try:
            check_headers(request.headers, limits)
            key = await gateway.books.keys.authenticate(request.headers)
            body = await read_capped_body(request, limits.max_body_bytes)
            return await handler(gateway, fmt, body, request.headers, key)
        except CostrError as err:
            status, error_body = fmt.encode_error(err)
            return json_response(error_body, status=status, headers=err.headers)
    endpoint.__name__ = f"{handler.__name__}_{fmt.name.replace('-', '_')}"
    endpoint.family = fmt
    return endpoint


def error_response(err: CostrError):
    return json_response(default_error_body(err), status=err.status, headers=err.headers)


async def _http_error(request: Request, exc: HTTPException):
    if exc.status_code == 404:
        return error_response(_unknown_endpoint(request))
    err = CostrError(exc.detail or "request failed", status=exc.status_code,
                     code="method_not_allowed" if exc.status_code == 405 else None,
                     headers=exc.headers)
    err.kind = "invalid_request" if exc.status_code < 500 else "internal"
    family = request.app.state.family_by_path.get(_route_path(request))
    if family is None:
        return error_response(err)
    status, body = family.encode_error(err)
    return json_response(body, status=status, headers=err.headers)


def _route_path(request: Request) -> str:
    """The path the routes are matched on: without the prefix a reverse proxy serves Costr under."""
    path, root = request.url.path, request.scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _unknown_endpoint(request: Request) -> NotFound:
    """A 404 saying what went wrong: a base URL one /v1 off (the path exists under the other
    base), or an endpoint Costr does not have at all, with what it does have."""
    method, path = request.method, request.url.path
    # The API's routes: a client with a wrong base URL needs these, not the dashboard's pages.
    routes = [r for r in request.app.routes
              if isinstance(r, Route) and not r.path.startswith(DASHBOARD)]
    moved = next((r for other in _under_other_base(path) for r in routes
                  if r.path_regex.match(other)), None)
    if moved is not None:
        origin = f"{request.url.scheme}://{request.url.netloc}"
        return NotFound(f"Unknown endpoint {method} {path}; Costr serves {_described(moved)}, so "
                        "the base URL is probably off by /v1. Clients that expect a base URL "
                        f"ending in /v1 use {origin}/v1; clients that add /v1 themselves use "
                        f"{origin}.", code="unknown_endpoint")
    return NotFound(f"Costr does not serve {method} {path}. It serves "
                    f"{', '.join(_described(r) for r in routes)}; GET /v1/models lists the "
                    "models to call.", code="unknown_endpoint")


def _under_other_base(path: str) -> list[str]:
    """Where `path` would be had the client's base URL had /v1 or had it not: `/models` ->
    `/v1/models`; `/v1/v1/messages` or `/api/v1/models` -> the part from the inner /v1 on."""
    candidates = [] if path.startswith("/v1/") else ["/v1" + path]
    nested = path.find("/v1/", 1)
    return candidates + ([path[nested:]] if nested > 0 else [])


def _described(route: Route) -> str:
    methods = ",".join(sorted((route.methods or set()) - {"HEAD"}))
    return f"{methods} {re.sub(r':[a-z]+}', '}', route.path)}"


async def _unexpected_error(request: Request, exc: Exception):
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    return error_response(CostrError("Costr hit an internal error; it has been logged."))
