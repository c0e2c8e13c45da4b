"""Calibrating every thresholds policy for its quality target, and fitting the confidence table, on labelled prompts routed exactly as `costr eval` routes them.

Per policy with a target (share of the strong model's quality to keep on every dataset): the
budget tier's upper threshold is the highest that keeps the target with the chosen assurance on
fresh samples of the data's size (calibration.py), and where the scorer reports each ask's
form, every form gets its own (form_calibration.py). The data has two models a prompt, the
cheapest tier standing for the weak one and every higher tier for the strong one, so where the
top tier starts cannot be measured; by rule it starts where the policy's premium share of the
hardest prompts begins (each dataset weighted equally), and tiers between are spaced evenly.
The confidence table is P(the budget tier suffices | score) (costr/routing/confidence.py).
"""
from __future__ import annotations

import random
from statistics import NormalDist

from costr.evaluation.calibration import (choose_threshold, points_at, split_halves, sweep,
                                          upper_quantile)
from costr.evaluation.calibration_files import form_thresholds_line, thresholds_line
from costr.evaluation.form_calibration import choose_form_thresholds
from costr.evaluation.half_splits import half_split_study
from costr.routing.confidence import (budget_suffices_points, fit_table, format_reliability,
                                      table_reliability)

DEFAULT_TARGETS = {"low": 0.90, "balanced": 0.95, "quality": 0.98}
# Where the top tier starts cannot be measured on two-model data: these shares of the hardest
# prompts go to it, about what each shipped policy sent there before calibration (1.0%, 6.2%,
# 22.3% of dev.jsonl), so calibrating moves where the budget tier ends and not premium spend.
DEFAULT_PREMIUM_SHARES = {"low": 0.01, "balanced": 0.05, "quality": 0.20}


def calibrate(groups: dict, tiers: list[str], targets: dict[str, float],
              shares: dict[str, float], assurance: float, splits: int, seed: int) -> dict:
    """Thresholds, their points and the half-split study per policy, and the confidence table
    with its reliability in-sample and on a held-out half."""
    # Every dataset must keep the target, and with thresholds per form every dataset can be at
    # its margin at once, so the assurance is for all of them together: each gets P^(1/k).
    z = NormalDist().inv_cdf(assurance ** (1 / len(groups)))
    cuts = sweep(groups)
    firsts = {name: choose_threshold(cuts, target, z) for name, target in targets.items()}
    by_form = {name: choose_form_thresholds(groups, targets[name], z, first)
               for name, first in firsts.items()}
    policies = {}
    for name, first in firsts.items():
        top = max(first, upper_quantile(groups, shares.get(name, 0.0)))
        own = by_form[name]
        policies[name] = {
            "target": targets[name], "premium_share": shares.get(name),
            "thresholds": tier_thresholds(tiers, first, top),
            "form_thresholds": _form_thresholds(tiers, first, top, own),
            "points": points_at(groups, first, own),
            "top_share": {d: sum(p.score >= max(top, own.get(p.form, 0.0)) for p in ps) / len(ps)
                          for d, ps in groups.items()}}
    study = (half_split_study(groups, firsts, targets, z, splits, seed, by_form)
             if splits else {})
    for name, found in study.items():
        policies[name]["study"] = found
    points = budget_suffices_points(groups)
    scores, values = fit_table(points)
    fit_half, held_half = split_halves(groups, random.Random(seed))
    held_points = budget_suffices_points(held_half)
    half_table = fit_table(budget_suffices_points(fit_half))
    return {
        "prompts": sum(len(p) for p in groups.values()), "datasets": list(groups),
        "assurance": assurance, "z": z, "policies": policies,
        "confidence": {
            "scores": scores, "budget_suffices": values,
            "fitted": table_reliability(scores, values, points),
            "held_out": table_reliability(*half_table, held_points),
            "held_out_by_dataset": {d: table_reliability(*half_table, budget_suffices_points(
                {d: ps})) for d, ps in held_half.items()}}}


def _form_thresholds(tiers: list[str], first: float, top: float,
                     by_form: dict[str, float]) -> dict[str, dict[str, float]]:
    """Each form's thresholds where they differ from the common ones (a form's first step above
    the top tier's start moves that start up with it)."""
    common = tier_thresholds(tiers, first, top)
    out = {}
    for form, value in by_form.items():
        own = tier_thresholds(tiers, value, max(value, top))
        differ = {t: v for t, v in own.items() if v != common[t]}
        if differ:
            out[form] = differ
    return out


