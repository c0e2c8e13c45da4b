"""The neutral ChatRequest as an Anthropic Messages request body (`request_to_wire`).

Anthropic is stricter than the neutral model: roles must alternate, text blocks must hold more
than whitespace, tool results must open the user turn that answers the tool calls, only thinking
Anthropic signed may be sent back, and `max_tokens` is required. Requests routed here may come
from any client or have been answered by any model before, so this module repairs what it can
instead of forwarding a body Anthropic would reject with a 400.
"""
from __future__ import annotations

import json

from costr import (ChatRequest, Image, InvalidRequest, Message, ModelSpec, ResponseFormat, Text,
                   Thinking, ToolCall, ToolCallIdRule, ToolChoice, ToolResult, system_reminder)

DEFAULT_MAX_TOKENS = 4096        # when neither the request nor the model names a limit
MIN_THINKING_BUDGET = 1024       # Anthropic rejects smaller budgets
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
ADAPTIVE = "adaptive"             # a model's options.thinking when it takes adaptive thinking
ADAPTIVE_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}
MAX_TEMPERATURE = 1.0            # Anthropic's range is 0..1; OpenAI clients may send up to 2
MIN_TOP_P_WITH_THINKING = 0.95   # the only top_p values Anthropic accepts while thinking
# Tool call arguments that are not a JSON object (a model produced broken JSON elsewhere) are
# replayed under this key: Anthropic requires `input` to be an object, and dropping the text
# would hide from the model what it actually sent.
UNPARSEABLE_ARGUMENTS_KEY = "_raw"
# Anthropic refuses a tool_use id outside `^[a-zA-Z0-9_-]+$` (it documents no length limit);
# OpenAI-compatible servers mint ids such as `functions.Bash:0`.
TOOL_CALL_IDS = ToolCallIdRule(chars="a-zA-Z0-9_-")
# The first characters of base64 image data, for inline images that came without a media type.
MEDIA_TYPE_BY_BASE64_PREFIX = {"iVBORw0KGgo": "image/png", "/9j/": "image/jpeg",
                               "R0lGOD": "image/gif", "UklGR": "image/webp"}


def request_to_wire(request: ChatRequest, model: ModelSpec) -> dict:
    """The Messages API body for `request` sent to `model` (without `stream`)."""
    messages = messages_to_wire(request.messages)
    body: dict = {"model": model.wire_name, "messages": messages}
    system = system_to_wire(request.system, request.response_format)
    if system:
        body["system"] = system
    max_tokens = max_tokens_for(request, model)
    budget = thinking_budget_for(request, model, messages)
    if budget and model.options.get("thinking") == ADAPTIVE:
        body.update(adaptive_thinking(request))  # no budget: the model decides, led by effort
    elif budget:
        max_tokens, budget = fit_thinking(budget, max_tokens, model.max_output_tokens)
        if budget:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body["max_tokens"] = max_tokens
    body.update(sampling_to_wire(request, thinking=bool(budget)))
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.user:
        body["metadata"] = {"user_id": request.user}
    body.update(tools_to_wire(request))
    return body


# ---- limits, sampling and thinking ---------------------------------------------------------

def max_tokens_for(request: ChatRequest, model: ModelSpec) -> int:
    wanted = request.max_tokens or model.max_output_tokens or DEFAULT_MAX_TOKENS
    return min(wanted, model.max_output_tokens) if model.max_output_tokens else wanted


def thinking_budget_for(request: ChatRequest, model: ModelSpec, messages: list[dict]) -> int | None:
    """The thinking budget to ask for, or None to leave thinking off."""
    if not model.supports("reasoning"):
        return None  # a model without extended thinking answers a `thinking` field with a 400
    if request.tool_choice and request.tool_choice.mode in ("any", "tool"):
        return None  # Anthropic refuses thinking together with a forced tool choice
    if not history_allows_thinking(messages):
        return None
    if request.thinking_budget:
        return max(MIN_THINKING_BUDGET, request.thinking_budget)
    return EFFORT_BUDGETS.get(request.reasoning_effort or "")


