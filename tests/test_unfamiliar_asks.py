"""Asks unlike anything the learned scorer was fitted on: it measures how unfamiliar an ask's
words are, leans the score toward a safer tier as far as they are, and the routing confidence
says it is less sure."""
from __future__ import annotations

import httpx
import pytest

from conftest import LOCAL_POOL, write_config
from costr.plugins import collect, make_plugin_manager
from costr.testing import AUTH, running_gateway
from costr.wire.conversation import ChatRequest, Message, Text

ENGLISH = ("Write a short function that merges two sorted lists into one sorted list and returns "
           "the median of the merged list.")
# the same ask in German and in Finnish: words the English training data never held
GERMAN = ("Schreibe eine kurze Funktion, die zwei sortierte Listen zu einer sortierten Liste "
          "zusammenführt und den Median der zusammengeführten Liste zurückgibt.")
FINNISH = ("Kirjoita lyhyt funktio, joka yhdistää kaksi järjestettyä listaa yhdeksi "
           "järjestetyksi listaksi ja palauttaa yhdistetyn listan mediaanin.")


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=[Message("user", [Text(text)])])


@pytest.fixture(scope="module")
def scorer():
    return collect(make_plugin_manager()).scorers["learned"]({})


def test_a_familiar_ask_is_scored_as_it_reads(scorer):
    plain = scorer.score(ask(ENGLISH))
    assert plain.familiar == 1.0 and "leaned" not in plain.signals
    assert plain.signals.get("unfamiliar", 0.0) < 0.2
    # a greeting is too short to call unfamiliar, whatever its words
    assert scorer.score(ask("Moikka!")).familiar == 1.0


@pytest.mark.parametrize("text", [GERMAN, FINNISH])
def test_an_unfamiliar_ask_leans_up_and_is_less_familiar(scorer, text):
    foreign = scorer.score(ask(text))
    assert foreign.signals["unfamiliar"] > 0.6
    assert foreign.signals["leaned"] > 0.5 and foreign.familiar == pytest.approx(
        1 - foreign.signals["leaned"] / 2, abs=1e-3)
    assert 0.5 <= foreign.familiar < 0.75   # an ask it cannot read at all: a coin toss
    unleaned = scorer.model.calibrate(foreign.signals["margin"])   # what its words alone say
    assert unleaned < 0.5 < 0.8 < foreign.score <= 0.9   # leaned to "harder than 90%", not 1


def test_the_lean_starts_where_the_training_data_ends(scorer):
    model = scorer.model
    start, full = model.leaning["from"], model.leaning["to"]
    assert 0.1 < start < full <= 1.0   # 1% of training prompts are past `from`
    assert model.lean(start) == 0.0 and model.lean(full) == 1.0
    assert 0.0 < model.lean((start + full) / 2) < 1.0


@pytest.fixture
def dry_run(tmp_path, fake_upstream):
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    with running_gateway(providers, policies) as base:
        def route(text: str, policy: str = "low") -> dict:
            response = httpx.post(f"{base}/v1/router/dry-run", timeout=20,
                                  json={"model": "auto",
                                        "messages": [{"role": "user", "content": text}]},
                                  headers={**AUTH, "x-cost-priority": policy})
            assert response.status_code == 200, response.text
            return response.json()
        yield route


def test_the_router_sends_an_unfamiliar_ask_higher_and_is_less_sure(dry_run):
    tiers = ["budget", "standard", "premium"]
    for policy in ("low", "balanced", "quality"):
        plain, foreign = dry_run(ENGLISH, policy)["x_routing"], dry_run(GERMAN, policy)["x_routing"]
        assert tiers.index(foreign["tier"]) >= tiers.index(plain["tier"]), policy
        assert foreign["confidence"] < plain["confidence"], policy
        # safer, as far as the policy's own thresholds go: the top tier only under quality
        assert foreign["tier"] == ("premium" if policy == "quality" else "standard"), policy
    # the lean is visible in the dry-run's signals
    signals = dry_run(GERMAN)["complexity"]["signals"]
    assert signals["unfamiliar"] > 0.6 and signals["leaned"] > 0.5
