"""`costr eval`: the routing metrics on hand-made data, and the command on a small JSONL."""
from __future__ import annotations

import json
import xml.dom.minidom

import pytest

from costr.cli.main import main
from costr.evaluation.metrics import (Prompt, apgr, at_quality, build_curve, cpt, evaluate,
                              percentile_interval, policy_point, sort_prompts)


def gainers(top: bool, n: int = 100, gaining: int = 10) -> list[Prompt]:
    """`gaining` prompts only the strong model gets right, scored highest (or lowest); of the
    rest half both models get right and half neither. Weak calls cost 1, strong calls 10."""
    out = []
    for i in range(n):
        gains = i < gaining
        score = (n - i) / n if top else i / n
        both = not gains and i % 2 == 0
        out.append(Prompt(score, 1.0 if both else 0.0, 1.0 if gains or both else 0.0, 1.0, 10.0))
    return out


def curve_of(prompts):
    return build_curve(sort_prompts(prompts))


def test_a_perfect_router_recovers_the_gap_first():
    curve = curve_of(gainers(top=True))
    # PGR climbs linearly to 1 over the first 10% and stays there: area 1 - 0.1 / 2.
    assert apgr(curve) == pytest.approx(0.95)
    assert cpt(curve, 0.5) == pytest.approx(0.05)
    assert cpt(curve, 0.8) == pytest.approx(0.08)


def test_a_reversed_router_recovers_the_gap_last():
    curve = curve_of(gainers(top=False))
    assert apgr(curve) == pytest.approx(0.05)
    assert cpt(curve, 0.5) == pytest.approx(0.95)
    assert cpt(curve, 0.8) == pytest.approx(0.98)


def test_a_router_that_scores_everything_alike_is_random_routing():
    prompts = [Prompt(0.5, p.weak, p.strong, 1.0, 10.0) for p in gainers(top=True)]
    curve = curve_of(prompts)
    assert curve.x == [0.0, 1.0]  # one tied group: a straight line
    assert apgr(curve) == pytest.approx(0.5)
    assert cpt(curve, 0.5) == pytest.approx(0.5)


def test_ties_are_averaged_whatever_order_they_come_in():
    a = [Prompt(0.9, 0, 1, 1, 10), Prompt(0.5, 0, 1, 1, 10), Prompt(0.5, 0, 0, 1, 10)]
    b = [a[0], a[2], a[1]]
    assert curve_of(a) == curve_of(b)
    # vertices (0, 0), (1/3, 0.5), (1, 1): the tied pair is one straight segment
    assert apgr(curve_of(a)) == pytest.approx(1 / 3 * 0.25 + 2 / 3 * 0.75)


def test_savings_at_95_percent_of_strong_quality():
    curve = curve_of(gainers(top=True))
    # weak 0.45, strong 0.55; 95% of 0.55 = 0.5225 needs 7.25 of the 10 gaining prompts.
    share, savings = at_quality(curve, 0.95)
    assert share == pytest.approx(0.0725)
    assert savings == pytest.approx(1 - (1 + 9 * 0.0725) / 10)


def test_when_the_weak_model_already_keeps_95_percent_nothing_goes_strong():
    prompts = [Prompt(0.1, 1, 1, 1, 10)] * 19 + [Prompt(0.9, 0, 1, 1, 10)]
    assert at_quality(curve_of(prompts), 0.95) == pytest.approx((0.0, 0.9))


def test_no_gap_means_no_pgr():
    curve = curve_of([Prompt(0.1, 1, 1, 1, 10), Prompt(0.2, 0, 0, 1, 10)])
    assert apgr(curve) is None and cpt(curve, 0.5) is None


def test_weights_are_the_same_as_repeating_prompts():
    prompts = sort_prompts(gainers(top=True, n=10, gaining=3))
    weights = [2, 0, 1, 3, 0, 1, 1, 0, 2, 0]
    repeated = [p for p, w in zip(prompts, weights) for _ in range(w)]
    assert apgr(build_curve(prompts, weights)) == pytest.approx(apgr(build_curve(repeated)))


def test_a_policy_point_counts_tiers_quality_and_cost():
    prompts = [Prompt(0.9, 0, 1, 1, 10), Prompt(0.2, 1, 1, 1, 10), Prompt(0.1, 0, 0, 1, 10)]
    point = policy_point(prompts, ["premium", "budget", "standard"], {"standard", "premium"})
    assert point["tier_share"] == pytest.approx({"premium": 1 / 3, "budget": 1 / 3, "standard": 1 / 3})
    assert point["strong_share"] == pytest.approx(2 / 3)
    assert point["quality_kept"] == pytest.approx(1.0)
    assert point["savings"] == pytest.approx(1 - 21 / 30)


