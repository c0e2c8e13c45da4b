"""The `gemini` provider type: Google's native Gemini API (generativelanguage.googleapis.com).

The API key travels in the `x-goog-api-key` header, never in the URL's `?key=`, so it cannot
leak into access logs, error messages or recorded cassettes.
"""
from __future__ import annotations

from typing import AsyncIterator
from urllib.parse import quote

import orjson

from costr import (ChatRequest, ChatResponse, CostrError, EmbeddingRequest, EmbeddingResponse,
                   Frame, ModelSpec, Provider, Reply, StreamFailure, UpstreamError, Usage,
                   error_from_reply, restore_in_events, restore_in_response)

from .stream import StreamDecoder
from .thought_signatures import OPTION as REQUIRES_SIGNATURES, model_tag
from .wire import TOOL_NAMES, request_to_wire, response_from_wire

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
_EMBED_BATCH = 100  # batchEmbedContents takes at most 100 requests


class GeminiProvider(Provider):
    wire_format = "gemini"
    provider_options = {}
    model_options = {REQUIRES_SIGNATURES: bool}   # default: by the model's name

    def endpoint(self, model: ModelSpec, method: str, *, sse: bool = False) -> str:
        """The URL of `method` (generateContent, countTokens, ...) for `model`."""
        base = (self.settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        url = f"{base}/{_resource(model)}:{method}"
        return url + "?alt=sse" if sse else url

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.settings.headers}
        if self.settings.api_key:
            headers["x-goog-api-key"] = self.settings.api_key
        return headers

    def body(self, request: ChatRequest, model: ModelSpec) -> dict:
        # A client speaking Gemini's own format is passed through untouched, so fields
        # Costr does not model (safetySettings, cachedContent, ...) are not lost.
        if request.source_format == self.wire_format and request.raw is not None:
            return request.raw
        return request_to_wire(request, model)

    async def complete(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        reply = await self._post(model, "generateContent", self.body(request, model))
        answer = reply.decoded(lambda body: response_from_wire(body, model_tag(model)))
        return restore_in_response(answer, TOOL_NAMES.originals(request))

    async def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[Frame]:
        url = self.endpoint(model, "streamGenerateContent", sse=True)
        decoder, names = StreamDecoder(model_tag(model)), TOOL_NAMES.originals(request)
        async with self.http.stream(url, headers=self.headers(),
                                    body=orjson.dumps(self.body(request, model)),
                                    timeouts=self.settings.timeouts,
                                    secret=self.settings.api_key) as events:
            try:
                async for event in events:
                    chunk = self._chunk(event.data, url, first=not decoder.started)
                    events = decoder.feed(chunk)
                    if names:   # the client must see its own tool names, so no raw relay
                        yield Frame(restore_in_events(events, names))
                    else:
                        yield Frame(events, raw=chunk, raw_format=self.wire_format)
            except UpstreamError as exc:
                if not decoder.started:
                    raise  # nothing sent yet: the router may still fall back
                failure = StreamFailure(exc.upstream_status or exc.status, exc.message)
                yield Frame([failure], raw_format=self.wire_format)
                return
            if not decoder.started:   # a 200 whose body held no stream: another may answer
                raise UpstreamError(f"{model.id} answered 200 with no stream chunk",
                                    upstream_status=200)
        tail = decoder.finish()
        if tail:
            yield Frame(restore_in_events(tail, names), raw_format=self.wire_format)

    def _chunk(self, data: str, url: str, *, first: bool) -> dict:
        """One SSE data as a dict. Before anything was sent, an error Gemini reports inside
        a 200 stream raises like an error status would."""
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"the upstream sent a stream chunk that is not JSON: {data[:200]}",
                                upstream_status=502) from None
        if not isinstance(chunk, dict):
            raise UpstreamError("the upstream sent a stream chunk that is not an object",
                                upstream_status=502)
        if first and isinstance(chunk.get("error"), dict):
            status = int(chunk["error"].get("code") or 502)
            raise error_from_reply(Reply(status, {}, data.encode()), url, self.settings.api_key)
        return chunk

    async def embed(self, request: EmbeddingRequest, model: ModelSpec) -> EmbeddingResponse:
        vectors: list[list[float]] = []
        for start in range(0, len(request.inputs), _EMBED_BATCH):
            batch = request.inputs[start:start + _EMBED_BATCH]
            reply = await self._post(model, "batchEmbedContents",
                                     {"requests": [_embed_request(text, request, model)
                                                   for text in batch]})
            vectors += [item["values"] for item in reply.json()["embeddings"]]
        # batchEmbedContents reports no usage; about four characters a token is Google's
        # own rule of thumb, and marking it estimated says so.
        tokens = sum(len(text) for text in request.inputs) // 4
        return EmbeddingResponse(vectors=vectors, model=model.wire_name,
                                 usage=Usage(input_tokens=tokens, estimated=True))

    async def count_tokens(self, request: ChatRequest, model: ModelSpec) -> int | None:
        body = self.body(request, model)
        # generationConfig does not change the prompt's size, and countTokens rejects
        # some of its fields (thinkingConfig on some models).
        body = {k: v for k, v in body.items() if k != "generationConfig"}
        try:
            wrapped = {"generateContentRequest": {"model": _resource(model), **body}}
            reply = await self._post(model, "countTokens", wrapped)
            return int(reply.json()["totalTokens"])
        except (CostrError, KeyError, TypeError, ValueError):
            return None  # the caller estimates instead

    async def _post(self, model: ModelSpec, method: str, body: dict) -> Reply:
        return await self.http.request("POST", self.endpoint(model, method),
                                       headers=self.headers(), body=orjson.dumps(body),
                                       timeouts=self.settings.timeouts,
                                       secret=self.settings.api_key)


def _resource(model: ModelSpec) -> str:
    """`models/<name>`; a wire name that already names a resource (`tunedModels/x`) is kept."""
    name = model.wire_name
    return name if "/" in name else "models/" + quote(name, safe="")


def _embed_request(text: str, request: EmbeddingRequest, model: ModelSpec) -> dict:
    item: dict = {"model": _resource(model), "content": {"parts": [{"text": text}]}}
    if request.dimensions:
        item["outputDimensionality"] = request.dimensions
    return item
