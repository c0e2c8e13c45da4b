"""Gemini's generateContent wire format, to and from Costr's neutral model.

Request: `contents[{role: user|model, parts}]`, `systemInstruction`, `tools`, `toolConfig`,
`generationConfig`. Answer: `candidates[0].content.parts`, `finishReason`, `usageMetadata`,
`promptFeedback`, `responseId`, `modelVersion`. Streaming chunks have the answer's shape and
are decoded by `costr_gemini.stream.StreamDecoder`.
"""
from __future__ import annotations

import mimetypes
import uuid
from typing import Any

import orjson

from costr import (ChatRequest, ChatResponse, Image, InvalidRequest, Message, ModelSpec, StopReason,
                   Text, Thinking, ToolCall, ToolNameRule, ToolResult, Usage, system_reminder,
                   text_of)

from .schema import sanitise_schema
from .thought_signatures import (call_id_with_signature, model_tag, new_call_id,
                                 requires_signatures, sign_function_calls, signature_in)

TOOL_NAMES = ToolNameRule(chars="A-Za-z0-9_.:-", first="A-Za-z_")   # what Gemini accepts
wire_name = TOOL_NAMES.wire_name

# Finish reasons that mean Google's filters withheld the answer.
_REFUSALS = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                       "IMAGE_SAFETY"})
_EFFORT_BUDGETS = {"low": 1024, "medium": 8192, "high": 24576}
_TOOL_MODES = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}
_MAX_STOP_SEQUENCES = 5  # Gemini answers 400 to more


# ---- neutral -> Gemini --------------------------------------------------------------------

def request_to_wire(request: ChatRequest, model: ModelSpec) -> dict:
    """The generateContent body for `request` sent to `model`."""
    body: dict[str, Any] = {"contents": contents_to_wire(request.messages, model_tag(model))}
    if requires_signatures(model):
        sign_function_calls(body["contents"])
    system = [{"text": part.text} for part in request.system if part.text]
    if system:
        body["systemInstruction"] = {"parts": system}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
        if request.tool_choice:
            body["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
    config = generation_config(request, model)
    if config:
        body["generationConfig"] = config
    return body


def contents_to_wire(messages: list[Message], tag: str = "") -> list[dict]:
    """Messages as Gemini turns, consecutive turns of one role merged (Gemini expects
    user and model turns to alternate); the calls the model tagged `tag` made carry their
    thought signatures back."""
    names = {part.id: part.name for message in messages for part in message.parts
             if isinstance(part, ToolCall)}
    contents: list[dict] = []
    for message in messages:
        role = "model" if message.role == "assistant" else "user"
        parts = _parts_to_wire([system_reminder(message)] if message.role == "system"
                               else message.parts, names, tag)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _parts_to_wire(parts: list, names: dict[str, str], tag: str) -> list[dict]:
    # Function responses go first: Gemini pairs them with the calls of the model turn
    # just before, and other parts of the same user message follow them.
    responses: list[dict] = []
    others: list[dict] = []
    for part in parts:
        if isinstance(part, ToolResult):
            responses.append(_function_response(part, names))
            others.extend(_image(p) for p in part.content if isinstance(p, Image))
        elif isinstance(part, Text):
            if part.text:
                others.append({"text": part.text})
        elif isinstance(part, Image):
            others.append(_image(part))
        elif isinstance(part, ToolCall):
            others.append(_function_call(part, tag))
        # Thinking is dropped: Gemini cannot take reasoning back, least of all another
        # provider's. The signatures Gemini requires back ride in the call ids instead.
    return responses + others


def _function_call(call: ToolCall, tag: str) -> dict:
    part: dict = {"functionCall": {"name": wire_name(call.name), "args": _arguments(call)}}
    signature = signature_in(call.id, tag)
    if signature:
        part["thoughtSignature"] = signature
    return part


def _function_response(result: ToolResult, names: dict[str, str]) -> dict:
    name = result.name or names.get(result.tool_call_id)
    if not name:
        raise InvalidRequest(
            f"tool result {result.tool_call_id!r} answers no earlier tool call, and Gemini "
            "needs the tool's name", param="messages")
    key = "error" if result.is_error else "content"
    return {"functionResponse": {"name": wire_name(name), "response": {key: text_of(result.content)}}}


def _arguments(call: ToolCall) -> dict:
    if not call.arguments.strip():
        return {}
    try:
        args = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        args = None
    # Gemini's args must be an object. Arguments another model produced may not be one;
    # keeping them readable beats refusing the whole conversation.
    return args if isinstance(args, dict) else {"arguments": call.arguments}


def _image(image: Image) -> dict:
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type or "image/jpeg", "data": image.data}}
    url = image.url or ""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime = header[5:].split(";", 1)[0] or "image/jpeg"
        return {"inlineData": {"mimeType": mime, "data": data}}
    mime = image.media_type or mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _declaration(tool) -> dict:
    declaration: dict[str, Any] = {"name": wire_name(tool.name)}
    if tool.description:
        declaration["description"] = tool.description
    parameters = sanitise_schema(tool.parameters)
    # A parameterless tool is declared without `parameters`: Gemini rejects an OBJECT
    # schema with no properties.
    if parameters.get("properties") or parameters.get("type") not in (None, "object"):
        declaration["parameters"] = parameters
    return declaration


