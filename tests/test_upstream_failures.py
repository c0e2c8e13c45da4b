"""What a client sees when the upstream fails: the right status, the upstream's own words,
fallback to the next model where another might succeed, and never a traceback."""
from __future__ import annotations

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
