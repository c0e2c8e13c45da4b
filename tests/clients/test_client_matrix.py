"""The quick part of the client matrix (tests/clients/matrix.py --group quick), in the test
suite: the npm SDKs, the AI SDK's providers, LangChain and the OpenAI Agents SDK, each against
a live Costr in front of each upstream wire type.

The matrix runs once (installing into the clients' cache on first use: a few minutes from
nothing, seconds when cached); each of its rows is one test here. A row whose client cannot be
installed on this machine (no npm, no registry) is skipped with the reason.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from matrix import selected  # noqa: E402

ROWS = [(client.name, upstream, case) for client in selected("quick", None, None)
        for upstream in client.upstreams for case in client.cases]
MATRIX_TIMEOUT = 1800


@pytest.fixture(scope="module")
def matrix_rows(tmp_path_factory) -> dict[tuple[str, str, str], dict]:
    out = tmp_path_factory.mktemp("matrix") / "rows.json"
    done = subprocess.run([sys.executable, str(HERE / "matrix.py"), "--group", "quick", "--json",
                           str(out)], capture_output=True, text=True, timeout=MATRIX_TIMEOUT)
    if not out.exists():
        pytest.fail(f"the matrix did not finish (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return {(r["client"], r["upstream"], r["case"]): r for r in json.loads(out.read_text())}


@pytest.mark.parametrize("client,upstream,case", ROWS, ids=[" | ".join(row) for row in ROWS])
def test_client_case(matrix_rows, client, upstream, case):
    row = matrix_rows.get((client, upstream, case))
    assert row is not None, "the matrix did not run this row"
    if row["result"] == "SKIP":
        pytest.skip(f"{client}: {row['detail']}")
    assert row["result"] == "PASS", f"{client} {row['version']} against a {upstream} upstream: {row['detail']}"
