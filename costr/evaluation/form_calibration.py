"""Thresholds per form of ask, for a scorer that reports one (`signals.form`).

One threshold for every ask is set by the form the score ranks worst: on dev.jsonl the worded
problems (GSM8K) bind it, and multiple-choice and open asks, which the score ranks better, send
far more to the strong model than their own target needs. With a threshold per form the
constraint stays the same, the target kept on every dataset with the same margin
(calibration.py), and the savings, each dataset weighing the same, are what is maximised.

Datasets mix forms, so the thresholds are found together: starting from the common threshold
(which keeps the target), each form's threshold in turn, then each pair of forms (lowering one
can free another: a few worded problems among open asks may be what holds the open threshold
down), on a grid of 0.005, while the mean savings rise. A form with fewer than
`MIN_FORM_PROMPTS` prompts, and asks of no form, keep the common threshold. Each candidate is
scored from prefix sums over every dataset's prompts of each form, sorted by score, so a search
takes a fraction of a second.
"""
from __future__ import annotations

import copy
from bisect import bisect_right
from itertools import combinations

from costr.evaluation.calibration import DatasetSums, Point
from costr.evaluation.metrics import Prompt

MIN_FORM_PROMPTS = 100
GRID = [k / 200 for k in range(201)]
ROUNDS = 4


def calibrated_forms(groups: dict[str, list[Prompt]]) -> list[str]:
    """The forms with enough prompts to have a threshold of their own."""
    counts: dict[str, int] = {}
    for prompts in groups.values():
        for p in prompts:
            if p.form is not None:
                counts[p.form] = counts.get(p.form, 0) + 1
    return sorted(f for f, n in counts.items() if n >= MIN_FORM_PROMPTS)


class _Ranked:
    """One dataset's prompts of one form, by falling score, with running sums of what sending
    the first k of them to the strong model changes."""

    def __init__(self, prompts: list[Prompt]):
        prompts = sorted(prompts, key=lambda p: -p.score)
        self.negated = [-p.score for p in prompts]   # ascending, for bisect
        self.sums = [(0.0, 0.0, 0.0, 0.0)]
        mix = sq = cross = cost = 0.0
        for p in prompts:
            mix += p.strong - p.weak
            sq += p.strong * p.strong - p.weak * p.weak
            cross += (p.strong - p.weak) * p.strong
            cost += p.strong_cost - p.weak_cost
            self.sums.append((mix, sq, cross, cost))

    def sent(self, threshold: float) -> int:
        """How many score at or above `threshold`."""
        return bisect_right(self.negated, -threshold)


class FormTable:
    """Every dataset's point for any thresholds by form, from prefix sums."""

    def __init__(self, groups: dict[str, list[Prompt]], forms: list[str]):
        self.base = {d: DatasetSums(ps) for d, ps in groups.items()}   # all to the weak model
        self.parts: dict[str, list[tuple[str | None, _Ranked]]] = {}
        for d, prompts in groups.items():
            by_form: dict[str | None, list[Prompt]] = {}
            for p in prompts:
                by_form.setdefault(p.form if p.form in forms else None, []).append(p)
            self.parts[d] = [(form, _Ranked(ps)) for form, ps in by_form.items()]

    def points(self, thresholds: dict[str | None, float]) -> dict[str, Point]:
        out = {}
        for d, base in self.base.items():
            sums = copy.copy(base)
            for form, ranked in self.parts[d]:
                k = ranked.sent(thresholds[form])
                mix, sq, cross, cost = ranked.sums[k]
                sums.mix += mix
                sums.mix_sq += sq
                sums.mix_strong += cross
                sums.cost += cost
                sums.sent += k
            out[d] = sums.point()
        return out

    def savings(self, thresholds: dict[str | None, float], target: float, z: float) -> float | None:
        """Mean savings over the datasets, or None where some dataset misses the target."""
        points = self.points(thresholds)
        if any(p.bound(z) < target - 1e-12 for p in points.values()):
            return None
        return sum(p.savings for p in points.values()) / len(points)


def choose_form_thresholds(groups: dict[str, list[Prompt]], target: float, z: float,
                           common: float) -> dict[str, float]:
    """A threshold per calibrated form (see the module docstring), starting from `common`, the
    single threshold that keeps the target; empty when no form has enough prompts."""
    forms = calibrated_forms(groups)
    if not forms:
        return {}
    table = FormTable(groups, forms)
    chosen: dict[str | None, float] = {None: common, **{f: common for f in forms}}
    best = table.savings(chosen, target, z)
    if best is None:   # not even the common threshold keeps it: leave the forms alone
        return {}
    for _ in range(ROUNDS):
        before = best
        for form in forms:
            for value in GRID:
                best, chosen = _better(table, chosen, {form: value}, best, target, z)
        for a, b in combinations(forms, 2):
            for value in GRID:
                top = _highest_keeping(table, {**chosen, a: value}, b, target, z)
                if top is not None:
                    best, chosen = _better(table, chosen, {a: value, b: top}, best, target, z)
        if best <= before + 1e-12:
            break
    return {f: chosen[f] for f in forms}


def _better(table: FormTable, chosen: dict, change: dict, best: float, target: float,
            z: float) -> tuple[float, dict]:
    candidate = {**chosen, **change}
    savings = table.savings(candidate, target, z)
    if savings is not None and savings > best + 1e-12:
        return savings, candidate
    return best, chosen


def _highest_keeping(table: FormTable, chosen: dict, form: str, target: float,
                     z: float) -> float | None:
    """The highest grid threshold for `form` that keeps the target, the others as in `chosen`
    (by bisection: a higher threshold sends fewer prompts up, so keeps less)."""
    lo, hi = 0, len(GRID) - 1
    if table.savings({**chosen, form: GRID[lo]}, target, z) is None:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if table.savings({**chosen, form: GRID[mid]}, target, z) is None:
            hi = mid - 1
        else:
            lo = mid
    return GRID[lo]

