"""The shipped policies' agent rules on requests recorded from the real agents
(tests/data/agent_requests/, recorded by tests/agents/run_agents.py --record), routed through
the dry-run exactly as the agents sent them."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import httpx
import pytest

from conftest import LOCAL_POOL, write_config
from costr.testing import AUTH, running_gateway

RECORDED = Path(__file__).parent / "data" / "agent_requests"
SECRET_HEADERS = {"authorization", "x-api-key"}


def recorded(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text())


@pytest.fixture
def dry_run(tmp_path, fake_upstream):
    """POST a recorded request (its body and headers, our key) to /v1/router/dry-run under the
    shipped policies; returns the decision."""
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    with running_gateway(providers, policies) as base:
        def route(request: dict, policy: str = "balanced") -> dict:
            headers = {k: v for k, v in request["headers"].items()
                       if k.lower() not in SECRET_HEADERS | {"accept-encoding"}}
            response = httpx.post(f"{base}/v1/router/dry-run", json=request["body"], timeout=20,
                                  headers={**headers, **AUTH, "x-cost-priority": policy})
            assert response.status_code == 200, response.text
            return response.json()
        yield route


def test_the_fixtures_carry_no_key():
    for path in RECORDED.glob("*.json"):
        headers = {k.lower() for k in json.loads(path.read_text())["headers"]}
        assert not headers & SECRET_HEADERS, path.name
        assert "cr-test" not in path.read_text(), path.name


def test_claude_codes_title_call_goes_to_budget_though_its_prompt_scores_high(dry_run):
    request = recorded("claude-code-01-background-title")
    decision = dry_run(request)
    # the same request from another client: no rule applies, and the score says standard
    other = copy.deepcopy(request)
    other["headers"] = {k: ("curl/8.5.0" if k.lower() == "user-agent" else v)
                        for k, v in other["headers"].items()}
    unruled = dry_run(other)["x_routing"]
    assert (unruled["rule"], unruled["tier"]) == (None, "standard")
    assert decision["x_routing"]["rule"] == "claude-code-side-call"
    assert decision["x_routing"]["tier"] == "budget"
    assert dry_run(recorded("claude-code-01-background-title"), "quality")["x_routing"][
        "tier"] == "standard"


def test_claude_codes_small_model_by_name_is_routed_to_budget(dry_run):
    decision = dry_run(recorded("claude-code-haiku-01-background-title"))
    routing = decision["x_routing"]
    assert routing["requested_model"] == "claude-haiku-4-5"   # a name Costr's pool lacks here
    assert (routing["rule"], routing["tier"]) == ("claude-code-small-model", "budget")


def test_claude_codes_main_turn_is_left_to_the_score(dry_run):
    decision = dry_run(recorded("claude-code-02-main-turn"))
    assert decision["x_routing"]["rule"] is None
    assert decision["x_routing"]["tier"] == "budget"          # "Read the file notes.txt ..."


def test_a_thinking_request_gets_a_reasoning_model_at_standard_or_above(dry_run):
    # Claude Code sends a thinking budget only to models it names (here claude-sonnet-4-5,
    # which it knows to lack adaptive thinking); the same request for "auto" is what a client
    # with thinking enabled sends Costr.
    request = copy.deepcopy(recorded("claude-code-thinking-02-main-turn"))
    assert request["body"]["thinking"] == {"budget_tokens": 4000, "type": "enabled"}
    request["body"]["model"] = "auto"
    routing = dry_run(request)["x_routing"]
    assert routing["rule"] == "thinking"
    assert (routing["tier"], routing["routed_model"]) == ("premium", "local-large")  # reasons
    assert dry_run(request, "low")["x_routing"]["routed_model"] == "local-large"


def test_a_long_context_request_gets_standard_or_above(dry_run):
    # The recorded tool loop with a file of about 70k tokens read into it.
    request = copy.deepcopy(recorded("claude-code-03-tool-result"))
    results = [part for message in request["body"]["messages"] if message["role"] == "user"
               and isinstance(message["content"], list) for part in message["content"]
               if part.get("type") == "tool_result"]
    assert results
    results[-1]["content"] = "line of a long log file\n" * 12_000
    routing = dry_run(request)["x_routing"]
    assert (routing["rule"], routing["tier"]) == ("long-context", "standard")
    assert dry_run(request, "low")["x_routing"]["rule"] is None   # low has no such rule


def test_openclaws_wrapped_ask_routes_as_hermes_plain_one(dry_run):
    openclaw = dry_run(recorded("openclaw-01-main-turn"))
    hermes = dry_run(recorded("hermes-17-main-turn"))   # the same ask, sent bare
    assert openclaw["complexity"]["score"] == hermes["complexity"]["score"]
    assert openclaw["x_routing"]["tier"] == hermes["x_routing"]["tier"] == "budget"
    assert openclaw["x_routing"]["rule"] is None