def test_percentile_interval():
    assert percentile_interval([float(i) for i in range(101)]) == pytest.approx((2.5, 97.5))


def test_the_bootstrap_is_deterministic_for_a_seed():
    prompts = gainers(top=True, n=60, gaining=12)
    tiers = {"p": ["premium" if p.score > 0.5 else "budget" for p in prompts]}
    first = evaluate(prompts, tiers, {"premium"}, resamples=50, seed=7)
    again = evaluate(prompts, tiers, {"premium"}, resamples=50, seed=7)
    other = evaluate(prompts, tiers, {"premium"}, resamples=50, seed=8)
    assert first["apgr"] == again["apgr"] and first["policies"] == again["policies"]
    assert first["apgr"]["ci95"] != other["apgr"]["ci95"]
    low, high = first["apgr"]["ci95"]
    assert low <= first["apgr"]["value"] <= high


def test_bootstrapping_thousands_of_prompts_takes_seconds():
    import time
    prompts = [Prompt((i * 7919) % 1000 / 1000, i % 3 == 0, i % 2 == 0, 1, 10) for i in range(7000)]
    started = time.perf_counter()
    evaluate(prompts, {"p": ["budget"] * 7000}, {"premium"}, resamples=200, seed=0)
    assert time.perf_counter() - started < 10


# ---- the command ----

PROVIDERS = """
tiers: [budget, premium]
baseline: big
providers:
  up: {type: openai, base_url: "http://127.0.0.1:9", api_key_env: COSTR_EVAL_TEST_UNSET_KEY}
models:
  - {id: small, provider: up, tier: budget, price: {input: 0.1, output: 0.1}, context_window: 100000}
  - {id: big, provider: up, tier: premium, price: {input: 5, output: 15}, context_window: 100000}
"""
HARD = ("Prove rigorously that the algorithm is correct, analyze its complexity, compare the "
        "trade-offs and design a distributed version that must handle edge cases. ")


def record(i: int, hard: bool, dataset: str = "demo", **scores) -> dict:
    text = HARD * 3 if hard else "hi"
    return {"id": f"r{i}", "dataset": dataset, "messages": [{"role": "user", "content": text}],
            "scores": scores or {"weak-m": 0.0 if hard else 1.0, "strong-m": 1.0}}


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "providers.yaml").write_text(PROVIDERS)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "balanced.yaml").write_text("type: thresholds\n"
                                                         "thresholds: {premium: 0.5}\n")
    (tmp_path / "prices.yaml").write_text("models:\n  weak-m: {input: 1, output: 1}\n"
                                          "  strong-m: {input: 10, output: 30}\n")

    def run(records: list, *extra: str, lines: list[str] | None = None) -> int:
        data = tmp_path / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(lines or []))
        return main(["eval", str(data), "--providers", str(tmp_path / "providers.yaml"),
                     "--policies", str(tmp_path / "policies"), "--prices",
                     str(tmp_path / "prices.yaml"), "--bootstrap", "20", *extra])
    run.dir = tmp_path
    return run


def test_the_command_reports_each_dataset_and_policy(setup, capsys):
    records = [record(i, hard=i % 2 == 0) for i in range(20)]
    assert setup(records) == 0
    out = capsys.readouterr().out
    assert "demo: 20 prompts; weak weak-m" in out and "strong strong-m" in out
    # The heuristic scores exactly the hard half higher: a perfect router, APGR 1 - 0.5 / 2.
    assert "APGR            0.750" in out
    assert "balanced" in out and "overall: 20 prompts" in out


