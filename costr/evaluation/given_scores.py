"""Scores given from outside the scorer, for `costr eval` and `costr calibrate` on data the
scorer was trained on: a model scores its own training prompts far too well, so figures and
thresholds there need the held-out scores training wrote (`--scores FILE`)."""
from __future__ import annotations

import hashlib

import orjson

from costr.routing.scoring import Complexity, TrainedScorer


class ScoresError(Exception):
    """A bad --scores file, worded for the operator."""


def load_given_scores(path: str | None) -> dict[str, float] | None:
    """Scores given from outside the scorer, by record id; None when there is no file."""
    if path is None:
        return None
    given = {}
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    item = orjson.loads(line)
                    score = item["score"]
                    if isinstance(score, bool) or not 0 <= score <= 1:
                        raise ValueError
                    given[str(item["id"])] = float(score)
                except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
                    raise ScoresError(f"{path}:{number}: expected {{\"id\": ..., \"score\": "
                                    "0..1}") from None
    except OSError as exc:
        raise ScoresError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return given


def in_sample_warning(live, data: str | list[str], given: dict | None) -> str | None:
    """A warning when the scorer says it was trained on one of these very files and no held-out
    scores replace its own: its figures would be in-sample, far better than on new prompts."""
    scorer = live.scorer
    if given is not None or not isinstance(scorer, TrainedScorer) or not scorer.trained_on:
        return None
    trained = []
    for path in [data] if isinstance(data, str) else data:
        try:
            with open(path, "rb") as handle:
                if hashlib.file_digest(handle, "sha256").hexdigest() in scorer.trained_on:
                    trained.append(path)
        except OSError:
            continue
    if not trained:
        return None
    return (f"the {live.config.routing.scorer} scorer was trained on {', '.join(trained)}, so "
            "these figures are in-sample; for held-out ones pass --scores with the file `costr "
            "train-scorer --oof-scores` writes")


class GivenScore:
    """Stands in for the scorer on one record: answers with the score given for it, and with the
    scorer's own signals (a policy may read one, such as the ask's form)."""

    def __init__(self, score: float, scorer=None):
        self.value = score
        self.scorer = scorer

    def score(self, request) -> Complexity:
        signals = dict(self.scorer.score(request).signals) if self.scorer is not None else {}
        return Complexity(self.value, 1.0, {**signals, "given": True})
