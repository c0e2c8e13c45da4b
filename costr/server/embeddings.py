"""An embeddings request: authenticate, decode the client's format, choose the embedding model,
apply the key's rate limits (429; the tokens it used count against its tokens per minute),
hold its estimated cost, call the provider, settle, encode in the client's format."""
from __future__ import annotations

from dataclasses import replace

import anyio

from costr.accounts.books import Books, Entry
from costr.accounts.limits import enforce
from costr.accounts.records import MICROS, ApiKey
from costr.config.pricing import cost_usd
from costr.errors import CostrError, ModelNotFound, NoUsableProvider
from costr.routing.breakers import Breakers
from costr.routing.live import LiveConfig
from costr.routing.route import Route
from costr.server.fallback import call_in_turn
from costr.server.gateway import Gateway, json_response
from costr.wire.conversation import Usage
from costr.wire.formats import EmbeddingsFormat, RoutingFacts
from costr.wire.providers import ModelSpec

LEDGER_FORMAT = "embeddings"


async def answer_embeddings(gateway: Gateway, fmt: EmbeddingsFormat, body: bytes, headers,
                            key: ApiKey):
    books = gateway.books
    entry = books.open(LEDGER_FORMAT, key)
    try:
        return await _embed(gateway.config.current, books, gateway.breakers, entry, fmt, body)
    except CostrError as err:
        await books.fail(entry, err)
        raise
    except BaseException:  # cancelled, or a bug: the hold is released and the loss recorded
        with anyio.CancelScope(shield=True):
            await books.fail(entry, CostrError("the request ended without an answer"))
        raise


async def _embed(live: LiveConfig, books: Books, breakers: Breakers, entry: Entry,
                 fmt: EmbeddingsFormat, body: bytes):
    request = fmt.decode_embedding_request(body)
    model = embedding_model(live, request.model)
    entry.record.requested_model = request.model
    key = entry.key
    await enforce(books.limiter, key.id, key.rpm, key.tpm)
    # generous: the hold is settled at the upstream's count
    estimate = Usage(input_tokens=sum(len(text) for text in request.inputs) // 2 + 16)
    await books.hold(entry, max(1, round(cost_usd(model, estimate) * MICROS)))
    # called as a chat candidate is: its breakers, the deadline, and a retry where one helps
    entry.route = Route(request.model, [model], None, None, None, 1.0, 0)
    result = await call_in_turn(breakers, live, entry.route, lambda chosen: live.provider_for(
        chosen).embed(replace(request, model=chosen.id), chosen))
    if not result.usage.input_tokens:
        result.usage = Usage(input_tokens=sum(len(text) for text in request.inputs) // 4 + 1,
                             estimated=True)
    facts = RoutingFacts(request.model, model.id, model.provider, None, 1.0, 0.0)
    await books.settle(entry, model, model, result.usage, facts)
    return json_response(fmt.encode_embedding_response(request, result, facts),
                         headers=entry.headers)


def embedding_model(live: LiveConfig, name: str) -> ModelSpec:
    config = live.config
    if name == "auto" and config.default_embedding_model is None:
        raise ModelNotFound("No default embedding model is configured: set "
                            "default_embedding_model in providers.yaml, or name a model.",
                            param="model")
    model = config.models.get(config.default_embedding_model if name == "auto" else name)
    if model is None or model.mode != "embedding":
        raise ModelNotFound(f"The embedding model '{name}' does not exist. Use \"auto\" or an "
                            "embedding model listed by GET /v1/models.", param="model")
    if model.provider not in live.usable:
        raise NoUsableProvider(f"Embedding model '{model.id}' needs provider '{model.provider}': "
                               f"set {config.providers[model.provider].api_key_env}.")
    return model
