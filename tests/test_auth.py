"""Who may call: every /v1 endpoint but the health check wants a live Costr key, sent as
`Authorization: Bearer` or `x-api-key`; anything else is 401 "Invalid API Key" in the calling
family's error shape. Admin endpoints want an admin key. A fresh install is never open."""
from __future__ import annotations

import asyncio
import os
import queue
import re
import secrets
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from costr.testing import AUTH, TEST_KEY, running_gateway, seed_key
from costr.testing.fake_upstream import FakeUpstream

from conftest import LOCAL_POOL, write_config

NORMAL = "cr-normal-key-for-auth-tests-" + "n" * 20
REVOKED = "cr-revoked-key-for-auth-tests-" + "r" * 20
ANTHROPIC = {"anthropic-version": "2023-06-01"}
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Reply exactly: ok"}]}
MESSAGE = {"model": "auto", "max_tokens": 32, "messages": [{"role": "user", "content": "Reply exactly: ok"}]}
HTTP = httpx.Client(timeout=20)  # one client: a fresh one per request costs more than the request


@pytest.fixture(scope="module", autouse=True)
def _close_http():
    yield
    HTTP.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """(base URL, the normal key's id): TEST_KEY is an admin key, NORMAL a plain one, and
    REVOKED was revoked through the admin API after it had been used."""
    tmp = tmp_path_factory.mktemp("auth")
    data = str(tmp / "data")
    with FakeUpstream() as fake:
        with running_gateway(*write_config(tmp, LOCAL_POOL.format(url=fake.url)), data_dir=data) as base:
            normal = asyncio.run(seed_key(None, data, NORMAL, name="normal", admin=False))
            revoked = asyncio.run(seed_key(None, data, REVOKED, name="revoked", admin=False))
            assert get(base, "/v1/credits", bearer(REVOKED)).status_code == 200
            assert post(base, f"/v1/admin/keys/{revoked.id}/revoke", {}, AUTH).status_code == 200
            yield base, normal.id


def bearer(secret: str) -> dict:
    return {"authorization": f"Bearer {secret}"}


def get(base: str, path: str, headers: dict) -> httpx.Response:
    return HTTP.get(base + path, headers=headers)


def post(base: str, path: str, body: dict, headers: dict) -> httpx.Response:
    return HTTP.post(base + path, json=body, headers=headers)


# (method, path, body, family): every endpoint behind a key. Bodies are valid, so a request
# that got past authentication would answer something other than 401.
ENDPOINTS = [
    ("POST", "/v1/chat/completions", CHAT, "openai"),
    ("POST", "/chat/completions", CHAT, "openai"),
    ("POST", "/v1/messages", MESSAGE, "anthropic"),
    ("POST", "/v1/messages/count_tokens", {"model": "auto", "messages": MESSAGE["messages"]}, "anthropic"),
    ("GET", "/v1/models", None, "openai"),
    ("GET", "/v1/models/local-mini", None, "openai"),
    ("POST", "/v1/router/dry-run", CHAT, "openai"),
    ("POST", "/v1/embeddings", {"model": "auto", "input": "hello"}, "openai"),
    ("GET", "/v1/credits", None, "openai"),
    ("GET", "/v1/usage", None, "openai"),
    ("GET", "/v1/router/stats", None, "openai"),
    ("GET", "/v1/requests", None, "openai"),
    ("POST", "/v1/router/feedback", {"request_id": "req_0", "rating": 5}, "openai"),
    ("GET", "/v1/admin/keys", None, "openai"),
    ("POST", "/v1/admin/keys", {"name": "never-made"}, "openai"),
    ("POST", "/v1/admin/keys/{normal}/revoke", {}, "openai"),
    ("POST", "/v1/admin/keys/{normal}/top-up", {"usd": 1}, "openai"),
]

