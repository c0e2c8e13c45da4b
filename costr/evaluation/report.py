"""How well a configuration routes labelled prompts (`costr eval`, and `costr calibrate`'s input).

Each record (shared/routing-eval format) is decoded and routed exactly as POST /v1/router/dry-run
does: the first API format that recognises `{"model": "auto", "messages": ...}` decodes it, and
`route_request` scores it and applies each policy. Every configured provider counts as usable
(no request is sent), so the decision depends on the scorer, the policies and the tiers alone.

Per dataset, weak = the cheapest model (prices from eval_prices.yaml beside this module, or
--prices) among those every record scores, strong = the one with the highest mean outcome.
The cheapest tier stands for the weak model and every higher tier for the strong one. When providers.yaml has a
`routing.confidence` table (costr calibrate), its reliability on the data is reported too.

A record with one score is a rated answer (`costr feedback export`): rated_answers.py says what
it tells of the weak and strong model and which two models those are, or why it is skipped.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import orjson
import yaml

from costr.config.files import load_config
from costr.routing.confidence import budget_suffices_points, format_reliability, table_reliability
from costr.errors import ConfigError, CostrError
from costr.routing.scoring import Complexity
from costr.evaluation.metrics import Prompt, evaluate, policy_point
from costr.evaluation.given_scores import GivenScore
from costr.evaluation.rated_answers import RatedAnswers
from costr.routing.live import LiveConfig
from costr.plugins import DuplicateRegistration, collect, make_plugin_manager
from costr.routing.route import route_request

DEFAULT_PRICES = Path(__file__).with_name("eval_prices.yaml")


class EvalError(Exception):
    """A problem with the data, the prices or the configuration, already worded for the operator."""


@dataclasses.dataclass(slots=True)
class Routed:
    line: int
    dataset: str
    scores: dict[str, float]
    score: float                  # the scorer's complexity score
    tiers: dict[str, str]         # policy -> tier chosen
    prompt_tokens: int
    form: str | None = None       # the scorer's signals.form, when it reports one
    rated_model: str | None = None   # a rated answer's: the budget model that gave it


def offline_live_config(providers: str, policies: str) -> tuple[LiveConfig, list]:
    """The configuration with every provider usable, and the API formats in registry order."""
    try:
        registry = collect(make_plugin_manager())
        config = load_config(providers, policies, registry)
    except DuplicateRegistration as exc:
        raise EvalError(f"plugin conflict: {exc}") from None
    except ConfigError as exc:
        raise EvalError("the configuration has problems:\n  " + "\n  ".join(exc.problems)) from None
    live = LiveConfig.build(config, registry, http=None)
    live = dataclasses.replace(live, usable=frozenset(live.providers))  # nothing is sent
    return live, list(registry.api_formats.values())


def load_prices(path: str | None) -> tuple[dict[str, tuple[float, float]], int]:
    """model -> (input, output) USD per million tokens, and the typical output tokens (from the
    bundled table when `path` is None)."""
    path = path or DEFAULT_PRICES
    try:
        raw = yaml.safe_load(Path(path).read_text())
        models = raw["models"]
        prices = {str(m): (float(p["input"]), float(p["output"])) for m, p in models.items()}
        return prices, int(raw.get("typical_output_tokens", 256))
    except OSError as exc:
        raise EvalError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (yaml.YAMLError, TypeError, KeyError, ValueError, AttributeError):
        raise EvalError(f"{path}: expected `models: {{MODEL: {{input: USD, output: USD}}}}` "
                        "(per million tokens) and optionally `typical_output_tokens: N`") from None


class TimedScorer:
    """The configured scorer, timed: what each `score` call took, in seconds."""

    def __init__(self, scorer):
        self.scorer, self.seconds = scorer, []

    def score(self, request) -> Complexity:
        started = time.perf_counter()
        result = self.scorer.score(request)
        self.seconds.append(time.perf_counter() - started)
        return result

    def summary(self) -> dict | None:
        if not self.seconds:
            return None   # --scores stood in for the scorer
        ordered = sorted(self.seconds)
        at = lambda share: ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1e6  # noqa: E731
        return {"calls": len(ordered), "mean": sum(ordered) / len(ordered) * 1e6,
                "p50": at(0.5), "p99": at(0.99)}


def route_records(paths: str | list[str], live: LiveConfig, formats: list,
                  given: dict[str, float] | None = None) -> tuple[list[Routed], RatedAnswers]:
    """Every usable record of the files routed as dry-run would, and the rated answers read
    (with the count of those skipped); with `given` scores, each record's own score stands in
    for the scorer's (the policies, tiers and models decide as before)."""
    paths = [paths] if isinstance(paths, str) else paths
    routed, rated = [], RatedAnswers(live.config.tiers[0])
    for path in paths:
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise EvalError(f"{path}: cannot read: {exc.strerror or exc}") from None
        with handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    row = _route_line(path, number, line, live, formats, given, rated)
                    if row is not None:
                        routed.append(row)
    if not routed:
        raise EvalError(f"{', '.join(paths)}: " + (f"no usable records; {rated.summary()}"
                                                   if rated.skipped else "no records"))
    _one_budget_model_a_dataset(routed)
    return routed, rated


