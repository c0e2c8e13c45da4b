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
    functions: list[dict[str, Any]] | None = None      # the legacy form of `tools`
    function_call: str | dict[str, Any] | None = None  # the legacy form of `tool_choice`


SESSION_HEADERS = ("x-session-id", "x-claude-code-session-id")


def decode_request(body: bytes, headers=None) -> ChatRequest:
    raw = parse_json_object(body)
    try:
        b = _Body.model_validate(raw)
    except ValidationError as exc:
        raise _field_error(exc, raw) from None
    if b.n not in (None, 1):
        raise InvalidRequest("Only n=1 is supported.", param="n")
    _check_legacy_functions(b.functions, b.function_call)
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


def _field_error(exc: ValidationError, raw: dict) -> InvalidRequest:
    err = exc.errors()[0]
    param = _field_path(err["loc"], raw)
    if err["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                              code="missing_required_parameter")
    return InvalidRequest(f"Invalid value for '{param}': {err['msg']}.", param=param,
                          code="invalid_value")


def _field_path(loc: tuple, raw: dict) -> str:
    """Pydantic's error location as the client's field path (`stop`, `tools[0]`). The location
    also holds the tags of a union's members (`str`, `dict[str,any]`); telling them apart by
    name would drop fields named like them (`stream`), so the path follows the body itself and
    stops where the body has no further object or array to step into."""
    path, node = "", raw
    for step in loc:
        if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            path, node = f"{path}[{step}]", node[step]
        elif isinstance(node, dict) and isinstance(step, str):
            path, node = f"{path}.{step}" if path else step, node.get(step)
        else:
            break
    return path


def _check_legacy_functions(functions: list[dict] | None, choice) -> None:
    """The deprecated `functions` and `function_call`: forwarded as sent to an OpenAI upstream,
    so checked here, lest a malformed one reach it (or fail inside Costr) instead of a 400."""
    for i, fn in enumerate(functions or []):
        _check_function(fn, f"functions[{i}]")
    if isinstance(choice, str):
        if choice not in ("auto", "none"):
            raise InvalidRequest(f"Invalid value for 'function_call': {choice!r}. Supported: "
                                 "auto, none, or {\"name\": ...}.", param="function_call")
    elif choice is not None:
        _require_string(choice.get("name"), "function_call.name")


def _check_function(fn: dict, where: str) -> None:
    """A function's definition: `name`, and `description` and `parameters` when given."""
    _require_string(fn.get("name"), f"{where}.name")
    description = fn.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest(f"Invalid type for '{where}.description': expected a string.",
                             param=f"{where}.description")
    if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
        raise InvalidRequest(f"Invalid type for '{where}.parameters': expected an object (a "
                             "JSON Schema).", param=f"{where}.parameters")


def _require_string(value, param: str) -> str:
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                             code="missing_required_parameter")
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"Invalid value for '{param}': expected a non-empty string.",
                             param=param, code="invalid_value")
    return value


def _arguments(value, param: str) -> str:
    """A call's arguments: a JSON string as OpenAI sends them (an object is tolerated)."""
    if value is None:
        return "{}"
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    if not isinstance(value, str):
        raise InvalidRequest(f"Invalid type for '{param}': expected a string of JSON.",
                             param=param, code="invalid_value")
    return value or "{}"


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
    calls = m.get("tool_calls")
    calls = [] if calls is None else calls
    if not isinstance(calls, list):
        raise InvalidRequest(f"Invalid type for '{where}.tool_calls': expected an array.",
                             param=f"{where}.tool_calls")
    for k, call in enumerate(calls):
        at = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise InvalidRequest(f"Missing required parameter: '{at}.function'.",
                                 param=f"{at}.function", code="missing_required_parameter")
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise InvalidRequest(f"Invalid type for '{at}.id': expected a string.",
                                 param=f"{at}.id", code="invalid_value")
        parts.append(ToolCall(id=call_id or f"call_{k}",
                              name=_require_string(fn.get("name"), f"{at}.function.name"),
                              arguments=_arguments(fn.get("arguments"), f"{at}.function.arguments")))
    legacy = m.get("function_call")
    if legacy is not None:
        at = f"{where}.function_call"
        if not isinstance(legacy, dict):
            raise InvalidRequest(f"Invalid type for '{at}': expected an object.", param=at,
                                 code="invalid_value")
        name = _require_string(legacy.get("name"), f"{at}.name")
        parts.append(ToolCall(id=f"call_{name}", name=name,
                              arguments=_arguments(legacy.get("arguments"), f"{at}.arguments")))
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
    _check_function(fn, f"tools[{i}].function")
    params = fn.get("parameters") or {"type": "object", "properties": {}}
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
    function = choice.get("function")
    if function is not None and not isinstance(function, dict):
        raise InvalidRequest("Invalid type for 'tool_choice.function': expected an object, "
                             "{\"name\": ...}.", param="tool_choice.function")
    name = (function or {}).get("name")
    if choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequest("Invalid value for 'tool_choice': expected {\"type\": \"function\", "
                             "\"function\": {\"name\": ...}}.", param="tool_choice")
    return ToolChoice("tool", name)


def _decode_response_format(spec) -> ResponseFormat | None:
    if spec is None:
        return None
    kind = spec.get("type")
    if kind == "json_schema":
        js = {} if spec.get("json_schema") is None else spec["json_schema"]
        if not isinstance(js, dict):
            raise InvalidRequest("Invalid type for 'response_format.json_schema': expected an "
                                 "object.", param="response_format.json_schema")
        _check_json_schema(js)
        return ResponseFormat("json_schema", js.get("schema"), js.get("name"), js.get("strict"))
    if kind in ("json_object", "text"):
        return ResponseFormat(kind)
    raise InvalidRequest(f"Invalid value for 'response_format.type': {kind!r}. Supported: text, "
                         "json_object, json_schema.", param="response_format.type")


def _check_json_schema(js: dict) -> None:
    """`response_format.json_schema`'s fields, which other families' encoders copy as they are."""
    for field, kind, name in (("schema", dict, "an object"), ("name", str, "a string"),
                              ("strict", bool, "a boolean")):
        if js.get(field) is not None and not isinstance(js[field], kind):
            param = f"response_format.json_schema.{field}"
            raise InvalidRequest(f"Invalid type for '{param}': expected {name}.", param=param,
                                 code="invalid_value")
