"""`python -m costr.benchmark.asgi_servers`: it measures the same app under uvicorn and granian and
reports every figure, and its SIGTERM check tells a clean stop from one that lost the request
and never ran the app's shutdown. (Smoke runs: no speed is asserted.)"""
import importlib.util
import json
import subprocess
import sys

import pytest

from costr.benchmark.asgi_candidates import Server
from costr.benchmark.asgi_sigterm import check_sigterm

FIGURES = ("cpu_ms_per_request", "p50_ms", "p99_ms", "requests_per_second")


def servers_bench(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "costr.benchmark.asgi_servers", *argv],
                          capture_output=True, text=True, timeout=240, check=False)


def test_a_small_run_measures_each_server_and_how_it_stops():
    """Both servers where granian is installed (it is not Costr's dependency); uvicorn alone
    where it is not."""
    names = ["uvicorn", *(["granian-st"] if importlib.util.find_spec("granian") else [])]
    result = servers_bench("--requests", "5", "--concurrency", "2", "--servers", ",".join(names),
                           "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["servers"]) == set(names)
    for server in report["servers"].values():
        assert set(server["paths"]) == {"miss", "stream"}
        for path, by_clients in server["paths"].items():
            assert set(by_clients) == {"1", "2"}
            for figures in by_clients.values():
                for name in FIGURES:
                    assert figures[name] is not None, (path, name)
                assert (figures["first_byte_p50_ms"] is not None) is (path == "stream")
    for name, stopped in report["sigterm"].items():
        assert stopped["in_flight"] == "answered 200", (name, stopped)
        assert stopped["ledger_record"] == "written", (name, stopped)
        assert stopped["lifespan_shutdown_finished"] is True, (name, stopped)
        assert stopped["exit_code"] is not None and not stopped["traceback_in_log"], (name, stopped)
    assert report["command"].endswith(f"--servers {','.join(names)} --json")


def test_the_sigterm_check_reports_a_worker_killed_under_its_request(tmp_path):
    """granian kills a worker still busy after --workers-kill-timeout: the request in flight is
    lost, its ledger record is never written and the app's shutdown never runs."""
    pytest.importorskip("granian")
    impatient = Server("granian-kill-1s", ("--runtime-mode", "st", "--workers-kill-timeout", "1"))
    stopped = check_sigterm(tmp_path, [impatient])["granian-kill-1s"]
    assert stopped["in_flight"].startswith("failed"), stopped
    assert stopped["ledger_record"] == "no request id (not answered)", stopped
    assert stopped["lifespan_shutdown_finished"] is False, stopped


def test_an_unknown_server_is_refused_with_the_known_ones():
    result = servers_bench("--servers", "uvicorn,nope")
    assert result.returncode == 2
    assert "nope: choose from uvicorn, granian-st" in result.stderr
