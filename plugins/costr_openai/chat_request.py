"""OpenAI Chat Completions requests: validating and decoding a client's body into the neutral
ChatRequest, and encoding a neutral ChatRequest for an OpenAI-compatible upstream."""
from __future__ import annotations

import re
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costr import (ChatRequest, Image, InvalidRequest, Message, ResponseFormat, Text, Thinking,
                   Tool, ToolCall, ToolChoice, ToolResult, parse_json_object)

FORMAT = "openai-chat"
_DATA_URL = re.compile(r"^data:([\w.+/-]+);base64,(.*)$", re.S)


class _Body(BaseModel):
    """The top-level fields Costr reads; everything else is kept for passthrough."""
    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    n: int | None = Field(default=None, ge=1)


SESSION_HEADERS = ("x-session-id", "x-claude-code-session-id")


def decode_request(body: bytes, headers=None) -> ChatRequest:
    raw = parse_json_object(body)
    try:
        b = _Body.model_validate(raw)
    except ValidationError as exc:
        raise _field_error(exc) from None
    if b.n not in (None, 1):
        raise InvalidRequest("Only n=1 is supported.", param="n")
    system, messages = _decode_messages(b.messages)
    return ChatRequest(
        messages=messages, system=system, model=b.model,
        tools=[_decode_tool(t, i) for i, t in enumerate(b.tools or [])],
        tool_choice=_decode_tool_choice(b.tool_choice),
        parallel_tool_calls=b.parallel_tool_calls,
        max_tokens=b.max_completion_tokens or b.max_tokens,
        temperature=b.temperature, top_p=b.top_p,
        stop=[b.stop] if isinstance(b.stop, str) else list(b.stop or []),
        response_format=_decode_response_format(b.response_format),
        reasoning_effort=b.reasoning_effort, user=b.user, stream=bool(b.stream),
        include_usage=bool((b.stream_options or {}).get("include_usage")),
        source_format=FORMAT, raw=raw, session=_session(headers, b.user))


def _session(headers, user: str | None) -> str | None:
    for name in SESSION_HEADERS:
        if headers is not None and headers.get(name):
            return headers[name]
    return user


def _field_error(exc: ValidationError) -> InvalidRequest:
    err = exc.errors()[0]
    param = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("list[", "str", "dict[")))
    if err["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                              code="missing_required_parameter")
    return InvalidRequest(f"Invalid value for '{param}': {err['msg']}.", param=param,
                          code="invalid_value")


def _decode_messages(items: list[dict]) -> tuple[list[Text], list[Message]]:
    system: list[Text] = []
    messages: list[Message] = []
    for i, m in enumerate(items):
        role = m.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            texts = [p for p in _content_parts(m.get("content"), where) if isinstance(p, Text)]
            if messages:  # an instruction mid-conversation keeps its place
                messages.append(Message("system", texts))
            else:
                system += texts
        elif role == "user":
            messages.append(Message("user", _content_parts(m.get("content"), where)))
        elif role == "assistant":
            messages.append(Message("assistant", _assistant_parts(m, where)))
        elif role in ("tool", "function"):
            result = _tool_result(m, where)
            last = messages[-1] if messages else None
            if last and last.role == "user" and all(isinstance(p, ToolResult) for p in last.parts):
                last.parts.append(result)  # parallel results belong to one user turn
            else:
                messages.append(Message("user", [result]))
        else:
            raise InvalidRequest(f"Invalid value for '{where}.role': {role!r}. Supported: system, "
                                 "developer, user, assistant, tool.", param=f"{where}.role")
    if not messages:
        raise InvalidRequest("'messages' must contain at least one user or assistant message.",
                             param="messages")
    return system, messages


def _content_parts(content, where: str) -> list:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"Invalid type for '{where}.content': expected a string or an array "
                             "of content parts.", param=f"{where}.content")
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text", "refusal"):
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise InvalidRequest(f"Invalid type for '{where}.content[{j}].text': expected a "
                                     "string.", param=f"{where}.content[{j}].text")
            if text:
                parts.append(Text(text))
        elif kind == "image_url":
            parts.append(_image(part.get("image_url"), f"{where}.content[{j}].image_url"))
        else:
            raise InvalidRequest(f"Unsupported content part type {kind!r} at '{where}.content[{j}]'"
                                 "; supported: text, image_url.", param=f"{where}.content[{j}].type")
    return parts


