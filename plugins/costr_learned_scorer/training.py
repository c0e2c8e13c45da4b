"""Training the learned scorer from labelled records, and judging it by grouped
cross-validation (`costr train-scorer`).

A record is one line of JSONL: `{"dataset": ..., "messages": [...], "scores": {model: 0..1}}`.
The target is how much a strong model gains over a weak one on that prompt (strong - weak, in
[-1, 1]): routing by it is exactly what APGR rewards, and it beat "how likely the weak model is
to fail" and blends of the two in cross-validation. For two models, weak and strong are the
worse and the better on average; with more, the strong model is the best on average and "weak"
is the model named by `weak=`, else the cheapest by the prices `costr eval` uses (as `costr eval`
picks it: training towards another weak model cost 0.09 APGR on llmrouter), else the mean of
all models.

Records with a single score are the gateway's feedback (`costr feedback export`): the rated
answer of the model the request was routed to. What such a rating says of the weak and the
strong model is core's rule (costr/evaluation/rated_answers.py), shared with `costr eval` and
`costr calibrate`: a budget-tier answer rated well teaches that the weak model suffices, rated
badly that the strong one was needed; the rest are skipped and counted.
"""
from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from zlib import crc32

from costr import ChatRequest, Message, Text, user_ask
from costr.evaluation.rated_answers import RatedAnswers

from .features import DENSE, analyse, featurize, prior_logit, unfamiliar_share
from .model import LinearModel

BUDGET_TIER = "budget"
# The prior's weight by form, relative to `prior_weight`. The forms differ in how much the
# n-grams know: a multiple-choice exam question's subject words say more than the heuristic's
# length and keyword counts (repeated 5-fold CV on dev.jsonl, 5 fold assignments: MMLU +0.011
# APGR at 0.2 against 1), while a short worded problem's n-grams, learned from ~1,700 of them,
# say less than the prior's length and maths evidence (GSM8K +0.005 at 2); leave-one-dataset-out
# APGR rose too (+0.006 / +0.021 / +0.009 on MMLU / GSM8K / llmrouter). Open asks, the traffic
# no benchmark covers well, keep the prior as set.
FORM_PRIOR = {"choice": 0.2, "problem": 2.0, "request": 1.0, "open": 1.0}
LEAN_FROM_PERCENTILE, LEAN_SPAN = 99, 0.4   # see familiarity()


@dataclass(slots=True)
class Example:
    id: str
    dataset: str
    ask: str
    weak: float
    strong: float
    features: tuple | None = None           # featurize(ask)
    earlier: list[str] = field(default_factory=list)   # earlier user asks, oldest first

    def target(self, kind: str = "gain") -> float:
        if kind == "weak":      # how likely the weak model is to fail
            return 1 - self.weak
        if kind == "both":
            return ((1 - self.weak) + (self.strong - self.weak)) / 2
        return self.strong - self.weak


def user_asks(messages: list[dict]) -> tuple[str, list[str]]:
    """(the last user ask, the earlier user asks): what the scorer sees of a conversation."""
    request = ChatRequest(messages=[Message(m["role"], [Text(_text(m["content"]))])
                                    for m in messages if m["role"] != "system"])
    asks = []
    for i, message in enumerate(request.messages):
        if message.role == "user":
            text = user_ask(ChatRequest(messages=request.messages[i:i + 1]), limit=8_000)
            if text.strip():
                asks.append(text)
    return (asks[-1], asks[:-1]) if asks else ("", [])


def eval_prices() -> dict[str, float]:
    """Each model's input + output price from the prices `costr eval` uses by default (empty
    if they cannot be read), so that training and evaluation call the same model weak."""
    try:
        import yaml

        from costr.evaluation.report import DEFAULT_PRICES
        path = DEFAULT_PRICES
        models = (yaml.safe_load(path.read_text()) or {}).get("models") or {}
        return {m: float(p.get("input", 0)) + float(p.get("output", 0)) for m, p in models.items()}
    except (OSError, ValueError, TypeError, AttributeError, ImportError):
        return {}


