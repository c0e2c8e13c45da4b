"""A policy's rules, as routing_policies/*.yaml writes them: ordered exceptions for traffic a
complexity score cannot judge, matched on what a request shows.

    rules:
      - name: background                     # reported as x_routing.rule
        when: {model: "claude-*haiku*"}      # every condition given must hold
        tier: budget                         # or min_tier: standard; or capabilities: [vision]

Conditions: `client` (globs on the User-Agent), `headers` ({name: glob}; "*" means present),
`model` (globs on the requested model name; a rule with `model` routes such a name even when it
is not "auto"), `format` (API format names), `thinking`, `tools`, `images` (true or false), and
`prompt_tokens_over`. Globs are case-insensitive. The first rule that matches applies.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costr.wire.providers import CAPABILITIES


def _globs(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(v.lower() for v in ([value] if isinstance(value, str) else value))


class WhenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client: str | list[str] | None = None
    headers: dict[str, str] = {}
    model: str | list[str] | None = None
    format: str | list[str] | None = None
    thinking: bool | None = None
    tools: bool | None = None
    images: bool | None = None
    prompt_tokens_over: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _something(self) -> "WhenEntry":
        if not any(v not in (None, {}) for v in self.__dict__.values()):
            raise ValueError("give at least one condition (client, headers, model, format, "
                             "thinking, tools, images, prompt_tokens_over)")
        return self


class RuleEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    when: WhenEntry
    tier: str | None = None
    min_tier: str | None = None
    capabilities: list[Literal[CAPABILITIES]] = []

    @model_validator(mode="after")
    def _one_action(self) -> "RuleEntry":
        if self.tier is not None and self.min_tier is not None:
            raise ValueError("give tier (fixes it) or min_tier (at least it), not both")
        if self.tier is None and self.min_tier is None and not self.capabilities:
            raise ValueError("give what the rule does: tier, min_tier or capabilities")
        return self


@dataclass(frozen=True, slots=True)
class When:
    client: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    model: tuple[str, ...] = ()
    format: tuple[str, ...] = ()
    thinking: bool | None = None
    tools: bool | None = None
    images: bool | None = None
    prompt_tokens_over: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    when: When
    tier: str | None = None
    min_tier: str | None = None
    capabilities: frozenset[str] = frozenset()


def rule_problems(rules: list[RuleEntry], tiers: list[str]) -> list[tuple[tuple, str]]:
    """(key path under the policy file, reason) for what only the whole configuration shows."""
    problems, seen = [], set()
    for i, rule in enumerate(rules):
        if rule.name in seen:
            problems.append((("rules", i, "name"), f"rule name {rule.name!r} is used twice"))
        seen.add(rule.name)
        for key in ("tier", "min_tier"):
            value = getattr(rule, key)
            if value is not None and value not in tiers:
                problems.append((("rules", i, key), f"{value!r} is not one of tiers {tiers}"))
    return problems


def plain_rules(rules: list[RuleEntry]) -> tuple[Rule, ...]:
    return tuple(Rule(
        name=r.name,
        when=When(client=_globs(r.when.client),
                  headers=tuple((k.lower(), v.lower()) for k, v in r.when.headers.items()),
                  model=_globs(r.when.model), format=_globs(r.when.format),
                  thinking=r.when.thinking, tools=r.when.tools, images=r.when.images,
                  prompt_tokens_over=r.when.prompt_tokens_over),
        tier=r.tier, min_tier=r.min_tier, capabilities=frozenset(r.capabilities))
        for r in rules)
