"""Placing a policy's first step up from the cheapest tier on labelled prompts: pure functions.

Prompts scoring at or above a threshold go to the strong model, the rest to the weak one. For each
dataset that gives the quality kept (mix quality / strong-only quality), the strong share and the
savings (1 - mix cost / strong-only cost). Savings only grow with the threshold, so the best
threshold for a quality target is the highest one that keeps the target on every dataset.

A margin makes the figure hold beyond the data. Quality kept is a ratio of means; its standard
error SE follows from the delta method: Var = mean((mix - kept * strong)^2) / (n * mean(strong)^2).
A fresh sample of the same size from the same source differs from this one by about sqrt(2) * SE,
so the threshold must keep `kept - z * sqrt(2) * SE >= target`, z from the wanted assurance
(1.645 for 95%). `half_split_study` checks the rule where it matters: chosen on one random half,
does the target hold on the other?
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from costr.evaluation.metrics import Prompt

SQRT2 = math.sqrt(2.0)
PLACES = 10_000    # thresholds are written with 4 decimals


@dataclass(slots=True)
class Point:
    kept: float           # quality kept, mix / strong-only
    se: float             # its standard error
    strong_share: float
    savings: float

    def bound(self, z: float) -> float:
        """The kept quality a fresh sample of the same size stays above, at assurance z."""
        return self.kept - z * SQRT2 * self.se


class DatasetSums:
    """Running sums for one dataset, all prompts starting on the weak model."""

    def __init__(self, prompts: list[Prompt]):
        self.n = len(prompts)
        self.strong = sum(p.strong for p in prompts)
        self.strong_sq = sum(p.strong * p.strong for p in prompts)
        self.strong_cost = sum(p.strong_cost for p in prompts)
        self.mix = sum(p.weak for p in prompts)
        self.mix_sq = sum(p.weak * p.weak for p in prompts)
        self.mix_strong = sum(p.weak * p.strong for p in prompts)
        self.cost = sum(p.weak_cost for p in prompts)
        self.sent = 0

    def send_strong(self, p: Prompt) -> None:
        self.mix += p.strong - p.weak
        self.mix_sq += p.strong * p.strong - p.weak * p.weak
        self.mix_strong += (p.strong - p.weak) * p.strong
        self.cost += p.strong_cost - p.weak_cost
        self.sent += 1

    def point(self) -> Point:
        if self.strong <= 0:   # the strong model never succeeds: nothing to lose
            kept, se = 1.0, 0.0
        else:
            kept = self.mix / self.strong
            var = (self.mix_sq - 2 * kept * self.mix_strong + kept * kept * self.strong_sq) / self.n
            se = math.sqrt(max(var, 0.0) * self.n) / self.strong
        savings = 1.0 - self.cost / self.strong_cost if self.strong_cost > 0 else 0.0
        return Point(kept, se, self.sent / self.n, savings)


def cut_value(score: float) -> float:
    """The 4-decimal threshold at or below `score` that a prompt with this score clears."""
    value = math.floor(score * PLACES) / PLACES
    return value if value <= score else (math.floor(score * PLACES) - 1) / PLACES


def sweep(groups: dict[str, list[Prompt]]) -> list[tuple[float, dict[str, Point]]]:
    """Every 4-decimal threshold at which some prompt changes side, from the highest down, with
    each dataset's point when prompts scoring at or above it go to the strong model; the first
    entry (1.0, unless a prompt scores 1.0) sends none, the last sends all."""
    sums = {name: DatasetSums(prompts) for name, prompts in groups.items()}
    ordered = sorted(((cut_value(p.score), name, p) for name, prompts in groups.items()
                      for p in prompts), key=lambda t: -t[0])
    if not ordered:
        raise ValueError("no prompts to calibrate on")
    out = []
    if ordered[0][0] < 1.0:
        out.append((1.0, {name: s.point() for name, s in sums.items()}))
    for i, (cut, name, p) in enumerate(ordered):
        sums[name].send_strong(p)
        if i + 1 == len(ordered) or ordered[i + 1][0] != cut:
            out.append((cut, {name: s.point() for name, s in sums.items()}))
    return out


def choose_threshold(cuts: list[tuple[float, dict[str, Point]]], target: float,
                     z: float) -> float:
    """The highest threshold whose every dataset keeps `target` at assurance z (0.0, everything
    to the strong model, when only that does)."""
    for i, (threshold, points) in enumerate(cuts):
        if all(p.bound(z) >= target - 1e-12 for p in points.values()):
            return 0.0 if i == len(cuts) - 1 else threshold
    return 0.0


def points_at(groups: dict[str, list[Prompt]], threshold: float,
              by_form: dict[str, float] | None = None) -> dict[str, Point]:
    """Each dataset's point when prompts scoring at or above `threshold` go strong; a prompt of
    a form in `by_form` is held to that form's threshold instead."""
    by_form = by_form or {}
    out = {}
    for name, prompts in groups.items():
        sums = DatasetSums(prompts)
        for p in prompts:
            if p.score >= by_form.get(p.form, threshold):
                sums.send_strong(p)
        out[name] = sums.point()
    return out


def upper_quantile(groups: dict[str, list[Prompt]], share: float) -> float:
    """The 4-decimal threshold sending about the top `share` of prompts (each dataset weighted
    equally) to it: the lowest cut whose prompts at or above it weigh no more than `share`."""
    if share <= 0:
        return 1.0
    weighted = sorted(((cut_value(p.score), 1.0 / len(prompts)) for prompts in groups.values()
                       for p in prompts), key=lambda t: -t[0])
    total, above, best = float(len(groups)), 0.0, 1.0
    for i, (cut, weight) in enumerate(weighted):
        above += weight
        if i + 1 == len(weighted) or weighted[i + 1][0] != cut:
            if above > share * total + 1e-12:
                break
            best = cut
    return best


def split_halves(groups: dict[str, list[Prompt]], rng: random.Random):
    """Each dataset shuffled and cut in two: two dicts like `groups`."""
    first, second = {}, {}
    for name, prompts in groups.items():
        order = list(range(len(prompts)))
        rng.shuffle(order)
        half = len(order) // 2
        first[name] = [prompts[i] for i in sorted(order[:half])]
        second[name] = [prompts[i] for i in sorted(order[half:])]
    return first, second
