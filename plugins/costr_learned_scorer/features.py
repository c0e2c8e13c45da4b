"""What the learned scorer sees of an ask: hashed word n-grams plus a few dense signals, each
twice: once shared by every prompt, and once conjoined with the ask's *form*.

The form is read off the text (never from a dataset label): a multiple-choice question, a short
worded problem with quantities ending in a question, or anything else. What makes a prompt hard
depends on its form: in a multiple-choice exam question a word like "function" or a long stem
means something else than in a chat request or a word problem. A model with one weight per
feature has to average those meanings; with a shared copy and a per-form copy (feature
augmentation, Daumé 2007) it learns both what holds everywhere and what holds for one form, at
the cost of one integer XOR per feature.

Hashing (crc32, stable across processes, unlike `hash`) keeps the model a fixed size whatever
the vocabulary, and lets a prompt's features be computed in tens of microseconds.
"""
from __future__ import annotations

import math
import re
from zlib import crc32

BUCKETS = 1 << 18
HEAD, TAIL = 400, 120   # characters considered: the ask is in them, and 100k-token inputs stay fast

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
_MATH_WORDS = frozenset(
    "solve equation equations integral probability derivative calculate compute area perimeter "
    "volume remainder divisible integer integers prime primes sum product average median ratio "
    "polynomial matrix vector".split())
# Writing and role-play: where a budget model's answer is as good as a premium one's (RouteLLM's
# MT-Bench data: GPT-4's edge over Mixtral is in maths, reasoning and code).
_CREATIVE = frozenset(
    "poem poems haiku story stories essay blog slogan lyrics song limerick sonnet tweet email "
    "letter pretend roleplay imagine persona rewrite rephrase paraphrase catchy joke jokes "
    "brainstorm".split())
# What makes a chat request hard for a budget model (Chatbot Arena prompts, 14 models graded):
# code to write in a named language or framework, a puzzle to reason through, many constraints
# to satisfy at once, a list of requirements. Writing, ideas and explanations are not.
_LANGUAGES = frozenset(
    "python java javascript typescript rust golang kotlin swift ruby php perl scala haskell zig "
    "prolog sql mysql postgres postgresql sqlite bash shell powershell lua julia matlab vba excel "
    "vue vuejs react angular svelte django flask fastapi nodejs html css regex blender unity godot "
    "pytorch tensorflow numpy pandas docker kubernetes terraform latex assembly verilog cuda "
    "opengl arduino".split())
_PUZZLES = frozenset(
    "riddle puzzle liar liars truthful logic paradox probability odds weigh weighs heavier "
    "lighter estimate simulate coins balls".split())
_REQUIREMENTS = frozenset("must should exactly only ensure each every without unless".split())
_IDEAS = frozenset(
    "ideas idea names name suggest suggestions tips advice opinion describe summarize summarise "
    "elaborate overview benefits discuss script dialogue character characters plot".split())
_LIST_ITEM = re.compile(r"\n\s*(?:\d+[.)]|[-*•])\s")
_FRACTION_WORDS = frozenset("half third quarter twice double triple percent fraction".split())
_RATE_WORDS = frozenset("each every per".split())
_SEQUENCE_WORDS = frozenset("remaining rest left after then later before".split())
_COMPARE_WORDS = frozenset("more less fewer than".split())
_DECIMAL = re.compile(r"\d\.\d")
_NUMBER = re.compile(r"\d+")
_MATH_MARKS = tuple("=<>^∑∫√≤≥±")
_CHOICE_MARKS = tuple(f"\n{c}." for c in "abcde") + tuple(f"\n({c})" for c in "abcde")
_CODE_MARKS = ("```", "def ", "class ", "function", "#include", "=>", "select ", "return", ";\n")

