"""Costr's own endpoints: models, router health, dry-run, and the account endpoints."""
from __future__ import annotations

import time

from starlette.requests import Request
from starlette.routing import Route

from costr.accounts.auth import credential
from costr.server import account_endpoints
from costr.errors import CostrError, ModelNotFound, default_error_body
from costr.wire.formats import parse_json_object
from costr.routing.live import LiveConfig
from costr.server.gateway import json_response, routing_facts
from costr.config.pricing import expected_usage
from costr.routing.route import MODELS_HINT, route_request


def routes(registry) -> list[Route]:
    return [
        Route("/v1/models", _endpoint(_list_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", _endpoint(_get_model), methods=["GET"]),
        Route("/v1/router/health", _endpoint(_health, public=True), methods=["GET"]),
        Route("/v1/router/dry-run", _endpoint(_dry_run, registry), methods=["POST"]),
        *account_endpoints.routes(_account_endpoint),
    ]


def _endpoint(handler, *args, public: bool = False):
    """An endpoint calling `handler(live_config, request, *args)` for an authenticated caller
    (unless `public`: the health check)."""
    async def endpoint(request: Request):
        try:
            if not public:
                await request.app.state.gateway.books.keys.authenticate(request.headers)
            return await handler(request.app.state.gateway.config.current, request, *args)
        except CostrError as err:
            return json_response(default_error_body(err), status=err.status, headers=err.headers)
    endpoint.__name__ = handler.__name__.lstrip("_")
    return endpoint


def _account_endpoint(handler):
    """An endpoint calling `handler(gateway, key, request)` for an authenticated caller."""
    async def endpoint(request: Request):
        gateway = request.app.state.gateway
        try:
            key = await gateway.books.keys.authenticate(request.headers)
            return await handler(gateway, key, request)
        except CostrError as err:
            return json_response(default_error_body(err), status=err.status, headers=err.headers)
    endpoint.__name__ = handler.__name__.lstrip("_")
    return endpoint


def _model_entry(live: LiveConfig, model) -> dict:
    price = model.price
    return {
        "id": model.id, "object": "model", "created": 0, "owned_by": model.provider,
        "tier": model.tier, "mode": model.mode, "context_length": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "pricing": {"input": price.input, "output": price.output,
                    "cached_input": price.input if price.cached_input is None else price.cached_input,
                    "unit": "USD per 1M tokens"},
        "capabilities": sorted(model.capabilities),
        "available": model.provider in live.usable,
    }


def _auto_entry(live: LiveConfig, name: str) -> dict:
    usable = [m for m in live.chat_models.values() if m.provider in live.usable]
    prices = [m.price for m in usable] or [None]
    return {
        "id": name, "object": "model", "created": 0, "owned_by": "costr", "tier": "auto",
        "mode": "chat", "description": "Costr automatic routing: picks a model per request",
        "context_length": max((m.context_window for m in usable), default=0),
        # null, as for a model whose limit is not configured, rather than a limit of 0
        "max_output_tokens": max((m.max_output_tokens for m in usable if m.max_output_tokens),
                                 default=None),
        "pricing": {"input": min(p.input for p in prices) if usable else None,
                    "output": min(p.output for p in prices) if usable else None,
                    "max_input": max(p.input for p in prices) if usable else None,
                    "max_output": max(p.output for p in prices) if usable else None,
                    "unit": "USD per 1M tokens"},
        "capabilities": sorted(set().union(*(m.capabilities for m in usable))) if usable else [],
        "available": bool(usable),
    }


async def _list_models(live: LiveConfig, request: Request):
    data = [_auto_entry(live, name) for name in ["auto", *live.config.routing.auto_aliases]]
    data += [_model_entry(live, m) for m in live.config.models.values() if m.provider in live.usable]
    return json_response({"object": "list", "data": data})


async def _get_model(live: LiveConfig, request: Request):
    model_id = request.path_params["model_id"]
    if model_id in live.auto_names:
        return json_response(_auto_entry(live, model_id))
    model = live.config.models.get(model_id)
    if model is None:
        raise ModelNotFound(f"The model '{model_id}' does not exist. " + MODELS_HINT, param="model")
    return json_response(_model_entry(live, model))


async def _health(live: LiveConfig, request: Request):
    """ok, degraded (some providers unusable, or some upstream behind an open circuit breaker)
    or unusable (503: no provider is usable, or every chat model is behind an open breaker, so
    no tier can be served; a load balancer should send nothing here). Anyone gets the bare
    status; only an admin key gets the detail (provider names and types, configuration paths,
    the variables holding API keys, models, each provider's breaker with its recent error rate
    and latency, and the models whose own breaker is not closed), which would otherwise map the
    deployment for a stranger."""
    config = live.config
    breakers = request.app.state.gateway.breakers
    enabled = config.routing.breaker.enabled
    usable = [m for m in live.chat_models.values() if m.provider in live.usable]
    servable = [m for m in usable if not enabled or breakers.passable(m)]
    status = "ok" if live.usable == frozenset(config.providers) and len(servable) == len(usable) \
        else ("degraded" if servable else "unusable")
    code = 503 if status == "unusable" else 200
    if not await _is_admin(request):
        return json_response({"status": status}, status=code)
    missing = config.missing_credentials()
    state = breakers.report(list(config.providers), config.routing.breaker)
    providers = {name: {"type": s.type, "usable": name in live.usable,
                        **({"missing_env": missing[name]} if name in missing else {})}
                 for name, s in config.providers.items()}
    return json_response({
        "status": status, "config_loaded": True,
        "config": {"providers_file": str(config.sources[0]), "policies_dir": str(config.sources[1])},
        "providers": providers, "breakers": state,
        "skipped_models": [m.id for m in usable if m not in servable],
        "tiers": {t: [m.id for m in live.by_tier[t] if m.provider in live.usable] for t in config.tiers},
        "policies": sorted(live.policies), "default_policy": config.routing.default_policy,
        "scorer": config.routing.scorer, "baseline": config.baseline.id,
        "uptime_seconds": round(time.time() - request.app.state.started, 1),
    }, status=code)


async def _is_admin(request: Request) -> bool:
    """Whether the request carries a valid admin key; no key, or a bad one, is simply not an
    admin here (a health probe is never refused)."""
    if credential(request.headers) is None:
        return False
    try:
        key = await request.app.state.gateway.books.keys.authenticate(request.headers)
    except CostrError:
        return False
    return key.admin


async def _dry_run(live: LiveConfig, request: Request, registry):
    body = await request.body()
    parsed = parse_json_object(body)
    formats = list(registry.api_formats.values())
    fmt = next((f for f in formats if f.recognises(parsed, request.headers)), formats[0])
    chat = fmt.decode_request(body, request.headers)
    route = route_request(live, chat, request.headers.get("x-cost-priority"),
                          headers=request.headers)
    model = route.candidates[0]
    facts = routing_facts(live, route, model, expected_usage(route.prompt_tokens, chat.max_tokens))
    return json_response({
        "x_routing": facts.as_dict(), "format": fmt.name,
        "complexity": ({"score": route.complexity.score, "confidence": route.complexity.confidence,
                        "signals": route.complexity.signals} if route.complexity else None),
        "estimated_prompt_tokens": route.prompt_tokens,
        "candidates": [m.id for m in route.candidates],
    }, headers=facts.headers())
