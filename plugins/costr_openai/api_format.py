"""The client-facing OpenAI Chat Completions format (`POST /v1/chat/completions`)."""
from __future__ import annotations

from costr import (BillingFeature, ChatRequest, ChatResponse, CostrError, EmbeddingRequest,
                   EmbeddingResponse, RoutingFacts, default_error_body)

from . import billing, chat_request, chat_response, embeddings
from .chat_stream import StreamEncoder


CONTENT_PART_TYPES = {"text", "image_url", "input_audio", "file", "refusal", "input_text"}


class OpenAIChatFormat:
    name = chat_request.FORMAT
    paths = ("/v1/chat/completions", "/chat/completions")

    count_tokens_path = None
    embeddings_paths = ("/v1/embeddings",)

    def decode_request(self, body: bytes, headers=None) -> ChatRequest:
        return chat_request.decode_request(body, headers)

    def encode_response(self, response: ChatResponse, facts: RoutingFacts,
                        request: ChatRequest | None = None) -> dict:
        return chat_response.encode_response(response, facts)

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder:
        return StreamEncoder(include_usage=request.include_usage)

    def decode_embedding_request(self, body: bytes) -> EmbeddingRequest:
        return embeddings.decode_embedding_request(body)

    def encode_embedding_response(self, request: EmbeddingRequest, response: EmbeddingResponse,
                                  facts: RoutingFacts) -> dict:
        return embeddings.encode_embedding_response(request, response, facts)

    def encode_error(self, error: CostrError) -> tuple[int, dict]:
        return error.status, default_error_body(error)

    def encode_token_count(self, tokens: int) -> dict:
        return {"input_tokens": tokens}

    def billing_features(self, request: ChatRequest) -> list[BillingFeature]:
        """Service tiers and audio answers, which OpenAI bills beyond text tokens (billing.py)."""
        return billing.billing_features(request)

    def recognises(self, body: dict, headers) -> bool:
        """Only this family's vocabulary: no other family's version header or top-level system
        prompt, and every content part of a type Chat Completions has."""
        if "anthropic-version" in headers or "system" in body or "messages" not in body:
            return False
        return all(isinstance(part, dict) and part.get("type") in CONTENT_PART_TYPES
                   for message in body.get("messages") or [] if isinstance(message, dict)
                   if isinstance(message.get("content"), list) for part in message["content"])
