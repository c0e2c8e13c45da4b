"""The `anthropic` provider type: calls Anthropic's Messages API."""
from __future__ import annotations

from typing import AsyncIterator, Literal

import orjson

from costr import (ChatRequest, ChatResponse, Frame, ModelSpec, Provider, StreamFailure,
                   UpstreamError)

from .passthrough import passthrough_request
from .wire_request import request_to_wire
from .wire_response import WIRE_FORMAT, response_from_wire
from .wire_stream import StreamDecoder

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_API_VERSION = "2023-06-01"
# The body fields /v1/messages/count_tokens accepts; it rejects the others (max_tokens, ...).
COUNT_TOKENS_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


class AnthropicProvider(Provider):
    wire_format = WIRE_FORMAT
    provider_options = {"version": str}   # the anthropic-version header (DEFAULT_API_VERSION)
    # adaptive: the model takes adaptive thinking (Claude 4.6 on); enabled, the same as leaving
    # it out: a thinking budget (Anthropic's names for the two).
    model_options = {"thinking": Literal["adaptive", "enabled"]}

    async def complete(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        body, headers = self._request(request, model, stream=False)
        reply = await self.http.request(
            "POST", self._url("/v1/messages"), headers=headers, body=orjson.dumps(body),
            timeouts=self.settings.timeouts, secret=self.settings.api_key)
        return reply.decoded(response_from_wire)

    async def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[Frame]:
        decoder = StreamDecoder()
        body, headers = self._request(request, model, stream=True)
        async with self.http.stream(
                self._url("/v1/messages"), headers=headers, body=orjson.dumps(body),
                timeouts=self.settings.timeouts, secret=self.settings.api_key) as events:
            started = False
            async for sse in events:
                try:
                    data = orjson.loads(sse.data)
                except orjson.JSONDecodeError:
                    if not started:   # nothing sent yet: the router may still fall back
                        raise self._garbled(model, "an event that is not JSON") from None
                    failure = StreamFailure(502, f"provider {self.name} sent an event that is not JSON")
                    yield Frame(events=[failure], raw=None, raw_format=WIRE_FORMAT)
                    return
                started = True
                yield Frame(events=decoder.feed(data), raw=data, raw_format=WIRE_FORMAT)
            if not started:   # a 200 whose body held no stream (an HTML page, say)
                raise self._garbled(model, "no stream event")
        owed = decoder.finish()
        if owed:
            yield Frame(events=owed, raw=None, raw_format=WIRE_FORMAT)

    async def count_tokens(self, request: ChatRequest, model: ModelSpec) -> int | None:
        try:
            body, headers = self._request(request, model, stream=False)
            counted = {key: body[key] for key in COUNT_TOKENS_FIELDS if key in body}
            reply = await self.http.request(
                "POST", self._url("/v1/messages/count_tokens"), headers=headers,
                body=orjson.dumps(counted), timeouts=self.settings.timeouts,
                secret=self.settings.api_key)
            return int(reply.json()["input_tokens"])
        except Exception:  # a count that fails only means Costr estimates instead
            return None

    def _request(self, request: ChatRequest, model: ModelSpec, *,
                 stream: bool) -> tuple[dict, dict[str, str]]:
        """The body and headers to send."""
        if request.source_format == WIRE_FORMAT and request.raw is not None:
            # Same wire format: forward the client's body, fields Costr doesn't know included,
            # and the client's version and beta headers, which pair with those fields.
            body, forwarded = passthrough_request(request.raw, model, request.forward_headers)
        else:
            body, forwarded = request_to_wire(request, model), {}
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        return body, self._headers(forwarded)

    def _garbled(self, model: ModelSpec, what: str) -> UpstreamError:
        """A stream that went wrong before its first event: retryable, as another upstream
        need not share the fault."""
        return UpstreamError(f"provider {self.name} answered 200 for {model.id} with {what}",
                             upstream_status=200, retryable=True)

    def _url(self, path: str) -> str:
        # Operators often copy a base URL ending in /v1 from other tools' settings.
        base = (self.settings.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")
        return base + path

    def _headers(self, forwarded: dict[str, str]) -> dict[str, str]:
        """Defaults, then the client's forwarded headers, then the operator's from
        providers.yaml, which win."""
        headers = {"anthropic-version": self.settings.options.get("version", DEFAULT_API_VERSION),
                   "content-type": "application/json", **forwarded}
        if self.settings.api_key:
            headers["x-api-key"] = self.settings.api_key
        headers.update(self.settings.headers)
        return headers
