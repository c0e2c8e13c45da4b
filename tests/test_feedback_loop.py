"""Learning from the operator's own traffic, end to end: rated requests -> `costr feedback
export` -> `costr train-scorer` -> `costr calibrate --write` -> reload, and `costr eval` on a
held-out slice says whether it improved. And how eval and calibrate read rated answers (one
score a record) beside two-model records, and say what they skipped.

The traffic is synthetic with a known answer: asks about the operator's own product (the Orvo
smart-home hub) that the budget model answers badly, rated 1, and everyday asks it answers well,
rated 5, in wording varied alike, so that nothing but the subject tells them apart and the
shipped scorer, which has never heard of an Orvo hub, cannot."""
from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import time
from pathlib import Path
from zlib import crc32

import httpx
import orjson
import pytest

from costr.cli.main import main
from costr.evaluation.report import offline_live_config
from costr.routing.route import route_request
from costr.testing import AUTH, running_gateway

from conftest import LOCAL_POOL, write_config

SERVED = LOCAL_POOL + """\
feedback: {{keep_prompts: true}}
cache: {{enabled: false}}   # each probe is routed afresh, before and after
"""
HARD_SUBJECTS = ["pairing my Orvo hub", "resetting the Orvo bridge", "Orvo scene timers",
                 "Orvo zone groups", "the Orvo app's away mode", "linking Orvo to my thermostat",
                 "an Orvo sensor that keeps going offline", "Orvo hub firmware updates"]
EASY_SUBJECTS = ["choosing a bike helmet", "cleaning running shoes", "picking a yoga mat",
                 "packing a gym bag", "stretching after a run", "a beginner walking routine",
                 "staying hydrated on a hike", "storing a tennis racket"]
OPENERS = ["", "Hi,", "Hello,", "Hey,", "Quick one:", "Thanks! Next:", "Morning!", "Sorry,"]
FRAMES = ["{}?", "what about {}?", "any advice on {}?", "how do I handle {}?", "quick tip for {}?",
          "help with {} please", "I'm stuck on {}", "what's the trick with {}?"]
# New asks of the hard kind, worded as no request was.
PROBES = ["Good evening. My Orvo hub stopped pairing after the firmware update, what now?",
          "Hey, my Orvo bridge lost its zone groups overnight, any idea?",
          "Why would my Orvo scene timers skip a day?"]
REQUESTS = 360   # a third of them hard


def asks(subjects: list[str], n: int, rng: random.Random) -> list[str]:
    """`n` different asks about the subjects, in varied wording."""
    every = [f"{opener} {frame.format(subject)}".strip()
             for opener, frame, subject in itertools.product(OPENERS, FRAMES, subjects)]
    return rng.sample(every, n)


