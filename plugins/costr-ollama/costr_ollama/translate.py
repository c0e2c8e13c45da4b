"""Ollama's native chat wire format <-> Costr's neutral model (costr.conversation).

Wire facts this module relies on (Ollama docs/api.md):
- system prompts are messages with role "system"; tool results are messages with role "tool"
  naming the tool in `tool_name` (Ollama matches results by name, not by call id);
- images travel as a list of bare base64 strings on the message, never as URLs;
- tool-call `arguments` are JSON objects, where the neutral model keeps JSON text;
- sampling settings live under `options` (`num_predict` is the output-token limit);
- `done_reason` says "stop" even when the model called a tool, and usage is
  `prompt_eval_count` / `eval_count` on the last (`done: true`) object.
"""
from __future__ import annotations

import json
import time
import uuid

from costr import (BlockStart, BlockStop, ChatRequest, ChatResponse, Event, Image, InvalidRequest,
                   MessageEnd, MessageStart, ResponseFormat, Text, TextDelta, Thinking,
                   ThinkingDelta, ToolArgumentsDelta, ToolCall, ToolResult, Usage, text_of)

RAW_FORMAT = "ollama"


# ---- request ------------------------------------------------------------------------------

def encode_request(request: ChatRequest, model_name: str, *, stream: bool,
                   defaults: dict | None = None) -> dict:
    """The /api/chat body for `request`. `defaults` are provider-level Ollama options
    (e.g. num_ctx) that the request's own settings override; `keep_alive` among them is
    sent at the top level, where Ollama expects it."""
    defaults = dict(defaults or {})
    body: dict = {"model": model_name, "messages": encode_messages(request), "stream": stream}
    if "keep_alive" in defaults:
        body["keep_alive"] = defaults.pop("keep_alive")
    if request.tools and not (request.tool_choice and request.tool_choice.mode == "none"):
        # Ollama has no tool_choice: "auto" is all it does, so "any"/"tool" degrade to it.
        body["tools"] = [{"type": "function",
                          "function": {"name": t.name, "description": t.description,
                                       "parameters": t.parameters}}
                         for t in request.tools]
    options = defaults | encode_options(request)
    if options:
        body["options"] = options
    response_format = encode_format(request.response_format)
    if response_format is not None:
        body["format"] = response_format
    if request.reasoning_effort or request.thinking_budget:
        body["think"] = True
    return body


def encode_options(request: ChatRequest) -> dict:
    options = {"temperature": request.temperature, "top_p": request.top_p,
               "top_k": request.top_k, "num_predict": request.max_tokens,
               "stop": request.stop or None}
    return {key: value for key, value in options.items() if value is not None}


def encode_format(response_format: ResponseFormat | None) -> str | dict | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_schema" and response_format.schema:
        return response_format.schema
    return "json"


def encode_messages(request: ChatRequest) -> list[dict]:
    out: list[dict] = []
    if request.system:
        out.append({"role": "system", "content": "\n\n".join(t.text for t in request.system)})
    tool_names: dict[str, str] = {}  # call id -> tool name, for results that do not name it
    for message in request.messages:
        wire: dict = {"role": message.role, "content": ""}
        texts, images, calls, thinking = [], [], [], []
        for part in message.parts:
            if isinstance(part, Text):
                texts.append(part.text)
            elif isinstance(part, Image):
                images.append(image_base64(part))
            elif isinstance(part, Thinking):
                thinking.append(part.text)
            elif isinstance(part, ToolCall):
                tool_names[part.id] = part.name
                calls.append({"function": {"name": part.name,
                                           "arguments": arguments_object(part)}})
            elif isinstance(part, ToolResult):
                out.append(encode_tool_result(part, tool_names))
        if not (texts or images or calls or thinking):
            continue  # the message held only tool results, already sent as "tool" messages
        wire["content"] = "".join(texts)
        if images:
            wire["images"] = images
        if calls:
            wire["tool_calls"] = calls
        if thinking:
            wire["thinking"] = "".join(thinking)
        out.append(wire)
    return out


