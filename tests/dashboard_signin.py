"""A dashboard app in-process (Starlette's TestClient) with an admin and a non-admin key, and
helpers to sign in and to read a page's CSRF token; shared by the dashboard's non-browser
tests."""
from __future__ import annotations

import asyncio
import re
import time
from contextlib import contextmanager
from pathlib import Path

from starlette.testclient import TestClient

from conftest import LOCAL_POOL, write_config
from costr.accounts.records import LedgerRecord
from costr.server.app import create_app
from costr.testing import TEST_KEY, seed_key

USER_KEY = "cr-user-key-for-dashboard-tests-0123456789ab"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@contextmanager
def dashboard_client(tmp_path: Path, upstream_url: str = "http://127.0.0.1:9", *,
                     admin_name: str = "admin", user_name: str = "user", **app_kw):
    """Yields (client, admin ApiKey, user ApiKey); the client does not follow redirects."""
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=upstream_url))
    admin = asyncio.run(seed_key(None, tmp_path, TEST_KEY, name=admin_name))
    user = asyncio.run(seed_key(None, tmp_path, USER_KEY, name=user_name, admin=False))
    client_kw = {k: app_kw.pop(k) for k in ("root_path", "base_url") if k in app_kw}
    app = create_app(providers_path=providers, policies_dir=policies, data_dir=tmp_path, **app_kw)
    with TestClient(app, follow_redirects=False, **client_kw) as client:
        yield client, admin, user


def store_of(client: TestClient):
    return client.app.state.gateway.books.store


def run(client: TestClient, coroutine_function, *args):
    """Run a store call on the app's own event loop."""
    return client.portal.call(coroutine_function, *args)


def csrf_token(client: TestClient, path: str = "/dashboard/login") -> str:
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    return CSRF.search(page.text).group(1)


def sign_in(client: TestClient, secret: str, next_path: str = "/", prefix: str = ""):
    token = csrf_token(client, prefix + "/dashboard/login")
    return client.post(prefix + "/dashboard/login",
                       data={"key": secret, "csrf_token": token, "next": next_path})


def record(key_id: str, request_id: str, ts: float | None = None, **fields) -> LedgerRecord:
    """A ledger record as an answered request leaves it, with `fields` overriding."""
    ts = time.time() if ts is None else ts
    values = dict(family="openai-chat", requested_model="auto", routed_model="local-mini",
                  provider="local", tier="budget", policy="balanced", complexity=0.2,
                  confidence=0.8, input_tokens=100, output_tokens=20, cost_micros=18,
                  charged_micros=18, baseline_micros=600, savings_percent=97.0,
                  latency_ms=120.0, status=200)
    values.update(fields)
    day = time.strftime("%Y-%m-%d", time.gmtime(ts))
    return LedgerRecord(id=request_id, key_id=key_id, ts=ts, day=day, **values)


def write_records(client: TestClient, records: list[LedgerRecord]) -> None:
    """Write records as the ledger writer does: the ledger, and the daily rollup with it."""
    from costr.accounts.usage_rollups import write_ledger_batch
    run(client, write_ledger_batch, store_of(client), records)