def traffic(seed: int = 7) -> list[tuple[str, int]]:
    """(ask, the rating its budget answer earns), shuffled."""
    rng = random.Random(seed)
    hard = [(text, 1) for text in asks(HARD_SUBJECTS, REQUESTS // 3, rng)]
    easy = [(text, 5) for text in asks(EASY_SUBJECTS, REQUESTS - REQUESTS // 3, rng)]
    mixed = hard + easy
    rng.shuffle(mixed)
    return mixed


def chat(http: httpx.Client, text: str) -> tuple[str, dict]:
    """(request id, x_routing) of an answered auto-routed request."""
    answer = http.post("/v1/chat/completions",
                       json={"model": "auto", "messages": [{"role": "user", "content": text}]})
    assert answer.status_code == 200, answer.text
    return answer.headers["x-request-id"], answer.json()["x_routing"]


def costr(capsys, *args: str) -> str:
    """Run a `costr` command in-process; its standard output (it must succeed)."""
    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert status == 0, f"costr {' '.join(map(str, args))} exited {status}:\n{out}\n{err}"
    return out


def offline(providers: Path, policies: Path, text: str) -> tuple[str, float]:
    """(tier, score) the files on disk give an ask under the default policy, as dry-run would."""
    live, formats = offline_live_config(str(providers), str(policies))
    body = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    fmt = next(f for f in formats if f.recognises(body, {}))
    route = route_request(live, fmt.decode_request(orjson.dumps(body), {}), None)
    return route.tier, route.complexity.score


def dry_run(http: httpx.Client, text: str) -> tuple[str, float]:
    found = http.post("/v1/router/dry-run", json={
        "model": "auto", "messages": [{"role": "user", "content": text}]}).json()
    return found["x_routing"]["tier"], found["complexity"]["score"]


def wait_until(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the gateway did not reload the new configuration"
        time.sleep(0.05)


def apgr(capsys, data: Path, config: tuple[Path, Path]) -> float:
    report = json.loads(costr(capsys, "eval", data, "--providers", config[0], "--policies",
                              config[1], "--json", "--bootstrap", "0"))
    [feedback] = [d for d in report["datasets"] if d["dataset"] == "feedback"]
    return feedback["apgr"]["value"]


def test_the_operators_ratings_retrain_recalibrate_and_improve_routing(tmp_path, fake_upstream,
                                                                      capsys):
    (tmp_path / "live").mkdir()
    providers, policies = write_config(tmp_path / "live", SERVED.format(url=fake_upstream.url))
    shipped = tmp_path / "shipped"   # the configuration as it was, to measure "before" with
    shutil.copytree(tmp_path / "live", shipped)
    data, work = tmp_path / "data", tmp_path / "work"
    work.mkdir()
    tiers = ["budget", "standard", "premium"]

    with running_gateway(providers, policies, data_dir=str(data), watch_seconds=0.1) as base, \
            httpx.Client(base_url=base, headers=AUTH, timeout=20) as http:
        # 1. Traffic, rated by what the operator's users thought of the answers.
        for text, rating in traffic():
            request_id, _ = chat(http, text)
            rated = http.post("/v1/router/feedback", json={"request_id": request_id,
                                                           "rating": rating})
            assert rated.status_code == 200
        before = {text: chat(http, text)[1]["tier"] for text in PROBES}
        cheap = [text for text in PROBES if before[text] == "budget"]
        assert len(cheap) >= 2, before   # where the shipped scorer sends such asks

        # 2. Export (the endpoint call writes the kept prompts still queued), split by id.
        assert http.get("/v1/router/feedback/export").status_code == 200
        exported = work / "feedback.jsonl"
        costr(capsys, "feedback", "export", "--data-dir", data, "--out", exported)
        records = [json.loads(line) for line in exported.read_text().splitlines()]
        assert len(records) == REQUESTS   # the probes were not rated
        held = {r["id"] for r in records if crc32(r["id"].encode()) % 3 == 0}
        train, held_out = work / "train.jsonl", work / "held-out.jsonl"
        for path, keep in ((train, False), (held_out, True)):
            path.write_text("".join(json.dumps(r) + "\n" for r in records
                                    if (r["id"] in held) == keep))

        # 3. Train on the training slice, with held-out scores for calibrating on it.
        model, oof = work / "scorer_model.json.gz", work / "oof.jsonl"
        out = costr(capsys, "train-scorer", train, "--out", model, "--folds", "2",
                    "--oof-scores", oof)
        assert "in 1 dataset(s): feedback" in out

        # 4. Point the gateway at the model (written whole, as editors save, so the watcher
        # never reads half a file), then calibrate the policies and confidence for it.
        staged = providers.with_name("providers.yaml.partial")
        staged.write_text(providers.read_text() + f"routing:\n  scorer: learned\n"
                          f"  scorer_options: {{model: {model}}}\n")
        os.replace(staged, providers)
        out = costr(capsys, "calibrate", train, "--scores", oof, "--write", "--splits", "0",
                    "--providers", providers, "--policies", policies)
        assert f"wrote {providers}" in out and f"wrote {policies / 'balanced.yaml'}" in out

        # 5. The gateway reloads the edited files while serving: new asks of the hard kind now
        # go above the budget tier. (Even a scorer that learned nothing would send them up, on
        # thresholds calibrated to its useless scores; step 6 is what tells the two apart.)
        # Reloaded when the gateway routes a probe as the files now on disk say it should.
        wait_until(lambda: dry_run(http, PROBES[0]) == offline(providers, policies, PROBES[0]))
        after = {text: chat(http, text)[1]["tier"] for text in PROBES}
        assert all(tiers.index(after[t]) > tiers.index(before[t]) for t in cheap), after
        assert "budget" not in after.values(), after

    # 6. On the held-out slice, the retrained scorer ranks the asks that needed the strong
    # model first; the shipped one cannot tell them apart.
    shipped_apgr = apgr(capsys, held_out, (shipped / "providers.yaml",
                                           shipped / "routing_policies"))
    retrained_apgr = apgr(capsys, held_out, (providers, policies))
    assert retrained_apgr > 0.75 and retrained_apgr > shipped_apgr + 0.15, (
        shipped_apgr, retrained_apgr)


# -- rated answers in costr eval and costr calibrate ---------------------------------------------

OFFLINE_POOL = LOCAL_POOL.format(url="http://127.0.0.1:9") + "routing:\n  scorer: heuristic\n"
SECOND_BUDGET_MODEL = """\
  - {id: local-nano, provider: local, tier: budget, price: {input: 0.05, output: 0.2},
     context_window: 128000}
"""
HARD_ASK = "Prove rigorously that the algorithm is correct and derive its complexity, step by step."


def rated(i: int, rating: int, tier: str = "budget", model: str = "local-mini",
          text: str | None = None) -> dict:
    """A record as `costr feedback export` writes it."""
    text = text or (HARD_ASK if rating <= 2 else f"Say hello to friend number {i}.")
    return {"id": f"req_{i}", "dataset": "feedback",
            "messages": [{"role": "user", "content": text}], "scores": {model: (rating - 1) / 4},
            "tier": tier, "policy": "balanced", "complexity": 0.2, "rating": rating, "ts": 1.0}


def two_model(i: int) -> dict:
    hard = i % 2 == 0
    return {"id": f"bench_{i}", "dataset": "bench",
            "messages": [{"role": "user", "content": HARD_ASK if hard else "hi"}],
            "scores": {"mixtral-8x7b-instruct": 0.0 if hard else 1.0, "gpt-4-turbo": 1.0}}


@pytest.fixture
def offline_config(tmp_path):
    def write(extra_models: str = "") -> list[str]:
        text = OFFLINE_POOL.replace("models:\n", "models:\n" + extra_models)
        providers, policies = write_config(tmp_path, text)
        return ["--providers", str(providers), "--policies", str(policies)]
    return write


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_eval_reads_rated_answers_beside_two_model_records(tmp_path, offline_config, capsys):
    records = ([rated(i, 1 if i % 3 == 0 else 5) for i in range(12)]
               + [rated(20, 5, tier="standard"), rated(21, 3), rated(22, 1, tier="premium")]
               + [two_model(i) for i in range(6)])
    data = write_jsonl(tmp_path / "mixed.jsonl", records)
    assert main(["eval", str(data), *offline_config(), "--json", "--bootstrap", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    feedback, bench = report["datasets"]
    # the rated pair: the budget model that answered against the baseline, priced from
    # providers.yaml; the benchmark's pair from the prices table, as ever
    assert (feedback["dataset"], feedback["prompts"]) == ("feedback", 12)
    assert (feedback["weak_model"], feedback["strong_model"]) == ("local-mini", "local-large")
    assert feedback["weak_quality"] == pytest.approx(8 / 12) and feedback["strong_quality"] == 1
    assert feedback["apgr"]["value"] > 0.8   # the heuristic knows a proof from a greeting
    assert (bench["weak_model"], bench["strong_model"]) == ("mixtral-8x7b-instruct", "gpt-4-turbo")
    assert report["skipped"] == (
        "skipped 3 single-score record(s) (1 answered by the standard tier, 1 rated between "
        "0.25 and 0.75, 1 answered by the premium tier): only a budget-tier answer rated <= "
        "0.25 or >= 0.75 says whether the weak model sufficed")
    assert main(["eval", str(data), *offline_config(), "--bootstrap", "0"]) == 0
    assert "skipped 3 single-score record(s)" in capsys.readouterr().out


def test_rated_answers_of_two_budget_models_are_compared_one_model_at_a_time(
        tmp_path, offline_config, capsys):
    records = ([rated(i, 1 if i % 2 else 5) for i in range(8)]
               + [rated(10 + i, 1 if i % 2 else 5, model="local-nano") for i in range(8)])
    data = write_jsonl(tmp_path / "two.jsonl", records)
    assert main(["eval", str(data), *offline_config(SECOND_BUDGET_MODEL), "--json",
                 "--bootstrap", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(d["dataset"], d["weak_model"], d["strong_model"]) for d in report["datasets"]] == [
        ("feedback/local-mini", "local-mini", "local-large"),
        ("feedback/local-nano", "local-nano", "local-large")]


def test_every_rated_answer_good_means_nothing_to_route(tmp_path, offline_config, capsys):
    data = write_jsonl(tmp_path / "good.jsonl", [rated(i, 5) for i in range(6)])
    assert main(["eval", str(data), *offline_config(), "--json", "--bootstrap", "0"]) == 0
    [feedback] = json.loads(capsys.readouterr().out)["datasets"]
    assert feedback["apgr"]["value"] is None   # no gap to recover
    assert feedback["policies"]["balanced"]["quality_kept"]["value"] == 1.0


@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_a_file_with_nothing_usable_says_so(tmp_path, offline_config, capsys, command):
    data = write_jsonl(tmp_path / "none.jsonl", [rated(0, 3), rated(1, 1, tier="standard")])
    assert main([command, str(data), *offline_config()]) == 2
    err = capsys.readouterr().err
    assert (f"costr {command}: {data}: no usable records; skipped 2 single-score record(s) "
            "(1 rated between 0.25 and 0.75, 1 answered by the standard tier)") in err
    assert "Traceback" not in err


def test_calibrate_sets_thresholds_from_rated_answers(tmp_path, offline_config, capsys):
    # Proofs rated 1 and greetings rated 5: the budget tier must end below the proofs.
    records = [rated(i, 1 if i % 4 == 0 else 5) for i in range(80)] + [rated(99, 3)]
    data = write_jsonl(tmp_path / "rated.jsonl", records)
    args = offline_config()
    assert main(["calibrate", str(data), *args, "--splits", "0", "--write"]) == 0
    out = capsys.readouterr().out
    assert "costr calibrate: " in out and "feedback" in out
    assert "skipped 1 single-score record(s) (1 rated between 0.25 and 0.75)" in out
    assert main(["eval", str(data), *args, "--json", "--bootstrap", "0"]) == 0
    point = json.loads(capsys.readouterr().out)["datasets"][0]["policies"]["balanced"]
    assert point["quality_kept"]["value"] >= 0.95 and point["savings"]["value"] > 0.5
