"""The client-facing OpenAI Responses API (`POST /v1/responses`): what the OpenAI Agents SDK and
the Vercel AI SDK's `openai(...)` models call. No provider speaks it upstream, so every request
is translated through the neutral model, then routed, cached, accounted and limited like any
other. `previous_response_id` and `item_reference` are honoured from this instance's memory
(response_store.py)."""
from __future__ import annotations

from costr import ChatRequest, ChatResponse, CostrError, RoutingFacts, default_error_body

from . import responses_request, responses_response
from .response_store import ResponseStore
from .responses_stream import StreamEncoder


class OpenAIResponsesFormat:
    name = responses_request.FORMAT
    paths = ("/v1/responses", "/responses")
    count_tokens_path = None

    def __init__(self, store: ResponseStore | None = None):
        self.store = store or ResponseStore()

    def decode_request(self, body: bytes, headers=None) -> ChatRequest:
        return responses_request.decode_request(body, headers, self.store)

    def encode_response(self, response: ChatResponse, facts: RoutingFacts,
                        request: ChatRequest) -> dict:
        return responses_response.encode_response(response, facts, request, self.store)

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder:
        return StreamEncoder(request, self.store)

    def encode_error(self, error: CostrError) -> tuple[int, dict]:
        return error.status, default_error_body(error)

    def encode_token_count(self, tokens: int) -> dict:
        return {"input_tokens": tokens}

    def recognises(self, body: dict, headers) -> bool:
        return "input" in body and "messages" not in body
