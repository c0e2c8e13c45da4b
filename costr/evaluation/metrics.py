"""Routing-quality metrics (RouteLLM, arXiv 2406.18665) over labelled prompts: pure functions.

Two models per dataset, weak and strong. A router scores every prompt; sending the highest-scored
share x of prompts to the strong model gives quality(x) (the mean outcome of the mix) and
cost(x). From that curve: PGR, APGR, CPT(50%), CPT(80%), and the share and savings that keep 95%
of the strong model's quality; plus each policy's operating point. Bootstrap intervals resample
prompts with replacement.

The curve. Prompts are sorted by score, highest first. Prompts with equal scores form one group:
a router cannot order them, so inside a group the curve is the expectation over every order,
a straight line. The curve's vertices are therefore the group boundaries, and between two
vertices it is linear (routing part of a tied group, or the marginal prompt at random). Without
ties the vertices are the n + 1 achievable shares 0, 1/n, .., 1. APGR integrates PGR over x
exactly on this piecewise-linear curve (the trapezoid rule on its vertices is exact), so random
routing has an expected APGR of exactly 0.5 and a router that scores every prompt alike gets
exactly 0.5. CPT and the 95%-quality point are the first x at which the curve reaches the target,
found on the same lines.

Weights let a bootstrap resample reuse the one sort: resampling with replacement is giving each
prompt a multiplicity, and the resample's sorted order is the original sorted order.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Prompt:
    score: float     # the router's score: higher means more in need of the strong model
    weak: float      # the weak model's outcome, 0..1
    strong: float    # the strong model's outcome, 0..1
    weak_cost: float
    strong_cost: float
    form: str | None = None   # the scorer's signals.form, for thresholds per form


@dataclass(slots=True)
class Curve:
    """Vertices of quality and cost against the share x sent to the strong model."""
    x: list[float]
    quality: list[float]
    cost: list[float]

    @property
    def pgr(self) -> list[float] | None:
        low, high = self.quality[0], self.quality[-1]
        if high - low <= 0:
            return None  # no gap to recover: PGR is undefined
        return [(q - low) / (high - low) for q in self.quality]


def sort_prompts(prompts: list[Prompt]) -> list[Prompt]:
    return sorted(prompts, key=lambda p: -p.score)


def build_curve(ordered: list[Prompt], weights: list[int] | None = None) -> Curve:
    """The curve for prompts already sorted by `sort_prompts`, each counted `weights[i]` times."""
    if weights is None:
        weights = [1] * len(ordered)
    total = sum(weights)
    if total == 0:
        raise ValueError("no prompts to evaluate")
    base_quality = sum(w * p.weak for p, w in zip(ordered, weights)) / total
    base_cost = sum(w * p.weak_cost for p, w in zip(ordered, weights)) / total
    xs, qs, cs = [0.0], [base_quality], [base_cost]
    count, gain, extra, placed = 0, 0.0, 0.0, 0
    for i, (p, w) in enumerate(zip(ordered, weights)):
        count += w
        gain += w * (p.strong - p.weak)
        extra += w * (p.strong_cost - p.weak_cost)
        last = i + 1 == len(ordered) or ordered[i + 1].score != p.score
        if last and count != placed:  # a group boundary that moved x
            placed = count
            xs.append(count / total)
            qs.append(base_quality + gain / total)
            cs.append(base_cost + extra / total)
    return Curve(xs, qs, cs)


def apgr(curve: Curve) -> float | None:
    """Area under PGR for x in [0, 1], exact on the piecewise-linear curve."""
    pgr = curve.pgr
    if pgr is None:
        return None
    xs = curve.x
    return sum((xs[j + 1] - xs[j]) * (pgr[j] + pgr[j + 1]) / 2 for j in range(len(xs) - 1))


def first_reaching(curve: Curve, values: list[float], target: float) -> tuple[float, float] | None:
    """(x, cost) at the smallest x where the curve of `values` reaches `target`."""
    if values[0] >= target:
        return curve.x[0], curve.cost[0]
    for j in range(1, len(values)):
        if values[j] >= target:
            t = (target - values[j - 1]) / (values[j] - values[j - 1])
            x = curve.x[j - 1] + t * (curve.x[j] - curve.x[j - 1])
            cost = curve.cost[j - 1] + t * (curve.cost[j] - curve.cost[j - 1])
            return x, cost
    return None


def cpt(curve: Curve, recovered: float) -> float | None:
    """The smallest share of strong calls recovering `recovered` (0.5, 0.8) of the gap."""
    pgr = curve.pgr
    if pgr is None:
        return None
    hit = first_reaching(curve, pgr, recovered - 1e-12)
    return None if hit is None else hit[0]


def at_quality(curve: Curve, kept: float = 0.95) -> tuple[float, float] | None:
    """(strong share, savings) at the smallest x whose quality reaches `kept` of strong-only."""
    strong_quality, strong_cost = curve.quality[-1], curve.cost[-1]
    hit = first_reaching(curve, curve.quality, kept * strong_quality - 1e-12)
    if hit is None:  # cannot happen while the curve ends at strong-only quality
        return None
    x, cost = hit
    return x, (1.0 - cost / strong_cost) if strong_cost > 0 else 0.0


def curve_metrics(curve: Curve) -> dict[str, float | None]:
    point = at_quality(curve)
    strong_only = curve.quality[-1]
    return {
        "apgr": apgr(curve),
        "cpt50": cpt(curve, 0.5),
        "cpt80": cpt(curve, 0.8),
        "share_at_95": None if point is None else point[0],
        "savings_at_95": None if point is None else point[1],
        "weak_quality": curve.quality[0],
        "strong_quality": strong_only,
    }


def policy_point(prompts: list[Prompt], tiers: list[str], to_strong: set[str],
                 weights: list[int] | None = None) -> dict[str, object]:
    """A policy's operating point, given the tier it chose for each prompt (`tiers[i]`) and
    which tiers the strong model stands for; `prompts` in any order, parallel to `tiers`."""
    if weights is None:
        weights = [1] * len(prompts)
    total = sum(weights)
    shares: dict[str, float] = {}
    quality = cost = strong_quality = strong_cost = strong_calls = 0.0
    for p, tier, w in zip(prompts, tiers, weights):
        if not w:
            continue
        shares[tier] = shares.get(tier, 0.0) + w / total
        strong = tier in to_strong
        strong_calls += w if strong else 0
        quality += w * (p.strong if strong else p.weak)
        cost += w * (p.strong_cost if strong else p.weak_cost)
        strong_quality += w * p.strong
        strong_cost += w * p.strong_cost
    return {
        "tier_share": shares,
        "strong_share": strong_calls / total,
        "quality_kept": quality / strong_quality if strong_quality > 0 else None,
        "savings": 1.0 - cost / strong_cost if strong_cost > 0 else 0.0,
    }


@dataclass(slots=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None

    def as_dict(self) -> dict:
        return {"value": self.value, "ci95": [self.low, self.high]}


def percentile_interval(samples: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The central `level` percentile interval (linear interpolation between order statistics)."""
    if not samples:
        return None
    ordered = sorted(samples)

    def quantile(q: float) -> float:
        pos = q * (len(ordered) - 1)
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (pos - low) * (ordered[high] - ordered[low])
    tail = (1 - level) / 2
    return quantile(tail), quantile(1 - tail)