def encode_tool_result(result: ToolResult, tool_names: dict[str, str]) -> dict:
    wire = {"role": "tool", "content": text_of(result.content),
            "tool_name": result.name or tool_names.get(result.tool_call_id, "")}
    images = [image_base64(p) for p in result.content if isinstance(p, Image)]
    if images:
        wire["images"] = images
    return wire


def image_base64(image: Image) -> str:
    """The bare base64 Ollama wants: inline data, or the payload of a data: URL."""
    if image.data:
        return image.data
    if image.url and image.url.startswith("data:") and ";base64," in image.url:
        return image.url.split(";base64,", 1)[1]
    raise InvalidRequest("Ollama accepts inline (base64) images only, not image URLs",
                         param="messages")


def arguments_object(call: ToolCall) -> dict:
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"tool call {call.id!r} has arguments that are not a JSON object, "
                             "which Ollama requires", param="messages")
    return arguments


# ---- answer -------------------------------------------------------------------------------

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def decode_response(body: dict) -> ChatResponse:
    message = body.get("message") or {}
    content: list = []
    if message.get("thinking"):
        content.append(Thinking(text=message["thinking"]))
    if message.get("content"):
        content.append(Text(message["content"]))
    calls = [decode_tool_call(c) for c in message.get("tool_calls") or []]
    content.extend(calls)
    return ChatResponse(id=new_id(), model=body.get("model", ""), content=content,
                        stop_reason=stop_reason(body, bool(calls)), usage=decode_usage(body),
                        created=int(time.time()), raw=body, raw_format=RAW_FORMAT)


def decode_tool_call(wire: dict) -> ToolCall:
    function = wire.get("function") or {}
    arguments = function.get("arguments")
    text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    # Newer Ollama versions send an id; older ones send none, so make one up.
    return ToolCall(id=wire.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                    name=function.get("name", ""), arguments=text)


def decode_usage(body: dict) -> Usage:
    return Usage(input_tokens=body.get("prompt_eval_count") or 0,
                 output_tokens=body.get("eval_count") or 0)


def stop_reason(body: dict, called_tools: bool) -> str:
    if called_tools:
        return "tool_use"
    return STOP_REASONS.get(body.get("done_reason") or "stop", "end_turn")


def new_id() -> str:
    return f"ollama-{uuid.uuid4().hex}"


# ---- stream -------------------------------------------------------------------------------

class StreamDecoder:
    """Turns the NDJSON objects of a streamed /api/chat answer into neutral events.

    Text and thinking arrive as deltas; a tool call arrives whole in one object (often the
    last one, `done: true`), so it becomes a complete block in one go."""

    def __init__(self) -> None:
        self.index = -1
        self.open_kind: str | None = None  # "text" or "thinking" while such a block is open
        self.started = False
        self.called_tools = False
        self.finished = False  # saw the `done: true` object

    def decode(self, chunk: dict) -> list[Event]:
        events: list[Event] = []
        if not self.started:
            self.started = True
            events.append(MessageStart(id=new_id(), model=chunk.get("model", "")))
        message = chunk.get("message") or {}
        if message.get("thinking"):
            events += self._delta("thinking", message["thinking"])
        if message.get("content"):
            events += self._delta("text", message["content"])
        for wire in message.get("tool_calls") or []:
            events += self._close()
            call = decode_tool_call(wire)
            self.index += 1
            self.called_tools = True
            events += [BlockStart(self.index, "tool_call", tool_call_id=call.id, tool_name=call.name),
                       ToolArgumentsDelta(self.index, call.arguments),
                       BlockStop(self.index)]
        if chunk.get("done"):
            self.finished = True
            events += self._close()
            events.append(MessageEnd(stop_reason(chunk, self.called_tools), decode_usage(chunk)))
        return events

    def _delta(self, kind: str, text: str) -> list[Event]:
        events: list[Event] = []
        if self.open_kind != kind:
            events += self._close()
            self.index += 1
            self.open_kind = kind
            events.append(BlockStart(self.index, kind))
        events.append(TextDelta(self.index, text) if kind == "text"
                      else ThinkingDelta(self.index, text))
        return events

    def _close(self) -> list[Event]:
        if self.open_kind is None:
            return []
        self.open_kind = None
        return [BlockStop(self.index)]
