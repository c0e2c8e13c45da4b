"""Which of a policy's rules applies to a request (costr/config/rules.py says how they are
written), and what it does to the tier."""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Mapping

from costr.config.rules import Rule, When
from costr.wire.conversation import ChatRequest


def first_match(rules: tuple[Rule, ...], request: ChatRequest, headers: Mapping | None,
                prompt_tokens: int, routed: bool) -> Rule | None:
    """The first rule whose every condition holds. For a request naming a model rather than
    "auto" (`routed` false), only a rule that names that model applies."""
    for rule in rules:
        if (routed or rule.when.model) and matches(rule.when, request, headers or {}, prompt_tokens):
            return rule
    return None


def matches(when: When, request: ChatRequest, headers: Mapping, prompt_tokens: int) -> bool:
    if when.model and not _any(when.model, request.model):
        return False
    if when.client and not _any(when.client, headers.get("user-agent")):
        return False
    if any(not _any((glob,), headers.get(name)) for name, glob in when.headers):
        return False
    if when.format and not _any(when.format, request.source_format):
        return False
    if when.thinking is not None and thinking_requested(request) != when.thinking:
        return False
    if when.tools is not None and bool(request.tools) != when.tools:
        return False
    if when.images is not None and request.has_images() != when.images:
        return False
    return when.prompt_tokens_over is None or prompt_tokens > when.prompt_tokens_over


def thinking_requested(request: ChatRequest) -> bool:
    """Extended thinking asked for with a budget of its own (Anthropic's `thinking: {type:
    enabled, budget_tokens}`). Efforts and adaptive thinking do not count: Claude Code sends
    adaptive thinking and effort "high" on every turn, so they say nothing about this one."""
    return bool(request.thinking_budget)


def apply_rule(rule: Rule, tier: str, tiers: list[str]) -> str:
    if rule.tier is not None:
        return rule.tier
    if rule.min_tier is not None and tiers.index(rule.min_tier) > tiers.index(tier):
        return rule.min_tier
    return tier


def _any(globs: tuple[str, ...], value: str | None) -> bool:
    return value is not None and any(fnmatchcase(value.lower(), glob) for glob in globs)
