"""An embeddings request: authenticate, decode the client's format, choose the embedding model,
hold its estimated cost, call the provider, settle, encode in the client's format."""
from __future__ import annotations

from dataclasses import replace

from costr.accounts.books import Books, Entry
from costr.accounts.records import MICROS, ApiKey
from costr.config.pricing import cost_usd
from costr.errors import CostrError, ModelNotFound, NoUsableProvider, UpstreamError
from costr.routing.live import LiveConfig
from costr.server.fallback import client_facing
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
        return await _embed(gateway.config.current, books, entry, fmt, body)
    except CostrError as err:
        await books.fail(entry, err)
        raise


async def _embed(live: LiveConfig, books: Books, entry: Entry, fmt: EmbeddingsFormat,
                 body: bytes):
    request = fmt.decode_embedding_request(body)
    model = embedding_model(live, request.model)
    entry.record.requested_model = request.model
    # generous: the hold is settled at the upstream's count
    estimate = Usage(input_tokens=sum(len(text) for text in request.inputs) // 2 + 16)
    await books.hold(entry, max(1, round(cost_usd(model, estimate) * MICROS)))
    try:
        result = await live.provider_for(model).embed(replace(request, model=model.id), model)
    except UpstreamError as err:
        raise client_facing(err) from None
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
