"""Costr's own endpoints: models, router health, dry-run, embeddings."""
from __future__ import annotations

import array
import base64
import sys
import time

from starlette.requests import Request
from starlette.routing import Route

from costr.server import account_endpoints
from costr.accounts.records import MICROS
from costr.wire.conversation import EmbeddingRequest, Usage
from costr.errors import (CostrError, InvalidRequest, ModelNotFound, NoUsableProvider, UpstreamError,
                     default_error_body)
from costr.wire.formats import RoutingFacts, parse_json_object
from costr.routing.live import LiveConfig
from costr.server.pipeline import client_facing, json_response, routing_facts
from costr.config.pricing import cost_usd, expected_usage
from costr.routing.route import MODELS_HINT, route_request


def routes(registry) -> list[Route]:
    return [
        Route("/v1/models", _endpoint(_list_models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", _endpoint(_get_model), methods=["GET"]),
        Route("/v1/router/health", _endpoint(_health, public=True), methods=["GET"]),
        Route("/v1/router/dry-run", _endpoint(_dry_run, registry), methods=["POST"]),
        Route("/v1/embeddings", _endpoint(_embeddings, public=True), methods=["POST"]),
        *account_endpoints.routes(_account_endpoint),
    ]


def _endpoint(handler, *args, public: bool = False):
    """An endpoint calling `handler(live_config, request, *args)` for an authenticated caller
    (unless `public`: the health check, and embeddings, which keep their own books)."""
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
        "max_output_tokens": max((m.max_output_tokens or 0 for m in usable), default=0),
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
    config = live.config
    missing = config.missing_credentials()
    providers = {name: {"type": s.type, "usable": name in live.usable,
                        **({"missing_env": missing[name]} if name in missing else {})}
                 for name, s in config.providers.items()}
    status = "ok" if live.usable == frozenset(providers) else ("degraded" if live.usable else "unusable")
    return json_response({
        "status": status, "config_loaded": True,
        "config": {"providers_file": str(config.sources[0]), "policies_dir": str(config.sources[1])},
        "providers": providers,
        "tiers": {t: [m.id for m in live.by_tier[t] if m.provider in live.usable] for t in config.tiers},
        "policies": sorted(live.policies), "default_policy": config.routing.default_policy,
        "scorer": config.routing.scorer, "baseline": config.baseline.id,
        "uptime_seconds": round(time.time() - request.app.state.started, 1),
    })


async def _dry_run(live: LiveConfig, request: Request, registry):
    body = await request.body()
    parsed = parse_json_object(body)
    formats = list(registry.api_formats.values())
    fmt = next((f for f in formats if f.recognises(parsed, request.headers)), formats[0])
    chat = fmt.decode_request(body, request.headers)
    route = route_request(live, chat, request.headers.get("x-cost-priority"))
    model = route.candidates[0]
    facts = routing_facts(live, route, model, expected_usage(route.prompt_tokens, chat.max_tokens))
    return json_response({
        "x_routing": facts.as_dict(), "format": fmt.name,
        "complexity": ({"score": route.complexity.score, "confidence": route.complexity.confidence,
                        "signals": route.complexity.signals} if route.complexity else None),
        "estimated_prompt_tokens": route.prompt_tokens,
        "candidates": [m.id for m in route.candidates],
    }, headers=facts.headers())


async def _embeddings(live: LiveConfig, request: Request):
    books = request.app.state.gateway.books
    entry = await books.open("embeddings", request.headers)
    try:
        return await _embed(live, books, entry, request)
    except CostrError as err:
        await books.fail(entry, err)
        raise


async def _embed(live: LiveConfig, books, entry, request: Request):
    body = parse_json_object(await request.body())
    inputs = _embedding_inputs(body.get("input"))
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    model = _embedding_model(live, name)
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise InvalidRequest("Invalid value for 'encoding_format': use float or base64.",
                             param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise InvalidRequest("Invalid value for 'dimensions': expected a positive integer.",
                             param="dimensions")
    entry.record.requested_model = name
    estimate = Usage(input_tokens=sum(len(text) for text in inputs) // 2 + 16)  # generous: held
    await books.hold(entry, max(1, round(cost_usd(model, estimate) * MICROS)))
    try:
        result = await live.provider_for(model).embed(
            EmbeddingRequest(inputs, model.id, dims, body.get("user"), body), model)
    except UpstreamError as err:
        raise client_facing(err) from None
    usage = result.usage if result.usage.input_tokens else Usage(
        input_tokens=sum(len(text) for text in inputs) // 4 + 1, estimated=True)
    facts = RoutingFacts(name, model.id, model.provider, None, 1.0, 0.0)
    await books.settle(entry, model, model, usage, facts)
    data = [{"object": "embedding", "index": i,
             "embedding": _b64(v) if fmt == "base64" else v} for i, v in enumerate(result.vectors)]
    tokens = usage.input_tokens
    return json_response({"object": "list", "data": data, "model": model.id,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                          "x_routing": {"requested_model": name, "routed_model": model.id,
                                        "routed_provider": model.provider}},
                         headers=entry.headers)


def _embedding_inputs(value) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidRequest("Invalid value for 'input': expected a non-empty string or array of "
                             "strings (token arrays are not supported).", param="input")
    if any(not v for v in value):
        raise InvalidRequest("Invalid value for 'input': strings must not be empty.", param="input")
    return value


def _embedding_model(live: LiveConfig, name: str):
    config = live.config
    if name == "auto" and config.default_embedding_model is None:
        raise ModelNotFound("No default embedding model is configured: set "
                            "default_embedding_model in providers.yaml, or name a model.", param="model")
    model = config.models.get(config.default_embedding_model if name == "auto" else name)
    if model is None or model.mode != "embedding":
        raise ModelNotFound(f"The embedding model '{name}' does not exist. Use \"auto\" or an "
                            "embedding model listed by GET /v1/models.", param="model")
    if model.provider not in live.usable:
        raise NoUsableProvider(f"Embedding model '{model.id}' needs provider '{model.provider}': "
                               f"set {config.providers[model.provider].api_key_env}.")
    return model


def _b64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32."""
    floats = array.array("f", vector)
    if sys.byteorder == "big":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode()