def pick_weak(rows: list[dict], models: list[str], mean: dict[str, float],
              prices: dict[str, float]) -> str | None:
    """Two models: the worse on average. More: the cheapest priced model every record scores,
    as `costr eval` picks it (on arena-chat, Mixtral among 14 models of which two are priced);
    None (the mean of all models) if no price is known."""
    if len(models) == 2:
        return min(models, key=mean.get)
    common = [m for m in models if all(m in r["scores"] for r in rows)]
    priced = [m for m in common if m in prices]
    if not priced:
        return None
    return min(sorted(priced), key=prices.get)


def read_examples(path: str | Path, weak: dict[str, str] | None = None,
                  prices: dict[str, float] | None = None) -> list[Example]:
    """Examples from a JSONL file of records. `weak`: the weak model by dataset; otherwise
    `pick_weak`, with `prices` (model -> input + output price; default: `costr eval`'s)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    record = _checked(json.loads(line), number)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {number}: not valid JSON ({exc.msg})") from None
                # `costr eval --scores` finds a record by its id, or else by its line
                record.setdefault("id", f"line {number}")
                records.append(record)
    by_dataset: dict[str, list[dict]] = {}
    for record in records:
        by_dataset.setdefault(record.get("dataset", "all"), []).append(record)
    examples: list[Example] = []
    # Feedback: what a rating says of the weak and strong model is core's rule, shared with
    # costr eval and costr calibrate.
    rated = RatedAnswers(BUDGET_TIER)
    for dataset, rows in by_dataset.items():
        single = [r for r in rows if len(r.get("scores") or {}) == 1]
        rows = [r for r in rows if len(r.get("scores") or {}) >= 2]
        for r in single:
            outcomes = rated.outcomes(r)   # (weak, strong), or None: it says nothing of the gap
            if outcomes is not None:
                examples.append(_example(r, dataset, *outcomes, len(examples)))
        if not rows:
            continue
        models = sorted({m for r in rows for m in r["scores"]})
        mean = {m: sum(r["scores"].get(m, 0.0) for r in rows) / len(rows) for m in models}
        strong = max(models, key=mean.get)
        if prices is None:
            prices = eval_prices()
        weak_model = (weak or {}).get(dataset) or pick_weak(rows, models, mean, prices)
        for r in rows:
            scores = r["scores"]
            w = scores.get(weak_model, 0.0) if weak_model else sum(scores.values()) / len(scores)
            examples.append(_example(r, dataset, w, scores.get(strong, 0.0), len(examples)))
    if rated.summary():
        print(rated.summary())
    return examples


def _checked(record, number: int) -> dict:
    """The record, or ValueError naming its line and what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError(f"line {number}: expected a JSON object")
    messages, scores = record.get("messages"), record.get("scores")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and "role" in m for m in messages):
        raise ValueError(f"line {number}: 'messages' must be a non-empty list of chat messages")
    if not isinstance(scores, dict) or not scores or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
            for v in scores.values()):
        raise ValueError(f"line {number}: 'scores' must map each model to its outcome (0 to 1)")
    return record


