"""Training the learned scorer from labelled records, and judging it by grouped
cross-validation (`costr train-scorer`).

A record is one line of JSONL: `{"dataset": ..., "messages": [...], "scores": {model: 0..1}}`.
The target is how much a strong model gains over a weak one on that prompt, as a soft label in
[0, 1]: 1 when only the strong model succeeds, 0.5 when both do or both fail. For two models,
weak and strong are the worse and the better on average; with more, the strong model is the best
on average and "weak" is the mean of all models (or the model named by `weak=`).
"""
from __future__ import annotations

import json
import math
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from zlib import crc32

from costr.conversation import ChatRequest, Message, Text
from costr.scoring import user_ask

from .features import DENSE, featurize, prior_logit
from .model import LinearModel


@dataclass(slots=True)
class Example:
    id: str
    dataset: str
    ask: str
    turns: int
    weak: float
    strong: float
    features: tuple | None = None

    def target(self, kind: str = "gain") -> float:
        if kind == "weak":      # how likely the weak model is to fail
            return 1 - self.weak
        if kind == "both":
            return (1 - self.weak) / 2 + (self.strong - self.weak + 1) / 4
        return (self.strong - self.weak + 1) / 2


def read_examples(path: str | Path, weak: dict[str, str] | None = None) -> list[Example]:
    records = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    by_dataset: dict[str, list[dict]] = {}
    for record in records:
        by_dataset.setdefault(record.get("dataset", "all"), []).append(record)
    examples = []
    for dataset, rows in by_dataset.items():
        models = sorted({m for r in rows for m in r["scores"]})
        mean = {m: sum(r["scores"].get(m, 0.0) for r in rows) / len(rows) for m in models}
        strong = max(models, key=mean.get)
        weak_model = (weak or {}).get(dataset) or (min(models, key=mean.get) if len(models) == 2 else None)
        for r in rows:
            scores = r["scores"]
            w = scores.get(weak_model, 0.0) if weak_model else sum(scores.values()) / len(scores)
            request = ChatRequest(messages=[Message(m["role"], [Text(_text(m["content"]))])
                                            for m in r["messages"] if m["role"] != "system"])
            turns = sum(m.role == "user" for m in request.messages)
            ask = user_ask(request, limit=8_000)
            examples.append(Example(str(r.get("id", len(examples))), dataset, ask, turns,
                                    w, scores.get(strong, 0.0), featurize(ask, turns)))
    return examples


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def train(examples: list[Example], *, epochs: int = 3, l2: float = 1e-5, rate: float = 0.5,
          use: str = "all", target: str = "gain", center: bool = True, dense_rate: float = 0.02,
          prior_weight: float = 1.0,
          seed: int = 0) -> LinearModel:
    """Logistic regression on the soft target by SGD, each dataset weighted equally."""
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.dataset] = counts.get(e.dataset, 0) + 1
    share = {d: len(examples) / (len(counts) * n) for d, n in counts.items()}
    # Only the order within a dataset matters to routing, so learn each prompt's target relative
    # to its dataset's mean rather than which dataset it looks like.
    offset = {d: 0.0 for d in counts}
    if center:
        for e in examples:
            offset[e.dataset] += e.target(target) / counts[e.dataset]
        offset = {d: 0.5 - m for d, m in offset.items()}
    dense = {name: 0.0 for name in DENSE}
    sparse: dict[int, float] = {}
    order = list(range(len(examples)))
    rng = random.Random(seed)
    step = 0
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            e = examples[i]
            xd, xs = e.features
            if use == "dense":
                xs = {}
            elif use == "ngrams":
                xd = {"bias": 1.0}
            z = (sum(dense[k] * v for k, v in xd.items())
                 + sum(sparse.get(b, 0.0) * v for b, v in xs.items()))
            p = 1 / (1 + math.exp(-max(min(z, 30), -30)))
            lr = rate / (1 + step * 1e-4)
            g = (p - e.target(target) - offset[e.dataset]) * share[e.dataset] * lr
            for k, v in xd.items():   # dense features fire on every prompt: smaller steps
                dense[k] -= dense_rate * (g * v + lr * l2 * dense[k])
            for b, v in xs.items():
                w = sparse.get(b, 0.0)
                sparse[b] = w - g * v - lr * l2 * w
            step += 1
    model = LinearModel(dense=dense, sparse=sparse)
    learned = [model.learned(*e.features) for e in examples]
    priors = [prior_logit(e.features[0]) for e in examples]
    model.blend = {"learned_scale": round(statistics.pstdev(learned) or 1.0, 6),
                   "prior_weight": prior_weight,
                   "prior_scale": round(statistics.pstdev(priors) or 1.0, 6)}
    margins = sorted(model_margin(model, e) for e in examples)
    model.quantiles = [margins[min(len(margins) * q // 100, len(margins) - 1)] for q in range(101)]
    return model


def model_margin(model: LinearModel, e: Example) -> float:
    return model.combine(*e.features)


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


def cross_validate(examples: list[Example], folds: int = 2, **options) -> dict[str, dict[str, float]]:
    """APGR per dataset on prompts the model did not see: K-fold within every dataset (each fold
    held out in turn), and leave-one-dataset-out (trained only on the other datasets)."""
    datasets = sorted({e.dataset for e in examples})
    report: dict[str, dict[str, float]] = {"k-fold": {}, "other datasets": {}}
    scored: dict[str, tuple[list, list, list]] = {d: ([], [], []) for d in datasets}
    for k in range(folds):
        model = train([e for e in examples if fold_of(e, folds) != k], **options)
        for e in examples:
            if fold_of(e, folds) == k:
                s, w, st = scored[e.dataset]
                s.append(model_margin(model, e)); w.append(e.weak); st.append(e.strong)
    for d in datasets:
        report["k-fold"][d] = apgr(*scored[d])
    if len(datasets) > 1:
        for d in datasets:
            model = train([e for e in examples if e.dataset != d], **options)
            held = [e for e in examples if e.dataset == d]
            report["other datasets"][d] = apgr([model_margin(model, e) for e in held],
                                               [e.weak for e in held], [e.strong for e in held])
    return report
