"""Helpers for testing Costr and its plugins (may import any part; no part imports it but bench).

Recorded upstreams, one-test plugins, a live app.

Plugin authors can use these too: `use_cassette` replays an upstream from
`cassettes/<test module>/<name>.yaml` and never touches the network; `registered_plugin`
registers a plugin object for the duration of one test.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import vcr

SECRET_HEADERS = ["authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie", "set-cookie"]


def cassette_vcr(cassette_dir: str | os.PathLike) -> vcr.VCR:
    """A VCR that only replays (record_mode none), filters credentials, and lets requests to
    this machine (the app under test) through. (vcrpy is a test dependency, imported here so
    that the fake upstream and `costr bench` run on a plain install.)"""
    import vcr  # noqa: F811
    return vcr.VCR(
        cassette_library_dir=str(cassette_dir),
        record_mode=os.environ.get("COSTR_VCR_RECORD_MODE", "none"),
        match_on=["method", "scheme", "host", "port", "path", "query"],
        filter_headers=SECRET_HEADERS,
        filter_query_parameters=["key"],
        ignore_localhost=True,
        decode_compressed_response=True,
    )


@contextmanager
def use_cassette(test_file: str, name: str, cassettes_root: str | os.PathLike | None = None):
    """Replay `cassettes/<module of test_file>/<name>.yaml`. The cassette it yields has
    `.sent`: the requests actually sent during the block (vcr Request objects; `.json()`
    gives a JSON body), for asserting on what Costr sent upstream."""
    module = Path(test_file).stem
    root = Path(cassettes_root) if cassettes_root else _repo_root(Path(test_file)) / "cassettes"
    with cassette_vcr(root / module).use_cassette(f"{name}.yaml") as cassette:
        sent: list = []
        play = cassette.play_response

        def play_and_keep(request):
            sent.append(_SentRequest(request))
            return play(request)
        cassette.play_response = play_and_keep
        cassette.sent = sent
        yield cassette


class _SentRequest:
    def __init__(self, request):
        self.method, self.uri, self.headers = request.method, request.uri, dict(request.headers)
        self.body = request.body

    def json(self):
        import json
        return json.loads(self.body)


def _repo_root(start: Path) -> Path:
    for parent in [start.resolve(), *start.resolve().parents]:
        if (parent / "cassettes").is_dir():
            return parent
    return start.resolve().parent


@contextmanager
def registered_plugin(pm, plugin, name: str | None = None):
    """Register `plugin` with plugin manager `pm` for the duration of a `with` block."""
    name = pm.register(plugin, name=name)
    try:
        yield plugin
    finally:
        pm.unregister(plugin)


# An admin key with no credit limit, which running_gateway creates unless told otherwise.
TEST_KEY = "cr-test-key-for-costr-tests-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TEST_KEY}"}


async def seed_key(database: str | None, data_dir, secret: str, *, name: str = "test",
                   admin: bool = True, credits_usd: float | None = None,
                   rpm: int | None = None, tpm: int | None = None):
    """Store a key with a chosen secret (tests need to know it in advance)."""
    import time

    from costr.accounts.records import ApiKey, display_prefix, hash_secret, usd_to_micros
    from costr.accounts.store import open_store

    store = await open_store(database, data_dir)
    try:
        key = ApiKey(id=hash_secret(secret)[:16], name=name, prefix=display_prefix(secret),
                     admin=admin, rpm=rpm, tpm=tpm, created_at=time.time(),
                     balance_micros=None if credits_usd is None else usd_to_micros(credits_usd))
        await store.create_key(key, hash_secret(secret))
        return key
    finally:
        await store.close()


@contextmanager
def running_gateway(providers_yaml: str | os.PathLike, policies_dir: str | os.PathLike, *,
                    database: str | None = None, seed_test_key: bool = True, **app_kw):
    """Serve a Costr app built from these files on a free loopback port, in a background
    thread; yields its base URL (`http://127.0.0.1:PORT`). Without `database`, keys and the
    ledger live in a fresh SQLite file; TEST_KEY is created as an unlimited admin key."""
    import asyncio
    import socket
    import tempfile
    import threading
    import time

    import uvicorn

    from costr.server.app import create_app

    scratch = tempfile.TemporaryDirectory(prefix="costr-test-")
    if database is None:
        app_kw.setdefault("data_dir", scratch.name)
    if seed_test_key:
        asyncio.run(seed_key(database, app_kw.get("data_dir"), TEST_KEY))
    app = create_app(providers_path=providers_yaml, policies_dir=policies_dir, database=database,
                     **app_kw)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        scratch.cleanup()


def sse_events(response) -> list[tuple[str | None, dict]]:
    """A finished SSE response (anything with `iter_lines()`, such as an httpx response) as
    (event name, parsed data) pairs; `data: [DONE]` is left out."""
    import json

    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: ") and line != "data: [DONE]":
            events.append((name, json.loads(line[len("data: "):])))
    return events
