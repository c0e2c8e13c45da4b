"""`type: thresholds`: each tier above the cheapest starts at a complexity score.

    thresholds: {standard: 0.35, premium: 0.7}

A score below every threshold gets the cheapest tier. Thresholds must rise with the tiers.
"""
from __future__ import annotations

from costr.scoring import Complexity


class ThresholdPolicy:
    def __init__(self, name: str, options: dict, tiers: list[str]):
        unknown = set(options) - {"thresholds"}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)} (a thresholds policy takes "
                             f"'thresholds', 'type' and 'description')")
        thresholds = options.get("thresholds") or {}
        if not isinstance(thresholds, dict):
            raise ValueError("thresholds: expected a mapping of tier name to score")
        steps = []
        for tier, value in thresholds.items():
            if tier not in tiers:
                raise ValueError(f"thresholds.{tier}: not one of tiers {tiers}")
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"thresholds.{tier}: expected a number from 0 to 1, got {value!r}")
            steps.append((tiers.index(tier), float(value), tier))
        steps.sort()
        for (_, low, a), (_, high, b) in zip(steps, steps[1:]):
            if high < low:
                raise ValueError(f"thresholds.{b}: {high} is below {a} ({low}); thresholds must "
                                 "rise with the tiers")
        self.name = name
        self.tiers = tiers
        self.steps = [(value, tier) for _, value, tier in steps]

    def choose_tier(self, complexity: Complexity) -> str:
        chosen = self.tiers[0]
        for value, tier in self.steps:
            if complexity.score >= value:
                chosen = tier
        return chosen

    def margin(self, score: float) -> float:
        """Distance from `score` to the nearest tier boundary (for confidence)."""
        return min((abs(score - value) for value, _ in self.steps), default=1.0)