def _image(spec, where: str) -> Image:
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"Missing required parameter: '{where}.url'.", param=f"{where}.url")
    detail = spec.get("detail") if isinstance(spec, dict) else None
    match = _DATA_URL.match(url)
    if match:
        return Image(media_type=match.group(1), data=match.group(2), detail=detail)
    return Image(url=url, detail=detail)


def _assistant_parts(m: dict, where: str) -> list:
    parts: list = []
    reasoning = m.get("reasoning_content") or m.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(Thinking(reasoning))
    parts += _content_parts(m.get("content"), where)
    calls = m.get("tool_calls") or []
    if not isinstance(calls, list):
        raise InvalidRequest(f"Invalid type for '{where}.tool_calls': expected an array.",
                             param=f"{where}.tool_calls")
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"Missing required parameter: '{where}.tool_calls[{k}].function"
                                 ".name'.", param=f"{where}.tool_calls[{k}].function.name")
        args = fn.get("arguments", "{}")
        parts.append(ToolCall(id=str(call.get("id") or f"call_{k}"), name=fn["name"],
                              arguments=args if isinstance(args, str) else orjson.dumps(args).decode()))
    legacy = m.get("function_call")
    if isinstance(legacy, dict) and legacy.get("name"):
        parts.append(ToolCall(id=f"call_{legacy['name']}", name=legacy["name"],
                              arguments=legacy.get("arguments") or "{}"))
    return parts


def _tool_result(m: dict, where: str) -> ToolResult:
    call_id = m.get("tool_call_id") or (f"call_{m['name']}" if m.get("role") == "function"
                                         and m.get("name") else None)
    if not isinstance(call_id, str):
        raise InvalidRequest(f"Missing required parameter: '{where}.tool_call_id'.",
                             param=f"{where}.tool_call_id")
    return ToolResult(tool_call_id=call_id, content=_content_parts(m.get("content"), where),
                      name=m.get("name"))


def _decode_tool(t: dict, i: int) -> Tool:
    fn = t.get("function") if isinstance(t, dict) else None
    if t.get("type", "function") != "function" or not isinstance(fn, dict):
        raise InvalidRequest(f"Invalid value for 'tools[{i}]': expected "
                             "{\"type\": \"function\", \"function\": {...}}.", param=f"tools[{i}]")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"Missing required parameter: 'tools[{i}].function.name'.",
                             param=f"tools[{i}].function.name")
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        raise InvalidRequest(f"Invalid type for 'tools[{i}].function.parameters': expected an "
                             "object (a JSON Schema).", param=f"tools[{i}].function.parameters")
    return Tool(name=name, description=fn.get("description") or "", parameters=params)


def _decode_tool_choice(choice) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        modes = {"auto": "auto", "none": "none", "required": "any"}
        if choice not in modes:
            raise InvalidRequest(f"Invalid value for 'tool_choice': {choice!r}. Supported: auto, "
                                 "none, required, or a function.", param="tool_choice")
        return ToolChoice(modes[choice])
    name = (choice.get("function") or {}).get("name")
    if choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequest("Invalid value for 'tool_choice': expected {\"type\": \"function\", "
                             "\"function\": {\"name\": ...}}.", param="tool_choice")
    return ToolChoice("tool", name)


def _decode_response_format(spec) -> ResponseFormat | None:
    if spec is None:
        return None
    kind = spec.get("type")
    if kind == "json_schema":
        js = spec.get("json_schema") or {}
        if not isinstance(js.get("schema", {}), dict):
            raise InvalidRequest("Invalid type for 'response_format.json_schema.schema': expected "
                                 "an object.", param="response_format.json_schema.schema")
        return ResponseFormat("json_schema", js.get("schema"), js.get("name"), js.get("strict"))
    if kind in ("json_object", "text"):
        return ResponseFormat(kind)
    raise InvalidRequest(f"Invalid value for 'response_format.type': {kind!r}. Supported: text, "
                         "json_object, json_schema.", param="response_format.type")
