"""`costr calibrate`: the threshold search, the confidence table (pool adjacent violators, its
reliability), the in-place file edits, the table's validation, and the command on a small JSONL."""
from __future__ import annotations

import json
import random

import pytest
import yaml

from costr.evaluation.calibration import (choose_threshold, cut_value, points_at, sweep,
                                          upper_quantile)
from costr.evaluation.half_splits import half_split_study
from costr.evaluation.calibration_files import CannotEdit, set_policy_thresholds, set_routing_confidence
from costr.cli.main import main
from costr.config.files import load_config
from costr.config.files import check_table
from costr.routing.confidence import (coarsen, fit_table, interpolate, isotonic_decreasing,
                              reliability)
from costr.errors import ConfigError
from costr.evaluation.metrics import Prompt
from costr.plugins import collect, make_plugin_manager


def ladder(fails_from: float, n: int = 10) -> list[Prompt]:
    """Scores 0, 1/n, ..; the strong model always right, the weak one right below `fails_from`."""
    return [Prompt(i / n, 1.0 if i / n < fails_from else 0.0, 1.0, 1.0, 10.0) for i in range(n)]


# ---- the threshold search ------------------------------------------------------------------

def test_the_highest_threshold_that_keeps_the_target_is_chosen():
    cuts = sweep({"d": ladder(0.5)})
    # Threshold 0.6 leaves one failing prompt (0.5) on the weak model: 9 of 10 kept.
    assert choose_threshold(cuts, 0.90, z=0) == 0.6
    assert choose_threshold(cuts, 0.95, z=0) == 0.5
    assert choose_threshold(cuts, 0.40, z=0) == 1.0   # the weak model alone keeps 50%
    point = points_at({"d": ladder(0.5)}, 0.6)["d"]
    assert point.kept == pytest.approx(0.9) and point.strong_share == pytest.approx(0.4)
    assert point.savings == pytest.approx(1 - (6 + 40) / 100)


def test_every_dataset_must_keep_the_target_not_their_average():
    easy, hard = ladder(0.9), ladder(0.2)   # hard needs everything from 0.2 up sent strong
    cuts = sweep({"easy": easy, "hard": hard})
    assert choose_threshold(cuts, 0.95, z=0) == 0.2
    assert choose_threshold(sweep({"easy": easy}), 0.95, z=0) == 0.9


def test_the_margin_uses_the_delta_method_standard_error():
    point = points_at({"d": ladder(0.5)}, 0.6)["d"]
    # residuals mix - 0.9 * strong: nine of 0.1, one of -0.9; variance 0.09, SE sqrt(0.09 / 10)
    assert point.se == pytest.approx((0.09 / 10) ** 0.5)
    cuts = sweep({"d": ladder(0.5)})
    assert choose_threshold(cuts, 0.85, z=0) == 0.6
    assert choose_threshold(cuts, 0.85, z=1.645) == 0.5   # 0.9 - 1.645 * sqrt(2) * 0.095 < 0.85


def test_when_only_all_strong_keeps_the_target_the_threshold_is_zero():
    prompts = [Prompt(0.3, 0.0, 1.0, 1, 10), Prompt(0.7, 0.0, 1.0, 1, 10)]
    assert choose_threshold(sweep({"d": prompts}), 0.99, z=0) == 0.0


def test_thresholds_are_four_decimal_cuts_that_the_scores_clear():
    for score in (0.29, 0.1234, 0.99999, 0.0, 1.0, 0.57):
        cut = cut_value(score)
        assert cut <= score and score - cut < 1e-4 and round(cut, 4) == cut


def test_upper_quantile_weighs_each_dataset_equally():
    big = [Prompt(i / 100, 0, 1, 1, 10) for i in range(100)]
    small = [Prompt(0.9, 0, 1, 1, 10)] * 10
    # `small` alone is half the weight: all of it is above 0.9, so the top 55% reach below it.
    assert upper_quantile({"big": big}, 0.10) == 0.9
    assert upper_quantile({"big": big, "small": small}, 0.55) == 0.9
    assert upper_quantile({"big": big}, 0.0) == 1.0


