"""Encoding a neutral ChatRequest as an OpenAI Chat Completions body for an upstream."""
from __future__ import annotations

import hashlib

from costr import (ChatRequest, Image, Message, ModelSpec, Text, ToolCall, ToolCallIdRule,
                   ToolNameRule, ToolResult, text_of)


from .chat_request import FORMAT

TOOL_NAMES = ToolNameRule(chars="A-Za-z0-9_-", first="A-Za-z0-9_-")   # what OpenAI accepts
wire_name = TOOL_NAMES.wire_name
# OpenAI refuses a tool call id over 40 characters (`string_above_max_length`); ids other
# providers' answers got, and Costr's own that carry data, run longer.
TOOL_CALL_IDS = ToolCallIdRule(limit=40)
wire_id = TOOL_CALL_IDS.wire_id

_EFFORT_BY_BUDGET = ((4096, "high"), (2048, "medium"), (0, "low"))
MAX_USER_CHARS = 64


def request_to_wire(request: ChatRequest, model: ModelSpec, stream: bool) -> dict:
    if request.source_format == FORMAT and request.raw is not None:
        body = dict(request.raw)  # same format: forward what the client sent, fields we don't know included
        if isinstance(body.get("messages"), list):
            body["messages"] = _with_wire_ids(body["messages"])
    else:
        body = _translate(request, model)
    body["model"] = model.wire_name
    _fit_to_model(body, model)
    if stream:
        body["stream"] = True
        # Usage is needed for accounting even when the client didn't ask for it.
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def _fit_to_model(body: dict, model: ModelSpec) -> None:
    """Apply the model's limits and quirks from providers.yaml (`max_tokens_field`,
    `unsupported_params`) so one request shape works across OpenAI-compatible servers."""
    limit = body.pop("max_completion_tokens", None) or body.pop("max_tokens", None)
    if limit is not None:
        if model.max_output_tokens:
            limit = min(limit, model.max_output_tokens)
        default_field = "max_completion_tokens" if model.supports("reasoning") else "max_tokens"
        body[model.options.get("max_tokens_field", default_field)] = limit
    for name in model.options.get("unsupported_params", ()):
        body.pop(name, None)
    if not body.get("tools"):
        body.pop("tools", None)
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
    if body.get("reasoning_effort") and not model.supports("reasoning"):
        body.pop("reasoning_effort")


def _with_wire_ids(messages: list) -> list:
    """The client's messages with each tool call id OpenAI would refuse replaced, in the
    assistant's calls and the tool messages alike (copies: the client's body is not changed)."""
    out = []
    for message in messages:
        if isinstance(message, dict):
            message = _with_wire_id(message, "tool_call_id")
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                wired = [_with_wire_id(call, "id") if isinstance(call, dict) else call
                         for call in calls]
                if wired != calls:
                    message = {**message, "tool_calls": wired}
        out.append(message)
    return out


def _with_wire_id(item: dict, key: str) -> dict:
    """`item` with its id under `key` as OpenAI accepts it (a copy only when that changes it)."""
    value = item.get(key)
    if not isinstance(value, str) or (wire := wire_id(value)) == value:
        return item
    return {**item, key: wire}


def _translate(request: ChatRequest, model: ModelSpec) -> dict:
    messages: list[dict] = []
    if request.system:
        messages.append({"role": "system", "content": "\n\n".join(t.text for t in request.system)})
    for message in request.messages:
        if message.role == "system":
            messages.append({"role": "system", "content": text_of(message.parts)})
        elif message.role == "user":
            messages += _user_messages(message)
        else:
            messages.append(_assistant(message))
    body: dict = {"messages": messages}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    for name in ("temperature", "top_p"):
        if getattr(request, name) is not None:
            body[name] = getattr(request, name)
    if request.user:
        body["user"] = _user_id(request.user)
    if request.stop:
        body["stop"] = request.stop
    if request.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": wire_name(t.name), "description": t.description, "parameters": t.parameters}}
            for t in request.tools]
        if request.tool_choice:
            body["tool_choice"] = _tool_choice(request.tool_choice)
        if request.parallel_tool_calls is False:
            body["parallel_tool_calls"] = False
    if request.response_format and request.response_format.type != "text":
        body["response_format"] = _response_format(request.response_format)
    effort = request.reasoning_effort or _effort_for_budget(request.thinking_budget)
    if effort:
        body["reasoning_effort"] = effort
    return body


def _user_messages(message: Message) -> list[dict]:
    """Tool results become `tool` messages placed before the rest of the user's turn; images a
    tool returned ride in a user message after them (a tool message can carry only text)."""
    out: list[dict] = []
    tool_images: list[Image] = []
    rest = []
    for part in message.parts:
        if isinstance(part, ToolResult):
            text = "".join(p.text for p in part.content if isinstance(p, Text))
            if part.is_error and not text.startswith("Error"):
                text = f"Error: {text}"
            out.append({"role": "tool", "tool_call_id": wire_id(part.tool_call_id), "content": text})
            tool_images += [p for p in part.content if isinstance(p, Image)]
        else:
            rest.append(part)
    if tool_images:
        rest = [Text("Images returned by the tool calls above:"), *tool_images, *rest]
    if rest:
        out.append({"role": "user", "content": _content(rest)})
    return out


def _content(parts: list) -> str | list[dict]:
    if all(isinstance(p, Text) for p in parts):
        return "".join(p.text for p in parts)
    items = []
    for p in parts:
        if isinstance(p, Text):
            items.append({"type": "text", "text": p.text})
        elif isinstance(p, Image):
            image = {"url": p.as_data_url()}
            if p.detail:
                image["detail"] = p.detail
            items.append({"type": "image_url", "image_url": image})
    return items


def _assistant(message: Message) -> dict:
    # Thinking parts are not replayed: OpenAI-format upstreams do not take them back.
    text = "".join(p.text for p in message.parts if isinstance(p, Text))
    calls = [{"id": wire_id(p.id), "type": "function",
              "function": {"name": wire_name(p.name), "arguments": p.arguments}}
             for p in message.parts if isinstance(p, ToolCall)]
    out: dict = {"role": "assistant", "content": text or None}
    if calls:
        out["tool_calls"] = calls
    return out


def _tool_choice(choice) -> str | dict:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": wire_name(choice.name)}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.mode]


def _response_format(fmt) -> dict:
    if fmt.type == "json_schema":
        spec = {"name": fmt.name or "response", "schema": fmt.schema or {}}
        if fmt.strict is not None:
            spec["strict"] = fmt.strict
        return {"type": "json_schema", "json_schema": spec}
    return {"type": "json_object"}


def _user_id(user: str) -> str:
    """OpenAI refuses a `user` over 64 characters; other families' user ids (an agent's
    account-and-session string) run longer. A longer one is sent as a stable digest of it."""
    if len(user) <= MAX_USER_CHARS:
        return user
    return "sha256-" + hashlib.sha256(user.encode()).hexdigest()[:MAX_USER_CHARS - 7]


def _effort_for_budget(budget: int | None) -> str | None:
    if budget is None:
        return None
    return next(effort for floor, effort in _EFFORT_BY_BUDGET if budget >= floor)
