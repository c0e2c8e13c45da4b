"""OpenAI Responses API requests (`POST /v1/responses`): validating a client's body and
decoding it into the neutral ChatRequest.

`input` is a string or a list of items (messages, `function_call`, `function_call_output`,
`reasoning`, `item_reference`); `instructions` is the system prompt; tools are flat function
definitions. A `previous_response_id` continues a conversation this instance remembers
(response_store.py).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costr import (ChatRequest, InvalidRequest, Message, ResponseFormat, Text, Thinking, Tool,
                   ToolCall, ToolChoice, ToolResult, parse_json_object)

from .chat_request import (_arguments, _check_function, _field_error, _image, _require_string,
                           _session)
from .response_store import ResponseStore

FORMAT = "openai-responses"
TEXT_PARTS = {"input_text", "output_text", "text", "summary_text", "reasoning_text"}
IMAGE_DETAILS = ("auto", "low", "high", "original")


class _Body(BaseModel):
    """The top-level fields Costr reads; the others (`store`, `include`, `metadata`,
    `truncation`, `prompt_cache_key`, `service_tier`...) are accepted and change nothing."""
    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    input: str | list[Any]
    instructions: str | None = None
    stream: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None


def decode_request(body: bytes, headers, store: ResponseStore) -> ChatRequest:
    raw = parse_json_object(body)
    try:
        b = _Body.model_validate(raw)
    except ValidationError as exc:
        raise _field_error(exc, raw) from None
    if b.background:
        raise InvalidRequest("Costr does not run responses in the background: send the request "
                             "without 'background' and wait for the answer (or stream it).",
                             param="background", code="unsupported_parameter")
    if b.conversation is not None:
        raise InvalidRequest("Costr keeps no conversation objects: send the whole input, or "
                             "continue with 'previous_response_id'.", param="conversation",
                             code="unsupported_parameter")
    new = _decode_input(b.input, store)   # built apart: the stored turns are never changed
    system = [Text(b.instructions)] if b.instructions else []
    if new and new[0].role == "system" and not b.previous_response_id:
        system += new.pop(0).parts  # a leading system/developer item is the system prompt
    messages = _previous(b.previous_response_id, store) + new
    if not any(m.role != "system" for m in messages):
        raise InvalidRequest("'input' must contain at least one message.", param="input")
    reasoning = b.reasoning or {}
    return ChatRequest(
        messages=messages, system=system, model=b.model,
        tools=[_decode_tool(t, i) for i, t in enumerate(b.tools or [])],
        tool_choice=_decode_tool_choice(b.tool_choice),
        parallel_tool_calls=b.parallel_tool_calls, max_tokens=b.max_output_tokens,
        temperature=b.temperature, top_p=b.top_p,
        response_format=_decode_text_format(b.text),
        reasoning_effort=_effort(reasoning.get("effort")),
        user=b.user or b.safety_identifier, stream=bool(b.stream), include_usage=True,
        source_format=FORMAT, raw=raw, session=_session(headers, b.user or b.safety_identifier))


def _previous(response_id: str | None, store: ResponseStore) -> list[Message]:
    if response_id is None:
        return []
    messages = store.conversation(response_id)
    if messages is None:
        raise InvalidRequest(f"Previous response with id '{response_id}' not found.",
                             param="previous_response_id", code="previous_response_not_found")
    return messages


def _effort(value) -> str | None:
    if value is None or value == "none":
        return None
    if not isinstance(value, str):
        raise InvalidRequest("Invalid type for 'reasoning.effort': expected a string.",
                             param="reasoning.effort", code="invalid_value")
    return value


# -- input items ----------------------------------------------------------------------------

def _decode_input(value, store: ResponseStore) -> list[Message]:
    if isinstance(value, str):
        return [Message("user", [Text(value)])] if value else []
    messages: list[Message] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"Invalid type for '{where}': expected an object.", param=where,
                                 code="invalid_value")
        if item.get("type") == "item_reference":
            item = _referenced(item, where, store)
        _add_item(messages, item, where)
    return messages


def _referenced(item: dict, where: str, store: ResponseStore) -> dict:
    item_id = _require_string(item.get("id"), f"{where}.id")
    found = store.item(item_id)
    if found is None:
        raise InvalidRequest(f"Item with id '{item_id}' not found.", param=f"{where}.id",
                             code="item_not_found")
    return found


def _add_item(messages: list[Message], item: dict, where: str) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        _add_message(messages, item, where)
    elif kind == "function_call":
        call = ToolCall(id=_require_string(item.get("call_id"), f"{where}.call_id"),
                        name=_require_string(item.get("name"), f"{where}.name"),
                        arguments=_arguments(item.get("arguments"), f"{where}.arguments"))
        _assistant_turn(messages).parts.append(call)
    elif kind == "function_call_output":
        result = ToolResult(tool_call_id=_require_string(item.get("call_id"), f"{where}.call_id"),
                            content=_output_parts(item.get("output"), f"{where}.output"))
        last = messages[-1] if messages else None
        if last and last.role == "user" and all(isinstance(p, ToolResult) for p in last.parts):
            last.parts.append(result)  # parallel results belong to one user turn
        else:
            messages.append(Message("user", [result]))
    elif kind == "reasoning":
        summary = item.get("summary") or []
        if not isinstance(summary, list):
            raise InvalidRequest(f"Invalid type for '{where}.summary': expected an array.",
                                 param=f"{where}.summary", code="invalid_value")
        text = "".join(part["text"] for part in summary
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
        if text:  # reasoning without readable text (encrypted only) cannot be replayed
            _assistant_turn(messages).parts.append(Thinking(text))
    else:
        raise InvalidRequest(f"Unsupported input item type {kind!r} at '{where}'; Costr takes "
                             "message, function_call, function_call_output, reasoning and "
                             "item_reference items.", param=f"{where}.type",
                             code="invalid_value")


def _add_message(messages: list[Message], item: dict, where: str) -> None:
    role = item.get("role")
    parts = _content_parts(item.get("content"), where)
    if role in ("system", "developer"):
        messages.append(Message("system", [p for p in parts if isinstance(p, Text)]))
    elif role == "user":
        messages.append(Message("user", parts))
    elif role == "assistant":
        _assistant_turn(messages).parts.extend(parts)
    else:
        raise InvalidRequest(f"Invalid value for '{where}.role': {role!r}. Supported: user, "
                             "assistant, system, developer.", param=f"{where}.role",
                             code="invalid_value")


def _assistant_turn(messages: list[Message]) -> Message:
    """The assistant turn an item belongs to: the Responses API lists a turn's text, reasoning
    and calls as separate items, the neutral model as one message."""
    if messages and messages[-1].role == "assistant":
        return messages[-1]
    messages.append(Message("assistant", []))
    return messages[-1]


def _content_parts(content, where: str) -> list:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"Invalid type for '{where}.content': expected a string or an array "
                             "of content parts.", param=f"{where}.content", code="invalid_value")
    parts: list = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        kind = kind if isinstance(kind, str) else None
        if kind in TEXT_PARTS or kind == "refusal":
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise InvalidRequest(f"Invalid type for '{at}.text': expected a string.",
                                     param=f"{at}.text", code="invalid_value")
            if text:
                parts.append(Text(text))
        elif kind == "input_image":
            if part.get("file_id") and not part.get("image_url"):
                raise InvalidRequest(f"Costr holds no uploaded files: send the image at '{at}' "
                                     "as 'image_url' (a URL or a data URL).",
                                     param=f"{at}.file_id", code="unsupported_parameter")
            parts.append(_input_image(part, at))
        else:
            raise InvalidRequest(f"Unsupported content part type {kind!r} at '{at}'; supported: "
                                 "input_text, output_text, input_image, refusal.",
                                 param=f"{at}.type", code="invalid_value")
    return parts


def _input_image(part: dict, at: str):
    """`image_url` is a plain string here (a URL or a data URL), `detail` a sibling of it."""
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"Missing required parameter: '{at}.image_url' (a URL or a data "
                             "URL).", param=f"{at}.image_url")
    detail = part.get("detail")
    if detail is not None and detail not in IMAGE_DETAILS:
        raise InvalidRequest(f"Invalid value for '{at}.detail': {detail!r}. Supported: "
                             f"{', '.join(IMAGE_DETAILS)}.", param=f"{at}.detail",
                             code="invalid_value")
    image = _image(url, f"{at}.image_url")
    # Chat Completions knows no "original": the nearest it has is "high"
    image.detail = {"auto": None, "original": "high"}.get(detail, detail)
    return image


def _output_parts(output, where: str) -> list:
    """A function call's output: a string, or a list of content parts."""
    if isinstance(output, str):
        return [Text(output)] if output else []
    if isinstance(output, list):
        return _content_parts(output, where.rsplit(".", 1)[0] + ".output")
    raise InvalidRequest(f"Invalid type for '{where}': expected a string or an array of content "
                         "parts.", param=where, code="invalid_value")


