"""An Anthropic Messages request from a client, validated and decoded into the neutral
ChatRequest (`decode_request`); the inverse of wire_request.

Errors name the field the way Anthropic's own do (`max_tokens: Field required`). Content that
is valid Anthropic but has no neutral form (server tool blocks, PDF documents, images from the
Files API) is left out of the neutral request; the client's body is kept whole in `raw`, so a
request routed to an Anthropic model still carries it.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costr import (ChatRequest, Image, InvalidRequest, Message, ResponseFormat, Text, Thinking,
                   Tool, ToolCall, ToolChoice, ToolResult, parse_json_object)

from .wire_response import WIRE_FORMAT, compact_json

# Client headers a same-format upstream must see unchanged (a beta header pairs with body fields).
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
SESSION_HEADER = "x-claude-code-session-id"
# Anthropic's effort levels as the neutral low / medium / high.
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}
ASSISTANT_ONLY = {"tool_use", "thinking", "redacted_thinking"}
USER_ONLY = {"tool_result"}


class _Body(BaseModel):
    """The top-level fields Costr reads; everything else stays in `raw` for passthrough."""
    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    messages: list[Any] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    system: str | list[Any] | None = None
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None


def decode_request(body: bytes, headers=None, *, require_max_tokens: bool = True) -> ChatRequest:
    """`require_max_tokens=False` for token counting, whose requests carry no max_tokens."""
    raw = parse_json_object(body)
    try:
        b = _Body.model_validate(raw)
    except ValidationError as exc:
        raise _field_error(exc, raw) from None
    if require_max_tokens and b.max_tokens is None:
        raise invalid("max_tokens", "Field required")
    user = _user_id(b.metadata)
    budget, effort = _reasoning(b.thinking, b.output_config)
    tools, tool_choice, parallel = decode_tools(b.tools, b.tool_choice)
    return ChatRequest(
        messages=decode_messages(b.messages), system=decode_system(b.system), model=b.model,
        tools=tools, tool_choice=tool_choice, parallel_tool_calls=parallel,
        max_tokens=b.max_tokens, temperature=b.temperature, top_p=b.top_p, top_k=b.top_k,
        stop=list(b.stop_sequences or []),
        response_format=_response_format(b.output_config, b.output_format),
        reasoning_effort=effort, thinking_budget=budget, user=user, stream=bool(b.stream),
        include_usage=True, source_format=WIRE_FORMAT, raw=raw,
        forward_headers=_forwarded(headers), session=_session(headers, user))


def invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def _field_error(exc: ValidationError, raw: dict) -> InvalidRequest:
    err = exc.errors()[0]
    return invalid(_field_path(err["loc"], raw) or "body", err["msg"])


def _field_path(loc: tuple, raw: dict) -> str:
    """Pydantic's error location as Anthropic's dotted path (`messages.0`). The location also
    holds the tags of a union's members (`str`, `list[any]`); telling them apart by name would
    drop fields named like them (`stream`), so the path follows the body itself and stops
    where the body has no further object or array to step into."""
    path, node = [], raw
    for step in loc:
        if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        elif isinstance(node, dict) and isinstance(step, str):
            node = node.get(step)
        else:
            break
        path.append(str(step))
    return ".".join(path)


def _forwarded(headers) -> dict[str, str]:
    if headers is None:
        return {}
    return {name: headers[name] for name in FORWARDED_HEADERS if headers.get(name)}


def _user_id(metadata: dict | None) -> str | None:
    user = (metadata or {}).get("user_id")
    if user is not None and not isinstance(user, str):
        raise invalid("metadata.user_id", "Input should be a valid string")
    return user or None


def _session(headers, user: str | None) -> str | None:
    if headers is not None and headers.get(SESSION_HEADER):
        return headers[SESSION_HEADER]
    return user


# ---- thinking, effort and output format ---------------------------------------------------------

def _reasoning(thinking: dict | None, output_config: dict | None) -> tuple[int | None, str | None]:
    """(thinking_budget, reasoning_effort). An explicit effort wins; adaptive thinking without
    one leaves the effort to the target model, which is what adaptive asks for."""
    budget = None
    if thinking is not None and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise invalid("thinking.enabled.budget_tokens", "Input should be a positive integer")
    effort = (output_config or {}).get("effort")
    if effort is not None and not isinstance(effort, str):
        raise invalid("output_config.effort", "Input should be a valid string")
    return budget, EFFORTS.get(effort or "")


def _response_format(output_config: dict | None, output_format: dict | None) -> ResponseFormat | None:
    """Structured output (`output_config.format`, or the beta's top-level `output_format`)."""
    spec = (output_config or {}).get("format") or output_format
    if isinstance(spec, dict) and spec.get("type") == "json_schema":
        schema = spec.get("schema")
        return ResponseFormat("json_schema", schema if isinstance(schema, dict) else None)
    return None


# ---- system, tools and tool choice ----------------------------------------------------------------

def decode_system(system, where: str = "system") -> list[Text]:
    """The top-level `system`, or a mid-conversation system message's content."""
    if system is None:
        return []
    if isinstance(system, str):
        return [Text(system)] if system else []
    if not isinstance(system, list):
        raise invalid(where, "Input should be a valid string or a list of text blocks")
    texts = []
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid(f"{where}.{i}.type", "Input should be 'text'")
        texts.append(_text(block, f"{where}.{i}"))
    return [t for t in texts if t.text]


def decode_tools(tools: list | None, choice: dict | None
                 ) -> tuple[list[Tool], ToolChoice | None, bool | None]:
    decoded = []
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict):
            raise invalid(f"tools.{i}", "Input should be a valid dictionary")
        if "input_schema" not in tool and tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search, code execution...): Anthropic's alone
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise invalid(f"tools.{i}.name", "Field required")
        if not isinstance(schema, dict):
            raise invalid(f"tools.{i}.input_schema", "Field required")
        description = tool.get("description")
        decoded.append(Tool(name, description if isinstance(description, str) else "", schema))
    if choice is None:
        return decoded, None, None
    mode = choice.get("type")
    if mode not in ("auto", "any", "tool", "none"):
        raise invalid("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    name = choice.get("name")
    if mode == "tool" and (not isinstance(name, str) or not name):
        raise invalid("tool_choice.tool.name", "Field required")
    parallel = False if choice.get("disable_parallel_tool_use") is True else None
    return decoded, ToolChoice(mode, name if mode == "tool" else None), parallel


# ---- messages and content blocks ----------------------------------------------------------------

def decode_messages(items: list) -> list[Message]:
    names: dict[str, str] = {}  # tool_use id -> tool name, for results (Gemini needs the name)
    messages = []
    for i, item in enumerate(items):
        where = f"messages.{i}"
        if not isinstance(item, dict):
            raise invalid(where, "Input should be a valid dictionary")
        role = item.get("role")
        if role not in ("user", "assistant", "system"):
            raise invalid(f"{where}.role", f"Unexpected role {role!r}: input message roles are "
                          "'user', 'assistant' and (mid-conversation) 'system'")
        if "content" not in item:
            raise invalid(f"{where}.content", "Field required")
        if role == "system":  # a mid-conversation instruction (Claude Code sends these)
            messages.append(Message("system", decode_system(item["content"], f"{where}.content")))
            continue
        messages.append(Message(role, decode_content(item["content"], where, role, names)))
    return messages


def decode_content(content, where: str, role: str, names: dict[str, str]) -> list:
    if isinstance(content, str):
        return [Text(content)] if content else []
    if not isinstance(content, list):
        raise invalid(f"{where}.content", "Input should be a valid string or list of content blocks")
    parts = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(kind, str):
            raise invalid(f"{at}.type", "Field required")
        if kind in ASSISTANT_ONLY and role != "assistant" or kind in USER_ONLY and role != "user":
            raise invalid(f"{at}.type", f"`{kind}` blocks are not allowed in `{role}` messages")
        decode = _BLOCKS.get(kind)
        part = decode(block, at, names) if decode else None
        if part is not None:
            parts.append(part)
    return parts


def _text(block: dict, at: str, names=None) -> Text | None:
    text = block.get("text")
    if not isinstance(text, str):
        raise invalid(f"{at}.text", "Field required")
    control = block.get("cache_control")
    return Text(text, control if isinstance(control, dict) else None) if text else None


def _image(block: dict, at: str, names=None) -> Image | None:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        data, media_type = source.get("data"), source.get("media_type")
        if not isinstance(data, str) or not data:
            raise invalid(f"{at}.source.data", "Field required")
        return Image(media_type=media_type if isinstance(media_type, str) else None, data=data)
    if kind == "url":
        if not isinstance(source.get("url"), str) or not source["url"]:
            raise invalid(f"{at}.source.url", "Field required")
        return Image(url=source["url"])
    if kind is None:
        raise invalid(f"{at}.source", "Field required")
    return None  # a Files API image: only an Anthropic model can read it


def _document(block: dict, at: str, names=None) -> Text | None:
    """A plain-text document is text; a PDF has no neutral form."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{at}.source", "Input should be a valid dictionary")
    if source.get("type") == "text":
        if not isinstance(source.get("data"), str):
            raise invalid(f"{at}.source.data", "Input should be a valid string")
        return Text(source["data"]) if source["data"] else None
    if source.get("type") == "content":
        blocks = source.get("content")
        if isinstance(blocks, str):
            return Text(blocks) if blocks else None
        if not isinstance(blocks, list):
            raise invalid(f"{at}.source.content", "Input should be a valid string or list")
        texts = [_text(b, f"{at}.source.content.{k}") for k, b in enumerate(blocks)
                 if isinstance(b, dict) and b.get("type") == "text"]
        text = "".join(t.text for t in texts if t)
        return Text(text) if text else None
    return None


def _tool_use(block: dict, at: str, names: dict[str, str]) -> ToolCall:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{at}.id", "Field required")
    if not isinstance(name, str) or not name:
        raise invalid(f"{at}.name", "Field required")
    if not isinstance(arguments, dict):
        raise invalid(f"{at}.input", "Input should be a valid dictionary")
    names[call_id] = name
    return ToolCall(call_id, name, compact_json(arguments))


def _tool_result(block: dict, at: str, names: dict[str, str]) -> ToolResult:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid(f"{at}.tool_use_id", "Field required")
    content = block.get("content")
    if isinstance(content, list):
        content = [b for b in content if isinstance(b, dict) and b.get("type") in _RESULT_BLOCKS]
    parts = decode_content(content, at, "user", names) if content is not None else []
    return ToolResult(call_id, [p for p in parts if isinstance(p, (Text, Image))],
                      is_error=block.get("is_error") is True, name=names.get(call_id))


def _thinking(block: dict, at: str, names=None) -> Thinking:
    text = block.get("thinking")
    if not isinstance(text, str):
        raise invalid(f"{at}.thinking", "Field required")
    signature = block.get("signature")
    return Thinking(text, signature=signature if isinstance(signature, str) and signature else None)


def _redacted_thinking(block: dict, at: str, names=None) -> Thinking:
    data = block.get("data")
    if not isinstance(data, str) or not data:
        raise invalid(f"{at}.data", "Field required")
    return Thinking(redacted_data=data)


_BLOCKS = {"text": _text, "image": _image, "document": _document, "tool_use": _tool_use,
           "tool_result": _tool_result, "thinking": _thinking, "redacted_thinking": _redacted_thinking}
_RESULT_BLOCKS = {"text", "image", "document"}  # what a tool result may carry with a neutral form


def looks_like_a_request(body: dict, headers) -> bool:
    """Anthropic's marks on a request: its version header, a top-level system prompt, or a
    content block type other API families do not have."""
    if headers is not None and "anthropic-version" in headers:
        return True
    if "system" in body:
        return True
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
                isinstance(b, dict) and b.get("type") in _MARK_BLOCKS for b in content):
            return True
    return False


_MARK_BLOCKS = {"tool_use", "tool_result", "thinking", "redacted_thinking", "image", "document"}
