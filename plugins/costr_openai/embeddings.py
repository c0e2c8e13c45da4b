"""OpenAI's embeddings API (`POST /v1/embeddings`) <-> the neutral embedding request and answer."""
from __future__ import annotations

import array
import base64
import sys

from costr import (EmbeddingRequest, EmbeddingResponse, InvalidRequest, RoutingFacts,
                   parse_json_object)

ENCODINGS = ("float", "base64")


def decode_embedding_request(body: bytes) -> EmbeddingRequest:
    raw = parse_json_object(body)
    inputs = _inputs(raw.get("input"))
    name = raw.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    if raw.get("encoding_format", "float") not in ENCODINGS:
        raise InvalidRequest("Invalid value for 'encoding_format': use float or base64.",
                             param="encoding_format")
    dims = raw.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
        raise InvalidRequest("Invalid value for 'dimensions': expected a positive integer.",
                             param="dimensions")
    return EmbeddingRequest(inputs, name, dims, raw.get("user"), raw)


def encode_embedding_response(request: EmbeddingRequest, response: EmbeddingResponse,
                              facts: RoutingFacts) -> dict:
    as_base64 = (request.raw or {}).get("encoding_format") == "base64"
    data = [{"object": "embedding", "index": i, "embedding": _b64(v) if as_base64 else v}
            for i, v in enumerate(response.vectors)]
    tokens = response.usage.input_tokens
    return {"object": "list", "data": data, "model": facts.routed_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "x_routing": {"requested_model": facts.requested_model,
                          "routed_model": facts.routed_model,
                          "routed_provider": facts.routed_provider}}


def _inputs(value) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidRequest("Invalid value for 'input': expected a non-empty string or array of "
                             "strings (token arrays are not supported).", param="input")
    if any(not v for v in value):
        raise InvalidRequest("Invalid value for 'input': strings must not be empty.", param="input")
    return value


def _b64(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32."""
    floats = array.array("f", vector)
    if sys.byteorder == "big":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode()
