"""What a client-facing API format implements (registered with `register_api_formats`).

A format is a codec between one API family's wire JSON and the neutral model, plus that
family's error shape. The host mounts each format's `paths` and runs every request through
the same pipeline (costr.server.pipeline). A format that also speaks its family's embeddings
API follows `EmbeddingsFormat` as well.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import orjson

from costr.wire.conversation import (ChatRequest, ChatResponse, EmbeddingRequest,
                                    EmbeddingResponse, Frame, Usage)
from costr.errors import CostrError, InvalidRequest


def parse_json_object(body: bytes) -> dict:
    """A request body as a JSON object, or an InvalidRequest saying what is wrong with it."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return parsed


@dataclass(slots=True)
class RoutingFacts:
    """What Costr did with a request: reported as `x_routing` and `x-costr-*` headers."""
    requested_model: str
    routed_model: str
    routed_provider: str
    tier: str | None
    confidence: float
    savings_percent: float
    complexity: float | None = None
    policy: str | None = None
    cache_hit: bool = False
    rule: str | None = None         # the policy rule that decided, if one did
    # the candidates tried or skipped before the answer, each {"model", "reason"}; in x_routing
    # only when there were any
    fallbacks: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        facts = {
            "requested_model": self.requested_model,
            "routed_model": self.routed_model,
            "routed_provider": self.routed_provider,
            "tier": self.tier,
            "confidence": self.confidence,
            "savings_percent": self.savings_percent,
            "complexity": self.complexity,
            "policy": self.policy,
            "cache_hit": self.cache_hit,
            "rule": self.rule,
        }
        if self.fallbacks:
            facts["fallbacks"] = self.fallbacks
        return facts

    def headers(self) -> dict[str, str]:
        out = {
            "x-costr-requested-model": self.requested_model,
            "x-costr-routed-model": self.routed_model,
            "x-costr-routed-provider": self.routed_provider,
            "x-costr-tier": self.tier or "",
            "x-costr-confidence": f"{self.confidence:.2f}",
            "x-costr-savings-percent": f"{self.savings_percent:.1f}",
            "x-costr-cache-hit": "true" if self.cache_hit else "false",
        }
        if self.complexity is not None:
            out["x-costr-complexity"] = f"{self.complexity:.3f}"
        if self.policy:
            out["x-costr-policy"] = self.policy
        if self.rule:
            out["x-costr-rule"] = self.rule
        return out


class StreamEncoder(Protocol):
    """Turns upstream Frames into the client's stream bytes. Holds back whatever must carry
    the final usage and routing facts until `finish`."""

    def encode(self, frame: Frame) -> bytes: ...

    def finish(self, facts: RoutingFacts, usage: Usage) -> bytes:
        """The held-back end of the stream, carrying `usage` (as accounted) and `facts`."""

    def fail(self, error: CostrError) -> bytes: ...

    # Optional: a format whose clients expect keep-alive events while the upstream is quiet
    # sets `keepalive_seconds` and returns the event from `keepalive()`.
    keepalive_seconds: float | None


class ApiFormat(Protocol):
    name: str                  # e.g. "openai-chat"; a provider with this wire_format gets passthrough
    paths: tuple[str, ...]     # e.g. ("/v1/chat/completions",)
    count_tokens_path: str | None  # serves token counting there when set (encode_token_count)

    def decode_request(self, body: bytes, headers) -> ChatRequest:
        """Parse and validate a request body; raise costr.errors.InvalidRequest naming the field.
        `headers` are the client's; a format may keep some in `forward_headers` for passthrough."""

    def encode_response(self, response: ChatResponse, facts: RoutingFacts,
                        request: ChatRequest) -> dict:
        """The answer to `request` in this format (a format that remembers conversations, such
        as the Responses API's, keeps it here)."""

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder: ...

    def encode_error(self, error: CostrError) -> tuple[int, dict]:
        """The status and the family's error body for `error`."""

    def encode_token_count(self, tokens: int) -> dict: ...

    def recognises(self, body: dict, headers) -> bool:
        """Whether a body (for dry-run) looks like this format's request."""

    # Optional: `billing_features(request) -> list[BillingFeature]`, the parts of a decoded
    # request that change what a same-format upstream charges (costr.wire.billing_features).
    # A format without it forwards nothing billed beyond tokens.


@runtime_checkable
class EmbeddingsFormat(Protocol):
    """A format that also serves its family's embeddings API at `embeddings_paths`."""
    embeddings_paths: tuple[str, ...]

    def decode_embedding_request(self, body: bytes) -> EmbeddingRequest:
        """Parse and validate; raise costr.errors.InvalidRequest naming the field. `model` is
        the name the client asked for ("auto" for the default embedding model)."""

    def encode_embedding_response(self, request: EmbeddingRequest, response: EmbeddingResponse,
                                  facts: RoutingFacts) -> dict: ...
