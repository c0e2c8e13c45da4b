"""The learned scorer: a linear model trained on how real models did on real prompts."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from costr import ChatRequest, Complexity, Message, check_options, user_ask

from .model import LinearModel

DEFAULT_MODEL = Path(__file__).with_name("default_model.json.gz")
OPTIONS = {"model": str}   # routing.scorer_options: a file `costr train-scorer` wrote
EARLIER = 2   # earlier user asks a follow-up is judged with (see LinearModel.follow)
# Where a fully unfamiliar ask's score leans to: harder than 90% of the training prompts, which
# every shipped policy sends to the standard tier or above, and only `quality` to the top one
# (an operator on `low` is not billed premium prices for every ask in another language).
LEANED_SCORE = 0.9

# Greetings and acknowledgements are absent from benchmark data, so the model has no view on
# them; they never need a strong model. After earlier turns, "yes" or "ok" may mean "go on"
# with something hard, so there only greetings and thanks count.
_TRIVIAL = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|ok|okay|yes|no|ping|what time is it\??)\s*[.!?]*\s*$", re.I)
_SMALL_TALK = re.compile(r"^\s*(hi|hello|hey|thanks|thank you|ping)\s*[.!?]*\s*$", re.I)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> LinearModel:
    return LinearModel.load(path)   # once per file version, however often the config reloads


def read_model(path: Path) -> LinearModel:
    """The model in `path`. A file that cannot be read or is not a model is a ValueError naming
    the option, which `costr check`, start-up and reloads report at its line, not a traceback."""
    try:
        return _load(str(path), path.stat().st_mtime_ns)
    except OSError as exc:   # missing, unreadable, or not gzip
        reason = exc.strerror or str(exc)
    except (ValueError, KeyError, TypeError, EOFError) as exc:   # not a model file, or cut short
        reason = str(exc).removeprefix(f"{path}: ")
        reason = f"missing {reason}" if isinstance(exc, KeyError) else reason
    raise ValueError(f"model: cannot read {path}: {reason}")


def earlier_asks(messages: list[Message], limit: int = EARLIER) -> list[str]:
    """Up to `limit` user asks before the last one, oldest first, each as `user_ask` reads it
    (tool results and agent-injected context left out)."""
    found: list[str] = []
    last_seen = False
    for message in reversed(messages):
        if message.role != "user":
            continue
        text = user_ask(ChatRequest(messages=[message]), limit=8_000)
        if not text.strip():
            continue
        if last_seen:
            found.append(text)
            if len(found) == limit:
                break
        last_seen = True
    return found[::-1]


def score_asks(model: LinearModel, ask: str, earlier: list[str]) -> tuple[float, float, dict]:
    """The score of the last ask after `earlier` ones, how familiar the ask is, and the signals
    behind it: what the gateway answers, and what training reports for prompts a model did not
    see. An ask unlike the training data leans toward LEANED_SCORE as far as LinearModel.lean
    says, and is as much less familiar, down to 0.5 for one the model cannot read at all: then
    whether the tier is right is a coin toss, which x_routing.confidence (scaled by it) says."""
    z, form, dense, unfamiliar = model.margin(ask)
    own, own_form = z, form
    if earlier:
        before = max((model.margin(a)[:2] for a in earlier[-2:]), key=lambda m: m[0])
        z = model.follow(own, [before[0]])
        if z > own:   # pulled up: routed as an ask of the form it follows up on
            form = before[1]
    score = model.calibrate(z)
    lean = model.lean(unfamiliar)
    if lean and score < LEANED_SCORE:
        score += lean * (LEANED_SCORE - score)
    if len(ask) < 40 and (_SMALL_TALK if earlier else _TRIVIAL).match(ask):
        score = 0.0
    signals = {"margin": round(z, 4), "ask_chars": len(ask), "form": form,
               **{k: round(v, 3) for k, v in dense.items() if k != "bias" and v}}
    if unfamiliar:
        signals["unfamiliar"] = round(unfamiliar, 3)
    if lean:
        signals["leaned"] = round(lean, 3)
    if earlier:
        signals.update(earlier_asks=len(earlier), own_margin=round(own, 4))
        if form != own_form:
            signals["own_form"] = own_form
    return round(score, 4), round(1.0 - lean / 2, 3), signals


class LearnedScorer:
    def __init__(self, options: dict | None = None):
        options = options or {}
        check_options(options, OPTIONS, "scorer 'learned'")
        self.model = read_model(Path(options.get("model") or DEFAULT_MODEL).expanduser().resolve())
        # SHA-256 of the data the model was trained on: `costr eval` warns that figures on
        # that very data are in-sample.
        self.trained_on = frozenset(self.model.meta.get("data_sha256") or ())

    def score(self, request: ChatRequest) -> Complexity:
        ask = user_ask(request, limit=8_000)
        earlier = earlier_asks(request.messages) if len(request.messages) > 1 else []
        score, familiar, signals = score_asks(self.model, ask, earlier)
        # Confident where the prompt sits far from the middle of the training distribution.
        return Complexity(score, round(0.5 + abs(score - 0.5), 3), signals, familiar)