def history_allows_thinking(messages: list[dict]) -> bool:
    """Anthropic refuses thinking with a prefilled answer (a final assistant turn). And while a
    tool loop is open (the last user turn carries tool results), it requires the assistant turn
    that called the tools to start with a thinking block; a turn answered by another model, or
    without thinking, has none. Either way: keep thinking off."""
    if messages and messages[-1]["role"] == "assistant":
        return False
    if len(messages) < 2:
        return True
    if not any(block["type"] == "tool_result" for block in messages[-1]["content"]):
        return True
    first = messages[-2]["content"][0]["type"]
    return first in ("thinking", "redacted_thinking")


def adaptive_thinking(request: ChatRequest) -> dict:
    """Thinking for a model marked `options: {thinking: adaptive}` (Claude 4.6 on; some later
    models refuse a budget)."""
    out: dict = {"thinking": {"type": ADAPTIVE}}
    effort = ADAPTIVE_EFFORTS.get(request.reasoning_effort or "")
    if effort:
        out["output_config"] = {"effort": effort}
    return out


def fit_thinking(budget: int, max_tokens: int, limit: int | None) -> tuple[int, int | None]:
    """Anthropic counts thinking inside `max_tokens` and requires `max_tokens > budget`.
    Returns (max_tokens, budget); budget None when the model's limit leaves no room to think."""
    if max_tokens <= budget:
        max_tokens = budget + max_tokens  # keep the room the caller wanted for the answer itself
        if limit:
            max_tokens = min(max_tokens, limit)
    if max_tokens <= budget:
        budget = max_tokens // 2
    return max_tokens, (budget if budget >= MIN_THINKING_BUDGET else None)


def sampling_to_wire(request: ChatRequest, *, thinking: bool) -> dict:
    out: dict = {}
    # With thinking on, Anthropic accepts neither temperature nor top_k.
    if request.temperature is not None and not thinking:
        out["temperature"] = min(request.temperature, MAX_TEMPERATURE)
    # Current Claude models refuse temperature and top_p together; temperature is the common one.
    if request.top_p is not None and "temperature" not in out:
        if not thinking or request.top_p >= MIN_TOP_P_WITH_THINKING:
            out["top_p"] = request.top_p
    if request.top_k is not None and not thinking:
        out["top_k"] = request.top_k
    return out


# ---- system and tools ----------------------------------------------------------------------

def system_to_wire(system: list[Text], response_format: ResponseFormat | None) -> list[dict]:
    blocks = [text_to_wire(text) for text in system if text.text.strip()]
    instruction = format_instruction(response_format)
    if instruction:
        # Appended last, so the cached prefix of the system prompt stays the same.
        blocks.append({"type": "text", "text": instruction})
    return blocks


