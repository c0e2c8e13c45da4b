"""Gemini (generativelanguage v1beta) wire format for the fake upstream."""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from typing import Iterator

import orjson

from ._fake_answers import Answer, Ask, Tool, pieces, tool_result_text
from ._fake_openai import embedding_vector

# Google's documented value that tells Gemini 3 to skip checking a call's signature.
SKIP_VALIDATION = "skip_thought_signature_validator"
_SIGNING_KEY = b"costr-fake-gemini-thought-signatures"
_SIGNATURE_BYTES = 480   # real signatures run to several hundred base64 characters and more
_MAC_BYTES = 16
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def _get(obj: dict, camel: str):
    """Gemini's REST API accepts both camelCase and snake_case field names."""
    if camel in obj:
        return obj[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return obj.get(snake)


def read_ask(body: dict, model: str, stream: bool = False) -> Ask:
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    texts = [_parts_text(c.get("parts")) for c in contents]
    last_parts = _parts((contents[-1] if contents else {}).get("parts"))
    results = [_get(p, "functionResponse") for p in last_parts if _get(p, "functionResponse")]
    system = _parts_text((_get(body, "systemInstruction") or {}).get("parts"))
    return Ask(
        model=model,
        tools=[] if _calling_mode(body) == "NONE" else _tools(body),
        last_is_tool_result=bool(results),
        last_text=(tool_result_text(results[-1].get("response") or {}) if results
                   else (texts[-1] if texts else "")),
        prompt_chars=len(system) + sum(map(len, texts)),
        stream=stream,
    )


def _calling_mode(body: dict) -> str:
    config = _get(_get(body, "toolConfig") or {}, "functionCallingConfig") or {}
    return str(config.get("mode") or "AUTO").upper()


def invalid_tool_name(body: dict) -> str | None:
    """Gemini's 400 message for a function name it refuses, or None."""
    for i, tool in enumerate(body.get("tools") or []):
        for j, decl in enumerate(_get(tool, "functionDeclarations") or []):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}", decl.get("name") or ""):
                return (f"* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: "
                        "Invalid function name. Must start with a letter or an underscore. Must "
                        "be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:) or "
                        "dashes (-), with a maximum length of 64.")
    return None


def signs_calls(model: str) -> bool:
    """Gemini 3 and later sign every answer with function calls, and check the signatures."""
    version = re.match(r"gemini-(\d+)", model)
    return bool(version) and int(version.group(1)) >= 3


def new_signature(model: str) -> str:
    """An opaque signature this fake can later recognise as its own, valid for `model` only,
    as Google's are (no state kept)."""
    body = secrets.token_bytes(_SIGNATURE_BYTES)
    return base64.b64encode(body + _mac(body, model)).decode()


def _mac(data: bytes, model: str) -> bytes:
    return hashlib.sha256(_SIGNING_KEY + model.encode() + b"\0" + data).digest()[:_MAC_BYTES]


def invalid_thought_signature(body: dict, model: str) -> str | None:
    """Gemini 3's 400 message for a signature it did not issue, or for a function call of the
    current turn whose step lacks one; None when the request passes."""
    if not signs_calls(model):
        return None
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    for i, content in enumerate(contents):
        for j, part in enumerate(_parts(content.get("parts"))):
            signature = _get(part, "thoughtSignature")
            if signature is None or signature == SKIP_VALIDATION:
                continue
            standard = str(signature).replace("-", "+").replace("_", "/")  # either alphabet
            try:
                raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
            except (binascii.Error, ValueError):
                return (f"Invalid value at 'contents[{i}].parts[{j}].thought_signature' "
                        f"(TYPE_BYTES), Base64 decoding failed for \"{signature}\"")
            if len(raw) <= _MAC_BYTES or _mac(raw[:-_MAC_BYTES], model) != raw[-_MAC_BYTES:]:
                return "Corrupted thought signature."
    return _missing_signature(contents)


