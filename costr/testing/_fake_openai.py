"""OpenAI wire format for the fake upstream: chat completions, embeddings, models."""
from __future__ import annotations

import base64
import hashlib
import re
import struct
import time
from typing import Callable, Iterator

import orjson

from ._fake_answers import Answer, Ask, Tool, count_tokens, new_id, pieces, tool_result_text

FINGERPRINT = "fp_costrfake"
MAX_TOOL_CALL_ID = 40
DONE = b"data: [DONE]\n\n"


def read_ask(body: dict) -> Ask:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    texts = [_message_text(m) for m in messages]
    last = messages[-1] if messages else {}
    return Ask(
        model=str(body.get("model") or ""),
        tools=[] if body.get("tool_choice") == "none" else _tools(body),
        last_is_tool_result=last.get("role") in ("tool", "function"),
        last_text=texts[-1] if texts else "",
        prompt_chars=sum(map(len, texts)),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )


def invalid_tool_name(body: dict) -> str | None:
    """OpenAI's 400 message for a tool name it refuses (`^[a-zA-Z0-9_-]{1,64}$`), or None."""
    for i, tool in enumerate(body.get("tools") or []):
        name = (tool.get("function") or {}).get("name") or ""
        where = f"tools[{i}].function.name"
        if len(name) > 64:
            return (f"Invalid '{where}': string too long. Expected a string with maximum length "
                    f"64, but got a string with length {len(name)} instead.")
        if not re.fullmatch(r"[a-zA-Z0-9_-]+", name):
            return (f"Invalid '{where}': string does not match pattern. Expected a string that "
                    "matches the pattern '^[a-zA-Z0-9_-]+$'.")
    return None


def invalid_tool_calls(body: dict) -> dict | None:
    """OpenAI's 400 body for a tool call id over 40 characters, or for an assistant's tool
    call no tool message answers; None when the request passes."""
    messages = [m if isinstance(m, dict) else {} for m in body.get("messages") or []]
    for i, message in enumerate(messages):
        calls = [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
        for j, call in enumerate(calls):
            length = len(str(call.get("id") or ""))
            if length > MAX_TOOL_CALL_ID:
                where = f"messages[{i}].tool_calls[{j}].id"
                return {"error": {
                    "message": f"Invalid '{where}': string too long. Expected a string with "
                               f"maximum length {MAX_TOOL_CALL_ID}, but got a string with length "
                               f"{length} instead.",
                    "type": "invalid_request_error", "param": where,
                    "code": "string_above_max_length"}}
        answered = set()
        for later in messages[i + 1:]:
            if later.get("role") != "tool":
                break
            answered.add(later.get("tool_call_id"))
        unanswered = [c.get("id") for c in calls if c.get("id") not in answered]
        if unanswered:
            return {"error": {
                "message": "An assistant message with 'tool_calls' must be followed by tool "
                           "messages responding to each 'tool_call_id'. The following "
                           f"tool_call_ids did not have response messages: {', '.join(map(str, unanswered))}",
                "type": "invalid_request_error", "param": f"messages.[{i}].role", "code": None}}
    return None


def _tools(body: dict) -> list[Tool]:
    tools = [t.get("function") or {} for t in body.get("tools") or [] if t.get("type") == "function"]
    tools += body.get("functions") or []  # the legacy spelling
    return [Tool(t["name"], t.get("parameters") or {}) for t in tools if t.get("name")]


def _message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    elif content is None:
        text = ""
    else:
        text = tool_result_text(content)
    calls = message.get("tool_calls") or []
    return text + "".join((c.get("function") or {}).get("arguments") or "" for c in calls)


def _usage(ask: Ask, answer: Answer) -> dict:
    prompt, completion = ask.input_tokens, answer.output_tokens
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _call_ids(answer: Answer) -> list[str]:
    return [c.id or new_id("call_") for c in answer.tool_calls]


def chat_body(answer: Answer, ask: Ask) -> dict:
    message: dict = {"role": "assistant", "content": answer.text or None, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments_json}}
            for c, call_id in zip(answer.tool_calls, _call_ids(answer))]
    return {"id": new_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
            "model": ask.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if answer.tool_calls else "stop"}],
            "usage": _usage(ask, answer), "system_fingerprint": FINGERPRINT}


