"""The held-out check of a calibration rule: apply it to random halves of the data and measure
it on the other halves, per policy, with thresholds per form where the policy has them."""
from __future__ import annotations

import math
import random

from costr.evaluation.calibration import choose_threshold, points_at, split_halves, sweep
from costr.evaluation.form_calibration import choose_form_thresholds
from costr.evaluation.metrics import Prompt


def half_split_study(groups: dict[str, list[Prompt]], thresholds: dict[str, float],
                     targets: dict[str, float], z: float, splits: int = 20,
                     seed: int = 0, by_form: dict[str, dict[str, float]] | None = None
                     ) -> dict[str, dict]:
    """Per policy: how much quality kept at its threshold differs between random halves (the
    standard deviation of half A - half B per dataset, beside the 2 * SE the delta method
    predicts for halves), and how often the whole rule, applied to half A, keeps the target on
    every dataset of half B (the held-out check, `held` of `splits`). With `by_form` (policy ->
    its thresholds per form), the rule includes choosing those on half A too."""
    by_form = by_form or {}
    rng = random.Random(seed)
    diffs = {name: {d: [] for d in groups} for name in thresholds}
    held = {name: 0 for name in thresholds}
    worst = {name: {d: 1.0 for d in groups} for name in thresholds}
    for _ in range(splits):
        a, b = split_halves(groups, rng)
        cuts = sweep(a)
        for name, threshold in thresholds.items():
            own = by_form.get(name)
            pa, pb = points_at(a, threshold, own), points_at(b, threshold, own)
            for d in groups:
                diffs[name][d].append(pa[d].kept - pb[d].kept)
            common = choose_threshold(cuts, targets[name], z)
            forms = choose_form_thresholds(a, targets[name], z, common) if own else {}
            chosen = points_at(b, common, forms)
            held[name] += all(p.kept >= targets[name] - 1e-12 for p in chosen.values())
            for d, p in chosen.items():
                worst[name][d] = min(worst[name][d], p.kept)
    full = {name: points_at(groups, t, by_form.get(name)) for name, t in thresholds.items()}
    return {name: {"splits": splits, "held": held[name], "worst_kept": worst[name],
                   "sd_between_halves": {d: _sd(v) for d, v in diffs[name].items()},
                   "predicted_sd": {d: 2 * full[name][d].se for d in groups}}
            for name in thresholds}


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