def _one_budget_model_a_dataset(routed: list[Routed]) -> None:
    """Rated answers of one dataset given by several budget models become one dataset per
    model, `dataset/model`: each dataset compares one weak model with one strong one."""
    models: dict[str, set[str]] = {}
    for row in routed:
        if row.rated_model:
            models.setdefault(row.dataset, set()).add(row.rated_model)
    for row in routed:
        if row.rated_model and len(models[row.dataset]) > 1:
            row.dataset = f"{row.dataset}/{row.rated_model}"


def with_configured_prices(prices: dict, routed: list[Routed], live: LiveConfig) -> dict:
    """The prices table, plus providers.yaml's price for each model of a rated answer's pair
    that the table does not name: feedback names the operator's own models."""
    models = live.config.models
    named = {m for row in routed if row.rated_model for m in row.scores}
    return {**{m: (models[m].price.input, models[m].price.output)
               for m in named if m in models}, **prices}


def _route_line(path: str, number: int, line: bytes, live: LiveConfig, formats,
                given: dict[str, float] | None, rated: RatedAnswers) -> Routed | None:
    """The record on this line routed, or None for a rated answer that says nothing of the
    weak and strong model (counted in `rated`)."""
    where = f"{path}:{number}"
    record = _checked_record(where, line)
    messages, scores, rated_model = record["messages"], record["scores"], None
    if len(scores) == 1:
        (rated_model,) = scores
        scores = rated.pair(record, live.config.baseline.id)
        if scores is None:
            return None
    if given is not None:
        ident = str(record.get("id") or f"line {number}")
        if ident not in given:
            raise EvalError(f"{where}: no score for record {ident!r} in the --scores file")
        live = dataclasses.replace(live, scorer=GivenScore(given[ident], live.scorer))
    body = {"model": "auto", "messages": messages}
    fmt = next((f for f in formats if f.recognises(body, {})), formats[0])
    tiers, score, tokens, form = {}, 0.0, 0, None
    try:
        chat = fmt.decode_request(orjson.dumps(body), {})
        for policy in live.policies:
            route = route_request(live, chat, policy)
            tiers[policy], score, tokens = route.tier, route.complexity.score, route.prompt_tokens
            form = route.complexity.signals.get("form")
    except CostrError as exc:
        raise EvalError(f"{where}: cannot be routed: {exc}") from None
    return Routed(number, str(record.get("dataset") or "traffic"), scores, score, tiers, tokens,
                  form if isinstance(form, str) else None, rated_model)


def _checked_record(where: str, line: bytes) -> dict:
    """The record on a line, or EvalError saying what is wrong with it."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EvalError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise EvalError(f"{where}: expected a JSON object")
    messages, scores = record.get("messages"), record.get("scores")
    if not isinstance(messages, list) or not messages:
        raise EvalError(f"{where}: 'messages' must be a non-empty list of chat messages")
    if not isinstance(scores, dict) or not scores:
        raise EvalError(f"{where}: 'scores' must map each model to its outcome (0 to 1)")
    for model, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise EvalError(f"{where}: scores.{model}: expected a number from 0 to 1, got {value!r}")
    return record


@dataclasses.dataclass(slots=True)
class Dataset:
    name: str
    weak_model: str
    strong_model: str
    rows: list[Routed]
    prompts: list[Prompt]         # parallel to rows


def split_datasets(routed: list[Routed], prices: dict, output_tokens: int) -> list[Dataset]:
    """The records per dataset, in order of first appearance, each with its weak and strong
    model and the evaluation's view of every record (score, both outcomes, both costs)."""
    by_dataset: dict[str, list[Routed]] = {}
    for row in routed:
        by_dataset.setdefault(row.dataset, []).append(row)
    out = []
    for name, rows in by_dataset.items():
        weak, strong = _pick_models(rows, prices, name)
        prompts = [Prompt(r.score, r.scores[weak], r.scores[strong],
                          _cost(prices[weak], r.prompt_tokens, output_tokens),
                          _cost(prices[strong], r.prompt_tokens, output_tokens), r.form)
                   for r in rows]
        out.append(Dataset(name, weak, strong, rows, prompts))
    return out


