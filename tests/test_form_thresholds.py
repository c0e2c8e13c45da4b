"""Thresholds per form of ask: the policy option, how `costr calibrate` finds them, writing them
into a policy file, and the shipped policies routing a multiple-choice question and a worded
problem of the same score differently."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from costr.evaluation.calibration import choose_threshold, points_at, sweep
from costr.evaluation.calibration_files import set_policy_thresholds
from costr.evaluation.metrics import Prompt
from costr.evaluation.form_calibration import choose_form_thresholds
from costr.routing.scoring import Complexity
from costr_thresholds.policy import ThresholdPolicy

TIERS = ["budget", "standard", "premium"]
ROOT = Path(__file__).resolve().parents[1]


def policy(**options) -> ThresholdPolicy:
    return ThresholdPolicy("p", options, TIERS)


def asked(score: float, form: str | None = None) -> Complexity:
    return Complexity(score, 0.9, {} if form is None else {"form": form})


# ---- the policy ----------------------------------------------------------------------------

def test_a_forms_own_threshold_decides_for_asks_of_that_form():
    p = policy(thresholds={"standard": 0.3, "premium": 0.9},
               form_thresholds={"choice": {"standard": 0.5}})
    assert p.choose_tier(asked(0.4, "choice")) == "budget"
    assert p.choose_tier(asked(0.4, "problem")) == "standard"   # a form with none of its own
    assert p.choose_tier(asked(0.4)) == "standard"              # a scorer that reports no form
    assert p.choose_tier(asked(0.95, "choice")) == "premium"    # premium comes from thresholds


@pytest.mark.parametrize("options, message", [
    ({"thresholds": {"standard": 0.3}, "form_thresholds": {"choice": {"ultra": 0.5}}},
     "form_thresholds.choice.ultra: not one of tiers"),
    ({"thresholds": {"standard": 0.3, "premium": 0.6},
      "form_thresholds": {"open": {"standard": 0.7}}},
     "form_thresholds.open.premium: 0.6 is below standard (0.7)"),
    ({"thresholds": {"standard": 0.3}, "form_thresholds": {"open": {"standard": "high"}}},
     "form_thresholds.open.standard: expected a number from 0 to 1"),
    ({"thresholds": {"standard": 0.3}, "form_thresholds": {"open": 0.5}},
     "form_thresholds.open: expected a mapping"),
    ({"thresholds": {"standard": 0.3}, "form_thresholds": [0.5]},
     "form_thresholds: expected a mapping"),
])
def test_bad_form_thresholds_are_refused_naming_the_key(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        policy(**options)


def test_the_uncalibrated_confidence_is_measured_from_the_thresholds_that_decided():
    # Two policies with the same threshold for open asks and different common ones: an open ask
    # gets the same tier from both, so the same distance to the boundary that decided it.
    a = policy(thresholds={"standard": 0.3}, form_thresholds={"open": {"standard": 0.6}})
    b = policy(thresholds={"standard": 0.55}, form_thresholds={"open": {"standard": 0.6}})
    ask = asked(0.56, "open")
    assert a.choose_tier(ask) == b.choose_tier(ask) == "budget"
    assert a.margin(ask) == b.margin(ask) == pytest.approx(0.04)
    assert a.margin(asked(0.56)) == pytest.approx(0.26)   # no form: the common threshold


def test_costr_check_reports_a_bad_form_threshold_at_its_line(tmp_path, capsys):
    from costr.cli.main import main
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("low", "balanced", "quality"):
        (policies / f"{name}.yaml").write_text((ROOT / "routing_policies" / f"{name}.yaml")
                                               .read_text())
    path = policies / "balanced.yaml"
    path.write_text(path.read_text().replace("open: {standard:", "open: {ultra:"))
    assert main(["check", "--providers", str(ROOT / "providers.yaml"),
                 "--policies", str(policies)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                if text.startswith("form_thresholds:"))
    assert f"{path}:{line}: form_thresholds.open.ultra: not one of tiers" in err


def test_the_shipped_balanced_policy_routes_by_form():
    options = yaml.safe_load((ROOT / "routing_policies" / "balanced.yaml").read_text())
    for own in ("type", "description", "rules", "promise"):   # Costr's keys, not the type's
        options.pop(own, None)
    p = policy(**options)
    common = options["thresholds"]["standard"]
    choice = options["form_thresholds"]["choice"]["standard"]
    assert choice > common   # multiple-choice scores rank well: more of them stay on budget
    between = (common + choice) / 2
    assert p.choose_tier(asked(between, "choice")) == "budget"
    assert p.choose_tier(asked(between)) == "standard"


# ---- the search ----------------------------------------------------------------------------

def ranked_well(n: int, form: str) -> list[Prompt]:
    """The weak model fails exactly the top tenth by score: a score that ranks perfectly."""
    return [Prompt(i / n, 0.0 if i >= 0.9 * n else 1.0, 1.0, 1.0, 10.0, form) for i in range(n)]


def ranked_badly(n: int, form: str) -> list[Prompt]:
    """The weak model fails every fifth prompt whatever its score: a score that says nothing."""
    return [Prompt(i / n, 0.0 if i % 5 == 0 else 1.0, 1.0, 1.0, 10.0, form) for i in range(n)]


def test_each_form_gets_the_most_savings_its_own_ranking_allows():
    groups = {"exam": ranked_well(400, "choice"), "chat": ranked_badly(400, "open")}
    z = 1.645
    common = choose_threshold(sweep(groups), 0.95, z)
    by_form = choose_form_thresholds(groups, 0.95, z, common)
    before, after = points_at(groups, common, {}), points_at(groups, common, by_form)
    # One threshold is set by the form whose score says nothing: nearly everything goes strong.
    assert before["exam"].savings < 0.2
    # Its own threshold lets the well-ranked form keep most asks on the weak model.
    assert by_form["choice"] > common and after["exam"].savings > 0.6
    for point in after.values():   # and every dataset still keeps the target with the margin
        assert point.bound(z) >= 0.95 - 1e-9
    assert sum(p.savings for p in after.values()) > sum(p.savings for p in before.values())


def test_forms_shared_across_datasets_are_chosen_together():
    # The "open" asks of the second dataset are as hard to rank as its problems: the open
    # threshold must keep that dataset's target too, not only the first's.
    groups = {"chat": ranked_well(400, "open"),
              "maths": ranked_badly(300, "problem") + ranked_badly(120, "open")}
    z = 1.645
    common = choose_threshold(sweep(groups), 0.95, z)
    by_form = choose_form_thresholds(groups, 0.95, z, common)
    for point in points_at(groups, common, by_form).values():
        assert point.bound(z) >= 0.95 - 1e-9


def test_a_form_with_few_prompts_keeps_the_common_threshold():
    groups = {"exam": ranked_well(400, "choice") + ranked_badly(20, "rare")}
    by_form = choose_form_thresholds(groups, 0.95, 1.645, 0.3)
    assert set(by_form) == {"choice"}
    assert choose_form_thresholds({"x": ranked_badly(400, None)}, 0.95, 1.645, 0.3) == {}


# ---- the policy file -----------------------------------------------------------------------

def test_form_thresholds_are_written_replaced_and_removed():
    text = "# Keep me.\ntype: thresholds\nthresholds: {standard: 0.3}   # and me\n"
    out = set_policy_thresholds(text, {"standard": 0.31}, {"choice": {"standard": 0.5}})
    assert out == ("# Keep me.\ntype: thresholds\nthresholds: {standard: 0.31}   # and me\n"
                   "form_thresholds: {choice: {standard: 0.5}}\n")
    again = set_policy_thresholds(out, {"standard": 0.31}, {"open": {"standard": 0.45}})
    assert again.endswith("form_thresholds: {open: {standard: 0.45}}\n")
    assert set_policy_thresholds(again, {"standard": 0.31}) == (
        "# Keep me.\ntype: thresholds\nthresholds: {standard: 0.31}   # and me\n")
    loaded = yaml.safe_load(out)
    assert policy(thresholds=loaded["thresholds"],
                  form_thresholds=loaded["form_thresholds"]).choose_tier(
        asked(0.4, "choice")) == "budget"