def test_half_split_study_reports_spread_and_the_held_out_check():
    rng = random.Random(3)
    prompts = [Prompt(s := rng.random(), float(rng.random() > s), 1.0, 1, 10) for _ in range(400)]
    study = half_split_study({"d": prompts}, {"p": 0.5}, {"p": 0.8}, z=1.645, splits=10, seed=1)
    found = study["p"]
    assert 0 <= found["held"] <= 10 and found["splits"] == 10
    assert 0 < found["sd_between_halves"]["d"] < 0.2 and found["predicted_sd"]["d"] > 0


# ---- the confidence table ------------------------------------------------------------------

def test_pool_adjacent_violators_fits_a_non_increasing_step():
    blocks = isotonic_decreasing([(0, 1, 1), (1, 0, 1), (2, 1, 1), (3, 0, 1)])
    assert [b.value for b in blocks] == [1.0, 0.5, 0.0]
    assert [b.score for b in blocks] == [0.0, 1.5, 3.0]


def test_pool_adjacent_violators_weighs_points_and_pools_ties():
    blocks = isotonic_decreasing([(0, 0, 3), (1, 1, 1), (2, 0.5, 1), (2, 1.0, 1)])
    # The ties at 2 pool to 0.75 first; 0 (weight 3) below 1 pools to 0.25, below 0.75 pools again.
    assert len(blocks) == 1 and blocks[0].value == pytest.approx(2.5 / 6)
    assert [b.value for b in isotonic_decreasing([(0, 0, 3), (1, 1, 1), (2, 0.25, 2)])] == [
        0.25, 0.25]   # equal neighbours are not a violation


def test_coarsening_keeps_the_order_and_a_minimum_share():
    blocks = isotonic_decreasing([(i, 1 - i / 10, 1) for i in range(10)])
    coarse = coarsen(blocks, 0.25)
    assert [b.weight for b in coarse] == [3, 3, 4]
    values = [b.value for b in coarse]
    assert values == sorted(values, reverse=True)


def test_fit_table_and_interpolation():
    points = [(i / 100, float(i < 30), 1.0) for i in range(100)]
    scores, values = fit_table(points, min_share=0.1)
    assert scores == sorted(scores) and values == sorted(values, reverse=True)
    assert check_table(scores, values) == []
    assert interpolate([0.2, 0.4], [0.9, 0.5], 0.3) == pytest.approx(0.7)
    assert interpolate([0.2, 0.4], [0.9, 0.5], 0.0) == 0.9
    assert interpolate([0.2, 0.4], [0.9, 0.5], 1.0) == 0.5
    assert fit_table([(0.5, 1.0, 1.0)] * 4) == ([0.0, 1.0], [1.0, 1.0])


def test_check_table_names_what_is_wrong():
    [(key, index, reason)] = check_table([0.1, 0.2, 0.3], [0.9, 0.7, 0.8])
    assert (key, index) == ("budget_suffices", 2) and reason.startswith("0.8 rises above 0.7")
    assert [(k, i) for k, i, _ in check_table([0.1, 0.1], [0.9, 0.8])] == [("scores", 1)]
    assert check_table([0.1, 0.2], [0.9])[0][0] == "budget_suffices"


def test_reliability_ece_and_brier():
    perfect = reliability([1.0, 0.0, 1.0], [1, 0, 1], [1, 1, 1])
    assert perfect["ece"] == 0 and perfect["brier"] == 0
    even = reliability([0.5] * 4, [1, 0, 1, 0], [1] * 4)
    assert even["ece"] == pytest.approx(0) and even["brier"] == pytest.approx(0.25)
    off = reliability([0.9] * 10, [1] * 5 + [0] * 5, [1] * 10)
    assert off["ece"] == pytest.approx(0.4) and off["bins"][9]["observed"] == pytest.approx(0.5)
    assert off["brier_base_rate"] == pytest.approx(0.25)


# ---- editing the files in place ------------------------------------------------------------