# The forms of ask, and the salt that moves a hashed feature's per-form copy to its own bucket.
FORMS = ("choice", "problem", "request", "open")
_SALT = {"choice": 0x2F6B1, "problem": 0x15A3D, "request": 0x2A4D9, "open": 0x3C8E7}
# A request for a piece of work (write, implement, explain, design...), as an imperative or a
# polite ask, near the start of a sentence; or code to work on. Chat traffic is mostly these
# (two thirds of the Arena prompts), benchmark questions almost never (2% of MMLU and GSM8K; the
# 12% of LLMRouter are its "write a function" tasks).
_REQUEST = re.compile(
    r"(?:^|[.!?:\n]\s*)(?:please\s+|(?:can|could|would) you(?: please)?\s+|i want you to\s+|"
    r"i want to\s+|i need(?: you to)?\s+|help me(?: to)?\s+|let'?s\s+)?"
    r"(write|generate|create|implement|build|make|design|develop|draft|compose|give me|show me|"
    r"tell me|explain|describe|summari[sz]e|rewrite|translate|list|provide|suggest|imagine|act as|"
    r"pretend|solve|prove|derive|calculate|find|compare|analy[sz]e|convert|fix|refactor|"
    r"optimi[sz]e|plan|outline|edit|code|simulate|roleplay)\b")

# The dense features, by name (the model file keeps their weights under these names, and the
# per-form copies under "form:name").
DENSE = ("bias", "log_chars", "log_words", "log_lines", "reasoning", "code", "math",
         "constraints", "questions", "digits", "choices", "sentences", "numbers", "fractions",
         "word_length", "creative", "commas", "decimals", "money", "rates", "sequence", "comparisons",
         "languages", "puzzle", "requirements", "ideas", "list_items")
SHARED_WEIGHT = 0.5   # the shared copy of the n-grams, relative to the per-form copy


def clip(text: str) -> str:
    return text if len(text) <= HEAD + TAIL else text[:HEAD] + "\n" + text[-TAIL:]


def form_of(ask: str, text: str, numbers: int) -> str:
    """`ask` as asked, `text` lower-cased and clipped; `numbers`: how many numerals the text
    holds. Options come last, and may be long, so they are looked for in the ask's last 1,000
    characters, and any two consecutive ones will do."""
    tail = ask[-1_000:].lower()
    for a, b in (("a", "b"), ("b", "c"), ("c", "d")):
        if (f"\n{a}." in tail and f"\n{b}." in tail) or (f"\n({a})" in tail and f"\n({b})" in tail):
            return "choice"
    length = len(ask)
    head = text[:HEAD]
    if "```" in head or _REQUEST.search(head):
        return "request"
    if (numbers and length < 1_200 and text.rstrip().endswith("?")
            and "```" not in text and "def " not in text):
        return "problem"
    return "open"


def dense_features(text: str, words: set[str], pairs: set[str], numbers: int) -> dict[str, float]:
    """The heuristic's signals (distinct terms, not occurrences) and a few shape signals,
    squashed so none dominates; `text` is lower-cased and clipped."""
    digits = sum(map(text.count, "0123456789")) if numbers else 0
    maths = sum(map(text.count, _MATH_MARKS)) + len(words & _MATH_WORDS)
    choices = sum(map(text.count, _CHOICE_MARKS)) if "\n" in text else 0
    spaces = text.count(" ")
    return {
        "bias": 1.0,
        "log_chars": math.log1p(len(text)) / 4,
        "log_words": math.log1p(spaces + 1) / 4,
        "log_lines": math.log1p(text.count("\n")) / 2,
        "reasoning": min(len(words & _REASONING) + len(pairs & _REASONING_PAIRS), 4) / 2,
        "code": 1.0 if any(mark in text for mark in _CODE_MARKS) else 0.0,
        "math": min(maths, 8) / 4,
        "constraints": min(len(words & _CONSTRAINT), 4) / 2,
        "questions": min(text.count("?"), 4) / 2,
        "digits": min(digits / max(len(text), 1) * 10, 2.0),
        "choices": min(choices, 6) / 4,
        "sentences": math.log1p(text.count(". ") + text.count("? ") + text.count(".\n")
                                + text.count("?\n") + 1) / 2,
        "numbers": math.log1p(numbers) / 2,
        "fractions": min(len(words & _FRACTION_WORDS) + text.count("%") + text.count("/"), 4) / 2,
        "word_length": min(len(text) / (spaces + 1), 12) / 6,
        "creative": min(len(words & _CREATIVE), 3) / 2,
        # the shape of a worded problem: how many quantities, steps and relations it chains
        "commas": min(text.count(","), 8) / 4,
        "decimals": min(len(_DECIMAL.findall(text)), 4) / 2 if numbers and "." in text else 0.0,
        "money": min(text.count("$"), 4) / 2,
        "rates": min(len(words & _RATE_WORDS), 3) / 2,
        "sequence": min(len(words & _SEQUENCE_WORDS), 4) / 2,
        "comparisons": min(len(words & _COMPARE_WORDS), 4) / 2,
        # chat requests
        "languages": min(len(words & _LANGUAGES) + ("c++" in text) + ("c#" in text), 3) / 2,
        "puzzle": min(len(words & _PUZZLES), 3) / 2,
        "requirements": min(len(words & _REQUIREMENTS), 6) / 3,
        "ideas": min(len(words & _IDEAS), 3) / 2,
        "list_items": min(len(_LIST_ITEM.findall(text)), 6) / 3 if "\n" in text else 0.0,
    }