def _example(record: dict, dataset: str, weak: float, strong: float, n: int) -> Example:
    ask, earlier = user_asks(record.get("messages") or [])
    return Example(str(record.get("id", n)), dataset, ask, weak, strong, featurize(ask), earlier)


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def train(examples: list[Example], *, epochs: int = 4, l2: float = 1e-4, rate: float = 0.1,
          dense_rate: float = 0.01, dense_scale: float = 0.3, target: str = "gain",
          prior_weight: float = 0.5, balance: float = 0.0, center: bool = True,
          dense_balance: float = 1.0, seed: int = 0) -> LinearModel:
    """Least squares on each prompt's gain relative to its dataset's mean (`center`), by SGD
    with a linearly decaying step and L2 shrinkage, over hashed n-grams and standardised dense
    features, each with a shared and a per-form copy; then the heuristic's prior blended in at
    `prior_weight` times the ask's form's `FORM_PRIOR` (both margins in units of their spread
    over the training prompts), and the margin's quantiles for calibration.

    Every prompt weighs the same (`balance=0`); `balance=1` weighs every dataset the same. In
    cross-validation on dev.jsonl, equal prompts routed better on every dataset, the small one
    included. `epochs`=4, more did not help; `prior_weight` 0.5 traded 0.02 of within-dataset
    APGR on MMLU and llmrouter for 0.01-0.02 on unseen datasets (1.0 trades more).

    `dense_balance` lifts a small dataset's weight in the per-form dense features, up to that of
    an equal share of the data (1): with it, 5-fold APGR on the 134 arena-chat prompts (three
    fold assignments) was 0.576 against 0.514 without, and 0.547 training toward the mean of
    its 14 models instead of the budget model Mixtral."""
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.dataset] = counts.get(e.dataset, 0) + 1
    share = {d: (len(examples) / (len(counts) * n)) ** balance for d, n in counts.items()}
    # A small dataset's prompts weigh more in what the per-form dense signals learn (never less
    # than one): its vocabulary is too thin to learn n-grams from, its shape is not. Lifting the
    # shared copy too let 134 chat prompts bend what every form learns (leave-one-dataset-out
    # APGR on MMLU 0.518 against 0.553 with the lift kept to the per-form copy).
    lift = {d: max(1.0, (len(examples) / (len(counts) * n)) ** dense_balance)
            for d, n in counts.items()}
    # Only the order within a dataset matters to routing, so learn each prompt's target relative
    # to its dataset's mean rather than which dataset it looks like.
    mean = {d: 0.0 for d in counts}
    for e in examples:
        mean[e.dataset] += e.target(target) / counts[e.dataset] if center else 0.0
    norm = normalisation([e.features[1] for e in examples], dense_scale)
    dense: dict[str, float] = {}
    sparse: dict[int, float] = {}
    order = list(range(len(examples)))
    rng = random.Random(seed)
    step, total = 0, max(epochs * len(examples), 1)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            e = examples[i]
            form, raw, xs = e.features
            xd = [(k, f"{form}:{k}", (raw[k] - m) * c) for k, (m, c) in norm.items()]
            z = 0.0
            for k, kf, v in xd:
                z += (dense.get(k, 0.0) + dense.get(kf, 0.0)) * v
            for b, v in xs.items():
                z += sparse.get(b, 0.0) * v
            lr = rate * (1 - 0.9 * step / total)     # linear decay to a tenth
            g = (z - e.target(target) + mean[e.dataset]) * share[e.dataset]
            shrink = 1 - lr * l2
            gs = dense_rate * lr * g        # dense features fire on every prompt: smaller steps
            gd = gs * lift[e.dataset]       # and the per-form copy takes the small dataset's lift
            for k, kf, v in xd:
                dense[k] = dense.get(k, 0.0) * shrink - gs * v
                dense[kf] = dense.get(kf, 0.0) * shrink - gd * v
            for b, v in xs.items():
                sparse[b] = sparse.get(b, 0.0) * shrink - lr * g * v
            step += 1
    model = LinearModel(dense=dense, sparse={b: w for b, w in sparse.items() if abs(w) >= 5e-5},
                        norm=norm)
    learned = [model.learned(e.features) for e in examples]
    priors = [prior_logit(e.features[1]) for e in examples]
    model.blend = {"learned_scale": round(statistics.pstdev(learned) or 1.0, 6),
                   "prior_weight": prior_weight,
                   "prior_weights": {f: prior_weight * m for f, m in FORM_PRIOR.items()},
                   "prior_scale": round(statistics.pstdev(priors) or 1.0, 6)}
    model.vocabulary, model.leaning = familiarity(examples)
    margins = [model_margin(model, e) for e in examples]
    model.quantiles = percentiles(margins)
    return model


