"""What a client sees when the upstream fails: the right status, the upstream's own words,
fallback to the next model where another might succeed, and never a traceback."""
from __future__ import annotations

import os
import queue
import shlex
import subprocess
import sys
import threading
import time

import httpx
import pytest

from costr.testing import AUTH, running_gateway
from costr.testing.fake_upstream import FakeUpstream

from conftest import LOCAL_POOL, write_config

ASK = {"model": "auto", "messages": [{"role": "user", "content": "Reply exactly: ok"}]}


def post(base_url: str, body: dict, **headers) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, headers={**AUTH, **headers}, timeout=20)


def test_upstream_error_is_502_with_its_message_after_fallback(local_gateway, fake_upstream):
    fake_upstream.enqueue({"status": 500, "error": "the model is on fire"},
                          {"status": 500, "error": "the model is on fire"})
    response = post(local_gateway, ASK)
    assert response.status_code == 502
    error = response.json()["error"]
    assert "the model is on fire" in error["message"] and "500" in error["message"]
    assert error["code"] == "upstream_error" and error["type"] == "upstream_error"
    # Tried the budget model, then fell back to the next candidate.
    assert [r.body["model"] for r in fake_upstream.requests] == ["local-mini", "local-standard"]


def test_fallback_answers_when_the_first_model_fails(local_gateway, fake_upstream):
    fake_upstream.enqueue({"status": 503, "error": "overloaded"})
    response = post(local_gateway, ASK)
    assert response.status_code == 200
    assert response.json()["x_routing"]["routed_model"] == "local-standard"


def test_streamed_fallback_before_first_byte(local_gateway, fake_upstream):
    fake_upstream.enqueue({"status": 429, "error": "slow down"})
    with httpx.stream("POST", f"{local_gateway}/v1/chat/completions",
                      json={**ASK, "stream": True}, timeout=20, headers=AUTH) as response:
        body = response.read().decode()
    assert response.status_code == 200
    assert '"routed_model":"local-standard"' in body and body.endswith("data: [DONE]\n\n")


def test_upstream_rejecting_the_request_is_the_clients_400(local_gateway, fake_upstream):
    fake_upstream.enqueue({"status": 400, "error": "Invalid 'messages[0].content': too long"})
    response = post(local_gateway, ASK)
    assert response.status_code == 400
    assert "too long" in response.json()["error"]["message"]
    assert len(fake_upstream.requests) == 1  # another model would reject it too: no fallback


def test_upstream_timeout_is_504(tmp_path):
    with FakeUpstream(delay_ms=3000) as slow:
        pool = LOCAL_POOL.format(url=slow.url).replace(
            'base_url: "' + slow.url + '/v1"}', 'base_url: "' + slow.url + '/v1", timeouts: {read: 0.3}}')
        providers, policies = write_config(tmp_path, pool)
        with running_gateway(providers, policies) as base:
            response = post(base, ASK)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_unreachable_upstream_is_502(tmp_path):
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url="http://127.0.0.1:9"))
    with running_gateway(providers, policies) as base:
        response = post(base, ASK)
    assert response.status_code == 502
    assert "could not reach" in response.json()["error"]["message"]


def test_missing_credentials_is_503_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("COSTR_TEST_UNSET_KEY", raising=False)
    pool = LOCAL_POOL.format(url="http://127.0.0.1:9").replace(
        "type: openai,", "type: openai, api_key_env: COSTR_TEST_UNSET_KEY,")
    providers, policies = write_config(tmp_path, pool)
    with running_gateway(providers, policies) as base:
        response = post(base, ASK)
        explicit = post(base, {**ASK, "model": "local-large"})
    assert response.status_code == 503 and explicit.status_code == 503
    assert "COSTR_TEST_UNSET_KEY" in response.json()["error"]["message"]
    assert "COSTR_TEST_UNSET_KEY" in explicit.json()["error"]["message"]


def test_serve_with_no_usable_provider_says_how_to_try_costr_without_a_key(tmp_path):
    """It still starts, but says which variables to set, and the no-key try-out it prints runs
    as printed from a folder holding no configuration."""
    pool = LOCAL_POOL.format(url="http://127.0.0.1:9").replace(
        "type: openai,", "type: openai, api_key_env: COSTR_TEST_UNSET_KEY,")
    providers, policies = write_config(tmp_path, pool)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTR_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "costr", "serve", "--providers", str(providers), "--policies",
         str(policies), "--data-dir", str(tmp_path / "data"), "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        said = lines_until(server.stderr, " serve --providers local.yaml", timeout=20)
    finally:
        server.terminate()
        server.wait(10)
    assert "no provider can be used" in said[0] and "COSTR_TEST_UNSET_KEY" in said[0]
    fake_command = shlex.split(said[-2].replace("--port 9100", "--port 0"))
    assert fake_command[1:] == ["-m", "costr.testing.fake_upstream", "--port", "0",
                                "--write-config", "local.yaml", "&"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fake = subprocess.Popen(fake_command[:-1], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=elsewhere)
    try:
        assert lines_until(fake.stdout, "listening on", timeout=20)
        serve_command = shlex.split(said[-1])
        assert serve_command[1:] == ["serve", "--providers", "local.yaml", "--data-dir",
                                     str(tmp_path / "data")]   # where the keys are
        checked = subprocess.run([serve_command[0], "check", *serve_command[2:4]], env=env,
                                 cwd=elsewhere, capture_output=True, text=True, timeout=60)
    finally:
        fake.terminate()
        fake.wait(10)
    assert checked.returncode == 0, checked.stderr
    assert "3 chat models" in checked.stdout and "left out" not in checked.stdout


def lines_until(stream, text: str, timeout: float) -> list[str]:
    """The lines read from `stream` up to the first containing `text`; fails on a timeout."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    read, deadline = [], time.monotonic() + timeout
    while not read or text not in read[-1]:
        read.append(lines.get(timeout=max(0.0, deadline - time.monotonic())).rstrip("\n"))
    return read


@pytest.mark.parametrize("body, status", [
    (b"not json", 400),
    (b"[1, 2]", 400),
    (b'{"model": "auto"}', 400),
    (b'{"model": "auto", "messages": "hi"}', 400),
    (b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}', 400),
    (b'{"model": "auto", "messages": [{"role": "user", "content": 5}]}', 400),
    (b'{"model": "auto", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}', 400),
    (b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "x"}]}', 400),
    (b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "sometimes"}', 400),
    (b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "n": 3}', 400),
    (b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', 400),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}', 404),
])
def test_bad_inputs_get_openai_shaped_4xx(local_gateway, fake_upstream, body, status):
    response = httpx.post(f"{local_gateway}/v1/chat/completions", content=body,
                          headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    assert fake_upstream.requests == []
