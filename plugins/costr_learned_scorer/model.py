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
from array import array
import json
from dataclasses import dataclass, field
from pathlib import Path

from .features import FORMS, analyse, key_weights, prior_logit, salt, unfamiliar_share

FORMAT = "costr-learned-scorer/3"   # /1 and /2 files hold weights for other features: retrain them

# How far an earlier, harder ask pulls a follow-up's margin up to its own (0.8 left "Now make it
# shorter." after a proof 0.10 of score below the proof, once MMLU's margins bunched closer).
FOLLOW = 0.85


@dataclass(slots=True)
class LinearModel:
    dense: dict[str, float]
    sparse: dict[int, float]
    quantiles: list[float] = field(default_factory=list)   # margins at 0%, 1%, ..., 100%
    # margin = learned / learned_scale + w * prior / prior_scale (see prior_logit), where w is
    # the ask's form's weight in "prior_weights" (form -> weight), else "prior_weight"
    blend: dict = field(default_factory=lambda: {
        "learned_scale": 1.0, "prior_weight": 0.0, "prior_scale": 1.0})
    meta: dict = field(default_factory=dict)
    # dense feature -> (mean, scale): the model sees (value - mean) * scale, so that every dense
    # feature is centred and of like spread (the bias stays 1)
    norm: dict[str, tuple[float, float]] = field(default_factory=dict)
    # the buckets of the words at least two training prompts held (see unfamiliar_share), and
    # how an unfamiliar ask's score leans toward the top: not at all up to an unfamiliar share
    # of "from", fully at "to" (see `lean`)
    vocabulary: frozenset[int] = frozenset()
    leaning: dict = field(default_factory=lambda: {"from": 1.0, "to": 1.0})

    # derived by _prepare on first scoring: per form, each bucket's shared and per-form weights
    # folded into one (SHARED_WEIGHT x shared + per-form), and the dense coefficients
    _table: dict | None = field(default=None, repr=False, compare=False)
    _dense_coef: dict | None = field(default=None, repr=False, compare=False)

    def margin(self, ask: str) -> tuple[float, str, dict[str, float], float]:
        """(the ask's margin, its form, its dense features, its unfamiliar share): the scoring
        path, equal to `combine(featurize(ask))` but without building the hashed features."""
        if self._table is None:
            self._prepare()
        form, dense, buckets, known = analyse(ask)
        const, coef = self._dense_coef[form]
        z = const
        for name, c in coef.items():
            z += c * dense[name]
        if buckets:
            z += key_weights(len(buckets))[1] * sum(map(self._table[form].__getitem__, buckets))
        b = self.blend
        z /= b["learned_scale"]
        w = self.prior_weight(form)
        if w:
            z += w * prior_logit(dense) / b["prior_scale"]
        return z, form, dense, unfamiliar_share(known, self.vocabulary)

    def lean(self, unfamiliar: float) -> float:
        """How far (0 to 1) an ask this unfamiliar leans its score toward the top. Its ranking
        is least reliable there (on dev.jsonl's held-out LLMRouter prompts, APGR 0.63 for the
        quarter with the most unfamiliar words, 0.74 for the rest), so the safer answer is a
        stronger model (scorer.LEANED_SCORE: how far)."""
        low, high = self.leaning["from"], self.leaning["to"]
        if unfamiliar <= low:
            return 0.0
        return 1.0 if unfamiliar >= high else (unfamiliar - low) / (high - low)

    def prior_weight(self, form: str) -> float:
        """How much of the heuristic's prior the margin of an ask of this form blends in."""
        return (self.blend.get("prior_weights") or {}).get(form, self.blend["prior_weight"])

    def _prepare(self) -> None:
        """Fold each form's dense weights and the normalisation into one coefficient a feature
        and a constant, and lay the sparse weights out, per form, as an array indexed by the shared
        bucket: one lookup a key instead of two."""
        from .features import BUCKETS, SHARED_WEIGHT
        table = {}
        for form in FORMS:
            s, folded = salt(form), array("d", bytes(8 * BUCKETS))
            for bucket, w in self.sparse.items():   # a weight is shared for one key, per-form
                folded[bucket] += SHARED_WEIGHT * w    # for the key whose bucket XOR salt it is
                folded[bucket ^ s] += w
            table[form] = folded
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
        w = self.prior_weight(features[0])
        if w:
            z += w * prior_logit(features[1]) / b["prior_scale"]
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
        """The share of training prompts whose margin is below `z`, interpolated. One table for
        every form of ask, so that scores of different forms compare (a follow-up is not ranked
        below the ask it follows up on because its form differs); a policy that wants a form
        held to its own share sets `form_thresholds`. Per-form tables ranked dev's held-out
        prompts no better (APGR on arena-chat, GSM8K, LLMRouter, MMLU 0.569, 0.631, 0.725, 0.665
        against 0.572, 0.634, 0.738, 0.664 with one table)."""
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
            "vocabulary": sorted(self.vocabulary),
            "leaning": self.leaning,
        }
        data = json.dumps(payload, separators=(",", ":")).encode()
        # mtime 0 and no file name: the same training gives the same bytes
        Path(path).write_bytes(gzip.compress(data, compresslevel=9, mtime=0))

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
                    norm={k: (m, c) for k, (m, c) in payload["norm"].items()},
                    vocabulary=frozenset(payload["vocabulary"]), leaning=payload["leaning"])
        model._prepare()   # ready to score: the first request pays nothing extra
        return model
