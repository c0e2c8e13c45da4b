"""How the shipped configuration routes multi-turn chat it was never trained or tuned on:
MT-Bench, with GPT-4's judgements of GPT-4 and Mixtral (tests/data/README.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from costr.cli.main import main

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


def apgr_by_dataset(path: Path, providers: Path, capsys) -> dict[str, float]:
    capsys.readouterr()
    assert main(["eval", str(path), "--json", "--bootstrap", "0", "--providers", str(providers),
                 "--policies", str(REPO / "routing_policies")]) == 0
    report = json.loads(capsys.readouterr().out)
    return {d["dataset"]: d["apgr"]["value"] for d in report["datasets"]}


@pytest.fixture
def heuristic(tmp_path) -> Path:
    text = (REPO / "providers.yaml").read_text()
    assert "  scorer: learned" in text
    path = tmp_path / "heuristic.yaml"
    path.write_text(text.replace("  scorer: learned", "  scorer: heuristic"))
    return path


def test_the_default_scorer_routes_mt_bench_well_above_chance(heuristic, capsys):
    learned = apgr_by_dataset(DATA / "mt-bench.jsonl", REPO / "providers.yaml", capsys)
    hand_set = apgr_by_dataset(DATA / "mt-bench.jsonl", heuristic, capsys)
    # measured when the data was added: learned 0.732, heuristic 0.691, prompt length 0.548.
    # The scorer refitted with chat data (issue 13: Arena prompts 5-fold 0.48 -> 0.56) measures
    # 0.684 [0.557, 0.818] here: within the interval, and no longer above the heuristic's 0.691.
    # Nothing was tuned on this data; this guards against a scorer that falls further.
    assert learned["mt-bench"] >= 0.66
    assert hand_set["mt-bench"] >= 0.66


def test_a_second_turn_is_routed_by_the_conversation_not_its_last_words(heuristic, capsys):
    """A follow-up such as "Now rewrite it as a limerick" is as hard as what it follows up on;
    the heuristic, which reads only the last turn, routes second turns little better than chance."""
    learned = apgr_by_dataset(DATA / "mt-bench-turns.jsonl", REPO / "providers.yaml", capsys)
    hand_set = apgr_by_dataset(DATA / "mt-bench-turns.jsonl", heuristic, capsys)
    # measured: learned 0.705 / 0.637 (before the chat refit, 0.717 / 0.711), heuristic
    # 0.699 / 0.551 (first / second turns)
    assert learned["mt-bench-turn1"] >= 0.68
    assert learned["mt-bench-turn2"] >= 0.61
    assert learned["mt-bench-turn2"] - hand_set["mt-bench-turn2"] >= 0.05


def test_every_shipped_policy_keeps_its_promise_on_mt_bench(capsys):
    """Quality kept against each policy's promise, on chat none of it was calibrated on
    (measured: low 96.7%, balanced 98.9%, quality 99.5% of GPT-4's quality)."""
    capsys.readouterr()
    assert main(["eval", str(DATA / "mt-bench.jsonl"), "--json", "--bootstrap", "0",
                 "--providers", str(REPO / "providers.yaml"),
                 "--policies", str(REPO / "routing_policies")]) == 0
    (dataset,) = json.loads(capsys.readouterr().out)["datasets"]
    policies = dataset["policies"]
    assert set(policies) == {"low", "balanced", "quality"}
    for name, policy in policies.items():
        assert not policy["broken"], name
        assert policy["quality_kept"]["value"] >= policy["promise"], name
