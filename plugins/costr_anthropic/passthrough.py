"""An Anthropic client's request forwarded to an Anthropic model (`passthrough_request`): the
body and the `anthropic-version` / `anthropic-beta` headers as the client sent them, with
only what this model requires changed.

- `model` becomes the routed model's name, and `max_tokens` is clamped to its output limit.
- A model without the `reasoning` capability loses `thinking` and `output_config.effort`.
  One with it but without `options: {thinking: adaptive}` in providers.yaml (models before
  Claude 4.6 take only a thinking budget, and no effort) gets adaptive thinking as a budget for
  the requested effort (medium when none) and loses `output_config.effort`. Claude Code sends
  adaptive thinking whenever it does not know the model name, as with `auto`.
- Thinking blocks with no signature (reasoning another model produced, which Costr handed the
  client unsigned) and text blocks of only whitespace are removed: Anthropic rejects both.
- Thinking is turned off where Anthropic would refuse it (see wire_request).
- Tool call ids Anthropic would refuse (other providers' answers gave the client) are sent as
  their stand-ins, in the tool_use and its tool_result alike.
A capability comes as a pair, a beta header value and a body field: whenever a field is
dropped, its beta values are dropped with it, since either one alone is a 400.
"""
from __future__ import annotations

from costr import ModelSpec

from .client_request import EFFORTS
from .wire_request import (ADAPTIVE, EFFORT_BUDGETS, TOOL_CALL_IDS, fit_thinking,
                           history_allows_thinking)

# The beta header values (by prefix) that enable each body field Costr may drop.
BETAS_FOR_FIELD = {
    "thinking": ("interleaved-thinking-",),
    "effort": ("effort-",),
}


def passthrough_request(raw: dict, model: ModelSpec, headers: dict[str, str]
                        ) -> tuple[dict, dict[str, str]]:
    """The body and client headers to send `model`; neither argument is modified."""
    body = dict(raw, model=model.wire_name)
    dropped: list[str] = []
    if isinstance(body.get("messages"), list):
        body["messages"] = _sendable_messages(body["messages"])
    if not model.supports("reasoning"):
        if body.pop("thinking", None) is not None:
            dropped.append("thinking")
        dropped += _drop_effort(body)
    elif model.options.get("thinking") != ADAPTIVE:
        dropped += _as_budget(body)
    if "thinking" in body and not _thinking_allowed(body):
        del body["thinking"]
        dropped.append("thinking")
    _fit_max_tokens(body, model, dropped)
    return body, _without_betas(headers, dropped)


def _as_budget(body: dict) -> list[str]:
    """Adaptive thinking and effort for a model that takes only a thinking budget."""
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == ADAPTIVE:
        budget = EFFORT_BUDGETS[EFFORTS.get(effort if isinstance(effort, str) else "", "medium")]
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return _drop_effort(body)


def _drop_effort(body: dict) -> list[str]:
    config = body.get("output_config")
    if not isinstance(config, dict) or "effort" not in config:
        return []
    rest = {k: v for k, v in config.items() if k != "effort"}
    if rest:
        body["output_config"] = rest
    else:
        del body["output_config"]
    return ["effort"]


def _thinking_allowed(body: dict) -> bool:
    """A budget means the model thinks before every answer, so Anthropic checks the history
    for it; adaptive thinking may skip thinking, and disabled is always allowed."""
    thinking = body["thinking"]
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return True
    turns = [{"role": m.get("role"), "content": _blocks(m.get("content"))}
             for m in body.get("messages") or [] if isinstance(m, dict)]
    return history_allows_thinking([t for t in turns if t["content"]])


def _fit_max_tokens(body: dict, model: ModelSpec, dropped: list[str]) -> None:
    """Clamp max_tokens to the model's limit, keeping it above the thinking budget, as
    Anthropic requires."""
    wanted = body.get("max_tokens")
    if not isinstance(wanted, int):
        return
    if model.max_output_tokens:
        body["max_tokens"] = min(wanted, model.max_output_tokens)
    thinking = body.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(budget, int) and budget >= body["max_tokens"]:
        body["max_tokens"], budget = fit_thinking(budget, body["max_tokens"], model.max_output_tokens)
        if budget:
            body["thinking"] = {**thinking, "budget_tokens": budget}
        else:
            del body["thinking"]
            dropped.append("thinking")


def _sendable_messages(messages: list) -> list:
    out = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            out.append(message)
            continue
        kept = [_with_wire_id(block) for block in content if _sendable(block)]
        if kept:
            out.append(message if kept == content else {**message, "content": kept})
    return out


def _with_wire_id(block):
    key = {"tool_use": "id", "tool_result": "tool_use_id"}.get(
        block.get("type") if isinstance(block, dict) else None)
    if key is None or not isinstance(block.get(key), str):
        return block
    wire = TOOL_CALL_IDS.wire_id(block[key])
    return block if wire == block[key] else {**block, key: wire}


def _sendable(block) -> bool:
    if not isinstance(block, dict):
        return True
    if block.get("type") == "thinking":
        return bool(block.get("signature"))
    if block.get("type") == "text":
        return not isinstance(block.get("text"), str) or bool(block["text"].strip())
    return True


def _blocks(content) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [b for b in content if isinstance(b, dict) and "type" in b] if isinstance(content, list) else []


def _without_betas(headers: dict[str, str], dropped: list[str]) -> dict[str, str]:
    prefixes = tuple(p for field in dropped for p in BETAS_FOR_FIELD.get(field, ()))
    betas = headers.get("anthropic-beta")
    if not prefixes or not betas:
        return dict(headers)
    kept = [b.strip() for b in betas.split(",") if b.strip() and not b.strip().startswith(prefixes)]
    out = {k: v for k, v in headers.items() if k != "anthropic-beta"}
    if kept:
        out["anthropic-beta"] = ",".join(kept)
    return out
