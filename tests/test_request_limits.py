"""Limits on what a client may send, each found by probing a running Costr as an attacker would:
a body of any size was read whole before the key was checked (1 GB chunked with no key: 2 GB of
memory, then 401), message and tool counts and header sizes were unbounded, one key could set
the tier another key's agent session got, and a 405 on /v1/messages came in OpenAI's shape."""
from __future__ import annotations

import asyncio
import os
import secrets
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from costr.routing.sessions import MAX_SESSION_ID_CHARS, SessionTiers
from costr.testing import AUTH, TEST_KEY, running_gateway, seed_key

from conftest import LOCAL_POOL, write_config

LIMIT = 1024 * 1024   # the gateway under test takes bodies of at most 1 MB
HARD_ASK = ("Design a lock-free concurrent queue, prove its linearizability invariant step by "
            "step, and review the edge cases under memory reordering.")

# Each family's endpoints, and how to tell its error shape from the other's.
OPENAI_PATHS = ["/v1/chat/completions", "/v1/embeddings"]
ANTHROPIC_PATHS = ["/v1/messages", "/v1/messages/count_tokens"]


def error_type(path: str, body: dict) -> str:
    """The error's type, asserting the body is in the shape of the path's family."""
    if path in ANTHROPIC_PATHS:
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        return body["error"]["type"]
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]["code"]


@pytest.fixture
def gateway(tmp_path, fake_upstream):
    """(base URL, data dir) of a gateway taking bodies of at most LIMIT bytes."""
    data = str(tmp_path / "data")
    with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url)),
                         data_dir=data, cache="none", max_body_bytes=LIMIT) as base:
        yield base, data


# -- a raw HTTP/1.1 client that streams its body and reads the answer at the same time --------