def _pick_models(rows: list[Routed], prices: dict, dataset: str) -> tuple[str, str]:
    common = set(rows[0].scores)
    for row in rows:
        common &= set(row.scores)
        if len(common) < 2:
            raise EvalError(f"line {row.line}: dataset {dataset!r} needs two models scored on "
                            f"every record; after this record only {sorted(common)} are")
    # Models with no price cannot be costed, so the pair is chosen among the priced ones
    # (arena-chat grades 14 models; its pair is the two the prices name).
    priced = sorted(m for m in common if m in prices)
    if len(priced) < 2:
        unpriced = sorted(common - set(priced))
        raise EvalError(f"dataset {dataset!r}: no price for {', '.join(unpriced)}; add them to a "
                        "prices file (see costr/evaluation/eval_prices.yaml) and pass --prices FILE")
    weak = min(priced, key=lambda m: prices[m][0] + prices[m][1])
    # on a tie another model is the strong one (every rated answer good: no gap, APGR n/a)
    strong = max(priced, key=lambda m: (sum(r.scores[m] for r in rows), m != weak))
    if weak == strong:
        raise EvalError(f"dataset {dataset!r}: the cheapest model, {weak}, also scores best; "
                        "there is nothing to route")
    return weak, strong


def build_report(routed: list[Routed], live: LiveConfig, prices: dict, output_tokens: int,
                 resamples: int, seed: int) -> dict:
    tiers = live.config.tiers
    to_strong = set(tiers[1:])
    datasets, pooled, pooled_tiers = [], [], {p: [] for p in live.policies}
    split = split_datasets(routed, with_configured_prices(prices, routed, live), output_tokens)
    for data in split:
        policy_tiers = {p: [r.tiers[p] for r in data.rows] for p in live.policies}
        result = evaluate(data.prompts, policy_tiers, to_strong, resamples, seed)
        datasets.append({"dataset": data.name, "prompts": len(data.rows),
                         "weak_model": data.weak_model, "strong_model": data.strong_model,
                         **result})
        pooled += data.prompts
        for p in live.policies:
            pooled_tiers[p] += policy_tiers[p]
    apgrs = [d["apgr"]["value"] for d in datasets if d["apgr"]["value"] is not None]
    overall = {
        "prompts": len(routed),
        "apgr_mean": sum(apgrs) / len(apgrs) if apgrs else None,
        "apgr_min": min(apgrs) if apgrs else None,
        "policies": {p: policy_point(pooled, pooled_tiers[p], to_strong) for p in live.policies},
    }
    promises = live.config.promises
    for entry in [*datasets, overall]:
        for name, point in entry["policies"].items():
            point["promise"] = promises.get(name)
            point["broken"] = _broken(point, promises.get(name))
    return {"scorer": live.config.routing.scorer, "tiers": tiers, "weak_tier": tiers[0],
            "strong_tiers": tiers[1:], "bootstrap": resamples, "seed": seed,
            "typical_output_tokens": output_tokens, "datasets": datasets, "overall": overall,
            "confidence": _confidence_reliability(live, split)}


def _broken(point: dict, promise: float | None) -> bool | None:
    """Whether the quality kept falls short of the policy's promise (None: no promise)."""
    kept = point["quality_kept"]
    kept = kept["value"] if isinstance(kept, dict) else kept
    return None if promise is None or kept is None else kept < promise - 1e-12


def _confidence_reliability(live: LiveConfig, split: list[Dataset]) -> dict | None:
    """How well routing.confidence, when configured, predicts that the weak model suffices."""
    table = live.confidence
    if table is None:
        return None
    groups = {d.name: d.prompts for d in split}
    return {"all": table_reliability(table.scores, table.budget_suffices,
                                     budget_suffices_points(groups)),
            "by_dataset": {name: table_reliability(table.scores, table.budget_suffices,
                                                   budget_suffices_points({name: prompts}))
                           for name, prompts in groups.items()}}


