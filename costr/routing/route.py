"""Deciding where a request goes: score it, apply the cost policy, choose a model that fits."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from costr.routing.confidence import interpolate
from costr.wire.conversation import ChatRequest
from costr.errors import InvalidRequest, ModelNotFound, NoUsableProvider
from costr.routing.live import LiveConfig
from costr.routing.policy import Policy, boundary_margin
from costr.routing.rules import apply_rule, first_match
from costr.config.pricing import cost_usd, expected_usage
from costr.wire.providers import ModelSpec
from costr.routing.scoring import Complexity, estimate_tokens
from costr.routing.sessions import KeySessions, continues_tool_loop

MODELS_HINT = 'Use "auto", or a model id listed by GET /v1/models.'


@dataclass(slots=True)
class Attempt:
    """One candidate's turn (costr/server/fallback.py fills them): called, or skipped because
    its circuit breaker was open. Times are epoch seconds (time.time()); `outcome` is "ok",
    "error", "timeout" or "skipped"; `error` says why it was not "ok"."""
    model: str
    provider: str
    started: float
    ended: float | None = None
    outcome: str = "ok"
    error: str | None = None
    upstream_status: int | None = None


@dataclass(slots=True)
class Route:
    requested_model: str
    candidates: list[ModelSpec]    # in the order to try them
    tier: str | None
    policy: str | None
    complexity: Complexity | None
    confidence: float
    prompt_tokens: int
    rule: str | None = None        # the policy rule that applied, if one did
    attempts: list[Attempt] = field(default_factory=list)   # in order, skipped ones included

    @property
    def failed(self) -> list[str]:
        """The attempts that were not answered, in order, each "model: why" (the ledger's
        `fallbacks`)."""
        return [f"{a.model}: {a.error}"[:300] for a in self.attempts if a.outcome != "ok"]

    def fallbacks(self) -> list[dict]:
        """The same for the client (`x_routing.fallbacks`): each {"model", "reason"}."""
        return [{"model": a.model, "reason": a.error} for a in self.attempts if a.outcome != "ok"]


def route_request(live: LiveConfig, request: ChatRequest, priority: str | None,
                  sessions: KeySessions | None = None, headers: Mapping | None = None) -> Route:
    """Where `request` goes. `headers` (the client's) are what rules on the client read;
    `sessions`, the calling key's agent sessions (SessionTiers.of_key)."""
    policy_name = check_priority(live, priority)
    prompt_tokens = estimate_tokens(request)
    name = request.model
    routed = name in live.auto_names
    rules = live.config.rules.get(policy_name, ())
    rule = first_match(rules, request, headers, prompt_tokens, routed) if rules else None
    if routed or rule is not None:
        complexity = live.scorer.score(request)
        policy = live.policies[policy_name]
        tier = policy.choose_tier(complexity)
        if rule is not None:
            tier = apply_rule(rule, tier, live.config.tiers)
        session = request.session
        loop_tier = None
        if sessions is not None and session and continues_tool_loop(request) and not (
                rule and rule.tier):   # a rule that fixes the tier is not overruled
            loop_tier = sessions.started_tier(session)
            if loop_tier in live.config.tiers and _rank(live, loop_tier) > _rank(live, tier):
                tier = loop_tier
                complexity.signals["session_tier"] = loop_tier
        needs = rule.capabilities if rule else frozenset()
        candidates, tier = choose_models(live, request, tier, prompt_tokens, needs)
        if sessions is not None and session and loop_tier != tier:
            sessions.remember(session, tier)
        confidence = _confidence(live, policy, complexity, tier)
        return Route(name, candidates, tier, policy_name, complexity, confidence, prompt_tokens,
                     rule.name if rule else None)
    model = live.chat_models.get(name)
    if model is None:
        raise ModelNotFound(f"The model '{name}' does not exist or is not available here. "
                            + MODELS_HINT, param="model")
    if model.provider not in live.usable:
        env = live.config.providers[model.provider].api_key_env
        raise NoUsableProvider(f"Model '{name}' needs provider '{model.provider}', which has no "
                               f"credentials: set the environment variable {env}.")
    return Route(name, [model], model.tier, None, None, 1.0, prompt_tokens)


def _confidence(live: LiveConfig, policy: Policy, complexity: Complexity, tier: str) -> float:
    """P(the chosen tier suffices), from the calibrated table when there is one: measured for
    the cheapest tier; a higher tier is the strong model of the data the table was fitted on, so
    it suffices by construction, and the budget tier's chance goes to the signals instead.
    Without a table, the scorer's own certainty, lowered near the boundaries the decision was
    made by. Either way, times how familiar the request is to the scorer (Complexity.familiar):
    neither the table nor the certainty was measured on requests unlike its training data."""
    table = live.confidence
    if table is None:
        margin = boundary_margin(policy, complexity)
        decided = complexity.confidence * (0.6 + 0.4 * min(1.0, margin / 0.15))
    else:
        budget = interpolate(table.scores, table.budget_suffices, complexity.score)
        complexity.signals["budget_suffices"] = round(budget, 3)
        decided = budget if tier == live.config.tiers[0] else 1.0
    return round(decided * complexity.familiar, 2)


def _rank(live: LiveConfig, tier: str) -> int:
    return live.config.tiers.index(tier)


def check_priority(live: LiveConfig, priority: str | None) -> str:
    if priority is None or priority == "":
        return live.config.routing.default_policy
    name = priority.strip().lower()
    if name not in live.policies:
        allowed = ", ".join(sorted(live.policies))
        raise InvalidRequest(f"x-cost-priority must be one of: {allowed} (got {priority!r}).",
                             param="x-cost-priority", code="invalid_cost_priority")
    return name


def required_capabilities(request: ChatRequest) -> set[str]:
    needs = set()
    if request.tools and not (request.tool_choice and request.tool_choice.mode == "none"):
        needs.add("tools")
    if request.has_images():
        needs.add("vision")
    if request.response_format and request.response_format.type != "text":
        needs.add("json_output")
    return needs


def choose_models(live: LiveConfig, request: ChatRequest, tier: str, prompt_tokens: int,
                  also_needs: frozenset[str] = frozenset()) -> tuple[list[ModelSpec], str]:
    """Usable models that fit the request, cheapest first, from `tier` or, when none there
    fits, the next tier up; the rest of the higher tiers follow as fallbacks. `also_needs`:
    capabilities a rule asks for beyond what the request itself needs."""
    needs = required_capabilities(request) | also_needs
    tiers = live.config.tiers
    chosen_tier, ordered, missing_env, any_fit = None, [], set(), False
    for t in tiers[tiers.index(tier):]:
        fitting = [m for m in live.by_tier[t] if _fits(m, needs, prompt_tokens, request.max_tokens)]
        any_fit = any_fit or bool(fitting)
        usable = [m for m in fitting if m.provider in live.usable]
        missing_env |= {live.config.providers[m.provider].api_key_env
                        for m in fitting if m.provider not in live.usable}
        if usable:
            chosen_tier = chosen_tier or t
            ordered += _cheapest_first(usable, prompt_tokens, request.max_tokens)
    if ordered:
        return ordered, chosen_tier
    if not any_fit:
        raise InvalidRequest(_no_fit_message(needs, prompt_tokens, tier),
                             code="context_length_exceeded" if not needs else "no_capable_model")
    raise NoUsableProvider(f"No usable provider for the {tier} tier or above: set "
                           f"{' or '.join(sorted(e for e in missing_env if e))} and reload.")


def _fits(model: ModelSpec, needs: set[str], prompt_tokens: int, max_tokens: int | None) -> bool:
    if not needs <= model.capabilities:
        return False
    output = min(max_tokens or 0, model.max_output_tokens or max_tokens or 0)
    return prompt_tokens + output <= model.context_window


def _cheapest_first(models: list[ModelSpec], prompt_tokens: int, max_tokens: int | None):
    usage = expected_usage(prompt_tokens, max_tokens)
    return sorted(models, key=lambda m: cost_usd(m, usage))  # stable: ties keep file order


def _no_fit_message(needs: set[str], prompt_tokens: int, tier: str) -> str:
    wanted = f" with {', '.join(sorted(needs))}" if needs else ""
    return (f"No model in the {tier} tier or above can take this request{wanted} at about "
            f"{prompt_tokens} prompt tokens; shorten it or add a model to providers.yaml.")
