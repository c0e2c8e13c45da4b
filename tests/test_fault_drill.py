"""The fault drill (costr/benchmark/fault_drill.py) in its quick form: three instances on one
PostgreSQL and Redis behind nginx running deploy/nginx.conf, two fake upstreams, steady load,
and each fault in turn; every row of its table must be as expected. Also: the fake upstream's
faults on command, and that the deployment files agree with what the drill and the README run.

The drill needs Debian's nginx (installed by .ci/run), a PostgreSQL server installation (it
makes a private cluster, so restarting it disturbs nothing else) and Redis on 127.0.0.1; it is
skipped, saying which is missing, without them.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from costr.benchmark.drill_cluster import NGINX_CONF, free_port
from costr.testing.fake_upstream import FakeUpstream

REPO = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def _missing_prerequisite() -> str | None:
    if NGINX is None:
        return "nginx is not installed (.ci/run installs Debian's nginx)"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "no PostgreSQL server installation (/usr/lib/postgresql/*/bin/initdb)"
    try:
        import redis
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any reason Redis does not answer
        return f"Redis not reachable at 127.0.0.1:6379: {exc}"
    return None


@pytest.fixture(scope="module")
def drill_table() -> dict[str, dict]:
    """Run `python -m costr.benchmark.fault_drill --quick` once; its rows by scenario."""
    missing = _missing_prerequisite()
    if missing:
        pytest.skip(missing)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "costr.benchmark.fault_drill", "--quick"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    took = time.monotonic() - started
    print(done.stdout)   # the table, for a reader of the test log
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] not in ("scenario", "---"):
            rows[cells[0]] = dict(zip(["scenario", "did", "saw", "expected", "ok"], cells))
    assert rows, f"no table (exit {done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}"
    assert took < 120, f"the quick drill took {took:.0f} s"
    return rows


SCENARIOS = ["kill upstream", "hang upstream", "truncated stream", "SIGTERM instance",
             "restart PostgreSQL", "whole drill: ledger", "whole drill: holds"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_drill_row_is_as_expected(drill_table, scenario):
    row = drill_table.get(scenario)
    assert row is not None, f"the drill printed no row {scenario!r}: {sorted(drill_table)}"
    assert row["ok"] == "OK", f"{scenario}: saw {row['saw']}; expected {row['expected']}"


# -- the fake upstream's faults, which the drill drives ------------------------------------------

CHAT = {"model": "m", "messages": [{"role": "user", "content": "Reply exactly: " + "word " * 20}]}


@pytest.fixture
def fake():
    with FakeUpstream() as running:
        yield running


def test_fake_hangs_until_told_otherwise(fake):
    with httpx.Client(base_url=fake.url, timeout=10) as http:
        assert http.post("/_fault", json={"mode": "hang"}).json()["mode"] == "hang"
        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json=CHAT, timeout=0.5)
        answers = []
        held = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{fake.url}/v1/chat/completions", json=CHAT, timeout=10)))
        held.start()
        time.sleep(0.3)
        assert not answers   # still held
        http.post("/_fault", json={"mode": "ok"})
        held.join(5)
        assert answers[0].status_code == 200
        assert http.get("/v1/models").status_code == 200   # only chat answers misbehave


def test_fake_cuts_streams_and_json_answers_short(fake):
    with httpx.Client(base_url=fake.url, timeout=10) as http:
        http.post("/_fault", json={"mode": "truncate", "count": 2})
        events = []
        with pytest.raises(httpx.RemoteProtocolError):
            with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(line)
        assert 1 <= len(events) <= 3 and "data: [DONE]" not in events
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/v1/chat/completions", json=CHAT)
        # The count is used up: answers are whole again.
        whole = http.post("/v1/chat/completions", json=CHAT)
        assert whole.json()["choices"][0]["message"]["content"].startswith("word")
        assert http.get("/_fault").json() == {"mode": "ok", "count": None, "status": 503,
                                              "injected": 2}


def test_fake_fails_in_the_provider_shape_and_refuses_unknown_modes(fake):
    fake.set_fault("error", status=529)
    answer = httpx.post(f"{fake.url}/v1/messages", json={
        "model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 529 and answer.json()["type"] == "error"
    fake.set_fault("ok")
    refused = httpx.post(f"{fake.url}/_fault", json={"mode": "explode"})
    assert refused.status_code == 400 and "hang" in refused.json()["error"]
    with pytest.raises(ValueError):
        fake.set_fault("hang", count=0)


# -- the deployment files agree with the drill and the README -----------------------------------

def test_compose_runs_the_nginx_configuration_the_drill_runs():
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    volumes = compose["services"]["nginx"]["volumes"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in volumes
    assert "./costr.d:/etc/nginx/costr.d:ro" in volumes
    assert NGINX_CONF == REPO / "deploy" / "nginx.conf"
    conf = NGINX_CONF.read_text()
    for setting in ("proxy_buffering off;", "proxy_request_buffering off;",
                    "proxy_http_version 1.1;", "proxy_next_upstream error timeout;",
                    "include costr.d/upstreams.conf;", "include costr.d/listen.conf;"):
        assert setting in conf, setting
    assert "non_idempotent" not in conf   # a request once sent is never sent again


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_nginx_accepts_the_configuration(tmp_path):
    shutil.copyfile(NGINX_CONF, tmp_path / "nginx.conf")
    (tmp_path / "costr.d").mkdir()
    (tmp_path / "temp").mkdir()
    (tmp_path / "costr.d" / "upstreams.conf").write_text("server 127.0.0.1:9 max_fails=3;\n")
    (tmp_path / "costr.d" / "listen.conf").write_text(f"listen 127.0.0.1:{free_port()};\n")
    log = tmp_path / "error.log"
    done = subprocess.run([NGINX, "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"),
                           "-e", str(log), "-g", f"pid {tmp_path}/nginx.pid; error_log {log};"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_the_container_runs_the_command_the_readme_documents():
    dockerfile = (REPO / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    command = " ".join(cmd)
    assert command == "costr serve --host 0.0.0.0 --port 8000"
    assert command in (REPO / "README.md").read_text()
    assert command in (REPO / "docs" / "operations.md").read_text()
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    assert compose["services"]["costr"]["command"] == cmd
    k8s = list(yaml.safe_load_all((REPO / "deploy" / "k8s" / "costr.yaml").read_text()))
    pod = k8s[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == cmd
    assert "USER costr" in dockerfile and "HEALTHCHECK" in dockerfile
    assert "/v1/router/health" in dockerfile
    # The pod is given time for preStop, the drain and the answers in flight (30 s).
    drain = int(next(e["value"] for e in container["env"] if e["name"] == "COSTR_DRAIN_SECONDS"))
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 30
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/router/health"
