"""The learned scorer: a linear model trained on how real models did on real prompts."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from costr.conversation import ChatRequest
from costr.scoring import Complexity, user_ask

from .model import LinearModel

DEFAULT_MODEL = Path(__file__).with_name("default_model.json.gz")

# Greetings and acknowledgements are absent from benchmark data, so the model has no view on
# them; they never need a strong model.
_TRIVIAL = re.compile(
    r"^\s*(hi|hello|hey|thanks|thank you|ok|okay|yes|no|ping|what time is it\??)\s*[.!?]*\s*$", re.I)


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> LinearModel:
    return LinearModel.load(path)   # once per file version, however often the config reloads


class LearnedScorer:
    def __init__(self, options: dict | None = None):
        path = (options or {}).get("model") or DEFAULT_MODEL
        path = Path(path).expanduser().resolve()
        self.model = _load(str(path), path.stat().st_mtime_ns)

    def score(self, request: ChatRequest) -> Complexity:
        ask = user_ask(request, limit=8_000)
        turns = sum(m.role == "user" for m in request.messages)
        z, dense = self.model.margin(ask, turns)
        score = self.model.calibrate(z)
        if len(ask) < 40 and _TRIVIAL.match(ask):
            score = min(score, 0.05)
        signals = {"margin": round(z, 4), "ask_chars": len(ask), "turns": turns,
                   **{k: round(v, 3) for k, v in dense.items() if k != "bias" and v}}
        # Confident where the prompt sits far from the middle of the training distribution.
        return Complexity(round(score, 4), round(0.5 + abs(score - 0.5), 3), signals)