BAD_CREDENTIALS = {
    "missing": {},
    "no cr- prefix (Bearer)": bearer("sk-" + "x" * 48),
    "no cr- prefix (x-api-key)": {"x-api-key": "sk-" + "x" * 48},
    "Bearer with no key": {"authorization": "Bearer"},
    "a real key under the wrong scheme": {"authorization": f"Basic {NORMAL}"},
    "a real key with no scheme": {"authorization": NORMAL},
    "unknown (Bearer)": bearer("cr-" + secrets.token_urlsafe(32)),
    "unknown (x-api-key)": {"x-api-key": "cr-" + secrets.token_urlsafe(32)},
    "revoked (Bearer)": bearer(REVOKED),
    "revoked (x-api-key)": {"x-api-key": REVOKED},
}


def call(base: str, endpoint: tuple, headers: dict, normal_id: str) -> httpx.Response:
    method, path, body, family = endpoint
    headers = {**headers, **(ANTHROPIC if family == "anthropic" else {})}
    return HTTP.request(method, base + path.format(normal=normal_id), json=body, headers=headers)


@pytest.mark.parametrize("credential", BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS.keys())
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_every_endpoint_refuses_a_bad_key_with_401_in_its_familys_shape(gateway, endpoint, credential):
    base, normal_id = gateway
    response = call(base, endpoint, credential, normal_id)
    assert response.status_code == 401, response.text
    body = response.json()
    if endpoint[3] == "anthropic":
        assert body["type"] == "error"
        assert body["error"]["type"] == "authentication_error"
    else:
        assert body["error"]["code"] == "invalid_api_key"
        assert body["error"]["type"] == "authentication_error"
    assert "Invalid API Key" in body["error"]["message"]


def test_refused_requests_change_nothing(gateway):
    base, normal_id = gateway
    before = get(base, "/v1/credits?key_id=" + normal_id, AUTH).json()
    admin_writes = [e for e in ENDPOINTS if e[0] == "POST" and "/admin/" in e[1]]
    for credential in BAD_CREDENTIALS.values():
        for endpoint in admin_writes:   # create, revoke, top-up
            call(base, endpoint, credential, normal_id)
    assert get(base, "/v1/credits?key_id=" + normal_id, AUTH).json() == before
    names = [k["name"] for k in get(base, "/v1/admin/keys", AUTH).json()["data"]]
    assert "never-made" not in names
    assert get(base, "/v1/credits", bearer(NORMAL)).status_code == 200


def test_the_health_check_needs_no_key(gateway):
    base, _ = gateway
    response = httpx.get(f"{base}/v1/router/health", timeout=20)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e[1] in (
    "/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/models",
    "/v1/router/dry-run", "/v1/credits", "/v1/requests")], ids=lambda e: f"{e[0]} {e[1]}")
def test_a_key_is_accepted_in_either_header(gateway, endpoint, style):
    base, normal_id = gateway
    headers = bearer(NORMAL) if style == "bearer" else {"x-api-key": NORMAL}
    response = call(base, endpoint, headers, normal_id)
    assert response.status_code == 200, response.text


def test_the_bearer_scheme_is_case_insensitive(gateway):
    base, _ = gateway
    assert get(base, "/v1/credits", {"authorization": f"bearer {NORMAL}"}).status_code == 200


def test_revoking_through_the_admin_api_takes_effect_at_once(gateway):
    base, _ = gateway
    created = post(base, "/v1/admin/keys", {"name": "short-lived"}, AUTH)
    assert created.status_code == 201
    key, key_id = created.json()["key"], created.json()["id"]
    assert post(base, "/v1/chat/completions", CHAT, bearer(key)).status_code == 200
    assert get(base, "/v1/credits", {"x-api-key": key}).status_code == 200

    assert post(base, f"/v1/admin/keys/{key_id}/revoke", {}, AUTH).status_code == 200
    refused = post(base, "/v1/chat/completions", CHAT, bearer(key))
    assert refused.status_code == 401 and "Invalid API Key" in refused.json()["error"]["message"]
    assert get(base, "/v1/credits", {"x-api-key": key}).status_code == 401
    listed = {k["id"]: k for k in get(base, "/v1/admin/keys", AUTH).json()["data"]}
    assert listed[key_id]["revoked"] is True


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/v1/admin/keys", None),
    ("POST", "/v1/admin/keys", {"name": "sneaky", "admin": True}),
    ("POST", "/v1/admin/keys/{admin}/revoke", {}),
    ("POST", "/v1/admin/keys/{normal}/top-up", {"usd": 100}),
], ids=["list", "create", "revoke", "top-up"])
def test_a_key_that_is_not_an_admin_gets_403_from_the_admin_api(gateway, method, path, body):
    base, normal_id = gateway
    admin_id = next(k["id"] for k in get(base, "/v1/admin/keys", AUTH).json()["data"]
                    if k["prefix"] == TEST_KEY[:10])
    response = HTTP.request(method, base + path.format(admin=admin_id, normal=normal_id),
                            json=body, headers=bearer(NORMAL))
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    # ...and nothing happened: the admin key still works, no key was made.
    assert get(base, "/v1/credits", AUTH).status_code == 200
    names = [k["name"] for k in get(base, "/v1/admin/keys", AUTH).json()["data"]]
    assert "sneaky" not in names


