"""A linear model over hashed n-grams and dense signals, and its file format.

The file is gzipped JSON: the dense weights by name (shared ones as "name", per-form ones as
"form:name"), the non-zero sparse weights as `[[bucket, weight], ...]` (rounded, so the file
stays small), and a quantile table that maps the raw margin to a score in [0, 1]: a score of 0.7
means "harder than 70% of the prompts the model was trained on", which keeps a policy's
thresholds readable as shares of traffic.
"""
from __future__ import annotations

import bisect
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from .features import FORMS, analyse, key_weights, prior_logit, salt

FORMAT = "costr-learned-scorer/2"   # /1 files hold weights for other features: retrain them

FOLLOW = 0.8   # how far an earlier, harder ask pulls a follow-up's margin up to its own


@dataclass(slots=True)
class LinearModel:
    dense: dict[str, float]
    sparse: dict[int, float]
    quantiles: list[float] = field(default_factory=list)   # margins at 0%, 1%, ..., 100%
    # margin = learned / learned_scale + prior_weight * prior / prior_scale (see prior_logit)
    blend: dict[str, float] = field(default_factory=lambda: {
        "learned_scale": 1.0, "prior_weight": 0.0, "prior_scale": 1.0})
    meta: dict = field(default_factory=dict)
    # dense feature -> (mean, scale): the model sees (value - mean) * scale, so that every dense
    # feature is centred and of like spread (the bias stays 1)
    norm: dict[str, tuple[float, float]] = field(default_factory=dict)

    # derived by _prepare on first scoring: sparse weights by bucket, dense coefficients by form
    _table: list[float] | None = field(default=None, repr=False, compare=False)
    _dense_coef: dict | None = field(default=None, repr=False, compare=False)

    def margin(self, ask: str) -> tuple[float, str, dict[str, float]]:
        """(the ask's margin, its form, its dense features): the scoring path, equal to
        `combine(featurize(ask))` but without building the hashed features."""
        if self._table is None:
            self._prepare()
        form, dense, buckets = analyse(ask)
        const, coef = self._dense_coef[form]
        z = const
        for name, c in coef.items():
            z += c * dense[name]
        if buckets:
            get = self._table.__getitem__
            shared, own = key_weights(len(buckets))
            s = salt(form)
            z += shared * sum(map(get, buckets)) + own * sum([get(b ^ s) for b in buckets])
        b = self.blend
        z /= b["learned_scale"]
        if b["prior_weight"]:
            z += b["prior_weight"] * prior_logit(dense) / b["prior_scale"]
        return z, form, dense

    def _prepare(self) -> None:
        """Fold each form's dense weights and the normalisation into one coefficient a feature
        and a constant, and lay the sparse weights out as a list indexed by bucket."""
        from .features import BUCKETS
        table = [0.0] * BUCKETS
        for bucket, w in self.sparse.items():
            table[bucket] = w
        coefs = {}
        for form in FORMS:
            const, coef = 0.0, {}
            for name, (mean, scale) in self.norm.items():
                c = (self.dense.get(name, 0.0) + self.dense.get(f"{form}:{name}", 0.0)) * scale
                coef[name] = c
                const -= c * mean
            coefs[form] = (const, coef)
        self._dense_coef, self._table = coefs, table

    def learned(self, features: tuple[str, dict[str, float], dict[int, float]]) -> float:
        form, dense, hashed = features
        weights, sparse = self.dense, self.sparse
        z = 0.0
        for name, (mean, scale) in self.norm.items():
            value = (dense[name] - mean) * scale
            z += (weights.get(name, 0.0) + weights.get(f"{form}:{name}", 0.0)) * value
        for bucket, value in hashed.items():
            w = sparse.get(bucket)
            if w is not None:
                z += w * value
        return z

    def combine(self, features: tuple[str, dict[str, float], dict[int, float]]) -> float:
        b = self.blend
        z = self.learned(features) / b["learned_scale"]
        if b["prior_weight"]:
            z += b["prior_weight"] * prior_logit(features[1]) / b["prior_scale"]
        return z

    @staticmethod
    def follow(z: float, earlier: list[float]) -> float:
        """A follow-up's margin, given the margins of the user's earlier asks (oldest first).

        A follow-up ("Now make it shorter", "Why?") is short and generic; how hard it is to
        answer well is set by what it follows up on. So the harder of the last two earlier asks
        pulls the margin most of the way (FOLLOW) up to its own; it never pulls it down, since
        a hard question after easy small talk is as hard as it reads."""
        if not earlier:
            return z
        before = max(earlier[-2:])
        return z + FOLLOW * (before - z) if before > z else z

    def calibrate(self, z: float) -> float:
        """The share of training prompts whose margin is below `z`, interpolated."""
        q = self.quantiles
        if not q:
            return 0.5
        if z <= q[0]:
            return 0.0
        if z >= q[-1]:
            return 1.0
        i = bisect.bisect_right(q, z)
        lo, hi = q[i - 1], q[i]
        step = 1.0 / (len(q) - 1)
        return step * (i - 1 + ((z - lo) / (hi - lo) if hi > lo else 0.5))

    def save(self, path: str | Path) -> None:
        payload = {
            "format": FORMAT,
            "meta": self.meta,
            "dense": {k: round(v, 5) for k, v in self.dense.items()},
            "sparse": sorted([b, round(w, 4)] for b, w in self.sparse.items() if round(w, 4)),
            "quantiles": [round(q, 5) for q in self.quantiles],
            "blend": self.blend,
            "norm": {k: [round(m, 6), round(c, 6)] for k, (m, c) in self.norm.items()},
        }
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as f:
            json.dump(payload, f, separators=(",", ":"))

    @classmethod
    def load(cls, path: str | Path) -> "LinearModel":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            payload = json.load(f)
        if payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} model file (retrain it with "
                             "`costr train-scorer`)")
        model = cls(dense=payload["dense"], sparse={b: w for b, w in payload["sparse"]},
                    quantiles=payload["quantiles"], blend=payload["blend"],
                    meta=payload.get("meta", {}),
                    norm={k: (m, c) for k, (m, c) in payload["norm"].items()})
        model._prepare()   # ready to score: the first request pays nothing extra
        return model