def evaluate(prompts: list[Prompt], policy_tiers: dict[str, list[str]], to_strong: set[str],
             resamples: int = 200, seed: int = 0) -> dict:
    """Every metric with its bootstrap 95% interval: curve metrics, and each policy's point
    (`policy_tiers[name][i]` is the tier that policy chose for `prompts[i]`)."""
    order = sorted(range(len(prompts)), key=lambda i: -prompts[i].score)
    ordered = [prompts[i] for i in order]
    curve = build_curve(ordered)
    metrics = curve_metrics(curve)
    points = {name: policy_point(prompts, tiers, to_strong) for name, tiers in policy_tiers.items()}
    draws: dict[str, list[float]] = {}

    def keep(key: str, value) -> None:
        if value is not None:
            draws.setdefault(key, []).append(value)

    rng = random.Random(seed)
    n = len(prompts)
    for _ in range(resamples):
        counts = [0] * n
        for i in rng.choices(range(n), k=n):
            counts[i] += 1
        sample = curve_metrics(build_curve(ordered, [counts[i] for i in order]))
        for key in ("apgr", "cpt50", "cpt80", "share_at_95", "savings_at_95"):
            keep(key, sample[key])
        for name, tiers in policy_tiers.items():
            point = policy_point(prompts, tiers, to_strong, counts)
            for key in ("strong_share", "quality_kept", "savings"):
                keep(f"{name}.{key}", point[key])

    def interval(key: str, value) -> dict:
        bounds = percentile_interval(draws.get(key, [])) or (None, None)
        return Interval(value, *bounds).as_dict()

    result = {key: interval(key, metrics[key])
              for key in ("apgr", "cpt50", "cpt80", "share_at_95", "savings_at_95")}
    result["weak_quality"], result["strong_quality"] = metrics["weak_quality"], metrics["strong_quality"]
    result["policies"] = {
        name: {"tier_share": point["tier_share"],
               **{key: interval(f"{name}.{key}", point[key])
                  for key in ("strong_share", "quality_kept", "savings")}}
        for name, point in points.items()}
    result["curve"] = curve
    return result