async def post_streamed(base: str, path: str, headers: dict, body_bytes: int,
                        chunk: int = 64 * 1024) -> tuple[int, dict, int]:
    """POST a chunked body of `body_bytes` bytes, written while the response is awaited, as a
    hostile client would; (status, JSON body, bytes the client had sent when the answer came).
    `body_bytes=0`: send the headers and then nothing, as if the body were endless and slow."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in {
        "host": url.netloc, "content-type": "application/json", "transfer-encoding": "chunked",
        **headers}.items())
    writer.write(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
    sent = 0

    async def send_body():
        nonlocal sent
        piece = b"%x\r\n" % chunk + b"x" * chunk + b"\r\n"
        try:
            while sent < body_bytes:
                writer.write(piece)
                await writer.drain()
                sent += chunk
                await asyncio.sleep(0)   # let the answer be read as soon as it comes
            if body_bytes:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except OSError:   # the server closed the connection: it read all it meant to
            pass

    sender = asyncio.create_task(send_body())
    try:
        status, body = await asyncio.wait_for(read_response(reader), timeout=10)
        return status, body, sent
    finally:
        sender.cancel()
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict]:
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, orjson.loads(await reader.readexactly(length))


# -- the body: the key first, then at most limit + 1 bytes ------------------------------------

@pytest.mark.parametrize("path", OPENAI_PATHS + ANTHROPIC_PATHS)
def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(gateway, path):
    base, _ = gateway
    for headers in ({}, {"authorization": "Bearer cr-not-a-key"}):
        # The body never comes: reading it first would wait forever, not answer 401.
        status, body, _ = asyncio.run(post_streamed(base, path, headers, body_bytes=0))
        assert status == 401
        assert error_type(path, body) in ("invalid_api_key", "authentication_error")


@pytest.mark.parametrize("path", OPENAI_PATHS + ANTHROPIC_PATHS)
def test_a_streamed_body_over_the_limit_gets_413_in_the_family_shape_without_being_read(gateway, path):
    base, _ = gateway
    total = 128 * LIMIT
    status, body, sent = asyncio.run(post_streamed(base, path, AUTH, body_bytes=total))
    assert status == 413
    assert error_type(path, body) == "request_too_large"
    assert "1 MB" in (body["error"]["message"])
    # Answered while the client was still sending: the server stopped reading near the limit
    # (what was sent past it sits in socket buffers), not after the whole body.
    assert sent < 32 * LIMIT, sent


@pytest.mark.parametrize("path", OPENAI_PATHS + ANTHROPIC_PATHS)
def test_a_declared_length_over_the_limit_is_refused_before_reading(gateway, path):
    base, _ = gateway
    url = urlsplit(base)

    async def declare_and_send_nothing():
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(f"POST {path} HTTP/1.1\r\nhost: {url.netloc}\r\nauthorization: Bearer "
                     f"{TEST_KEY}\r\ncontent-length: {100 * LIMIT}\r\n\r\n".encode())
        try:
            return await asyncio.wait_for(read_response(reader), timeout=10)
        finally:
            writer.close()
    status, body = asyncio.run(declare_and_send_nothing())
    assert status == 413 and error_type(path, body) == "request_too_large"


def test_reading_stops_at_the_limit_plus_one_byte():
    """What the endpoint takes from the server: never more than the limit and one chunk."""
    from starlette.requests import Request

    from costr.server.request_limits import RequestTooLarge, read_capped_body
    pulled = []

    async def receive():   # an endless chunked upload, 64 KB at a time
        pulled.append(64 * 1024)
        return {"type": "http.request", "body": b"x" * 64 * 1024, "more_body": True}
    request = Request({"type": "http", "method": "POST", "headers": []}, receive)
    with pytest.raises(RequestTooLarge):
        asyncio.run(read_capped_body(request, LIMIT))
    assert LIMIT < sum(pulled) <= LIMIT + 64 * 1024


def test_a_body_under_the_limit_is_served(gateway):
    base, _ = gateway
    padding = "word " * (LIMIT // 8)   # about half the limit
    response = httpx.post(f"{base}/v1/chat/completions", headers=AUTH, timeout=20, json={
        "model": "local-mini", "messages": [{"role": "user", "content": padding}]})
    assert response.status_code == 200, response.text


def test_the_serve_command_takes_the_body_limit(monkeypatch):
    from costr.cli import main as cli
    seen = {}
    monkeypatch.setattr(cli, "create_app", lambda **kw: seen.update(kw), raising=False)
    monkeypatch.setenv("COSTR_MAX_BODY_MB", "5")
    import costr.server.app as app_module
    monkeypatch.setattr(app_module, "create_app", lambda **kw: seen.update(kw))
    monkeypatch.setattr("costr.server.draining.DrainingServer.run",
                        lambda server, sockets=None: setattr(server, "started", True))
    monkeypatch.setattr(cli, "_count_keys", lambda *a: asyncio.sleep(0, 1))
    assert cli.main(["serve"]) == 0
    assert seen["max_body_bytes"] == 5 * 1024 * 1024
    assert cli.main(["serve", "--max-body-mb", "0.5"]) == 0
    assert seen["max_body_bytes"] == 512 * 1024


# -- message and tool counts ------------------------------------------------------------------

def many_messages(n: int) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": "ok"} for i in range(n)]


@pytest.mark.parametrize("path", ["/v1/chat/completions", *ANTHROPIC_PATHS])
def test_too_many_messages_or_tools_is_a_400_in_the_family_shape(gateway, path):
    base, _ = gateway
    anthropic = path in ANTHROPIC_PATHS
    tool = ({"name": "t", "description": "d", "input_schema": {"type": "object"}} if anthropic else
            {"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}})
    ask = {"model": "auto", "max_tokens": 100}
    for extra, code in (({"messages": many_messages(10_001)}, "too_many_messages"),
                        ({"messages": many_messages(1), "tools": [tool] * 1_001}, "too_many_tools")):
        response = httpx.post(f"{base}{path}", headers=AUTH, timeout=20, json={**ask, **extra})
        assert response.status_code == 400, response.text
        kind = error_type(path, response.json())
        assert kind == ("invalid_request_error" if anthropic else code)
        assert ("at most 10000." if code == "too_many_messages" else "at most 1000.") in response.text


def test_requests_at_the_count_limits_are_served(gateway):
    base, _ = gateway
    tools = [{"type": "function", "function": {"name": f"t{i}", "parameters": {"type": "object"}}}
             for i in range(1_000)]
    response = httpx.post(f"{base}/v1/chat/completions", headers=AUTH, timeout=30, json={
        "model": "local-mini", "messages": many_messages(9_999), "tools": tools})
    assert response.status_code == 200, response.text


# -- headers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_a_header_value_over_16_kb_is_refused_and_not_echoed(gateway, path):
    base, _ = gateway
    huge = "balanced" + "x" * (17 * 1024)
    response = httpx.post(f"{base}{path}", timeout=20,
                          headers={**AUTH, "x-cost-priority": huge},
                          json={"model": "auto", "max_tokens": 10,
                                "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400, response.text
    assert error_type(path, response.json()) in ("header_too_large", "invalid_request_error")
    assert "x-cost-priority" in response.text and "xxxxxxxx" not in response.text


def test_too_many_headers_are_refused(gateway):
    base, _ = gateway
    headers = {**AUTH, **{f"x-filler-{i}": "1" for i in range(200)}}
    response = httpx.post(f"{base}/v1/chat/completions", headers=headers, timeout=20,
                          json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_headers"


# -- agent sessions: per key, bounded ---------------------------------------------------------

def loop_continuation() -> list[dict]:
    return [{"role": "user", "content": "Reply exactly: next"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
             "function": {"name": "read_file", "arguments": "{\"path\": \"q.c\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]


def test_one_key_cannot_raise_the_tier_of_another_keys_session(gateway):
    base, data = gateway
    secret = "cr-" + secrets.token_urlsafe(32)
    asyncio.run(seed_key(None, data, secret, name="other", admin=False))
    other = {"authorization": f"Bearer {secret}"}

    def tier(headers: dict, messages: list[dict]) -> str:
        response = httpx.post(f"{base}/v1/chat/completions", timeout=20,
                              headers={**headers, "x-session-id": "shared-name"},
                              json={"model": "auto", "messages": messages})
        assert response.status_code == 200, response.text
        return response.json()["x_routing"]["tier"]

    hard = tier(AUTH, [{"role": "user", "content": HARD_ASK}])   # AUTH's loop starts hard
    assert hard != "budget"
    assert tier(other, loop_continuation()) == "budget"          # not the other key's tier
    assert tier(AUTH, loop_continuation()) == hard               # the owner's loop keeps it


def test_session_memory_keeps_no_overlong_session_ids():
    tiers = SessionTiers()
    mine = tiers.of_key("k1")
    mine.remember("s" * (MAX_SESSION_ID_CHARS + 1), "premium")
    assert mine.started_tier("s" * (MAX_SESSION_ID_CHARS + 1)) is None
    assert len(tiers._tiers) == 0
    mine.remember("s", "premium")
    assert mine.started_tier("s") == "premium" and tiers.of_key("k2").started_tier("s") is None


# -- 405s ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", OPENAI_PATHS + ANTHROPIC_PATHS)
def test_a_wrong_method_gets_405_in_the_family_shape(gateway, path):
    base, _ = gateway
    response = httpx.get(f"{base}{path}", headers=AUTH, timeout=20)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    error_type(path, response.json())


@pytest.mark.parametrize("argv, env, says", [
    (["--max-body-mb", "0"], {}, "--max-body-mb: '0': the limit must be a positive number"),
    (["--max-answer-mb", "-1"], {}, "--max-answer-mb: '-1': the limit must be a positive number"),
    ([], {"COSTR_MAX_ANSWER_MB": "lots"}, "--max-answer-mb: 'lots' is not a number of megabytes"),
])
def test_a_size_limit_that_is_not_a_positive_number_is_refused_at_start(argv, env, says):
    """A limit of 0 would refuse every request (or every answer), and a typo in the variable
    was a traceback: either is a one-line error naming the option, before anything starts."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "costr.cli.main", "serve", *argv],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
