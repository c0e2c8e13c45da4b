"""The client-facing Anthropic Messages format (`POST /v1/messages`, also called as
`/v1/messages?beta=true`, and `POST /v1/messages/count_tokens`)."""
from __future__ import annotations

from costr import (BillingFeature, ChatRequest, ChatResponse, CostrError, RoutingFacts,
                   estimate_tokens)

from . import billing, client_request, client_response
from .client_stream import KEEPALIVE_SECONDS, StreamEncoder
from .wire_response import WIRE_FORMAT


class AnthropicMessagesFormat:
    name = WIRE_FORMAT
    paths = ("/v1/messages",)
    count_tokens_path = "/v1/messages/count_tokens"

    def __init__(self, keepalive_seconds: float | None = KEEPALIVE_SECONDS):
        self.keepalive_seconds = keepalive_seconds  # `ping` events while the upstream is quiet

    def decode_request(self, body: bytes, headers=None) -> ChatRequest:
        return client_request.decode_request(body, headers)

    def decode_count_request(self, body: bytes, headers=None) -> ChatRequest:
        """Token counting takes a Messages request without `max_tokens`."""
        return client_request.decode_request(body, headers, require_max_tokens=False)

    def encode_response(self, response: ChatResponse, facts: RoutingFacts,
                        request: ChatRequest | None = None) -> dict:
        return client_response.encode_response(response, facts)

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder:
        return StreamEncoder(estimate_tokens(request), self.keepalive_seconds)

    def encode_error(self, error: CostrError) -> tuple[int, dict]:
        return client_response.encode_error(error)

    def encode_token_count(self, tokens: int) -> dict:
        return {"input_tokens": tokens}

    def recognises(self, body: dict, headers) -> bool:
        return client_request.looks_like_a_request(body, headers)

    def billing_features(self, request: ChatRequest) -> list[BillingFeature]:
        """Server tools, betas and fields Anthropic bills beyond tokens (billing.py)."""
        return billing.billing_features(request)