def _missing_signature(contents: list[dict]) -> str | None:
    # The current turn starts at the last user content holding more than function responses;
    # the first functionCall part of each model step after it must carry its signature.
    starts = [i for i, c in enumerate(contents) if c.get("role") == "user"
              and any(not _get(p, "functionResponse") for p in _parts(c.get("parts")))]
    for i in range(starts[-1] + 1 if starts else 0, len(contents)):
        if contents[i].get("role") != "model":
            continue
        calls = [p for p in _parts(contents[i].get("parts")) if _get(p, "functionCall")]
        if calls and _get(calls[0], "thoughtSignature") is None:
            name = _get(calls[0], "functionCall").get("name")
            return ("Function call is missing a thought_signature in functionCall parts. This is "
                    "required for tools to work correctly, and missing thought_signature may lead "
                    f"to degraded model performance. Additional data, function call "
                    f"`default_api:{name}` , position {i + 1}. Please refer to "
                    "https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")
    return None


def _tools(body: dict) -> list[Tool]:
    found = []
    for tool in body.get("tools") or []:
        for decl in _get(tool, "functionDeclarations") or []:
            schema = _get(decl, "parametersJsonSchema") or decl.get("parameters") or {}
            found.append(Tool(decl["name"], schema))
    return found


def _parts(parts) -> list[dict]:
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _parts_text(parts) -> str:
    out = []
    for part in _parts(parts):
        if "text" in part:
            out.append(part["text"] or "")
        elif _get(part, "functionCall"):
            out.append(orjson.dumps(_get(part, "functionCall").get("args") or {}).decode())
        elif _get(part, "functionResponse"):
            out.append(tool_result_text(_get(part, "functionResponse").get("response") or {}))
    return "".join(out)


def _call_parts(calls, model: str) -> list[dict]:
    """The functionCall parts of one answer; for a Gemini 3 model, the first one carries the
    answer's thought signature (parallel calls after it carry none)."""
    parts = []
    for call in calls:
        function_call = {"name": call.name, "args": call.arguments}
        if call.id:
            function_call["id"] = call.id
        parts.append({"functionCall": function_call})
    if parts and signs_calls(model):
        parts[0]["thoughtSignature"] = new_signature(model)
    return parts


def _usage(ask: Ask, answer: Answer | None) -> dict:
    usage = {"promptTokenCount": ask.input_tokens}
    if answer is not None:
        usage["candidatesTokenCount"] = answer.output_tokens
    usage["totalTokenCount"] = ask.input_tokens + (answer.output_tokens if answer else 0)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": ask.input_tokens}]
    return usage


def _response(parts: list[dict], ask: Ask, answer: Answer | None, response_id: str) -> dict:
    """One GenerateContentResponse; `answer` is given for the final one (finish + full usage)."""
    candidate: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if answer is not None:
        candidate["finishReason"] = "STOP"  # Gemini says STOP after function calls too
    return {"candidates": [candidate], "usageMetadata": _usage(ask, answer),
            "modelVersion": ask.model, "responseId": response_id}


def content_body(answer: Answer, ask: Ask) -> dict:
    parts = ([{"text": answer.text}] if answer.text else []) + _call_parts(answer.tool_calls, ask.model)
    return _response(parts or [{"text": ""}], ask, answer, secrets.token_urlsafe(16))


def content_stream(answer: Answer, ask: Ask) -> list[dict]:
    """The GenerateContentResponse chunks of a streamed answer: text in several pieces,
    function calls whole (Gemini never splits their arguments)."""
    batches = [[{"text": piece}] for piece in pieces(answer.text)]
    if answer.tool_calls:
        batches.append(_call_parts(answer.tool_calls, ask.model))
    batches = batches or [[{"text": ""}]]
    response_id = secrets.token_urlsafe(16)
    last = len(batches) - 1
    return [_response(parts, ask, answer if i == last else None, response_id)
            for i, parts in enumerate(batches)]


def sse(chunks: list[dict]) -> Iterator[bytes]:
    for chunk in chunks:  # Gemini frames its events with CRLF
        yield b"data: " + orjson.dumps(chunk) + b"\r\n\r\n"


def error_body(status: int, message: str) -> dict:
    name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message, "status": name}}


def _embedding(request: dict) -> dict:
    text = _parts_text((request.get("content") or {}).get("parts"))
    dims = int(_get(request, "outputDimensionality") or 16)
    return {"values": embedding_vector(text, dims)}


def embed_body(body: dict) -> dict:
    return {"embedding": _embedding(body)}


def batch_embed_body(body: dict) -> dict:
    return {"embeddings": [_embedding(r) for r in body.get("requests") or []]}


def count_tokens_body(body: dict, model: str) -> dict:
    inner = _get(body, "generateContentRequest") or body
    tokens = read_ask(inner, model).input_tokens
    return {"totalTokens": tokens, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}]}
