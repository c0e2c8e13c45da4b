"""Routing: score, policy, then the cheapest usable model that fits; and what it costs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from costr.config.files import load_config
from costr.wire.conversation import ChatRequest, Image, Message, ResponseFormat, Text, Tool, ToolChoice, Usage
from costr.errors import InvalidRequest, ModelNotFound, NoUsableProvider
from costr.routing.live import LiveConfig
from costr.plugins import collect, make_plugin_manager
from costr.config.pricing import cost_usd, expected_usage, savings_percent
from costr.wire.providers import ModelSpec, Price
from costr.routing.route import choose_models, check_priority, route_request

REPO = Path(__file__).resolve().parents[1]
SHIPPED_POLICIES = REPO / "routing_policies"  # balanced (default), low, quality

POOL = """\
tiers: [budget, standard, premium]
baseline: premium-a
routing: {scorer: learned, default_policy: balanced, auto_aliases: [claude-costr-auto]}
providers:
  main: {type: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  - {id: budget-plain, provider: main, tier: budget, price: {input: 0.05, output: 0.2},
     context_window: 4000, max_output_tokens: 1000}
  - {id: budget-tools, provider: main, tier: budget, price: {input: 0.1, output: 0.4},
     context_window: 16000, max_output_tokens: 4000, capabilities: [tools, json_output]}
  - {id: standard-a, provider: main, tier: standard, price: {input: 1.0, output: 4.0},
     context_window: 100000, capabilities: [tools, vision, json_output]}
  - {id: standard-b, provider: main, tier: standard, price: {input: 0.5, output: 2.0},
     context_window: 100000, capabilities: [tools, vision, json_output]}
  - {id: premium-a, provider: main, tier: premium, price: {input: 3.0, output: 15.0},
     context_window: 200000, capabilities: [tools, vision, json_output, reasoning]}
"""

# The budget tier's provider has no key; the others need none.
LOCKED_BUDGET = """\
tiers: [budget, standard, premium]
baseline: premium-a
providers:
  cheap: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: COSTR_TEST_CHEAP_KEY}
  main: {type: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  - {id: budget-a, provider: cheap, tier: budget, price: {input: 0.1, output: 0.4}, context_window: 16000}
  - {id: standard-a, provider: main, tier: standard, price: {input: 1.0, output: 4.0}, context_window: 16000}
  - {id: premium-a, provider: main, tier: premium, price: {input: 3.0, output: 15.0}, context_window: 16000}
"""

# No provider has its key.
ALL_LOCKED = """\
tiers: [budget, standard, premium]
baseline: premium-a
providers:
  cheap: {type: openai, api_key_env: COSTR_TEST_CHEAP_KEY}
  dear: {type: openai, api_key_env: COSTR_TEST_DEAR_KEY}
models:
  - {id: budget-a, provider: cheap, tier: budget, price: {input: 0.1, output: 0.4}, context_window: 16000}
  - {id: standard-a, provider: cheap, tier: standard, price: {input: 1.0, output: 4.0}, context_window: 16000}
  - {id: premium-a, provider: dear, tier: premium, price: {input: 3.0, output: 15.0}, context_window: 16000}
"""

HARD_PROMPTS = [
    "Prove that for every prime p > 3, p^2 - 1 is divisible by 24.",
    "Write a Rust function that parses a CSV file with quoted fields and escaped quotes, "
    "without using any crate, and explain each edge case.",
]


@pytest.fixture(scope="module")
def registry():
    return collect(make_plugin_manager())


def build_live(tmp_path: Path, registry, providers_yaml: str = POOL, environ=None) -> LiveConfig:
    path = tmp_path / "providers.yaml"
    path.write_text(providers_yaml)
    config = load_config(path, SHIPPED_POLICIES, registry, environ=environ or {})
    return LiveConfig.build(config, registry, http=None)  # providers only keep `http` until called


@pytest.fixture
def live(tmp_path, registry) -> LiveConfig:
    return build_live(tmp_path, registry)


def ask(text: str, model: str = "auto", *extra_parts, **kw) -> ChatRequest:
    return ChatRequest(messages=[Message("user", [Text(text), *extra_parts])], model=model, **kw)


def ids(route_or_models) -> list[str]:
    models = getattr(route_or_models, "candidates", route_or_models)
    return [m.id for m in models]


def tool(name: str) -> Tool:
    return Tool(name=name, description=f"Use {name} when asked.",
                parameters={"type": "object", "properties": {"path": {"type": "string"}}})


# ---- auto routing --------------------------------------------------------------------------

def test_trivial_prompt_goes_to_the_budget_tier(live):
    route = route_request(live, ask("hi"), None)
    assert route.tier == "budget" and route.candidates[0].id == "budget-plain"
    assert route.policy == "balanced" and route.requested_model == "auto"
    assert route.complexity is not None and route.complexity.score < 0.35
    assert 0 <= route.confidence <= 1


def test_candidates_are_cheapest_first_with_higher_tiers_as_fallbacks(live):
    route = route_request(live, ask("hi"), None)
    # standard-b is listed after standard-a but is cheaper
    assert ids(route) == ["budget-plain", "budget-tools", "standard-b", "standard-a", "premium-a"]


def test_choose_models_from_a_middle_tier_leaves_out_cheaper_tiers(live):
    models, tier = choose_models(live, ask("hi"), "standard", prompt_tokens=100)
    assert tier == "standard" and ids(models) == ["standard-b", "standard-a", "premium-a"]


def test_alias_behaves_like_auto(live):
    auto = route_request(live, ask(HARD_PROMPTS[0]), "quality")
    alias = route_request(live, ask(HARD_PROMPTS[0], model="claude-costr-auto"), "quality")
    assert alias.requested_model == "claude-costr-auto"
    assert alias.policy == "quality" and alias.complexity == auto.complexity
    assert ids(alias) == ids(auto) and alias.tier == auto.tier


def test_quality_priority_sends_a_harder_prompt_higher_than_low(live):
    tiers = live.config.tiers
    for prompt in HARD_PROMPTS:
        low = route_request(live, ask(prompt), "low")
        quality = route_request(live, ask(prompt), "quality")
        assert low.policy == "low" and quality.policy == "quality"
        assert tiers.index(quality.tier) > tiers.index(low.tier), (prompt, low.tier, quality.tier)


def test_priority_header_is_case_and_space_insensitive(live):
    assert check_priority(live, " Quality ") == "quality"
    assert check_priority(live, None) == check_priority(live, "") == "balanced"


def test_unknown_priority_is_a_400_listing_the_allowed_values(live):
    with pytest.raises(InvalidRequest) as caught:
        route_request(live, ask("hi"), "cheapest")
    err = caught.value
    assert err.status == 400 and err.param == "x-cost-priority"
    assert "balanced, low, quality" in err.message and "'cheapest'" in err.message


# ---- explicit models -----------------------------------------------------------------------

class ExplodingScorer:
    def score(self, request):
        raise AssertionError("an explicit model must not be scored")


def test_explicit_model_is_used_as_is_without_scoring(live):
    unscored = dataclasses.replace(live, scorer=ExplodingScorer())
    route = route_request(unscored, ask(HARD_PROMPTS[0], model="budget-plain"), "quality")
    assert ids(route) == ["budget-plain"] and route.tier == "budget"
    assert route.policy is None and route.complexity is None and route.confidence == 1.0


def test_unknown_model_is_a_404_saying_how_to_list_models(live):
    with pytest.raises(ModelNotFound) as caught:
        route_request(live, ask("hi", model="gpt-17"), None)
    err = caught.value
    assert err.status == 404 and err.code == "model_not_found" and err.param == "model"
    assert "gpt-17" in err.message and "GET /v1/models" in err.message


def test_explicit_model_without_credentials_names_the_variable(tmp_path, registry):
    live = build_live(tmp_path, registry, LOCKED_BUDGET)
    with pytest.raises(NoUsableProvider) as caught:
        route_request(live, ask("hi", model="budget-a"), None)
    assert caught.value.status == 503 and "COSTR_TEST_CHEAP_KEY" in caught.value.message


# ---- capabilities and context windows ------------------------------------------------------

def test_tools_need_a_tool_capable_model_even_if_a_cheaper_one_lacks_it(live):
    route = route_request(live, ask("hi", tools=[tool("read_file")]), None)
    assert route.tier == "budget" and ids(route)[0] == "budget-tools"
    assert "budget-plain" not in ids(route)


def test_tool_choice_none_does_not_need_tools(live):
    request = ask("hi", tools=[tool("read_file")], tool_choice=ToolChoice(mode="none"))
    assert ids(route_request(live, request, None))[0] == "budget-plain"


def test_json_output_needs_a_json_capable_model(live):
    request = ask("hi", response_format=ResponseFormat(type="json_object"))
    assert ids(route_request(live, request, None))[0] == "budget-tools"


def test_image_escalates_to_the_next_tier_with_vision(live):
    image = Image(url="https://example.invalid/cat.png")
    route = route_request(live, ask("hi", "auto", image), None)
    assert route.complexity.score < 0.35  # the policy chose budget; no budget model has vision
    assert route.tier == "standard"
    assert ids(route) == ["standard-b", "standard-a", "premium-a"]


def test_prompt_larger_than_a_context_window_skips_that_model(live):
    models, tier = choose_models(live, ask("hi"), "budget", prompt_tokens=8000)
    assert tier == "budget" and ids(models)[0] == "budget-tools"
    assert "budget-plain" not in ids(models)
    models, tier = choose_models(live, ask("hi"), "budget", prompt_tokens=50_000)
    assert tier == "standard" and "budget-tools" not in ids(models)


def test_nothing_fits_is_a_400(live):
    with pytest.raises(InvalidRequest) as caught:
        choose_models(live, ask("hi"), "budget", prompt_tokens=1_000_000)
    err = caught.value
    assert err.status == 400 and err.code == "context_length_exceeded"
    assert "budget" in err.message and "1000000" in err.message


def test_a_real_oversized_prompt_is_a_400_from_route_request(live):
    with pytest.raises(InvalidRequest) as caught:
        route_request(live, ask("word " * 200_000), None)  # ~250k tokens, above every window
    assert caught.value.status == 400


# ---- credentials ---------------------------------------------------------------------------

def test_tier_without_credentials_escalates_to_a_usable_tier(tmp_path, registry):
    live = build_live(tmp_path, registry, LOCKED_BUDGET)
    assert live.usable == frozenset({"main"})
    route = route_request(live, ask("hi"), None)
    assert route.tier == "standard" and ids(route) == ["standard-a", "premium-a"]


def test_tier_with_credentials_set_is_used(tmp_path, registry):
    live = build_live(tmp_path, registry, LOCKED_BUDGET, environ={"COSTR_TEST_CHEAP_KEY": "k"})
    assert route_request(live, ask("hi"), None).tier == "budget"


def test_no_usable_provider_is_a_503_naming_the_variables(tmp_path, registry):
    live = build_live(tmp_path, registry, ALL_LOCKED)
    with pytest.raises(NoUsableProvider) as caught:
        route_request(live, ask("hi"), None)
    err = caught.value
    assert err.status == 503 and err.code == "no_usable_provider"
    assert "COSTR_TEST_CHEAP_KEY" in err.message and "COSTR_TEST_DEAR_KEY" in err.message


# ---- the heuristic scorer ------------------------------------------------------------------

def test_heuristic_scores_are_bounded_and_explained(registry):
    scorer = registry.scorers["heuristic"]({})
    requests = [ask("hi"), ask(HARD_PROMPTS[0]), ask(HARD_PROMPTS[1]), ask("x " * 5000),
                ChatRequest(messages=[Message("user", [Image(url="https://example.invalid/a.png")])])]
    for request in requests:
        result = scorer.score(request)
        assert 0 <= result.score <= 1 and 0 <= result.confidence <= 1
        assert isinstance(result.signals, dict) and result.signals
    assert scorer.score(ask("hi")).score < scorer.score(ask(HARD_PROMPTS[0])).score


def test_scorer_ignores_boilerplate_system_prompt_and_tool_schemas(live):
    system = [Text("You are a meticulous agent. Analyze, prove, design the architecture, debug and "
                   "refactor step by step; you must ensure security and scalability. " * 200)]
    tools = [Tool(name=f"tool_{i}",
                  description="Debug, refactor and review code; analyze the algorithm's complexity.",
                  parameters={"type": "object", "properties": {
                      "code": {"type": "string", "description": "```def f(x): return x```"},
                      "mode": {"enum": ["prove", "derive", "optimize"]}}})
             for i in range(20)]
    request = ChatRequest(messages=[Message("user", [Text("hi")])], system=system, tools=tools)
    route = route_request(live, request, None)
    assert route.complexity.score < 0.15
    assert route.tier == "budget" and ids(route)[0] == "budget-tools"  # tools present


# ---- pricing -------------------------------------------------------------------------------

def model(input_price: float, output_price: float, cached: float | None = None,
          write: float | None = None) -> ModelSpec:
    return ModelSpec(id="m", provider="p", tier="budget", context_window=100_000,
                     price=Price(input_price, output_price, cached, write))


def test_cost_charges_cached_reads_and_cache_writes_at_their_rates():
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, cache_write_tokens=100_000,
                  output_tokens=250_000)
    # 500k fresh at 2.0, 400k cached at 0.5, 100k written at 2.5, 250k out at 8.0
    assert cost_usd(model(2.0, 8.0, cached=0.5, write=2.5), usage) == pytest.approx(
        1.0 + 0.2 + 0.25 + 2.0)


def test_cost_without_cache_rates_charges_list_input_price():
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, cache_write_tokens=100_000,
                  output_tokens=0)
    assert cost_usd(model(2.0, 8.0), usage) == pytest.approx(2.0)


def test_savings_percent_against_the_baseline_on_the_same_usage():
    usage = Usage(input_tokens=3000, output_tokens=1000)
    baseline = model(3.0, 15.0)
    assert savings_percent(model(1.0, 5.0), baseline, usage) == 66.7   # a third of the cost
    assert savings_percent(model(4.0, 20.0), baseline, usage) == -33.3  # dearer: negative
    assert savings_percent(baseline, baseline, usage) == 0.0


def test_savings_percent_counts_cached_tokens_for_both_models():
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000, output_tokens=0)
    cheap_cache = model(3.0, 15.0, cached=0.3)
    no_cache_rate = model(3.0, 15.0)
    assert savings_percent(cheap_cache, no_cache_rate, usage) == 90.0


def test_savings_against_a_free_baseline_is_zero():
    assert savings_percent(model(1.0, 1.0), model(0.0, 0.0), Usage(input_tokens=10)) == 0.0


def test_expected_usage_reserves_a_bounded_answer():
    assert expected_usage(1200, None) == Usage(input_tokens=1200, output_tokens=512, estimated=True)
    assert expected_usage(1200, 64).output_tokens == 64
    assert expected_usage(1200, 100_000).output_tokens == 512
