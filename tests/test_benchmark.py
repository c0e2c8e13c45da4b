"""The benchmark script runs end to end (a smoke run: its figures are not asserted)."""
import json
import subprocess
import sys


def test_benchmark_runs_and_reports_every_figure():
    result = subprocess.run([sys.executable, "-m", "costr", "bench", "--requests", "20", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout[result.stdout.index("{"):])
    text = json.dumps(report)
    for figure in ("p50_ms", "p99_ms", "requests_per_second", "cpu_ms_per_request",
                   "agent_dry_run_cpu_ms_per_request"):
        assert figure in text
