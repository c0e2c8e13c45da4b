"""Policy rules: ordered exceptions matched on what a request shows, applied after the score."""
from __future__ import annotations

from pathlib import Path

import asyncio

import httpx
import pytest

from conftest import LOCAL_POOL, write_config
from costr.accounts.store import open_store
from costr.config.files import load_config
from costr.errors import ConfigError
from costr.plugins import collect, make_plugin_manager
from costr.routing.live import LiveConfig
from costr.routing.route import route_request
from costr.testing import AUTH, running_gateway
from costr.wire.conversation import ChatRequest, Message, Text, Tool

RULES = """\
type: thresholds
thresholds: {standard: 0.5, premium: 0.9}
rules:
  - name: background
    when: {model: "claude-*haiku*", client: "claude-cli/*"}
    tier: budget
  - name: thinking
    when: {thinking: true}
    min_tier: premium
  - name: long-context
    when: {prompt_tokens_over: 2000}
    min_tier: standard
  - name: tools-from-bots
    when: {tools: true, headers: {x-app: "bot*"}}
    capabilities: [vision]
"""
EASY = "Reply exactly: ok"


def live_with(tmp_path: Path, policy: str = RULES) -> LiveConfig:
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url="http://127.0.0.1:9"))
    (policies / "balanced.yaml").write_text(policy)
    registry = collect(make_plugin_manager())
    return LiveConfig.build(load_config(providers, policies, registry, environ={}), registry,
                            http=None)


def ask(text: str = EASY, model: str = "auto", **fields) -> ChatRequest:
    return ChatRequest([Message("user", [Text(text)])], model=model, **fields)


def test_without_a_matching_rule_the_score_decides(tmp_path):
    route = route_request(live_with(tmp_path), ask(), "balanced")
    assert (route.tier, route.rule) == ("budget", None)


def test_a_thinking_request_gets_at_least_the_rules_tier(tmp_path):
    live = live_with(tmp_path)
    route = route_request(live, ask(thinking_budget=4000), "balanced")
    assert (route.tier, route.rule) == ("premium", "thinking")
    assert route_request(live, ask(reasoning_effort="low"), "balanced").rule is None


def test_a_long_prompt_gets_at_least_standard(tmp_path):
    route = route_request(live_with(tmp_path), ask("word " * 3000), "balanced")
    assert (route.tier, route.rule) == ("standard", "long-context")


def test_a_rule_naming_a_model_routes_that_name_for_the_client_it_names(tmp_path):
    live = live_with(tmp_path)
    hard = "Prove the four colour theorem's reducibility step in full, step by step."
    route = route_request(live, ask(hard, model="claude-haiku-4-5-20251001"), "balanced",
                          headers={"user-agent": "claude-cli/2.1.197 (external, cli)"})
    assert (route.tier, route.rule, route.requested_model) == (
        "budget", "background", "claude-haiku-4-5-20251001")
    assert [m.id for m in route.candidates][0] == "local-mini"
    # another client naming a model Costr does not have still gets a clear 404
    with pytest.raises(Exception, match="does not exist"):
        route_request(live, ask(model="claude-haiku-4-5-20251001"), "balanced",
                      headers={"user-agent": "python-httpx/0.28"})


def test_a_rule_can_require_a_capability_and_match_headers(tmp_path):
    live = live_with(tmp_path)
    tools = [Tool("read_file", "Read a file", {"type": "object"})]
    route = route_request(live, ask(tools=tools), "balanced", headers={"x-app": "bot-42"})
    assert route.rule == "tools-from-bots"
    assert route.tier == "standard"            # the cheapest tier with a vision model
    assert route_request(live, ask(tools=tools), "balanced", headers={"x-app": "cli"}).rule is None


def test_the_first_matching_rule_wins(tmp_path):
    route = route_request(live_with(tmp_path), ask("word " * 3000, thinking_budget=2000),
                          "balanced")
    assert route.rule == "thinking"


@pytest.mark.parametrize("rules, problem", [
    ("  - {name: a, when: {thinking: true}, tier: ultra}",
     "rules[0].tier: 'ultra' is not one of tiers"),
    ("  - {name: a, when: {}, tier: budget}", "rules[0].when: Value error, give at least one"),
    ("  - {name: a, when: {thinking: true}, tier: budget, min_tier: standard}",
     "give tier (fixes it) or min_tier (at least it), not both"),
    ("  - {name: a, when: {thinking: true}}", "give what the rule does"),
    ("  - {name: a, when: {thinkin: true}, tier: budget}", "rules[0].when.thinkin: unknown key"),
    ("  - {name: a, when: {tools: true}, capabilities: [telepathy]}",
     "rules[0].capabilities[0]: Input should be 'tools', 'vision', 'json_output' or"),
    ("  - {name: a, when: {tools: true}, tier: budget}\n  - {name: a, when: {images: true}, "
     "tier: budget}", "rules[1].name: rule name 'a' is used twice"),
])
def test_a_bad_rule_is_reported_at_its_line(tmp_path, rules, problem):
    policy = "type: thresholds\nthresholds: {standard: 0.5, premium: 0.9}\nrules:\n" + rules + "\n"
    with pytest.raises(ConfigError) as caught:
        live_with(tmp_path, policy)
    found = [p for p in caught.value.problems if problem in p]
    assert found and "balanced.yaml:" in found[0], caught.value.problems


def test_the_rule_is_in_x_routing_the_headers_and_the_dry_run(tmp_path, fake_upstream):
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    (policies / "balanced.yaml").write_text(RULES)
    body = {"model": "auto", "max_tokens": 64, "messages": [{"role": "user", "content": EASY}],
            "thinking": {"type": "enabled", "budget_tokens": 2000}}
    data = tmp_path / "data"
    with running_gateway(providers, policies, data_dir=str(data)) as base:
        answer = httpx.post(f"{base}/v1/messages", json=body, timeout=20,
                            headers={**AUTH, "anthropic-version": "2023-06-01"})
        dry = httpx.post(f"{base}/v1/router/dry-run", json=body, timeout=20,
                         headers={**AUTH, "anthropic-version": "2023-06-01"})
        plain = httpx.post(f"{base}/v1/chat/completions", headers=AUTH, timeout=20, json={
            "model": "auto", "messages": [{"role": "user", "content": EASY}]})
        # token counting never fails on a name: one no rule routes is estimated
        counted = httpx.post(f"{base}/v1/messages/count_tokens", timeout=20, json={
            "model": "mystery-model", "messages": [{"role": "user", "content": EASY}]},
            headers={**AUTH, "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-costr-rule"] == "thinking" and answer.headers["x-costr-tier"] == "premium"
    assert answer.json()["x_routing"]["rule"] == "thinking"
    assert dry.json()["x_routing"]["rule"] == "thinking"
    assert plain.json()["x_routing"]["rule"] is None and "x-costr-rule" not in plain.headers
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0

    async def ledger(request_id: str):   # the ledger records which rule decided, and none
        store = await open_store(None, str(data))
        try:
            return await store.ledger_record(request_id)
        finally:
            await store.close()
    ruled = asyncio.run(ledger(answer.headers["x-request-id"]))
    unruled = asyncio.run(ledger(plain.headers["x-request-id"]))
    assert (ruled.policy_rule, ruled.tier) == ("thinking", "premium")
    assert unruled.policy_rule is None and unruled.policy == "balanced"
