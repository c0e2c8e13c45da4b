"""The `ollama` provider type: Costr's neutral requests sent to Ollama's native API."""
from __future__ import annotations

import json
from typing import AsyncIterator

from costr import (ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Frame, ModelSpec,
                   Provider, StreamFailure, Usage)

from .translate import RAW_FORMAT, StreamDecoder, decode_response, encode_request

DEFAULT_BASE_URL = "http://127.0.0.1:11434"


class OllamaProvider(Provider):
    """providers.yaml: `type: ollama`, `base_url` (default http://127.0.0.1:11434), an optional
    `api_key_env` for an Ollama behind an authenticating proxy, and `options` sent as Ollama
    model options on every request (e.g. `num_ctx: 8192`, `keep_alive: 10m`)."""

    wire_format = RAW_FORMAT  # "ollama": no client speaks it, so never passthrough
    # A provider's options are Ollama's own model options (num_ctx, num_gpu, ...) and
    # keep_alive, passed on as written: Ollama knows them all, so this type accepts any.
    provider_options = None
    model_options = {}   # a model entry's options: this type reads none

    async def complete(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        reply = await self.http.request("POST", self._url("/api/chat"), headers=self._headers(),
                                        body=self._body(request, model, stream=False),
                                        timeouts=self.settings.timeouts,
                                        secret=self.settings.api_key)
        return decode_response(reply.json())

    async def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[Frame]:
        decoder = StreamDecoder()
        async with self.http.stream(self._url("/api/chat"), headers=self._headers(),
                                    body=self._body(request, model, stream=True),
                                    timeouts=self.settings.timeouts, secret=self.settings.api_key,
                                    framing="lines") as lines:
            async for line in lines:
                chunk = json.loads(line)
                if "error" in chunk:  # Ollama reports a failure mid-answer as {"error": ...}
                    yield Frame([StreamFailure(502, str(chunk["error"]))], chunk, RAW_FORMAT)
                    return
                yield Frame(decoder.decode(chunk), chunk, RAW_FORMAT)
        if not decoder.finished:
            yield Frame([StreamFailure(502, "Ollama ended its answer before it was done")],
                        None, RAW_FORMAT)

    async def embed(self, request: EmbeddingRequest, model: ModelSpec) -> EmbeddingResponse:
        body = {"model": model.wire_name, "input": request.inputs}
        if request.dimensions:
            body["dimensions"] = request.dimensions
        reply = await self.http.request("POST", self._url("/api/embed"), headers=self._headers(),
                                        body=json.dumps(body).encode(),
                                        timeouts=self.settings.timeouts,
                                        secret=self.settings.api_key)
        data = reply.json()
        return EmbeddingResponse(vectors=data["embeddings"], model=data.get("model", model.wire_name),
                                 usage=Usage(input_tokens=data.get("prompt_eval_count") or 0))

    def check_settings(self) -> list[str]:
        base_url = self.settings.base_url or DEFAULT_BASE_URL
        problems = []
        if not base_url.startswith(("http://", "https://")):
            problems.append(f"base_url {base_url!r} must start with http:// or https://")
        if base_url.rstrip("/").endswith("/v1"):
            problems.append(f"base_url {base_url!r} looks like Ollama's OpenAI-compatible API; "
                            "type ollama speaks the native API: drop the /v1")
        return problems

    def _url(self, path: str) -> str:
        return (self.settings.base_url or DEFAULT_BASE_URL).rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.settings.headers}
        if self.settings.api_key:
            headers["authorization"] = f"Bearer {self.settings.api_key}"
        return headers

    def _body(self, request: ChatRequest, model: ModelSpec, *, stream: bool) -> bytes:
        body = encode_request(request, model.wire_name, stream=stream,
                              defaults=self.settings.options)
        return json.dumps(body).encode()
