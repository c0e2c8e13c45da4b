"""`costr bench`: it runs end to end and reports every figure for the paths asked for, says when a
peer is missing and goes on, and fails loudly on a wrong answer instead of measuring it. (Smoke
runs: no speed is asserted.)"""
import asyncio
import json
import os
import subprocess
import sys

import pytest

from costr.benchmark.measure import Figures, Target, measure_path
from costr.benchmark.report import Results, markdown
from costr.benchmark.run import BenchmarkError
from costr.testing.bench_requests import BY_NAME
from costr.testing.fake_upstream import FakeUpstream

FIGURES = ("cpu_ms_per_request", "p50_ms", "p99_ms", "requests_per_second", "added_p50_ms")


def bench(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "costr", "bench", *argv], capture_output=True,
                          text=True, timeout=240)


def test_a_small_run_reports_every_figure_of_the_paths_asked_for():
    result = bench("--requests", "20", "--concurrency", "4", "--paths", "miss,stream,anthropic",
                   "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["paths"]) == {"miss", "stream", "anthropic"}
    for path, by_clients in report["paths"].items():
        assert set(by_clients) == {"1", "4"}
        for figures in by_clients.values():
            for name in FIGURES:
                assert figures[name] is not None, (path, name)
            streamed = path == "stream"
            assert (figures["first_byte_p50_ms"] is not None) is streamed, path
            assert (figures["added_first_byte_p50_ms"] is not None) is streamed, path
    assert report["paths"]["miss"]["4"]["requests"] == 100
    assert set(report["direct"]) == {"miss", "stream"}
    assert report["command"] == ("costr bench --requests 20 --concurrency 4 --paths "
                                 "miss,stream,anthropic --json")
    assert report["date"] and report["machine"] and report["python"]


def test_a_missing_litellm_is_reported_and_the_run_goes_on(tmp_path):
    missing = tmp_path / "no-such-litellm"
    result = bench("--requests", "5", "--concurrency", "2", "--paths", "hit",
                   "--peer", "litellm", "--litellm", str(missing))
    assert result.returncode == 0, result.stderr
    assert f"Skipped litellm: no LiteLLM at {missing}." in result.stdout
    assert "| hit | 1 |" in result.stdout and "| Peer |" not in result.stdout


def test_an_unknown_path_is_refused_with_the_known_ones():
    result = bench("--paths", "miss,nope")
    assert result.returncode == 2
    assert "nope: choose from miss, no-cache, hit" in result.stderr


@pytest.fixture
def fake():
    with FakeUpstream(fast=True, record=False) as upstream:
        yield upstream


def measure(url: str, path: str, costr: bool = False):
    target = Target(url, os.getpid(), costr=costr)
    return asyncio.run(measure_path(target, BY_NAME[path], {1: 3, 2: 6}, warmup=1))


def test_a_measurement_has_a_figure_per_client_count(fake):
    figures = measure(fake.url, "stream")
    assert sorted(figures) == [1, 2]
    assert figures[2].requests == 6 and figures[2].first_byte_p50_ms is not None


@pytest.mark.parametrize("fault, path, said", [
    ("error", "miss", "answered 503"),
    ("truncate", "stream", "stream"),
])
def test_a_wrong_answer_stops_the_benchmark(fake, fault, path, said):
    fake.set_fault(fault)
    with pytest.raises(BenchmarkError, match=said):
        measure(fake.url, path)


def test_an_answer_without_the_expected_cache_outcome_stops_the_benchmark(fake):
    with pytest.raises(BenchmarkError, match="x-costr-cache-hit was None"):
        measure(fake.url, "hit", costr=True)


def test_the_table_shows_what_costr_adds_over_the_upstream_alone():
    results = Results(requests=10, concurrent_requests=50, concurrency=4, warmup=10,
                      date="2025-01-01 00:00", command="costr bench")
    results.direct["stream"] = {1: Figures(1, 10, 0.1, 0.3, 0.5, 3000, first_byte_p50_ms=0.2)}
    results.paths["stream"] = {1: Figures(1, 10, 0.8, 1.0, 1.5, 900, first_byte_p50_ms=0.9)}
    results.peers["relay"] = {"stream": {1: Figures(1, 10, 0.2, 0.5, 0.7, 2000, 0.4)}}
    table = markdown(results)
    assert "| stream | 1 | 0.800 | 1.00 | 1.50 | +0.70 | 0.90 | +0.70 | 900 |" in table
    assert "| relay | stream | 1 | 10 | 0.200 | 0.50 | 0.70 | 0.40 | 2,000 | 0.25x |" in table