def test_policy_thresholds_are_replaced_keeping_comments():
    text = ("# Keep me.\ntype: thresholds\ndescription: x\nthresholds:   # and me\n"
            "  standard: 0.35\n  premium: 0.7\n# trailing\n")
    out = set_policy_thresholds(text, {"standard": 0.2279, "premium": 0.6})
    assert out == ("# Keep me.\ntype: thresholds\ndescription: x\n"
                   "thresholds: {standard: 0.2279, premium: 0.6}   # and me\n# trailing\n")


def test_routing_confidence_is_added_then_replaced_in_the_routing_block():
    text = ("tiers: [a, b]   # cheap first\n\nrouting:\n  scorer: heuristic   # note\n"
            "  max_attempts: 2\n\nproviders: {}\n")
    once = set_routing_confidence(text, "heuristic", [0.1, 0.5], [0.9, 0.7])
    assert yaml.safe_load(once)["routing"]["confidence"] == {
        "scorer": "heuristic", "scores": [0.1, 0.5], "budget_suffices": [0.9, 0.7]}
    assert "# cheap first" in once and "# note" in once and once.endswith("\n\nproviders: {}\n")
    twice = set_routing_confidence(once, "heuristic", [0.2, 0.6, 0.8], [0.8, 0.75, 0.6])
    assert twice.count("confidence:") == 1
    assert yaml.safe_load(twice)["routing"]["confidence"]["scores"] == [0.2, 0.6, 0.8]
    with pytest.raises(CannotEdit):
        set_routing_confidence("routing: {scorer: heuristic}\n", "heuristic", [0.1, 0.5], [1, 0])


# ---- validation and routing ----------------------------------------------------------------

PROVIDERS = """\
tiers: [budget, premium]
baseline: big
routing:
  scorer: heuristic
  confidence:
    scorer: {scorer}
    scores: [0.1, 0.3, 0.6]
    budget_suffices: {values}
providers:
  up: {{type: openai, base_url: "http://127.0.0.1:9"}}
models:
  - {{id: small, provider: up, tier: budget, price: {{input: 0.1, output: 0.1}}, context_window: 100000}}
  - {{id: big, provider: up, tier: premium, price: {{input: 5, output: 15}}, context_window: 100000}}
"""


@pytest.fixture(scope="module")
def registry():
    return collect(make_plugin_manager())


def configure(tmp_path, scorer="heuristic", values="[0.9, 0.8, 0.5]"):
    (tmp_path / "providers.yaml").write_text(PROVIDERS.format(scorer=scorer, values=values))
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "balanced.yaml").write_text(
        "# Comment.\ntype: thresholds\ndescription: d\nthresholds: {premium: 0.5}\n")
    return tmp_path / "providers.yaml", tmp_path / "policies"


def test_a_table_that_rises_with_the_score_is_reported_at_its_line(tmp_path, registry):
    providers, policies = configure(tmp_path, values="[0.9, 0.5, 0.8]")
    with pytest.raises(ConfigError) as caught:
        load_config(providers, policies, registry)
    assert caught.value.problems == [
        f"{providers}:8: routing.confidence.budget_suffices[2]: 0.8 rises above 0.5; a higher "
        "score must not make the budget tier more likely to suffice (rerun costr calibrate)"]


def test_a_table_fitted_for_another_scorer_is_left_unused_with_a_note(tmp_path, registry, capsys):
    from costr.cli.main import main
    from costr.wire.conversation import ChatRequest, Message, Text
    from costr.routing.live import LiveConfig
    from costr.routing.route import route_request
    providers, policies = configure(tmp_path, scorer="learned")
    live = LiveConfig.build(load_config(providers, policies, registry, environ={}), registry, None)
    route = route_request(live, ChatRequest(messages=[Message("user", [Text(HARD)])]), None)
    assert "budget_suffices" not in route.complexity.signals   # the table was not read
    assert main(["check", "--providers", str(providers), "--policies", str(policies)]) == 0
    assert "fitted for scorer 'learned', but routing.scorer is 'heuristic', so it is not used" \
        in capsys.readouterr().out