def test_json_report_shape(setup, capsys):
    records = [record(i, hard=i % 3 == 0) for i in range(12)]
    records += [record(i, hard=i % 2 == 0, dataset="other") for i in range(12, 20)]
    assert setup(records, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [d["dataset"] for d in report["datasets"]] == ["demo", "other"]
    demo = report["datasets"][0]
    for key in ("apgr", "cpt50", "cpt80", "share_at_95", "savings_at_95"):
        assert set(demo[key]) == {"value", "ci95"} and len(demo[key]["ci95"]) == 2
    point = demo["policies"]["balanced"]
    assert point["tier_share"] == pytest.approx({"budget": 8 / 12, "premium": 4 / 12})
    assert point["quality_kept"]["value"] == pytest.approx(1.0)
    assert set(report["overall"]) == {"prompts", "apgr_mean", "apgr_min", "policies"}
    assert report["tiers"] == ["budget", "premium"] and report["bootstrap"] == 20


def test_plot_writes_a_valid_svg(setup, capsys):
    target = setup.dir / "plot.svg"
    assert setup([record(i, hard=i % 2 == 0) for i in range(10)], "--plot", str(target)) == 0
    doc = xml.dom.minidom.parse(str(target))
    classes = [e.getAttribute("class") for e in doc.getElementsByTagName("polyline")]
    assert classes == ["random", "scorer"]
    assert len(doc.getElementsByTagName("circle")) == 1
    assert "balanced" in target.read_text()


def test_png_without_matplotlib_says_to_use_svg(setup, capsys):
    try:
        import matplotlib  # noqa: F401
        pytest.skip("matplotlib is installed")
    except ImportError:
        pass
    assert setup([record(i, hard=i % 2 == 0) for i in range(4)], "--plot",
                 str(setup.dir / "p.png")) == 2
    assert "--plot FILE.svg" in capsys.readouterr().err


@pytest.mark.parametrize("bad, message", [
    ("{not json\n", ":3: not valid JSON"),
    ('{"dataset": "demo", "messages": [{"role": "user", "content": "x"}]}\n',
     ":3: 'scores' must map each model"),
    ('{"dataset": "demo", "messages": [{"role": "user", "content": "x"}], '
     '"scores": {"weak-m": 2, "strong-m": 1}}\n', ":3: scores.weak-m: expected a number"),
    ('{"dataset": "demo", "messages": [], "scores": {"weak-m": 1}}\n', ":3: 'messages' must be"),
    ('{"dataset": "demo", "messages": [{"role": "wizard", "content": "x"}], '
     '"scores": {"weak-m": 1, "strong-m": 1}}\n', ":3: cannot be routed"),
    ('{"dataset": "demo", "messages": [{"role": "user", "content": "x"}], '
     '"scores": {"weak-m": 1, "other-m": 1}}\n', "line 3: dataset 'demo' needs two models"),
])
def test_bad_records_are_reported_with_their_line(setup, capsys, bad, message):
    assert setup([record(0, True), record(1, False)], lines=[bad]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_models_without_a_price_are_named(setup, capsys):
    records = [record(i, i % 2 == 0, **{"weak-m": 0.0, "mystery": 1.0}) for i in range(4)]
    assert setup(records) == 2
    assert "no price for mystery" in capsys.readouterr().err


def test_the_shipped_configuration_routes_without_any_provider_key(tmp_path, capsys, monkeypatch):
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(record(i, hard=i % 2 == 0, dataset="d",
                                              **{"mixtral-8x7b-instruct": float(i % 3 == 0),
                                                 "gpt-4-1106-preview": 1.0})) + "\n"
                            for i in range(10)))
    assert main(["eval", str(data), "--providers", str(repo / "providers.yaml"), "--policies",
                 str(repo / "routing_policies"), "--bootstrap", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["weak_tier"] == "budget" and report["strong_tiers"] == ["standard", "premium"]
    assert set(report["datasets"][0]["policies"]) >= {"balanced", "low", "quality"}


def test_graded_models_without_a_price_are_left_out_of_the_pair(setup, capsys):
    # arena-chat grades 14 models; the pair compared is the priced one
    records = [record(i, hard=i % 2 == 0, **{"weak-m": 0.0 if i % 2 == 0 else 1.0,
                                           "strong-m": 1.0, "mystery": 1.0}) for i in range(20)]
    assert setup(records) == 0
    out = capsys.readouterr().out
    assert "weak weak-m" in out and "strong strong-m" in out


def test_a_policy_that_keeps_less_than_it_promises_is_flagged(setup, capsys):
    # The score ranks backwards: the weak model fails exactly the asks it calls easy.
    records = [record(i, hard=i % 2 == 0, **{"weak-m": 1.0 if i % 2 == 0 else 0.0,
                                           "strong-m": 1.0}) for i in range(20)]
    policy = setup.dir / "policies" / "balanced.yaml"
    policy.write_text("type: thresholds\npromise: 0.95\nthresholds: {premium: 0.5}\n")
    assert setup(records, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    point = report["datasets"][0]["policies"]["balanced"]
    assert point["promise"] == 0.95 and point["broken"] is True
    assert setup(records) == 0
    assert "95.0% BROKEN" in capsys.readouterr().out
    policy.write_text("type: thresholds\npromise: 0.5\nthresholds: {premium: 0.5}\n")
    assert setup(records) == 0
    assert "50.0% kept" in capsys.readouterr().out


def test_a_promise_must_be_a_share(setup, capsys):
    (setup.dir / "policies" / "balanced.yaml").write_text(
        "type: thresholds\npromise: 95\nthresholds: {premium: 0.5}\n")
    assert setup([record(i, hard=i % 2 == 0) for i in range(4)]) == 2
    assert "promise: Input should be less than or equal to 1" in capsys.readouterr().err
