"""The learned scorer: a plugin like any other, a shipped default model, and `costr train-scorer`
producing a model file the gateway then uses."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from costr.cli import main
from costr.config import load_config
from costr.conversation import ChatRequest, Message, Text, Tool
from costr.live_config import LiveConfig
from costr.plugins import collect, make_plugin_manager
from costr.routing import route_request
from costr_learned_scorer.scorer import DEFAULT_MODEL, LearnedScorer
from costr_learned_scorer.training import apgr, read_examples, train

REPO = Path(__file__).resolve().parents[1]

PROMPTS = ["hi", "What is the capital of France?",
           "A train leaves at 3pm going 60 mph; another leaves at 4pm going 80 mph. When does the "
           "second catch up?\nA. 6pm\nB. 7pm\nC. 8pm\nD. 9pm\nAnswer:",
           "Design a distributed rate limiter and prove its invariants hold under concurrency. " * 30,
           "x " * 60_000]


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[Message("user", [Text(text)])], **kw)


@pytest.fixture(scope="module")
def registry():
    return collect(make_plugin_manager())


def test_registered_like_any_plugin_with_a_shipped_model(registry):
    assert registry.origins[("scorer", "learned")] == "learned_scorer"
    assert DEFAULT_MODEL.exists() and DEFAULT_MODEL.stat().st_size < 3_000_000
    scorer = registry.scorers["learned"]({})
    for text in PROMPTS:
        result = scorer.score(ask(text))
        assert 0 <= result.score <= 1 and 0.5 <= result.confidence <= 1
        assert isinstance(result.signals, dict) and "margin" in result.signals


def test_scores_are_deterministic_across_instances(registry):
    first = [registry.scorers["learned"]({}).score(ask(t)) for t in PROMPTS]
    again = [LearnedScorer({"model": str(DEFAULT_MODEL)}).score(ask(t)) for t in PROMPTS]
    assert first == again


def test_score_ignores_boilerplate_system_prompt_and_tools(registry):
    scorer = registry.scorers["learned"]({})
    system = [Text("You are a meticulous agent. Prove, derive, design and debug step by step. " * 200)]
    tools = [Tool(name=f"tool_{i}", description="Refactor code; analyze complexity.",
                  parameters={"type": "object", "properties": {"code": {"type": "string"}}})
             for i in range(20)]
    for text in PROMPTS[:4]:
        wrapped = ask(text, system=system, tools=tools)
        assert scorer.score(wrapped) == scorer.score(ask(text))
    assert scorer.score(ask("hi")).score <= 0.05


def synthetic_records(n: int, seed: int) -> list[dict]:
    """Two obviously different kinds of prompt: integrals only the strong model gets right,
    greetings both models get right."""
    rng = random.Random(seed)
    names = ["Ana", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal"]
    records = []
    for i in range(n):
        if i % 2:
            text = (f"Evaluate the integral of x^{rng.randint(2, 9)} * sin({rng.randint(2, 9)}x) "
                    f"dx from 0 to {rng.randint(1, 5)} and justify each step.")
            scores = {"weak": 0.0, "strong": 1.0}
        else:
            text = f"Write a one-line birthday greeting for {rng.choice(names)}."
            scores = {"weak": 1.0, "strong": 1.0}
        records.append({"id": f"s-{seed}-{i}", "dataset": "synthetic",
                        "messages": [{"role": "user", "content": text}], "scores": scores})
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_training_separates_two_obviously_different_kinds_of_prompt(tmp_path):
    model = train(read_examples(write_jsonl(tmp_path / "train.jsonl", synthetic_records(200, 1))))
    held = read_examples(write_jsonl(tmp_path / "test.jsonl", synthetic_records(60, 2)))
    scores = [model.calibrate(model.margin(e.ask)[0]) for e in held]
    assert apgr(scores, [e.weak for e in held], [e.strong for e in held]) > 0.7
    hard = [s for s, e in zip(scores, held) if e.strong > e.weak]
    easy = [s for s, e in zip(scores, held) if e.strong == e.weak]
    assert min(hard) > max(easy)


POOL = """\
tiers: [budget, standard, premium]
baseline: premium-a
routing: {{scorer: learned, scorer_options: {{model: "{model}"}}, default_policy: balanced}}
providers:
  main: {{type: openai, base_url: "http://127.0.0.1:9/v1"}}
models:
  - {{id: budget-a, provider: main, tier: budget, price: {{input: 0.1, output: 0.4}}, context_window: 16000}}
  - {{id: standard-a, provider: main, tier: standard, price: {{input: 1.0, output: 4.0}}, context_window: 16000}}
  - {{id: premium-a, provider: main, tier: premium, price: {{input: 3.0, output: 15.0}}, context_window: 16000}}
"""


def test_cli_writes_a_model_the_gateway_then_uses(tmp_path, registry, capsys):
    data = write_jsonl(tmp_path / "labelled.jsonl", synthetic_records(200, 3))
    out = tmp_path / "my_model.json.gz"
    assert main(["train-scorer", str(data), "--out", str(out), "--folds", "2"]) == 0
    printed = capsys.readouterr().out
    assert out.exists() and "APGR" in printed and "synthetic" in printed
    providers = tmp_path / "providers.yaml"
    providers.write_text(POOL.format(model=out))
    live = LiveConfig.build(load_config(providers, REPO / "routing_policies", registry, environ={}),
                            registry, http=None)
    assert live.scorer.model.meta["records"] == 200   # the operator's model, not the default
    hard = route_request(live, ask("Evaluate the integral of x^4 * sin(3x) dx from 0 to 2 and "
                                   "justify each step."), None)
    easy = route_request(live, ask("Write a one-line birthday greeting for Ana."), None)
    assert hard.complexity.score > easy.complexity.score
    assert hard.tier == "premium" and easy.tier != "premium"
