"""Reading and validating providers.yaml and routing_policies/*.yaml.

Pydantic checks each file's shape (`extra="forbid"`, so an operator's typo is caught); then
cross-references are checked, and, given the installed plugins, what only they can check
(config_checks). Every problem is reported as `file:line: key.path: reason`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costr.config.checks import check_with_plugins
from costr.errors import ConfigError
from costr.config.plugin_options import dotted_key
from costr.config.rules import Rule, RuleEntry, plain_rules, rule_problems
from costr.config.surcharges import BillingEntry, billing_problems
from costr.wire.providers import CAPABILITIES, ModelSpec, Price, ProviderSettings
from costr.wire.upstream import Timeouts

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriceEntry(_Strict):
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)


class TimeoutsEntry(_Strict):
    connect: float = Field(default=10.0, gt=0)
    read: float = Field(default=300.0, gt=0)
    first_byte: float | None = Field(default=None, gt=0)   # streams: wait for the first event


class ProviderEntry(_Strict):
    type: str
    base_url: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = {}
    options: dict[str, Any] = {}
    timeouts: TimeoutsEntry = TimeoutsEntry()


class ModelEntry(_Strict):
    id: str = Field(min_length=1)
    provider: str
    tier: str | None = None
    price: PriceEntry
    context_window: int = Field(gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    upstream_name: str | None = None
    capabilities: list[Literal[CAPABILITIES]] = []
    mode: Literal["chat", "embedding"] = "chat"
    options: dict[str, Any] = {}


class ConfidenceEntry(_Strict):
    """P(the cheapest tier suffices) at rising scores, written by `costr calibrate`."""
    scorer: str | None = None                      # the scorer the table was fitted for
    scores: list[float] = Field(min_length=2)
    budget_suffices: list[float] = Field(min_length=2)


class BreakerEntry(_Strict):
    """When a provider's (or a model's) circuit breaker opens, and for how long."""
    failures: int = Field(default=5, ge=1)           # opens after this many failures in a row,
    failure_rate: float = Field(default=0.5, gt=0, le=1)  # or when this share of the calls
    min_calls: int = Field(default=10, ge=1)         # (at least this many) failed
    window_seconds: float = Field(default=30.0, gt=0)  # in the last this many seconds
    cooldown_seconds: float = Field(default=30.0, gt=0)  # then skipped this long, then one probe
    enabled: bool = True


class RoutingEntry(_Strict):
    scorer: str = "learned"
    scorer_options: dict[str, Any] = {}
    default_policy: str = "balanced"
    auto_aliases: list[str] = []   # model names that behave exactly like "auto"
    # upstream calls per request, retries included (a candidate skipped by an open breaker is
    # not called, so not counted)
    max_attempts: int = Field(default=2, ge=1, le=5)
    confidence: ConfidenceEntry | None = None      # calibrated confidence; absent: heuristic
    deadline_seconds: float = Field(default=600.0, gt=0)  # to the answer, or a stream's 1st event
    retries: int = Field(default=1, ge=0, le=3)    # of one model, when no other is left to try
    retry_backoff_seconds: float = Field(default=0.25, ge=0, le=30)  # first retry's wait, doubling
    breaker: BreakerEntry = BreakerEntry()


class CacheEntry(_Strict):
    enabled: bool = True
    default_ttl: int = Field(default=3600, ge=1)   # seconds, when x-cache-ttl is not sent
    max_ttl: int = Field(default=86400, ge=1)      # the largest x-cache-ttl accepted
    scope: Literal["key", "shared"] = "key"        # shared: keys may receive each other's answers
    charge_hits: bool = False                      # debit a hit at what the answer first cost


class FeedbackEntry(_Strict):
    keep_prompts: bool = False                     # keep answered auto-routed conversations
    keep_days: int = Field(default=30, ge=1)       # kept conversations are deleted after this


class ProvidersFile(_Strict):
    tiers: list[str] = Field(min_length=1)
    baseline: str
    providers: dict[str, ProviderEntry] = Field(min_length=1)
    models: list[ModelEntry] = Field(min_length=1)
    default_embedding_model: str | None = None
    routing: RoutingEntry = RoutingEntry()
    cache: CacheEntry = CacheEntry()
    feedback: FeedbackEntry = FeedbackEntry()
    billing: BillingEntry = BillingEntry()   # surcharges.py: what billing-changing fields cost


class PolicyFile(BaseModel):
    """A policy's own keys beyond these are its type's options."""
    model_config = ConfigDict(extra="allow")
    type: str = "thresholds"
    description: str = ""
    rules: list[RuleEntry] = []   # Costr's own: ordered exceptions, any policy type (rules.py)
    # The share of the strong model's quality the policy promises to keep (costr eval checks it
    # on every dataset, costr calibrate aims at it).
    promise: float | None = Field(default=None, gt=0, le=1)


@dataclass
class Config:
    """A validated configuration, as plain objects."""
    tiers: list[str]
    baseline: ModelSpec
    providers: dict[str, ProviderSettings]
    models: dict[str, ModelSpec]               # by id, in file order
    policies: dict[str, tuple[str, dict]]      # name -> (type, options)
    routing: RoutingEntry
    default_embedding_model: str | None
    cache: CacheEntry = field(default_factory=CacheEntry)
    feedback: FeedbackEntry = field(default_factory=FeedbackEntry)
    billing: BillingEntry = field(default_factory=BillingEntry)
    sources: list[Path] = field(default_factory=list)
    rules: dict[str, tuple[Rule, ...]] = field(default_factory=dict)   # policy -> its rules
    promises: dict[str, float] = field(default_factory=dict)  # policy -> quality share promised

    def missing_credentials(self) -> dict[str, str]:
        """Providers whose api_key_env is unset: name -> variable."""
        return {n: p.api_key_env for n, p in self.providers.items()
                if p.api_key_env and not p.api_key}


def load_config(providers_path: str | os.PathLike, policies_dir: str | os.PathLike,
                registry=None, environ: dict | None = None) -> Config:
    """Load and validate both; raise ConfigError listing every problem found."""
    environ = os.environ if environ is None else environ
    providers_path, policies_dir = Path(providers_path), Path(policies_dir)
    problems: list[str] = []
    raw, lines = _read_yaml(providers_path, problems)
    parsed = _validate(ProvidersFile, raw, providers_path, lines, problems) if raw is not None else None
    policies = _load_policies(policies_dir, problems)
    if parsed is None:
        raise ConfigError(problems)
    providers = _provider_settings(parsed, environ)
    _check_references(parsed, providers, policies, providers_path, lines, registry, problems)
    if problems:
        raise ConfigError(problems)
    return _build(parsed, providers, policies, [providers_path, policies_dir])


def _read_yaml(path: Path, problems: list[str]) -> tuple[Any, dict]:
    try:
        text = path.read_text()
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror or exc}")
        return None, {}
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problems.append(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}")
        return None, {}
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a mapping of keys at the top level")
        return None, {}
    return data, _line_index(node)


def _line_index(node, path: tuple = ()) -> dict[tuple, int]:
    """Map each key path in a composed YAML document to its 1-based line."""
    index = {path: node.start_mark.line + 1} if node is not None else {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            index[path + (key.value,)] = key.start_mark.line + 1
            index.update({k: v for k, v in _line_index(value, path + (key.value,)).items()
                          if k != path + (key.value,)})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.update(_line_index(item, path + (i,)))
    return index


def _where(path: Path, lines: dict, loc: tuple) -> str:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return f"{path}:{lines[loc[:cut]]}"
    return str(path)


def _dotted(loc: tuple) -> str:
    return dotted_key(loc) or "(top level)"


def _validate(schema, raw, path: Path, lines: dict, problems: list[str]):
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            reason = err["msg"]
            if err["type"] == "extra_forbidden":
                reason = "unknown key (check its spelling)"
            problems.append(f"{_where(path, lines, loc)}: {_dotted(loc)}: {reason}")
        return None


def _load_policies(directory: Path, problems: list[str]) -> dict[str, tuple[PolicyFile, Path, dict]]:
    if not directory.is_dir():
        problems.append(f"{directory}: policies directory not found")
        return {}
    policies = {}
    for path in sorted(directory.glob("*.y*ml")):
        raw, lines = _read_yaml(path, problems)
        if raw is None:
            continue
        parsed = _validate(PolicyFile, raw, path, lines, problems)
        if parsed is not None:
            policies[path.stem] = (parsed, path, lines)
    if not policies and directory.is_dir():
        problems.append(f"{directory}: no policy files (*.yaml) found")
    return policies


def _check_references(parsed: ProvidersFile, providers: dict[str, ProviderSettings],
                      policies: dict, path: Path, lines: dict, registry,
                      problems: list[str]) -> None:
    def report(loc: tuple, reason: str) -> None:
        problems.append(f"{_where(path, lines, loc)}: {_dotted(loc)}: {reason}")

    if len(set(parsed.tiers)) != len(parsed.tiers):
        report(("tiers",), "tier names must be unique")
    seen: set[str] = set()
    for i, model in enumerate(parsed.models):
        if model.id in seen:
            report(("models", i, "id"), f"model id {model.id!r} is listed twice")
        seen.add(model.id)
        if model.provider not in parsed.providers:
            report(("models", i, "provider"),
                   f"unknown provider {model.provider!r} (defined: {', '.join(parsed.providers)})")
        if model.mode == "chat" and model.tier not in parsed.tiers:
            report(("models", i, "tier"), f"{model.tier!r} is not one of tiers {parsed.tiers}")
    if parsed.baseline not in seen:
        report(("baseline",), f"{parsed.baseline!r} is not a model id listed under models")
    emb = parsed.default_embedding_model
    if emb is not None and not any(m.id == emb and m.mode == "embedding" for m in parsed.models):
        report(("default_embedding_model",), f"{emb!r} is not a model with mode: embedding")
    if parsed.routing.default_policy not in policies:
        report(("routing", "default_policy"),
               f"no policy file named {parsed.routing.default_policy}.yaml")
    _check_confidence(parsed.routing, report)
    for loc, reason in billing_problems(parsed.billing, seen):
        report(loc, reason)
    for policy, ppath, plines in policies.values():
        for loc, reason in rule_problems(policy.rules, parsed.tiers):
            problems.append(f"{_where(ppath, plines, loc)}: {_dotted(loc)}: {reason}")
    if registry is None:
        return
    for name, entry in parsed.providers.items():
        if entry.type not in registry.provider_types:
            report(("providers", name, "type"), f"unknown provider type {entry.type!r} "
                   f"(installed: {', '.join(sorted(registry.provider_types))})")
    if parsed.routing.scorer not in registry.scorers:
        report(("routing", "scorer"), f"unknown scorer {parsed.routing.scorer!r} "
               f"(installed: {', '.join(sorted(registry.scorers))})")
    for name, (policy, ppath, plines) in policies.items():
        if policy.type not in registry.policy_types:
            problems.append(f"{_where(ppath, plines, ('type',))}: type: unknown policy type "
                            f"{policy.type!r} (installed: {', '.join(sorted(registry.policy_types))})")
            continue
        try:
            registry.policy_types[policy.type](name, policy.model_extra or {}, parsed.tiers)
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(_policy_problem(ppath, plines, str(exc)))
    check_with_plugins(parsed, providers, registry, report)


def _check_confidence(routing: RoutingEntry, report) -> None:
    table = routing.confidence
    if table is None:
        return
    for key, index, reason in check_table(table.scores, table.budget_suffices):
        report(("routing", "confidence", key, *(() if index is None else (index,))), reason)


def check_table(scores: list[float], values: list[float]) -> list[tuple[str, int | None, str]]:
    """What is wrong with a table, as (field, index or None, reason); empty when it is usable."""
    problems: list[tuple[str, int | None, str]] = []
    if len(scores) != len(values):
        problems.append(("budget_suffices", None, f"has {len(values)} values for {len(scores)} "
                         "scores; give one probability per score"))
    for field, seq in (("scores", scores), ("budget_suffices", values)):
        for i, v in enumerate(seq):
            if not 0 <= v <= 1:
                problems.append((field, i, f"{v} is outside 0..1"))
    for i in range(1, len(scores)):
        if scores[i] <= scores[i - 1]:
            problems.append(("scores", i, f"{scores[i]} does not rise above {scores[i - 1]}; "
                             "scores must be strictly increasing"))
    for i in range(1, min(len(scores), len(values))):
        if values[i] > values[i - 1]:
            problems.append(("budget_suffices", i, f"{values[i]} rises above {values[i - 1]}; a "
                             "higher score must not make the budget tier more likely to suffice "
                             "(rerun costr calibrate)"))
    return problems


def stale_confidence(routing: RoutingEntry) -> str | None:
    """Why routing.confidence cannot be used, when it was fitted for another scorer (it is then
    left unused, and routing falls back to the uncalibrated confidence)."""
    table = routing.confidence
    if table is None or table.scorer is None or table.scorer == routing.scorer:
        return None
    return (f"routing.confidence was fitted for scorer {table.scorer!r}, but routing.scorer is "
            f"{routing.scorer!r}, so it is not used; rerun `costr calibrate DATA.jsonl --write`")


def _policy_problem(path: Path, lines: dict, message: str) -> str:
    """A policy type's complaint, placed at the line of the key path it starts with
    (`thresholds.ultra: not one of tiers ...`), or at the top of the file."""
    key, sep, reason = message.partition(": ")
    loc = tuple(key.split(".")) if sep and re.fullmatch(r"[\w-]+(\.[\w-]+)*", key) else ()
    if loc and loc[:1] in lines:
        return f"{_where(path, lines, loc)}: {key}: {reason}"
    return f"{_where(path, lines, ())}: (top level): {message}"


def _provider_settings(parsed: ProvidersFile, environ) -> dict[str, ProviderSettings]:
    return {
        name: ProviderSettings(
            name=name, type=e.type, base_url=e.base_url.rstrip("/") if e.base_url else None,
            api_key=environ.get(e.api_key_env) or None if e.api_key_env else None,
            api_key_env=e.api_key_env, headers=dict(e.headers), options=dict(e.options),
            timeouts=Timeouts(e.timeouts.connect, e.timeouts.read, e.timeouts.first_byte))
        for name, e in parsed.providers.items()
    }


def _build(parsed: ProvidersFile, providers: dict[str, ProviderSettings], policies: dict,
           sources: list[Path]) -> Config:
    models = {m.id: ModelSpec(
        id=m.id, provider=m.provider, tier=m.tier,
        price=Price(m.price.input, m.price.output, m.price.cached_input, m.price.cache_write),
        context_window=m.context_window, max_output_tokens=m.max_output_tokens,
        upstream_name=m.upstream_name, capabilities=frozenset(m.capabilities), mode=m.mode,
        options=dict(m.options)) for m in parsed.models}
    return Config(
        tiers=list(parsed.tiers), baseline=models[parsed.baseline], providers=providers,
        models=models,
        policies={name: (p.type, dict(p.model_extra or {})) for name, (p, _, _) in policies.items()},
        routing=parsed.routing, default_embedding_model=parsed.default_embedding_model,
        cache=parsed.cache, feedback=parsed.feedback, billing=parsed.billing,
        sources=sources,
        rules={name: plain_rules(p.rules) for name, (p, _, _) in policies.items()},
        promises={name: p.promise for name, (p, _, _) in policies.items() if p.promise})
