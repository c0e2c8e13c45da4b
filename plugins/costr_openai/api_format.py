"""The client-facing OpenAI Chat Completions format (`POST /v1/chat/completions`)."""
from __future__ import annotations

from costr.conversation import ChatRequest, ChatResponse
from costr.errors import CostrError, default_error_body
from costr.formats import RoutingFacts

from . import chat_request, chat_response
from .chat_stream import StreamEncoder


class OpenAIChatFormat:
    name = chat_request.FORMAT
    paths = ("/v1/chat/completions", "/chat/completions")

    count_tokens_path = None

    def decode_request(self, body: bytes, headers=None) -> ChatRequest:
        return chat_request.decode_request(body, headers)

    def encode_response(self, response: ChatResponse, facts: RoutingFacts) -> dict:
        return chat_response.encode_response(response, facts)

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder:
        return StreamEncoder(include_usage=request.include_usage)

    def encode_error(self, error: CostrError) -> tuple[int, dict]:
        return error.status, default_error_body(error)

    def encode_token_count(self, tokens: int) -> dict:
        return {"input_tokens": tokens}

    def recognises(self, body: dict, headers) -> bool:
        return "anthropic-version" not in headers and "system" not in body
