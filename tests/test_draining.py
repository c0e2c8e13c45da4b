"""A `costr serve` instance stopping behind a load balancer (costr/server/draining.py): on
SIGTERM it drains (health 503 "draining", every answer closes its connection, still answering)
before it stops listening; connections queued when the listener closes are answered, not reset;
and an error raised after an answer went out does not reset the connection under an unread body.
The same, through nginx under load, is the fault drill's "SIGTERM instance" row
(tests/test_fault_drill.py)."""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn

from costr.server.draining import Draining, DrainingServer, drain_gate
from costr.testing import AUTH, TEST_KEY, seed_key
from costr.testing.fake_upstream import write_gateway_config
from costr.benchmark.drill_cluster import free_port

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Reply exactly: still here"}]}


@pytest.fixture
def serve(tmp_path, fake_upstream):
    """Start `costr serve --drain-seconds N` on a free port; yields (process, base URL)."""
    providers, policies = write_gateway_config(tmp_path, fake_upstream.url)
    asyncio.run(seed_key(None, tmp_path / "data", TEST_KEY))
    started = []

    def start(drain_seconds: float):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "costr", "serve", "--port", str(port), "--providers",
             str(providers), "--policies", str(policies), "--data-dir", str(tmp_path / "data"),
             "--drain-seconds", str(drain_seconds), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v1/router/health", timeout=1).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.1)
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_sigterm_drains_before_stopping(serve):
    proc, url = serve(drain_seconds=2.5)
    with httpx.Client(base_url=url, headers=AUTH, timeout=10) as http:
        before = http.post("/v1/chat/completions", json=CHAT)
        assert before.status_code == 200 and "close" not in before.headers.get("connection", "")
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        health = http.get("/v1/router/health")
        assert health.status_code == 503 and health.json() == {"status": "draining"}
        # Still answering, on a pooled connection and on new ones, but every answer closes
        # its connection, so a balancer's pool empties before the listener closes.
        answer = http.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "still here"
        assert answer.headers["connection"] == "close"
        assert httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=AUTH).status_code == 200
    exit_code = proc.wait(30)
    stopped = time.monotonic() - signalled
    output = proc.stdout.read()
    assert exit_code == -signal.SIGTERM, output
    assert 2.5 <= stopped < 10, output
    assert "Traceback" not in output, output
    with pytest.raises(httpx.ConnectError):   # and then it is gone
        httpx.get(f"{url}/v1/router/health", timeout=2)


def test_without_drain_seconds_sigterm_stops_at_once(serve):
    proc, url = serve(drain_seconds=0)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == -signal.SIGTERM
    assert time.monotonic() - signalled < 2


async def _answer(scope, receive, send):
    """An ASGI app answering 200 "ok" without reading the request body."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _request(path: str = "/", body: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {len(body)}\r\n\r\n"
            ).encode() + body


def _read_response(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"ok"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_connections_queued_when_the_listener_closes_are_answered():
    """Connections the kernel accepted but the server had not yet taken when it stops
    listening would be reset by the close, after a balancer sent them a request it cannot
    send again; they are taken and answered first."""
    async def scenario() -> list[bytes]:
        config = uvicorn.Config(_answer, host="127.0.0.1", port=free_port(), lifespan="off",
                                log_level="warning")
        config.load()
        server = DrainingServer(config, Draining())
        server.lifespan = config.lifespan_class(config)   # as uvicorn's Server.serve does
        await server.startup()
        # No await from here to the shutdown: the event loop never runs, so these connections
        # wait in the kernel's queue, requests sent, when the listener is closed.
        clients = [socket.create_connection(("127.0.0.1", config.port)) for _ in range(3)]
        for client in clients:
            client.sendall(_request())
        await server.shutdown()
        answers = await asyncio.to_thread(lambda: [_read_response(c) for c in clients])
        for client in clients:
            client.close()
        return answers

    answers = asyncio.run(scenario())
    assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"ok") for a in answers), answers


async def _fail_after_answer(scope, receive, send):
    """Answers 500 and then raises, as Starlette does with an unexpected error (it re-raises
    for the server to log), without reading the body."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/fail":
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"no"})
        raise RuntimeError("the database went away")
    await _answer(scope, receive, send)


def test_an_error_after_the_answer_does_not_reset_the_connection():
    """The 500 arrives whole and the connection stays usable, although the body was unread: a
    balancer reading that 500 sees the 500, not a reset (which it would answer with 502 and
    count against the instance)."""
    port = free_port()
    config = uvicorn.Config(drain_gate(_fail_after_answer, Draining()), host="127.0.0.1",
                            port=port, lifespan="off", log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(5)
            sock.sendall(_request("/fail", b"x" * 512 * 1024))   # more than a socket buffers
            first = b""
            while not first.endswith(b"no"):
                chunk = sock.recv(65536)
                assert chunk, first
                first += chunk
            assert first.startswith(b"HTTP/1.1 500")
            sock.sendall(_request("/"))
            second = _read_response(sock)
            assert second.startswith(b"HTTP/1.1 200") and second.endswith(b"ok"), second
    finally:
        server.should_exit = True
        thread.join(10)