def _calling_config(choice) -> dict:
    config: dict[str, Any] = {"mode": _TOOL_MODES[choice.mode]}
    if choice.mode == "tool" and choice.name:
        config["allowedFunctionNames"] = [wire_name(choice.name)]
    return config


def generation_config(request: ChatRequest, model: ModelSpec) -> dict:
    config: dict[str, Any] = {}
    if request.max_tokens is not None:
        limit = model.max_output_tokens
        config["maxOutputTokens"] = min(request.max_tokens, limit) if limit else request.max_tokens
    for key, value in (("temperature", request.temperature), ("topP", request.top_p),
                       ("topK", request.top_k)):
        if value is not None:
            config[key] = value
    if request.stop:
        config["stopSequences"] = request.stop[:_MAX_STOP_SEQUENCES]
    fmt = request.response_format
    if fmt and fmt.type in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema" and fmt.schema:
            config["responseSchema"] = sanitise_schema(fmt.schema)
    thinking = _thinking_config(request, model)
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def _thinking_config(request: ChatRequest, model: ModelSpec) -> dict | None:
    # A thinkingConfig sent to a model that cannot think is a 400, so it needs the capability.
    if not model.supports("reasoning"):
        return None
    budget = request.thinking_budget
    if budget is None:
        budget = _EFFORT_BUDGETS.get((request.reasoning_effort or "").lower())
    if budget is None:
        return None
    config: dict[str, Any] = {"thinkingBudget": budget}
    if budget != 0:
        config["includeThoughts"] = True  # without it Gemini returns no thought summaries
    return config


# ---- Gemini -> neutral --------------------------------------------------------------------

def response_from_wire(body: dict, tag: str = "") -> ChatResponse:
    """A generateContent answer as a ChatResponse (only the first candidate), from the model
    tagged `tag` (`thought_signatures.model_tag`)."""
    candidates = body.get("candidates") or []
    usage = usage_from_wire(body.get("usageMetadata"))
    response = ChatResponse(id=response_id(body), model=body.get("modelVersion", ""),
                            content=[], stop_reason="refusal", usage=usage,
                            raw=body, raw_format="gemini")
    if not candidates:  # the prompt itself was blocked (promptFeedback.blockReason)
        return response
    candidate = candidates[0]
    response.content = parts_from_wire((candidate.get("content") or {}).get("parts") or [], tag)
    has_calls = any(isinstance(p, ToolCall) for p in response.content)
    response.stop_reason = stop_reason(candidate.get("finishReason"), has_calls)
    return response


def parts_from_wire(parts: list[dict], tag: str = "") -> list[Text | ToolCall | Thinking]:
    content: list[Text | ToolCall | Thinking] = []
    for part in parts:
        if "functionCall" in part:
            content.append(tool_call_from_wire(part, tag))
        elif part.get("text"):
            kind = Thinking if part.get("thought") else Text
            if content and type(content[-1]) is kind:  # Gemini may split one text in parts
                content[-1].text += part["text"]
            else:
                content.append(kind(text=part["text"]))
    return content


def tool_call_from_wire(part: dict, tag: str = "") -> ToolCall:
    """A functionCall part as a ToolCall. Gemini gives calls no id unless asked to, and neutral
    calls need one to pair results; the id Costr mints also carries the part's signature."""
    call = part["functionCall"]
    arguments = orjson.dumps(call.get("args") or {}).decode()
    call_id = call_id_with_signature(call.get("id") or new_call_id(), part.get("thoughtSignature"),
                                     tag)
    return ToolCall(id=call_id, name=call.get("name", ""), arguments=arguments)


def response_id(body: dict) -> str:
    return body.get("responseId") or "gemini-" + uuid.uuid4().hex[:24]


def stop_reason(finish_reason: str | None, has_tool_calls: bool) -> StopReason:
    """Gemini's finishReason in Anthropic's vocabulary. Gemini says STOP after function
    calls too; agents stop after one turn unless they see tool_use."""
    if finish_reason == "MAX_TOKENS":
        return "max_tokens"
    if finish_reason in _REFUSALS:
        return "refusal"
    return "tool_use" if has_tool_calls else "end_turn"


def usage_from_wire(meta: dict | None) -> Usage:
    """usageMetadata as Usage. promptTokenCount already includes cached tokens; thinking is
    billed as output, so it is added to candidatesTokenCount, which excludes it."""
    meta = meta or {}
    thoughts = meta.get("thoughtsTokenCount", 0)
    return Usage(
        # Tokens a built-in tool (search, code execution) fed back are billed as input.
        input_tokens=meta.get("promptTokenCount", 0) + meta.get("toolUsePromptTokenCount", 0),
        output_tokens=meta.get("candidatesTokenCount", 0) + thoughts,
        cached_input_tokens=meta.get("cachedContentTokenCount", 0),
        reasoning_tokens=thoughts,
    )