# -- tools and formats ----------------------------------------------------------------------

def _decode_tool(tool: dict, i: int) -> Tool:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function":
        raise InvalidRequest(f"Unsupported tool type {kind!r} at 'tools[{i}]': Costr routes "
                             "between providers and serves function tools only.",
                             param=f"tools[{i}].type", code="unsupported_parameter")
    _check_function(tool, f"tools[{i}]")
    return Tool(name=tool["name"], description=tool.get("description") or "",
                parameters=tool.get("parameters") or {"type": "object", "properties": {}})


def _decode_tool_choice(choice) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        modes = {"auto": "auto", "none": "none", "required": "any"}
        if choice not in modes:
            raise InvalidRequest(f"Invalid value for 'tool_choice': {choice!r}. Supported: auto, "
                                 "none, required, or {\"type\": \"function\", \"name\": ...}.",
                                 param="tool_choice", code="invalid_value")
        return ToolChoice(modes[choice])
    if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
        raise InvalidRequest("Invalid value for 'tool_choice': expected auto, none, required, or "
                             "{\"type\": \"function\", \"name\": ...}.", param="tool_choice",
                             code="invalid_value")
    return ToolChoice("tool", choice["name"])


def _decode_text_format(text: dict | None) -> ResponseFormat | None:
    spec = (text or {}).get("format")
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "json_schema":
        schema = spec.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise InvalidRequest("Invalid type for 'text.format.schema': expected an object.",
                                 param="text.format.schema", code="invalid_value")
        return ResponseFormat("json_schema", schema, spec.get("name"), spec.get("strict"))
    if kind in ("json_object", "text"):
        return ResponseFormat(kind)
    raise InvalidRequest(f"Invalid value for 'text.format.type': {kind!r}. Supported: text, "
                         "json_object, json_schema.", param="text.format.type",
                         code="invalid_value")
