"""What one rated answer says about the weak and the strong model: the rule that lets the
gateway's feedback (`costr feedback export`, one score a record: the rating of the answer the
routed model gave) stand where labelled data has two models' outcomes. `costr train-scorer`,
`costr eval` and `costr calibrate` all read single-score records through it, so what a rating
teaches the scorer is what it is measured and calibrated by.

A rating judges the answer the user got, never the answer another model would have given. So
only an answer from the cheapest tier judges the weak model, and only a clear verdict does:
rated well (>= 0.75, a 4 or 5 of 5) the weak model sufficed (weak 1, strong 1); rated badly
(<= 0.25, a 1 or 2) it did not, and the strong model is taken to succeed (weak 0, strong 1):
the rating cannot say how it would have done, and a bad budget answer is exactly what should
send such asks up.
Answers from a higher tier and middling ratings say nothing about the gap; they are skipped and
counted by reason.

`costr eval` and `costr calibrate` compare two named, priced models a record. For a rated
record they are the budget model that answered (weak) and the configuration's `baseline`
(strong): the model the gateway measures its savings against, so the savings they report are
the ones the gateway's own figures show. Both are priced as providers.yaml prices them, unless
the prices table (`costr eval`'s bundled one, or --prices) names them. A dataset whose rated
answers came from several budget models is compared one budget model at a time.
"""
from __future__ import annotations

from collections import Counter

GOOD, BAD = 0.75, 0.25     # a single score at least / at most this is a verdict
CHEAPEST_TIER = "budget"   # the shipped tiers' cheapest; eval and calibrate pass the configured one


class RatedAnswers:
    """Reads single-score records by the rule above, and counts the ones it skips, by reason."""

    def __init__(self, cheapest_tier: str = CHEAPEST_TIER):
        self.cheapest_tier = cheapest_tier
        self.skipped: Counter[str] = Counter()

    def outcomes(self, record: dict) -> tuple[float, float] | None:
        """(weak, strong) outcomes of a record with one score, or None (counted) when it says
        nothing about the gap between them."""
        (score,) = record["scores"].values()
        tier = record.get("tier")
        if tier != self.cheapest_tier:
            return self.skip(f"answered by the {tier} tier" if tier else "with no tier")
        if BAD < score < GOOD:
            return self.skip(f"rated between {BAD} and {GOOD}")
        return (1.0 if score >= GOOD else 0.0), 1.0

    def pair(self, record: dict, strong_model: str) -> dict[str, float] | None:
        """The record's outcomes as two models' scores, `{the model that answered: weak,
        strong_model: strong}`, or None (counted)."""
        outcomes = self.outcomes(record)
        if outcomes is None:
            return None
        (model,) = record["scores"]
        if model == strong_model:   # the baseline sits in the cheapest tier: no gap to measure
            return self.skip(f"answered by {strong_model}, the strong model itself")
        return {model: outcomes[0], strong_model: outcomes[1]}

    def skip(self, reason: str) -> None:
        """Count one record skipped for `reason` (returns None, for `return self.skip(...)`)."""
        self.skipped[reason] += 1

    def summary(self) -> str | None:
        """How many single-score records were skipped and why, in one line (None: none were)."""
        total = sum(self.skipped.values())
        if not total:
            return None
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        return (f"skipped {total} single-score record(s) ({reasons}): only a "
                f"{self.cheapest_tier}-tier answer rated <= {BAD} or >= {GOOD} says whether the "
                "weak model sufficed")
