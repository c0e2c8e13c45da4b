"""`type: thresholds`: each tier above the cheapest starts at a complexity score.

    thresholds: {standard: 0.35, premium: 0.7}
    form_thresholds: {choice: {standard: 0.5}, open: {standard: 0.42}}   # optional

A score below every threshold gets the cheapest tier. Thresholds must rise with the tiers.

`form_thresholds` gives asks of one form their own thresholds, where the scorer reports the form
in its signals (`signals.form`; the learned scorer's are choice, problem and open). How much a
score says depends on the form of the ask, so one threshold for all asks is set by the form it
ranks worst; per form, each gets the largest savings its own ranking allows (`costr calibrate`
fits them). A form's mapping replaces the tiers it names; the rest come from `thresholds`, and
asks of any other form, or from a scorer that reports none, use `thresholds` alone.
"""
from __future__ import annotations

from costr import Complexity

KEYS = ("thresholds", "form_thresholds")


class ThresholdPolicy:
    def __init__(self, name: str, options: dict, tiers: list[str]):
        unknown = set(options) - set(KEYS)
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} (a thresholds policy takes "
                             f"'thresholds', 'form_thresholds', 'type' and 'description')")
        thresholds = options.get("thresholds") or {}
        if not isinstance(thresholds, dict):
            raise ValueError("thresholds: expected a mapping of tier name to score")
        self.name = name
        self.tiers = tiers
        self.steps = _steps("thresholds", thresholds, tiers)
        by_form = options.get("form_thresholds") or {}
        if not isinstance(by_form, dict):
            raise ValueError("form_thresholds: expected a mapping of form to "
                             "{tier name: score}")
        self.form_steps = {}
        for form, own in by_form.items():
            if not isinstance(own, dict):
                raise ValueError(f"form_thresholds.{form}: expected a mapping of tier name to score")
            self.form_steps[str(form)] = _steps(f"form_thresholds.{form}", {**thresholds, **own},
                                                tiers)

    def steps_for(self, complexity: Complexity) -> list[tuple[float, str]]:
        form = complexity.signals.get("form") if complexity.signals else None
        return self.form_steps.get(form, self.steps) if self.form_steps else self.steps

    def choose_tier(self, complexity: Complexity) -> str:
        chosen = self.tiers[0]
        for value, tier in self.steps_for(complexity):
            if complexity.score >= value:
                chosen = tier
        return chosen

    def margin(self, complexity: Complexity) -> float:
        """Distance from the score to the nearest boundary this request was routed by (its
        form's thresholds where it has them): the uncalibrated confidence is a property of the
        decision made, not of thresholds that did not apply."""
        return min((abs(complexity.score - value) for value, _ in self.steps_for(complexity)),
                   default=1.0)


def _steps(key: str, thresholds: dict, tiers: list[str]) -> list[tuple[float, str]]:
    """(score, tier) in tier order; ValueError naming `key.tier` for a bad entry."""
    steps = []
    for tier, value in thresholds.items():
        if tier not in tiers:
            raise ValueError(f"{key}.{tier}: not one of tiers {tiers}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{key}.{tier}: expected a number from 0 to 1, got {value!r}")
        steps.append((tiers.index(tier), float(value), tier))
    steps.sort()
    for (_, low, a), (_, high, b) in zip(steps, steps[1:]):
        if high < low:
            raise ValueError(f"{key}.{b}: {high} is below {a} ({low}); thresholds must "
                             "rise with the tiers")
    return [(value, tier) for _, value, tier in steps]
