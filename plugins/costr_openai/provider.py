"""The `openai` provider type: OpenAI and any server speaking its Chat Completions API
(vLLM, Ollama, llama.cpp, DeepSeek, Groq, ...)."""
from __future__ import annotations

from typing import AsyncIterator, Literal

import orjson

from costr import (ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, Frame, ModelSpec,
                   Provider, StreamFailure, UpstreamError, Usage, restore_in_events,
                   restore_in_response)

from .chat_request import FORMAT
from .chat_response import response_from_wire
from .chat_stream import StreamDecoder, parse_chunk
from .upstream_request import TOOL_NAMES, request_to_wire

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(Provider):
    wire_format = FORMAT
    provider_options = {}
    model_options = {   # see upstream_request._fit_to_model
        "max_tokens_field": Literal["max_tokens", "max_completion_tokens"],
        "unsupported_params": list[str],   # body fields this server refuses, dropped
    }

    @property
    def base_url(self) -> str:
        return self.settings.base_url or DEFAULT_BASE_URL

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.settings.headers}
        if self.settings.api_key:
            headers["authorization"] = f"Bearer {self.settings.api_key}"
        return headers

    async def complete(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        body = orjson.dumps(request_to_wire(request, model, stream=False))
        reply = await self.http.request("POST", f"{self.base_url}/chat/completions",
                                        headers=self._headers(), body=body,
                                        timeouts=self.settings.timeouts, secret=self.settings.api_key)
        return restore_in_response(reply.decoded(response_from_wire), TOOL_NAMES.originals(request))

    async def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[Frame]:
        # An exact-size copy: orjson's own output holds at least 4 KB, kept for the stream's life.
        body = bytes(memoryview(orjson.dumps(request_to_wire(request, model, stream=True))))
        decoder = StreamDecoder()
        names = TOOL_NAMES.originals(request)
        async with self.http.stream(f"{self.base_url}/chat/completions", headers=self._headers(),
                                    body=body, timeouts=self.settings.timeouts,
                                    secret=self.settings.api_key) as events:
            started = False
            async for sse in events:
                try:
                    chunk = parse_chunk(sse.data)
                except orjson.JSONDecodeError:
                    if not started:   # nothing sent yet: the router may still fall back
                        raise _garbled_stream(model, "a stream chunk that is not JSON") from None
                    yield Frame([StreamFailure(502, "the upstream sent a malformed stream chunk")])
                    return
                if chunk is None:
                    break
                started = True
                events = decoder.feed(chunk)
                if names:   # the client must see its own tool names, so no raw relay
                    yield Frame(restore_in_events(events, names))
                else:
                    yield Frame(events, raw=chunk, raw_format=FORMAT)
            if not started:   # a 200 whose body held no stream (an HTML page, say)
                raise _garbled_stream(model, "no stream chunk")
        yield Frame(decoder.finish())

    async def embed(self, request: EmbeddingRequest, model: ModelSpec) -> EmbeddingResponse:
        body: dict = {"model": model.wire_name, "input": request.inputs}
        if request.dimensions:
            body["dimensions"] = request.dimensions
        if request.user:
            body["user"] = request.user
        reply = await self.http.request("POST", f"{self.base_url}/embeddings",
                                        headers=self._headers(), body=orjson.dumps(body),
                                        timeouts=self.settings.timeouts, secret=self.settings.api_key)
        data = reply.json()
        rows = sorted(data.get("data") or [], key=lambda row: row.get("index", 0))
        usage = data.get("usage") or {}
        return EmbeddingResponse(vectors=[row["embedding"] for row in rows],
                                 model=data.get("model", model.id),
                                 usage=Usage(input_tokens=usage.get("prompt_tokens", 0)))


def _garbled_stream(model: ModelSpec, what: str) -> UpstreamError:
    """A stream that went wrong before its first chunk: retryable, as another upstream need
    not share the fault."""
    return UpstreamError(f"{model.id} answered 200 with {what}", upstream_status=200,
                         retryable=True)
