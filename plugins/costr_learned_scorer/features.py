"""What the learned scorer sees of an ask: hashed word n-grams plus a few dense signals.

Hashing (crc32, stable across processes, unlike `hash`) keeps the model a fixed size whatever
the vocabulary, and lets a prompt's features be computed in tens of microseconds.
"""
from __future__ import annotations

import math
import re
from zlib import crc32

BUCKETS = 1 << 18
HEAD, TAIL = 600, 150   # characters considered: the ask is in them, and 100k-token inputs stay fast

_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
# The heuristic's signals, found by set lookups over the tokens rather than regexes over the
# text: the same evidence in a tenth of the time.
_REASONING = frozenset(
    "prove proof derive theorem lemma optimize optimise algorithm complexity architecture design "
    "tradeoff tradeoffs analyze analyse analysis debug refactor concurrency concurrent distributed "
    "compare evaluate critique review implement rigorous rigorously invariant security vulnerability "
    "scalability scalable formal formally strategy plan".split())
_REASONING_PAIRS = frozenset(["step by", "explain why", "edge case", "edge cases", "trade off"])
_CONSTRAINT = frozenset("must should ensure without unless exactly".split())
_MATH_WORDS = frozenset("solve equation equations integral probability derivative".split())
_CODE_MARKS = ("```", "def ", "class ", "function", "#include", "=>", "select ", "return", ";\n")

# The dense features, by name (the model file keeps their weights under these names).
DENSE = ("bias", "log_chars", "log_words", "log_lines", "reasoning", "code", "math",
         "constraints", "questions", "digits", "choices", "turns")


def clip(text: str) -> str:
    return text if len(text) <= HEAD + TAIL else text[:HEAD] + "\n" + text[-TAIL:]


def dense_features(text: str, words: set[str], pairs: set[str], turns: int = 1) -> dict[str, float]:
    """The heuristic's signals (distinct terms, not occurrences), squashed so none dominates;
    `text` is lower-cased and clipped."""
    digits = sum(map(text.count, "0123456789"))
    maths = sum(map(text.count, "=<>^∑∫√≤≥±")) + len(words & _MATH_WORDS)
    choices = sum(text.count(f"\n{c}.") + text.count(f"\n({c})") for c in "abcde")
    return {
        "bias": 1.0,
        "log_chars": math.log1p(len(text)) / 4,
        "log_words": math.log1p(text.count(" ") + 1) / 4,
        "log_lines": math.log1p(text.count("\n")) / 2,
        "reasoning": min(len(words & _REASONING) + len(pairs & _REASONING_PAIRS), 4) / 2,
        "code": 1.0 if any(mark in text for mark in _CODE_MARKS) else 0.0,
        "math": min(maths, 8) / 4,
        "constraints": min(len(words & _CONSTRAINT), 4) / 2,
        "questions": min(text.count("?"), 4) / 2,
        "digits": min(digits / max(len(text), 1) * 10, 2.0),
        "choices": min(choices, 6) / 4,
        "turns": min(turns - 1, 8) / 4,
    }


def hashed_features(keys: set[str]) -> dict[int, float]:
    """Each word unigram and bigram's bucket, counted once, scaled so long asks don't dominate."""
    if not keys:
        return {}
    weight = 1.0 / math.sqrt(len(keys))
    mask = BUCKETS - 1
    return {crc32(key.encode()) & mask: weight for key in keys}


def featurize(ask: str, turns: int = 1) -> tuple[dict[str, float], dict[int, float]]:
    text = clip(ask).lower()
    tokens = _TOKEN.findall(text)
    pairs = set(map(" ".join, zip(tokens, tokens[1:])))
    words = set(tokens)
    return dense_features(text, words, pairs, turns), hashed_features(pairs | words)


def prior_logit(dense: dict[str, float]) -> float:
    """The heuristic scorer's hand-set evidence, re-expressed over these features. Blended into
    the learned margin it keeps the model sensible on prompts unlike any it was trained on."""
    words = math.expm1(4 * dense["log_words"])
    return (-1.6 + 0.9 * math.log1p(words / 40) + 1.4 * dense["reasoning"] + 0.9 * dense["code"]
            + 1.4 * min(dense["math"], 1.0) + 0.5 * dense["constraints"]
            + 0.4 * max(dense["questions"] - 0.5, 0.0))