def format_instruction(response_format: ResponseFormat | None) -> str | None:
    """A system instruction asking for JSON. Anthropic's own structured output needs a beta
    header and a recent model; an instruction works on every model and needs neither."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_schema" and response_format.schema:
        schema = json.dumps(response_format.schema, separators=(",", ":"))
        return ("Respond with only a JSON value that conforms to this JSON Schema, "
                f"with no other text and no code fences:\n{schema}")
    return "Respond with only a valid JSON object, with no other text and no code fences."


def tools_to_wire(request: ChatRequest) -> dict:
    if not request.tools:
        return {}  # Anthropic rejects a tool_choice without tools
    tools = []
    for tool in request.tools:
        wire = {"name": tool.name, "input_schema": tool.parameters}
        if tool.description:
            wire["description"] = tool.description
        tools.append(wire)
    out: dict = {"tools": tools}
    choice = tool_choice_to_wire(request.tool_choice, request.parallel_tool_calls)
    if choice:
        out["tool_choice"] = choice
    return out


def tool_choice_to_wire(choice: ToolChoice | None, parallel_tool_calls: bool | None) -> dict | None:
    if choice is None and parallel_tool_calls is not False:
        return None
    mode = choice.mode if choice else "auto"
    wire: dict = {"type": mode}
    if mode == "tool":
        if not choice.name:
            raise InvalidRequest("tool_choice of type tool needs the tool's name", param="tool_choice")
        wire["name"] = choice.name
    if parallel_tool_calls is False and mode != "none":
        wire["disable_parallel_tool_use"] = True
    return wire


# ---- messages ------------------------------------------------------------------------------

def messages_to_wire(messages: list[Message]) -> list[dict]:
    """Encode the turns, dropping parts Anthropic would reject and merging neighbours of the
    same role, which Anthropic requires to alternate."""
    turns: list[dict] = []
    for message in messages:
        role, parts = message.role, message.parts
        if role == "system":  # no such role without a beta: the instruction rides in a user turn
            role, parts = "user", [system_reminder(message)]
        blocks = [block for part in parts if (block := part_to_wire(part)) is not None]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"] = _tool_results_first(turn["content"])
    _trim_prefill(turns)
    return turns


def _tool_results_first(blocks: list[dict]) -> list[dict]:
    """Anthropic requires tool_result blocks to open the user turn that answers tool calls."""
    results = [block for block in blocks if block["type"] == "tool_result"]
    return results + [block for block in blocks if block["type"] != "tool_result"]


def _trim_prefill(turns: list[dict]) -> None:
    """A final assistant turn (a prefill) may not end in whitespace."""
    if not turns or turns[-1]["role"] != "assistant" or turns[-1]["content"][-1]["type"] != "text":
        return
    last = turns[-1]["content"][-1]
    last["text"] = last["text"].rstrip()


def part_to_wire(part) -> dict | None:
    """One content block, or None for a part that must not be sent."""
    if isinstance(part, Text):
        return text_to_wire(part) if part.text.strip() else None
    if isinstance(part, Image):
        return image_to_wire(part)
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": TOOL_CALL_IDS.wire_id(part.id), "name": part.name,
                "input": tool_input_to_wire(part.arguments)}
    if isinstance(part, ToolResult):
        return tool_result_to_wire(part)
    if isinstance(part, Thinking):
        return thinking_to_wire(part)
    raise TypeError(f"unknown content part {type(part).__name__}")


def text_to_wire(text: Text) -> dict:
    block = {"type": "text", "text": text.text}
    if text.cache_control:
        block["cache_control"] = text.cache_control
    return block


def image_to_wire(image: Image) -> dict:
    if image.url and not image.url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    media_type, data = split_data_url(image.url) if image.url else (image.media_type, image.data)
    if not data:
        raise InvalidRequest("an image has neither data nor a URL", param="messages")
    media_type = media_type or _sniff_media_type(data)
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def split_data_url(url: str) -> tuple[str | None, str]:
    """`data:image/png;base64,AAAA` as ("image/png", "AAAA")."""
    header, _, data = url.removeprefix("data:").partition(",")
    media_type, *params = header.split(";")
    if "base64" not in params:
        raise InvalidRequest("an image data URL must be base64-encoded", param="messages")
    return media_type or None, data


def _sniff_media_type(data: str) -> str:
    for prefix, media_type in MEDIA_TYPE_BY_BASE64_PREFIX.items():
        if data.startswith(prefix):
            return media_type
    return "image/png"


def tool_input_to_wire(arguments: str) -> dict:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {UNPARSEABLE_ARGUMENTS_KEY: arguments}


def tool_result_to_wire(result: ToolResult) -> dict:
    block: dict = {"type": "tool_result", "tool_use_id": TOOL_CALL_IDS.wire_id(result.tool_call_id)}
    content = [wire for part in result.content if (wire := part_to_wire(part)) is not None]
    if content:
        block["content"] = content
    if result.is_error:
        block["is_error"] = True
    return block


def thinking_to_wire(thinking: Thinking) -> dict | None:
    if thinking.redacted_data:
        return {"type": "redacted_thinking", "data": thinking.redacted_data}
    if thinking.signature:
        return {"type": "thinking", "thinking": thinking.text, "signature": thinking.signature}
    return None  # unsigned thinking came from another model: Anthropic rejects it