def policy_lines(p: dict) -> str:
    lines = thresholds_line(p["thresholds"])
    if p["form_thresholds"]:
        lines += "\n  " + form_thresholds_line(p["form_thresholds"])
    return lines


def tier_thresholds(tiers: list[str], first: float, top: float) -> dict[str, float]:
    """The measured first step, the top tier by rule, the tiers between evenly spaced."""
    steps = len(tiers) - 2
    if steps <= 0:
        return {tiers[1]: first}
    return {t: round(first + (top - first) * k / steps, 4) for k, t in enumerate(tiers[1:])}


def _pct(value: float, places: int = 1) -> str:
    return f"{round(100 * value, places) + 0.0:.{places}f}%"   # + 0.0: no "-0.0%"


def format_result(result: dict, data: str, scorer: str, tiers: list[str]) -> str:
    z = result["z"]
    out = [f"costr calibrate: {data}, {result['prompts']} prompts, scorer {scorer}; tier "
           f"{tiers[0]} = weak model, {', '.join(tiers[1:])} = strong model",
           "",
           f"{tiers[1]} starts at the highest threshold that keeps the target share of the strong "
           "model's quality on",
           f"every dataset, with {_pct(result['assurance'], 0)} assurance that fresh samples of "
           f"their sizes all keep it ({_pct(NormalDist().cdf(z))} each):",
           f"kept - {z:.3f} x sqrt(2) x SE >= target",
           "(SE by the delta method; the bound column)."]
    if any(p["form_thresholds"] for p in result["policies"].values()):
        out += ["The scorer reports each ask's form, so each form gets its own threshold: "
                "together they keep the",
                "same target on every dataset, with the largest mean savings "
                "(form_calibration.py)."]
    if len(tiers) > 2:
        out += [f"Two-model data cannot place {tiers[-1]}: by rule it starts where the policy's "
                "premium share of the",
                "hardest prompts begins (each dataset weighted equally)."]
    for name, p in result["policies"].items():
        share = "" if p["premium_share"] is None else f", premium share {_pct(p['premium_share'], 0)}"
        out += ["", f"{name}: target {_pct(p['target'], 0)}{share}; {thresholds_line(p['thresholds'])}"]
        if p["form_thresholds"]:
            out.append(f"  per form of ask: {form_thresholds_line(p['form_thresholds'])}")
        out.append(f"  {'dataset':<12}{'strong share':>13}{tiers[-1]:>10}{'quality kept':>14}"
                   f"{'bound':>8}{'savings':>9}   SD between halves (predicted)")
        study = p.get("study")
        for d, point in p["points"].items():
            spread = "" if study is None else (f"   {_pct(study['sd_between_halves'][d], 2)} "
                                               f"({_pct(study['predicted_sd'][d], 2)})")
            out.append(f"  {d:<12}{_pct(point.strong_share):>13}{_pct(p['top_share'][d]):>10}"
                       f"{_pct(point.kept, 2):>14}{_pct(point.bound(z)):>8}"
                       f"{_pct(point.savings):>9}{spread}")
        if study is not None:
            worst = ", ".join(f"{d} {_pct(v, 2)}" for d, v in study["worst_kept"].items())
            out.append(f"  chosen on a random half, the target held on every dataset of the other "
                       f"half in {study['held']} of {study['splits']} splits (worst: {worst})")
    c = result["confidence"]
    out += ["", f"confidence: P(the {tiers[0]} tier does at least as well as the strong model | "
            f"score), monotone, each dataset weighted equally; {len(c['scores'])} knots",
            f"  (x_routing.confidence when routed to {tiers[0]}; routed higher it is 1.0 and this "
            "is signals.budget_suffices)",
            f"fitted on all {result['prompts']} prompts, measured on them:"]
    out += format_reliability(c["fitted"])
    out.append("fitted on a random half, measured on the other half (held out):")
    out += format_reliability(c["held_out"])
    out.append("  per dataset, held out: " + "; ".join(
        f"{d} ECE {r['ece']:.3f}, Brier {r['brier']:.4f} (base rate {r['brier_base_rate']:.4f})"
        for d, r in c["held_out_by_dataset"].items()))
    return "\n".join(out)