def analyse(ask: str) -> tuple[str, dict[str, float], list[int], list[int]]:
    """(the ask's form, its dense features, the shared-copy bucket of each distinct word unigram
    and bigram, and the buckets of its distinct words of three letters or more: what
    `unfamiliar_share` looks up). A key's per-form bucket is its shared bucket XOR the form's
    salt."""
    text = clip(ask).lower()
    tokens = _TOKEN.findall(text)
    words = set(tokens)
    pairs = set(map(" ".join, zip(tokens, tokens[1:])))
    numbers = len(_NUMBER.findall(text))
    mask = BUCKETS - 1
    by_word = {w: crc32(w.encode()) & mask for w in words}
    buckets = [*by_word.values(), *(crc32(p.encode()) & mask for p in pairs)]
    known = [b for w, b in by_word.items() if len(w) >= 3 and "a" <= w[0] <= "z"]
    return (form_of(ask, text, numbers), dense_features(text, words, pairs, numbers), buckets,
            known)


MIN_WORDS = 4   # an ask of fewer words is too short to call unfamiliar ("hi", "thanks")


def unfamiliar_share(known: list[int], vocabulary: frozenset[int]) -> float:
    """The share of an ask's words (`analyse`'s last item) that no two training prompts held:
    how unlike the scorer's training data the ask is. Other languages score near 1, the
    benchmark questions' own held-out asks about 0.05, real chat asks about 0.1."""
    if len(known) < MIN_WORDS or not vocabulary:
        return 0.0
    return sum(1 for b in known if b not in vocabulary) / len(known)


def key_weights(n: int) -> tuple[float, float]:
    """The value of each of `n` keys' (shared, per-form) features: long asks don't dominate."""
    own = 1.0 / math.sqrt(n) if n else 0.0
    return own * SHARED_WEIGHT, own


def hashed_features(form: str, buckets: list[int]) -> dict[int, float]:
    """bucket -> value, shared and per-form copies (colliding keys add up)."""
    hashed: dict[int, float] = {}
    shared, own = key_weights(len(buckets))
    salt = _SALT[form]
    for b in buckets:
        hashed[b] = hashed.get(b, 0.0) + shared
        hashed[b ^ salt] = hashed.get(b ^ salt, 0.0) + own
    return hashed


def featurize(ask: str) -> tuple[str, dict[str, float], dict[int, float]]:
    """(the ask's form, its dense features, its hashed features: bucket -> value)."""
    form, dense, buckets, _ = analyse(ask)
    return form, dense, hashed_features(form, buckets)


def salt(form: str) -> int:
    return _SALT[form]


def prior_logit(dense: dict[str, float]) -> float:
    """The heuristic scorer's hand-set evidence, re-expressed over these features. Blended into
    the learned margin it keeps the model sensible on prompts unlike any it was trained on (and
    on the traffic no benchmark here covers: writing and role-play low, maths, reasoning and code
    high)."""
    words = math.expm1(4 * dense["log_words"])
    return (-1.6 + 0.9 * math.log1p(words / 40) + 1.4 * dense["reasoning"] + 0.9 * dense["code"]
            + 1.4 * min(dense["math"], 1.0) + 0.5 * dense["constraints"]
            + 0.4 * max(dense["questions"] - 0.5, 0.0) - 1.2 * dense["creative"]
            + 0.8 * dense["languages"] + 0.6 * dense["puzzle"] + 0.3 * dense["requirements"]
            - 0.6 * dense["ideas"])