def test_routing_reads_confidence_from_the_table(tmp_path, registry):
    from costr.wire.conversation import ChatRequest, Message, Text
    from costr.routing.live import LiveConfig
    from costr.routing.route import route_request
    providers, policies = configure(tmp_path)
    live = LiveConfig.build(load_config(providers, policies, registry, environ={}), registry, None)
    easy = route_request(live, ChatRequest(messages=[Message("user", [Text("hi")])]), None)
    assert easy.tier == "budget" and easy.confidence == 0.9   # below the first knot
    hard = ChatRequest(messages=[Message("user", [Text(HARD * 3)])])
    route = route_request(live, hard, None)
    assert route.tier == "premium" and route.confidence == 1.0
    expected = interpolate([0.1, 0.3, 0.6], [0.9, 0.8, 0.5], route.complexity.score)
    assert route.complexity.signals["budget_suffices"] == round(expected, 3)


# ---- the command ---------------------------------------------------------------------------

HARD = ("Prove rigorously that the algorithm is correct, analyze its complexity, compare the "
        "trade-offs and design a distributed version that must handle edge cases. ")


def test_the_command_writes_thresholds_and_table_that_load(tmp_path, registry, capsys):
    providers, policies = configure(tmp_path)
    (tmp_path / "prices.yaml").write_text("models:\n  weak-m: {input: 1, output: 1}\n"
                                          "  strong-m: {input: 10, output: 30}\n")
    records = [{"dataset": d, "messages": [{"role": "user", "content": HARD * (1 + i % 3)
                                            if i % 2 else "hi"}],
                "scores": {"weak-m": 0.0 if i % 2 and i % 3 else 1.0, "strong-m": 1.0}}
               for d in ("one", "two") for i in range(30)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["calibrate", str(data), "--providers", str(providers), "--policies", str(policies),
            "--prices", str(tmp_path / "prices.yaml"), "--target", "balanced=0.9",
            "--splits", "3"]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert "balanced: target 90%" in shown and "held out" in shown and "ECE" in shown
    assert providers.read_text() == PROVIDERS.format(scorer="heuristic", values="[0.9, 0.8, 0.5]")
    assert main(argv + ["--write"]) == 0
    assert f"wrote {policies / 'balanced.yaml'}" in capsys.readouterr().out
    written = (policies / "balanced.yaml").read_text()
    assert written.startswith("# Comment.\ntype: thresholds\ndescription: d\nthresholds: {premium: ")
    config = load_config(providers, policies, registry, environ={})
    # The weak model fails exactly the two longest hard asks (0.916, 0.9454); the cut is there.
    assert config.policies["balanced"][1]["thresholds"] == {"premium": 0.916}
    table = config.routing.confidence
    assert table.scorer == "heuristic" and table.budget_suffices[0] == 1.0


def test_write_leaves_the_shipped_configuration_alone(tmp_path, monkeypatch, capsys):
    """From a folder with no configuration of its own, --write would edit the installed
    package; it says to make a copy with `costr init` instead."""
    from costr.config.shipped import SHIPPED_POLICIES, SHIPPED_PROVIDERS
    before = SHIPPED_PROVIDERS.read_text(), SHIPPED_POLICIES.joinpath("balanced.yaml").read_text()
    monkeypatch.chdir(tmp_path)
    for name in ("COSTR_PROVIDERS", "COSTR_POLICIES"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "data.jsonl").write_text("")
    assert main(["calibrate", "data.jsonl", "--write"]) == 2
    assert "init` to write an editable copy here" in capsys.readouterr().err
    assert (SHIPPED_PROVIDERS.read_text(),
            SHIPPED_POLICIES.joinpath("balanced.yaml").read_text()) == before


def test_a_target_for_an_unknown_policy_is_refused(tmp_path, capsys):
    providers, policies = configure(tmp_path)
    data = tmp_path / "data.jsonl"
    data.write_text("")
    assert main(["calibrate", str(data), "--providers", str(providers), "--policies",
                 str(policies), "--target", "nightly=0.9"]) == 2
    assert "no thresholds policy named 'nightly'" in capsys.readouterr().err
