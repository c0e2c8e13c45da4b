"""A linear model over hashed n-grams and dense signals, and its file format.

The file is gzipped JSON: the dense weights by name, the non-zero sparse weights as
`[[bucket, weight], ...]` (rounded, so the file stays small), and a quantile table that maps
the raw margin to a score in [0, 1]: a score of 0.7 means "harder than 70% of the prompts the
model was trained on", which keeps a policy's thresholds readable as shares of traffic.
"""
from __future__ import annotations

import bisect
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

from .features import featurize, prior_logit

FORMAT = "costr-learned-scorer/1"


@dataclass(slots=True)
class LinearModel:
    dense: dict[str, float]
    sparse: dict[int, float]
    quantiles: list[float] = field(default_factory=list)   # margins at 0%, 1%, ..., 100%
    # margin = learned / learned_scale + prior_weight * prior / prior_scale (see prior_logit)
    blend: dict[str, float] = field(default_factory=lambda: {
        "learned_scale": 1.0, "prior_weight": 0.0, "prior_scale": 1.0})
    meta: dict = field(default_factory=dict)

    def margin(self, ask: str, turns: int = 1) -> tuple[float, dict[str, float]]:
        dense, hashed = featurize(ask, turns)
        return self.combine(dense, hashed), dense

    def learned(self, dense: dict[str, float], hashed: dict[int, float]) -> float:
        weights, sparse = self.dense, self.sparse
        return (sum(weights.get(name, 0.0) * value for name, value in dense.items())
                + sum(sparse.get(bucket, 0.0) * value for bucket, value in hashed.items()))

    def combine(self, dense: dict[str, float], hashed: dict[int, float]) -> float:
        b = self.blend
        z = self.learned(dense, hashed) / b["learned_scale"]
        if b["prior_weight"]:
            z += b["prior_weight"] * prior_logit(dense) / b["prior_scale"]
        return z

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
        }
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as f:
            json.dump(payload, f, separators=(",", ":"))

    @classmethod
    def load(cls, path: str | Path) -> "LinearModel":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            payload = json.load(f)
        if payload.get("format") != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} model file")
        return cls(dense=payload["dense"], sparse={b: w for b, w in payload["sparse"]},
                   quantiles=payload["quantiles"], blend=payload["blend"], meta=payload.get("meta", {}))
