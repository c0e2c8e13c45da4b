"""The learned scorer: a plugin like any other, a shipped default model, and `costr train-scorer`
producing a model file the gateway then uses."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from costr.cli.main import main
from costr.config.files import load_config
from costr.wire.conversation import ChatRequest, Message, Text, Tool
from costr.routing.live import LiveConfig
from costr.plugins import collect, make_plugin_manager
from costr.routing.route import route_request
from costr_learned_scorer.features import featurize
from costr_learned_scorer.model import LinearModel
from costr_learned_scorer.scorer import DEFAULT_MODEL, LearnedScorer
from costr_learned_scorer.training import apgr, cross_validate, read_examples, train

REPO = Path(__file__).resolve().parents[1]

PROMPTS = ["hi", "What is the capital of France?",
           "A train leaves at 3pm going 60 mph; another leaves at 4pm going 80 mph. When does the "
           "second catch up?\nA. 6pm\nB. 7pm\nC. 8pm\nD. 9pm\nAnswer:",
           "Design a distributed rate limiter and prove its invariants hold under concurrency. " * 30,
           "x " * 60_000]


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=[Message("user", [Text(text)])], **kw)


def conversation(*turns: str) -> ChatRequest:
    """User turns, each but the first after an assistant answer."""
    messages = []
    for i, text in enumerate(turns):
        if i:
            messages.append(Message("assistant", [Text("Here is my answer. " * 40)]))
        messages.append(Message("user", [Text(text)]))
    return ChatRequest(messages=messages)


PROOF = "Prove that there are infinitely many prime numbers."
HAIKU = "Write a haiku about autumn."


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


def test_maths_and_proofs_outrank_writing_and_greetings_score_low(registry):
    scorer = registry.scorers["learned"]({})
    score = lambda text: scorer.score(ask(text)).score   # noqa: E731
    hard = [PROOF, "Implement a program to find the common elements in two arrays without using "
                   "any extra data structures.",
            "Solve the equation 3x^2 - 12x + 9 = 0 and derive the vertex of the parabola."]
    easy = [HAIKU, "Compose an engaging travel blog post about a recent trip to Hawaii.",
            "Write a short poem about the sea."]
    assert min(map(score, hard)) > max(map(score, easy))
    for text in ("hi", "Hello!", "thanks", "thank you", "ok"):
        assert score(text) <= 0.05


# MT-Bench-style traffic (written for this test, not taken from MT-Bench), single- and two-turn:
# on MT-Bench a budget model's answers match a premium one's in writing, role-play, humanities
# and extraction, and fall short in maths, reasoning, coding and STEM.
EASY_TRAFFIC = {
    "writing": [
        ("Write a cheerful invitation to a neighbourhood picnic in the park this Saturday.",),
        ("Draft a short thank-you note to a colleague who covered my shift last week.",
         "Make it more formal."),
        ("Write a persuasive paragraph encouraging people to adopt shelter cats.",),
    ],
    "roleplay": [
        ("Pretend you are a pirate captain greeting new recruits on your ship. Stay in character.",),
        ("Act as a friendly barista and take my coffee order.", "Now suggest a pastry to go with it."),
        ("Imagine you are a tour guide in ancient Rome. Describe the Colosseum to your group.",),
    ],
    "humanities": [
        ("What were the main causes of the French Revolution? Answer in a few sentences.",),
        ("Describe the role of the Silk Road in cultural exchange between East and West.",
         "Make it shorter, for a school newsletter."),
        ("Summarise the main themes of Romantic poetry for a general reader.",),
    ],
    "extraction": [
        ("List the names of all people mentioned in this text: 'Maria met Tom at the station, and "
         "later they called Priya.'",),
        ("From the following review, extract the product name and the star rating: 'The "
         "AcmeBlend 300 is great, 4 out of 5 stars.'", "Now return the same as JSON."),
        ("Pull out every date from this sentence: 'The meeting moved from March 3 to April 10, "
         "then to May 2.'",),
    ],
}
HARD_TRAFFIC = {
    "math": [
        ("Find all real solutions of x^4 - 5x^2 + 4 = 0 and show your working.",),
        ("Compute the sum of the first n odd numbers and prove the formula by induction.",
         "Now do it for n = 10."),
        ("What is the probability of rolling at least one six in four rolls of a fair die? "
         "Calculate it exactly.",),
    ],
    "reasoning": [
        ("Three boxes are labelled apples, oranges and mixed, and every label is wrong. You may "
         "take one fruit from one box. Explain step by step how to relabel all boxes correctly.",),
        ("If all bloops are razzies and some razzies are lazzies, does it follow that some bloops "
         "are lazzies? Explain why.", "Now give a counterexample."),
        ("A bat and a ball cost $1.10 in total; the bat costs $1.00 more than the ball. How much "
         "does the ball cost? Analyze the common mistake.",),
    ],
    "coding": [
        ("Implement a function in Python that returns the longest palindromic substring of a "
         "string in O(n^2) time.",),
        ("Write a SQL query that finds the second highest salary in an employees table, handling "
         "ties.", "Now make it work when there is no second salary."),
        ("Debug this code and explain the bug:\n```python\ndef mean(xs):\n    return sum(xs) / "
         "len(xs) - 1\n```",),
    ],
    "stem": [
        ("Derive the escape velocity from the surface of a planet of mass M and radius R.",),
        ("Explain how the Diffie-Hellman key exchange works and why it is secure against "
         "eavesdroppers.", "Now analyze its weakness against a man-in-the-middle attack."),
        ("Calculate the pH of a 0.01 M solution of acetic acid, given Ka = 1.8 x 10^-5.",),
    ],
}


def test_mt_bench_style_traffic_ranks_maths_code_and_reasoning_above_writing(registry):
    scorer = registry.scorers["learned"]({})
    score = lambda turns: scorer.score(conversation(*turns)).score   # noqa: E731
    easy = [score(turns) for group in EASY_TRAFFIC.values() for turns in group]
    hard = [score(turns) for group in HARD_TRAFFIC.values() for turns in group]
    assert len(easy) == len(hard) == 12
    assert any(len(t) == 2 for g in EASY_TRAFFIC.values() for t in g)
    ranked = sum(h > e for h in hard for e in easy) / (len(hard) * len(easy))
    assert ranked >= 0.8, f"only {ranked:.0%} of (hard, easy) pairs ranked hard first"
    assert score(("thanks",)) < min(easy + hard)


def test_a_follow_up_scores_like_what_it_follows_up_on(registry):
    scorer = registry.scorers["learned"]({})
    proof = scorer.score(ask(PROOF))
    follow = scorer.score(conversation(PROOF, "Now make it shorter."))
    alone = scorer.score(ask("Now make it shorter."))
    haiku_follow = scorer.score(conversation(HAIKU, "Now make it shorter."))
    assert abs(follow.score - proof.score) <= 0.1
    assert follow.score > alone.score and follow.score > haiku_follow.score
    assert follow.signals["earlier_asks"] == 1
    # an earlier easy turn never drags a hard ask down, and thanks stay trivial
    assert scorer.score(conversation("hi", PROOF)).score == proof.score
    assert scorer.score(conversation(PROOF, "thanks!")).score <= 0.05
    # only the last two earlier asks count
    long = conversation(PROOF, HAIKU, "Write a limerick.", "Now make it shorter.")
    assert long.messages and scorer.score(long).signals["earlier_asks"] == 2


def test_the_scoring_path_equals_the_training_path():
    model = LinearModel.load(DEFAULT_MODEL)
    for text in PROMPTS + [PROOF, HAIKU, "Statement 1 | x\nA. True\nB. False\nAnswer:"]:
        z, form, dense, unfamiliar = model.margin(text)
        assert z == pytest.approx(model.combine(featurize(text)), abs=1e-9)
        assert form == featurize(text)[0] and form in ("choice", "problem", "request", "open")
        assert 0 <= unfamiliar <= 1


def test_old_model_files_are_refused(tmp_path):
    import gzip
    old = tmp_path / "old.json.gz"
    with gzip.open(old, "wt") as f:
        json.dump({"format": "costr-learned-scorer/1", "dense": {}, "sparse": [], "quantiles": [],
                   "blend": {}}, f)
    with pytest.raises(ValueError, match="retrain"):
        LinearModel.load(old)


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


def feedback(i: int, score: float, tier: str, text: str = "Summarise this memo.") -> dict:
    return {"id": f"f{i}", "dataset": "feedback", "messages": [{"role": "user", "content": text}],
            "scores": {"budget-a": score}, "tier": tier}


def test_feedback_records_teach_whether_the_budget_model_sufficed(tmp_path, capsys):
    records = [feedback(0, 1.0, "budget"), feedback(1, 0.75, "budget"),      # weak suffices
               feedback(2, 0.0, "budget"), feedback(3, 0.25, "budget"),      # needed strong
               feedback(4, 0.5, "budget"), feedback(5, 1.0, "premium"),      # say nothing
               feedback(6, 0.0, "standard")]
    examples = read_examples(write_jsonl(tmp_path / "fb.jsonl", records))
    assert {e.id: (e.weak, e.strong) for e in examples} == {
        "f0": (1.0, 1.0), "f1": (1.0, 1.0), "f2": (0.0, 1.0), "f3": (0.0, 1.0)}
    assert all(e.target() == e.strong - e.weak for e in examples)
    assert "skipped 3 single-score record(s)" in capsys.readouterr().out
    # mixed with two-model records, each kind keeps its own reading
    mixed = read_examples(write_jsonl(tmp_path / "mixed.jsonl",
                                      records + synthetic_records(20, 4)))
    assert len(mixed) == 24 and {e.dataset for e in mixed} == {"feedback", "synthetic"}


def test_training_learns_from_feedback_alone(tmp_path):
    hard = "Prove the lemma about {} rigorously and derive the bound."
    easy = "Say hello to {} in one line."
    names = ["Ana", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ida", "Jo"]
    records = [feedback(i, 0.0, "budget", hard.format(names[i % 10])) if i % 2 else
               feedback(i, 1.0, "budget", easy.format(names[i % 10])) for i in range(80)]
    model = train(read_examples(write_jsonl(tmp_path / "fb.jsonl", records)))
    assert model.margin(hard.format("Kim"))[0] > model.margin(easy.format("Kim"))[0]


def test_multi_model_datasets_default_to_the_cheapest_model_as_weak(tmp_path):
    records = [{"id": f"m{i}", "dataset": "many", "messages": [{"role": "user", "content": f"q{i}"}],
                "scores": {"gemma-2-9b-it": float(i % 2), "qwen2.5-7b-instruct": 1.0,
                           "llama-3.1-nemotron-51b-instruct": 1.0}} for i in range(10)]
    path = write_jsonl(tmp_path / "many.jsonl", records)
    examples = read_examples(path)   # the cheapest by `costr eval`'s prices, as it picks them
    assert [e.weak for e in examples] == [float(i % 2) for i in range(10)]
    unpriced = read_examples(path, prices={})   # no prices: the mean of all models
    assert [e.weak for e in unpriced] == [(float(i % 2) + 2) / 3 for i in range(10)]
    named = read_examples(path, weak={"many": "qwen2.5-7b-instruct"})
    assert all(e.weak == 1.0 for e in named)


def test_cross_validation_reports_k_fold_and_leave_one_dataset_out(tmp_path):
    records = synthetic_records(120, 5)
    for r in synthetic_records(120, 6):
        r["dataset"] = "other"
        records.append(r)
    report = cross_validate(read_examples(write_jsonl(tmp_path / "two.jsonl", records)), folds=2)
    assert set(report) == {"k-fold", "other datasets", "scores"}
    for kind in (report["k-fold"], report["other datasets"]):
        assert set(kind) == {"synthetic", "other"} and all(v > 0.7 for v in kind.values())
    assert len(report["scores"]) == len(records) and all(0 <= s <= 1 for s in report["scores"].values())


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


def test_figures_on_the_training_data_need_the_held_out_scores(tmp_path, capsys):
    """A model scores its own training prompts far too well: eval warns, calibrate refuses,
    and both take the held-out scores train-scorer writes instead."""
    data = write_jsonl(tmp_path / "labelled.jsonl", synthetic_records(200, 4))
    out, oof = tmp_path / "model.json.gz", tmp_path / "oof.jsonl"
    assert main(["train-scorer", str(data), "--out", str(out), "--folds", "2",
                 "--oof-scores", str(oof)]) == 0
    held_out = [json.loads(line) for line in oof.read_text().splitlines()]
    assert sorted(s["id"] for s in held_out) == sorted(r["id"] for r in synthetic_records(200, 4))
    providers = tmp_path / "providers.yaml"
    providers.write_text(POOL.format(model=out))
    (tmp_path / "prices.yaml").write_text("models:\n  weak: {input: 1, output: 1}\n"
                                          "  strong: {input: 10, output: 30}\n")
    common = ["--providers", str(providers), "--policies", str(REPO / "routing_policies"),
              "--prices", str(tmp_path / "prices.yaml")]
    capsys.readouterr()

    assert main(["eval", str(data), "--bootstrap", "0", *common]) == 0
    assert "WARNING: the learned scorer was trained on" in capsys.readouterr().out
    assert main(["eval", str(data), "--bootstrap", "0", "--scores", str(oof), *common]) == 0
    printed = capsys.readouterr().out
    assert "WARNING" not in printed and f"held-out scores from {oof}" in printed

    assert main(["calibrate", str(data), *common]) == 2
    assert "--scores" in capsys.readouterr().err
    assert main(["calibrate", str(data), "--scores", str(oof), "--splits", "0", *common]) == 0

    oof.write_text(oof.read_text().splitlines()[0] + "\n")   # one record's score only
    assert main(["eval", str(data), "--scores", str(oof), *common]) == 2
    assert "no score for record" in capsys.readouterr().err


@pytest.mark.parametrize("line, says", [
    ("not json", "costr: {path}: line 2: not valid JSON"),
    ('{"messages": "x", "scores": {"a": 1}}', "costr: {path}: line 2: 'messages' must be"),
    ('{"messages": [{"role": "user", "content": "hi"}], "scores": {"a": 2}}',
     "costr: {path}: line 2: 'scores' must map"),
])
def test_a_bad_record_is_named_by_its_line(tmp_path, capsys, line, says):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(synthetic_records(1, 0)[0]) + "\n" + line + "\n")
    assert main(["train-scorer", str(path), "--out", str(tmp_path / "m.json.gz")]) == 2
    assert capsys.readouterr().err.startswith(says.format(path=path))