def _cost(price: tuple[float, float], prompt_tokens: int, output_tokens: int) -> float:
    return (prompt_tokens * price[0] + output_tokens * price[1]) / 1_000_000


def _public(report: dict) -> dict:
    """The report without the curves (they are for --plot)."""
    return {**report, "datasets": [{k: v for k, v in d.items() if k != "curve"}
                                   for d in report["datasets"]]}


def _pct(value) -> str:
    return "   n/a" if value is None else f"{100 * value:5.1f}%"


def _num(value) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def _ci(entry: dict, fmt=_pct) -> str:
    low, high = entry["ci95"]
    band = "" if low is None else f" [{fmt(low).strip()}, {fmt(high).strip()}]"
    return f"{fmt(entry['value'])}{band}"


def format_report(report: dict) -> str:
    policies = list(report["overall"]["policies"])
    tiers = report["tiers"]
    given = f" (held-out scores from {report['scores']})" if report.get("scores") else ""
    out = [f"costr eval: {report['data']}, {report['overall']['prompts']} prompts, scorer "
           f"{report['scorer']}{given}, policies {', '.join(policies)}; tier {report['weak_tier']} = "
           f"weak model, {', '.join(report['strong_tiers'])} = strong model; 95% intervals from "
           f"{report['bootstrap']} bootstrap resamples"]
    if report.get("warning"):
        out.append(f"WARNING: {report['warning']}")
    if report.get("skipped"):
        out.append(report["skipped"])
    if report.get("scoring_us"):
        t = report["scoring_us"]
        out.append(f"scoring one prompt: mean {t['mean']:.0f} us, p50 {t['p50']:.0f} us, p99 "
                   f"{t['p99']:.0f} us ({t['calls']} calls on one core, in this process)")
    for d in report["datasets"]:
        out += ["", f"{d['dataset']}: {d['prompts']} prompts; weak {d['weak_model']} (quality "
                f"{_num(d['weak_quality'])}), strong {d['strong_model']} ({_num(d['strong_quality'])})",
                f"  APGR            {_ci(d['apgr'], _num)}   (random routing 0.500)",
                f"  CPT(50%)        {_ci(d['cpt50'])}",
                f"  CPT(80%)        {_ci(d['cpt80'])}",
                f"  95% quality     strong share {_ci(d['share_at_95'])}, savings "
                f"{_ci(d['savings_at_95'])}"]
        out += _policy_rows(d["policies"], tiers, _ci, 25)
    overall = report["overall"]
    out += ["", f"overall: {overall['prompts']} prompts; APGR mean over datasets "
            f"{_num(overall['apgr_mean'])}, worst {_num(overall['apgr_min'])}"]
    out += _policy_rows(overall["policies"], tiers, _pct, 14)
    if report.get("confidence"):
        reliability = report["confidence"]
        out += ["", f"confidence (routing.confidence): P(the {report['weak_tier']} tier does at "
                "least as well as the strong model | score), against what happened here"]
        out += format_reliability(reliability["all"])
        out.append("  per dataset: " + "; ".join(
            f"{name} ECE {r['ece']:.3f}, Brier {r['brier']:.4f} (base rate "
            f"{r['brier_base_rate']:.4f})" for name, r in reliability["by_dataset"].items()))
    out.append(f"({report['seconds']} s)")
    return "\n".join(out)


def _policy_rows(policies: dict, tiers: list[str], show, width: int) -> list[str]:
    """A header and one row per policy: its share per tier, strong share, quality kept, savings
    (`show` formats the last three: with or without intervals)."""
    rows = ["  " + f"{'policy':<10}" + "".join(f"{t:>10}" for t in tiers)
            + "  " + "".join(f"{h:<{width}}" for h in ("strong share", "quality kept"))
            + f"{'savings':<{width}}promise"]
    for name, point in policies.items():
        rows.append("  " + f"{name:<10}" + "".join(
            f"{_pct(point['tier_share'].get(t, 0.0)):>10}" for t in tiers)
            + "  " + "".join(f"{show(point[k]):<{width}}" for k in ("strong_share", "quality_kept"))
            + f"{show(point['savings']):<{width}}" + _promise(point))
    return rows


def _promise(point: dict) -> str:
    if point.get("promise") is None:
        return "-"
    verdict = "BROKEN" if point["broken"] else "kept"
    return f"{_pct(point['promise']).strip()} {verdict}"