def chat_stream(answer: Answer, ask: Ask) -> Iterator[bytes]:
    """The SSE chunks of a streamed answer, `data: [DONE]` included."""
    head, chunk = _chunk_maker(ask)
    if answer.text or not answer.tool_calls:
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in pieces(answer.text):
            yield chunk({"content": piece})
    for index, (call, call_id) in enumerate(zip(answer.tool_calls, _call_ids(answer))):
        first = {"index": index, "id": call_id, "type": "function",
                 "function": {"name": call.name, "arguments": ""}}
        opening = {"tool_calls": [first]}
        if index == 0 and not answer.text:
            opening = {"role": "assistant", "content": None, **opening}
        yield chunk(opening)
        for piece in pieces(call.arguments_json):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield from _closing(head, chunk, answer, ask)


def paced_chat_stream(ask: Ask, tokens: int, word: str) -> list[bytes]:
    """The SSE chunks of a streamed text answer of `tokens` equal content chunks (`word` each;
    a 4-character word is one completion token in the usage), `data: [DONE]` included: the
    role chunk, then the content chunks (one bytes object, repeated), then the closing ones.
    For slow streams (costr/testing/_fake_pace.py)."""
    head, chunk = _chunk_maker(ask)
    answer = Answer(text=word * tokens)
    return [chunk({"role": "assistant", "content": "", "refusal": None}),
            *[chunk({"content": word})] * tokens, *_closing(head, chunk, answer, ask)]


def _chunk_maker(ask: Ask) -> tuple[dict, Callable[..., bytes]]:
    """The fields every chunk of one stream shares, and a function making a chunk of it."""
    head = {"id": new_id("chatcmpl-"), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": ask.model, "system_fingerprint": FINGERPRINT}

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        payload = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                        "finish_reason": finish}]}
        if ask.include_usage:  # every chunk says usage: null until the final usage chunk
            payload["usage"] = None
        return _sse(payload)
    return head, chunk


def _closing(head: dict, chunk: Callable[..., bytes], answer: Answer, ask: Ask) -> list[bytes]:
    """The finish chunk, the usage chunk when the client asked for it, and `data: [DONE]`."""
    closing = [chunk({}, "tool_calls" if answer.tool_calls else "stop")]
    if ask.include_usage:
        closing.append(_sse({**head, "choices": [], "usage": _usage(ask, answer)}))
    return [*closing, DONE]


def error_body(status: int, message: str) -> dict:
    kind, code = {401: ("invalid_request_error", "invalid_api_key"),
                  404: ("invalid_request_error", "model_not_found"),
                  429: ("requests", "rate_limit_exceeded")}.get(status, ("invalid_request_error", None))
    if status >= 500:
        kind, code = "server_error", None
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def embeddings_body(body: dict) -> dict:
    inputs = body.get("input")
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]  # one string, or one pre-tokenised input
    inputs = inputs or []
    texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in inputs]
    dims = int(body.get("dimensions") or 16)
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embedding_vector(text, dims)
        encoded = (base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
                   if as_base64 else vector)
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(count_tokens(len(t)) for t in texts)
    return {"object": "list", "data": data, "model": str(body.get("model") or ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def embedding_vector(text: str, dims: int) -> list[float]:
    """A deterministic unit vector: equal texts embed equally, different ones differ."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [(seed[i % len(seed)] + i) % 256 / 127.5 - 1.0 for i in range(dims)]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in raw]


def models_body(models: list[str]) -> dict:
    return {"object": "list",
            "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "costr-fake"}
                     for m in models]}


def _sse(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