def test_an_empty_database_accepts_no_key(tmp_path):
    with FakeUpstream() as fake:
        config = write_config(tmp_path, LOCAL_POOL.format(url=fake.url))
        with running_gateway(*config, seed_test_key=False, data_dir=str(tmp_path / "data")) as base:
            for headers in ({}, AUTH, bearer("cr-" + secrets.token_urlsafe(32))):
                assert post(base, "/v1/chat/completions", CHAT, headers).status_code == 401
            assert httpx.get(f"{base}/v1/router/health", timeout=20).status_code == 200
        assert fake.requests == []


@pytest.mark.parametrize("on_path", [False, True], ids=["run-by-its-path", "costr-on-PATH"])
def test_serve_on_an_empty_database_says_how_to_create_the_first_key(tmp_path, on_path):
    """The advice names costr as this shell can run it: `costr` when that is on PATH, else the
    path it was started by (a newcomer's `.venv/bin/costr`)."""
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url="http://127.0.0.1:9"))
    data = tmp_path / "data"
    script = Path(sys.executable).parent / "costr"
    elsewhere = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "costr").exists()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTR_")}
    env["PATH"] = os.pathsep.join([str(script.parent)] * on_path + elsewhere)
    server = subprocess.Popen(
        ["costr" if on_path else str(script), "serve", "--providers", str(providers),
         "--policies", str(policies), "--data-dir", str(data), "--port", "0", "--log-level",
         "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        cwd=tmp_path)
    try:
        hint = _first_line_containing(server.stderr, " keys create", timeout=20)
    finally:
        server.terminate()
        server.wait(10)
    assert hint is not None, "costr serve never said how to create a key"
    command = shlex.split(hint.strip())
    assert command[0] == ("costr" if on_path else str(script))
    assert command[1:3] == ["keys", "create"] and "--admin" in command
    # The advice works as printed: it makes an admin key in the database serve was given.
    made = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=30)
    assert made.returncode == 0, made.stderr
    assert re.fullmatch(r"cr-[A-Za-z0-9_-]{32,}\n", made.stdout)
    listed = subprocess.run([sys.executable, "-m", "costr", "keys", "list", "--data-dir", str(data)],
                            capture_output=True, text=True, env=env, timeout=30)
    assert made.stdout[:10] in listed.stdout


def test_a_command_is_named_as_the_shell_finds_it(tmp_path, monkeypatch):
    from costr.cli.hints import runnable
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "costr"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    other = tmp_path / "other"
    other.mkdir()
    (other / "costr").write_text("#!/bin/sh\n")
    (other / "costr").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert runnable("costr", str(script), search_path=str(bin_dir)) == "costr"
    assert runnable("costr", "venv/bin/costr", search_path=str(bin_dir)) == "costr"
    # Another costr first on PATH, or none: the path, as typed from here.
    assert runnable("costr", str(script), search_path=str(other)) == "venv/bin/costr"
    assert runnable("costr", str(script), search_path="") == "venv/bin/costr"
    monkeypatch.chdir(bin_dir)
    assert runnable("costr", str(script), search_path="") == "./costr"
    monkeypatch.chdir(other)
    assert runnable("costr", str(script), search_path="") == str(script)


def _first_line_containing(stream, text: str, timeout: float) -> str | None:
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in stream:
            lines.put(line)
        lines.put(None)
    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is None:
            return None
        if text in line:
            return line
    return None
