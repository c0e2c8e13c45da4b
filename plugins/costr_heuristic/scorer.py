"""Scores a request from signals in the user's ask, in microseconds, with no model.

Each signal adds evidence in logit space; the sum goes through a logistic curve. Weights are
hand-set and deliberately few; the learned scorer (issue 6) replaces them with measured ones.
"""
from __future__ import annotations

import math
import re

from costr import ChatRequest, Complexity, check_options, user_ask

OPTIONS = {"bias": float}   # routing.scorer_options; bias shifts every score (logit space)

_REASONING = re.compile(
    r"\b(prove|proof|derive|theorem|lemma|optimi[sz]e|algorithm|complexity|architect\w*|design"
    r"|trade-?offs?|analy[sz]e|analysis|debug|refactor|concurren\w*|distributed|step[- ]by[- ]step"
    r"|explain why|compare|evaluate|critique|review|implement|rigorous\w*|edge cases?|invariant"
    r"|security|vulnerab\w*|scalab\w*|formal\w*|strategy|plan)\b", re.I)
_TRIVIAL = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|ok|okay|yes|no|reply exactly:.*|say .{0,40}|"
    r"what time is it\??|ping)\s*[.!?]*\s*$", re.I | re.S)
_CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|#include|=>|\bSELECT\b|\breturn\b|;\s*$", re.M)
_MATH = re.compile(r"[=<>^∑∫√≤≥±]|\b\d+\s*[-+*/]\s*\d+|\bsolve\b|\bequation|\bintegral|\bprobabilit", re.I)
_CONSTRAINT = re.compile(r"\b(must|should|ensure|without|at least|at most|exactly|only if|unless)\b", re.I)


class HeuristicScorer:
    def __init__(self, options: dict | None = None):
        options = options or {}
        check_options(options, OPTIONS, "scorer 'heuristic'")
        self.bias = float(options.get("bias", -1.6))

    def score(self, request: ChatRequest) -> Complexity:
        ask = user_ask(request)
        words = len(ask.split())
        signals = {
            "ask_words": words,
            "reasoning_terms": len(_REASONING.findall(ask)),
            "code": bool(_CODE.search(ask)),
            "math": len(_MATH.findall(ask)),
            "constraints": len(_CONSTRAINT.findall(ask)),
            "questions": ask.count("?"),
            "turns": len(request.messages),
            "trivial": bool(_TRIVIAL.match(ask)) if words <= 12 else False,
        }
        z = self.bias
        z += 0.9 * math.log1p(words / 40)
        z += 0.7 * min(signals["reasoning_terms"], 4)
        z += 0.9 if signals["code"] else 0.0
        z += 0.35 * min(signals["math"], 4)
        z += 0.25 * min(signals["constraints"], 4)
        z += 0.2 * min(max(signals["questions"] - 1, 0), 3)
        z += 0.15 * min(signals["turns"] // 4, 3)
        if signals["trivial"]:
            z -= 3.0
        score = 1.0 / (1.0 + math.exp(-z))
        # Confident where the evidence is strong either way; least sure in the middle.
        confidence = 0.5 + abs(score - 0.5)
        return Complexity(round(score, 4), round(confidence, 3), signals)