def familiarity(examples: list[Example]) -> tuple[frozenset[int], dict]:
    """The words (their buckets) that at least two training prompts hold, and where leaning
    starts and is full: at the unfamiliar share only 1% of the training prompts exceed, and 0.4
    above it. A prompt's own words count only if another prompt holds them too, so its share
    here is the share it would have were it held out."""
    counts: dict[int, int] = {}
    known = [analyse(e.ask)[3] for e in examples]
    for keys in known:
        for b in set(keys):
            counts[b] = counts.get(b, 0) + 1
    vocabulary = frozenset(b for b, n in counts.items() if n >= 2)
    shares = [unfamiliar_share(keys, vocabulary) for keys in known]
    start = round(percentiles(shares)[LEAN_FROM_PERCENTILE], 4) if shares else 1.0
    return vocabulary, {"from": start, "to": round(min(1.0, start + LEAN_SPAN), 4)}


def percentiles(values: list[float]) -> list[float]:
    """The values at 0%, 1%, ..., 100%."""
    ordered = sorted(values)
    return [ordered[min(len(ordered) * q // 100, len(ordered) - 1)] for q in range(101)]


def normalisation(rows: list[dict[str, float]], scale: float) -> dict[str, tuple[float, float]]:
    """Each dense feature's (mean, scale / spread) over the training prompts; the bias as is."""
    norm = {}
    for name in DENSE:
        values = [r[name] for r in rows]
        if name == "bias":
            norm[name] = (0.0, 1.0)
        else:
            spread = statistics.pstdev(values) if len(values) > 1 else 0.0
            norm[name] = (statistics.fmean(values), scale / spread if spread > 1e-9 else 0.0)
    return norm


def model_margin(model: LinearModel, e: Example) -> float:
    z = model.combine(e.features)
    if e.earlier:
        z = model.follow(z, [model.combine(featurize(a)) for a in e.earlier])
    return z


def apgr(scores: list[float], weak: list[float], strong: list[float]) -> float:
    """RouteLLM's average performance gap recovered: send the highest-scored prompts to the strong
    model first; ties share their gain evenly (as random tie-breaking would, on average)."""
    n = len(scores)
    gap = sum(strong) - sum(weak)
    if n == 0 or gap == 0:
        return float("nan")
    order = sorted(range(n), key=lambda i: -scores[i])
    gains = [strong[i] - weak[i] for i in order]
    i = 0
    while i < n:   # average gains within runs of equal scores
        j = i
        while j + 1 < n and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        if j > i:
            avg = sum(gains[i:j + 1]) / (j + 1 - i)
            gains[i:j + 1] = [avg] * (j + 1 - i)
        i = j + 1
    total, recovered = 0.0, 0.0
    for g in gains:
        recovered += g
        total += recovered / gap
    return total / n   # the mean of PGR over x = 1/n .. 1, the area under the curve


def fold_of(e: Example, folds: int) -> int:
    return crc32(e.id.encode()) % folds


def cross_validate(examples: list[Example], folds: int = 2, **options) -> dict[str, dict]:
    """APGR per dataset on prompts the model did not see: K-fold within every dataset (each fold
    held out in turn), and leave-one-dataset-out (trained only on the other datasets). Also each
    example's K-fold held-out score, as the gateway would answer it (`scores`: id -> score), for
    calibrating policies on the same data the final model is trained on."""
    from .scorer import score_asks
    datasets = sorted({e.dataset for e in examples})
    report: dict[str, dict] = {"k-fold": {}, "other datasets": {}, "scores": {}}
    scored: dict[str, tuple[list, list, list]] = {d: ([], [], []) for d in datasets}
    for k in range(folds):
        model = train([e for e in examples if fold_of(e, folds) != k], **options)
        for e in examples:
            if fold_of(e, folds) == k:
                s, w, st = scored[e.dataset]
                s.append(model_margin(model, e)); w.append(e.weak); st.append(e.strong)
                report["scores"][e.id] = score_asks(model, e.ask, e.earlier[-2:])[0]
    for d in datasets:
        report["k-fold"][d] = apgr(*scored[d])
    if len(datasets) > 1:
        for d in datasets:
            model = train([e for e in examples if e.dataset != d], **options)
            held = [e for e in examples if e.dataset == d]
            report["other datasets"][d] = apgr([model_margin(model, e) for e in held],
                                               [e.weak for e in held], [e.strong for e in held])
    return report
