"""Calibrated routing confidence: pure functions.

Route.confidence is the probability that the tier Costr chose suffices. For the cheapest tier that
is P(the budget model does at least as well as the strong one | score), read off a monotone table
fitted on labelled prompts; a higher tier is the strong model of that data, so it suffices by
construction (1.0). The table is fitted by isotonic regression (pool adjacent violators), the
probability never rising with the score, each dataset weighted equally so the largest source does
not decide it alone; adjacent blocks are then pooled until each holds a minimum share of the
weight, which keeps the table short and each knot backed by enough prompts.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(slots=True)
class Block:
    """A run of scores pooled to one probability: weighted sums of score and outcome."""
    weight: float
    score_sum: float
    outcome_sum: float

    @property
    def score(self) -> float:
        return self.score_sum / self.weight

    @property
    def value(self) -> float:
        return self.outcome_sum / self.weight

    def merged(self, other: "Block") -> "Block":
        return Block(self.weight + other.weight, self.score_sum + other.score_sum,
                     self.outcome_sum + other.outcome_sum)


def isotonic_decreasing(points: list[tuple[float, float, float]]) -> list[Block]:
    """Pool adjacent violators: the weighted least-squares fit to (score, outcome, weight) that
    never rises with the score. Equal scores share one value. Blocks in rising score order."""
    ties: list[tuple[float, Block]] = []
    for score, outcome, weight in sorted(points):
        if weight <= 0:
            continue
        block = Block(weight, weight * score, weight * outcome)
        if ties and ties[-1][0] == score:
            block = ties.pop()[1].merged(block)
        ties.append((score, block))
    stack: list[Block] = []
    for _, block in ties:
        while stack and stack[-1].value < block.value:
            block = stack.pop().merged(block)
        stack.append(block)
    return stack


def coarsen(blocks: list[Block], min_share: float) -> list[Block]:
    """Pool neighbouring blocks until each holds at least `min_share` of the total weight.
    Pooling neighbours of a non-increasing sequence keeps it non-increasing."""
    total = sum(b.weight for b in blocks)
    out: list[Block] = []
    pending: Block | None = None
    for block in blocks:
        pending = block if pending is None else pending.merged(block)
        if pending.weight >= min_share * total:
            out.append(pending)
            pending = None
    if pending is not None:
        if out:
            out[-1] = out[-1].merged(pending)
        else:
            out.append(pending)
    return out


def fit_table(points: list[tuple[float, float, float]], min_share: float = 0.04,
              digits: int = 4) -> tuple[list[float], list[float]]:
    """Knots (scores rising, probabilities never rising) for `interpolate`: one per pooled block,
    at its weighted mean score. Scores are rounded to `digits`, probabilities to 3 places."""
    scores: list[float] = []
    values: list[float] = []
    for block in coarsen(isotonic_decreasing(points), min_share):
        score, value = round(block.score, digits), round(block.value, 3)
        if scores and score <= scores[-1]:   # rounding met the previous knot: keep one
            values[-1] = round((values[-1] + value) / 2, 3)
            continue
        scores.append(score)
        values.append(value)
    if len(scores) == 1:                     # one block: a flat table still needs two knots
        scores, values = [0.0, 1.0], values * 2
    return scores, values


def interpolate(scores: list[float], values: list[float], score: float) -> float:
    """The table's value at `score`: linear between knots, flat beyond the first and last."""
    if score <= scores[0]:
        return values[0]
    if score >= scores[-1]:
        return values[-1]
    j = bisect.bisect_right(scores, score)
    x0, x1, y0, y1 = scores[j - 1], scores[j], values[j - 1], values[j]
    return y0 + (y1 - y0) * (score - x0) / (x1 - x0)


def reliability(predicted: list[float], observed: list[float], weights: list[float],
                bins: int = 10) -> dict:
    """Reliability of probabilities against 0/1 outcomes: per equal-width bin of the prediction,
    the count and the weighted mean predicted and observed; the expected calibration error (ECE,
    the weighted mean gap between the two) and the Brier score, beside the Brier score of always
    predicting the base rate (a table that knows nothing scores that)."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("no weight to measure reliability on")
    rows = [[0, 0.0, 0.0, 0.0] for _ in range(bins)]   # count, weight, sum w*p, sum w*y
    brier = base = 0.0
    rate = sum(w * y for y, w in zip(observed, weights)) / total
    for p, y, w in zip(predicted, observed, weights):
        row = rows[min(int(p * bins), bins - 1)]
        row[0] += 1
        row[1] += w
        row[2] += w * p
        row[3] += w * y
        brier += w * (p - y) ** 2
        base += w * (rate - y) ** 2
    table = [{"low": i / bins, "high": (i + 1) / bins, "count": n,
              "predicted": sp / wt if wt else None, "observed": sy / wt if wt else None}
             for i, (n, wt, sp, sy) in enumerate(rows)]
    ece = sum(abs(sp - sy) for _, _, sp, sy in rows) / total
    return {"bins": table, "ece": ece, "brier": brier / total, "base_rate": rate,
            "brier_base_rate": base / total, "count": len(predicted)}


def format_reliability(report: dict, indent: str = "  ") -> list[str]:
    lines = [f"{indent}{'predicted':<12}{'prompts':>8}{'mean predicted':>16}{'observed':>10}"]
    for row in report["bins"]:
        if row["count"]:
            lines.append(f"{indent}{row['low']:.1f}-{row['high']:.1f}{'':<5}{row['count']:>8}"
                         f"{row['predicted']:>16.3f}{row['observed']:>10.3f}")
    lines.append(f"{indent}ECE {report['ece']:.3f}, Brier {report['brier']:.4f} (the base rate "
                 f"{report['base_rate']:.3f} alone: {report['brier_base_rate']:.4f})")
    return lines


def budget_suffices_points(groups: dict) -> list[tuple[float, float, float]]:
    """(score, 1.0 if the weak model did at least as well as the strong one else 0.0, weight)
    for every prompt of `groups` (dataset -> evaluation Prompts); each dataset weighs the same in
    total, and the weights sum to the number of prompts."""
    total, count = sum(len(p) for p in groups.values()), len(groups)
    return [(p.score, 1.0 if p.weak >= p.strong else 0.0, total / (count * len(prompts)))
            for prompts in groups.values() for p in prompts]


def table_reliability(scores: list[float], values: list[float],
                      points: list[tuple[float, float, float]]) -> dict:
    """`reliability` of a table's probabilities on (score, outcome, weight) points."""
    return reliability([interpolate(scores, values, s) for s, _, _ in points],
                       [y for _, y, _ in points], [w for _, _, w in points])
