"""What a hostile or unlucky client (or admin) could do, each found by probing a running Costr:
numbers that overflowed into 500s, an upstream answering 200 with a body that is not an
answer, a health check that mapped the deployment for strangers, a megabyte key name, a
world-readable database, and `costr keys` not finding a key by the name the docs use."""
from __future__ import annotations

import asyncio
import os
import secrets
import stat

import httpx
import pytest
from aiohttp import web

from costr.accounts.store import open_store
from costr.testing import AUTH, running_gateway, seed_key
from costr.testing.fake_upstream import FakeUpstream

from conftest import LOCAL_POOL, write_config

ANTHROPIC_ENV = "COSTR_TEST_HARDENING_ANTHROPIC_KEY"
# Every model of the tier list in each provider's wire format; the budget model has no
# max_output_tokens, so a request's max_tokens alone bounds what its hold would be.
POOLS = {
    "openai": LOCAL_POOL,
    "anthropic": """\
tiers: [budget, standard, premium]
baseline: local-large
providers:
  local: {{type: anthropic, base_url: "{url}", api_key_env: %s}}
models:
  - {{id: local-mini, provider: local, tier: budget, price: {{input: 0.1, output: 0.4}}, context_window: 128000}}
  - {{id: local-standard, provider: local, tier: standard, price: {{input: 0.5, output: 2.0}}, context_window: 128000}}
  - {{id: local-large, provider: local, tier: premium, price: {{input: 3.0, output: 15.0}}, context_window: 200000}}
""" % ANTHROPIC_ENV,
    "gemini": """\
tiers: [budget, standard, premium]
baseline: local-large
providers:
  local: {{type: gemini, base_url: "{url}/v1beta"}}
models:
  - {{id: local-mini, provider: local, tier: budget, price: {{input: 0.1, output: 0.4}}, context_window: 128000}}
  - {{id: local-standard, provider: local, tier: standard, price: {{input: 0.5, output: 2.0}}, context_window: 128000}}
  - {{id: local-large, provider: local, tier: premium, price: {{input: 3.0, output: 15.0}}, context_window: 200000}}
""",
}
NO_OUTPUT_LIMIT = LOCAL_POOL.replace(", max_output_tokens: 8192", "")
ASK = {"model": "auto", "messages": [{"role": "user", "content": "Reply exactly: ok"}]}


def new_key(data: str, **kw) -> dict:
    secret = "cr-" + secrets.token_urlsafe(32)
    asyncio.run(seed_key(None, data, secret, name="hardening", admin=False, **kw))
    return {"authorization": f"Bearer {secret}"}


@pytest.fixture
def gateway(tmp_path, fake_upstream):
    """(base URL, data dir), on a pool whose budget model has no max_output_tokens."""
    data = str(tmp_path / "data")
    with running_gateway(*write_config(tmp_path, NO_OUTPUT_LIMIT.format(url=fake_upstream.url)),
                         data_dir=data, cache="none") as base:
        yield base, data


# -- numbers that overflowed ------------------------------------------------------------------

def test_a_huge_max_tokens_with_a_limited_key_is_held_sanely_not_a_500(gateway):
    base, data = gateway
    key = new_key(data, credits_usd=1)
    body = {"model": "local-mini", "max_tokens": 2**62,
            "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{base}/v1/chat/completions", json=body, headers=key, timeout=20)
    # The hold is bounded by the model's context window ($0.05 here), so $1 covers it.
    assert response.status_code == 200, response.text
    credits = httpx.get(f"{base}/v1/credits", headers=key, timeout=20).json()
    assert credits["reserved_usd"] == 0 and 0.99 < credits["balance_usd"] <= 1


def test_a_huge_max_tokens_beyond_the_balance_is_a_402(gateway):
    base, data = gateway
    key = new_key(data, credits_usd=0.01)
    body = {"model": "local-mini", "max_tokens": 2**62,
            "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{base}/v1/chat/completions", json=body, headers=key, timeout=20)
    assert response.status_code == 402, response.text


@pytest.mark.parametrize("body", [
    {"name": "big", "credits_usd": 1e13}, {"name": "big", "credits_usd": 1e300},
    {"name": "big", "credits_usd": 10**30}, {"name": "tiny", "credits_usd": 1e-9},
    {"name": "x" * 1_000_000}, {"name": "many", "rpm": 10**30}, {"name": 5},
])
def test_the_admin_api_refuses_out_of_bound_keys_with_a_400(gateway, body):
    base, _ = gateway
    response = httpx.post(f"{base}/v1/admin/keys", json=body, headers=AUTH, timeout=20)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] in ("name", "credits_usd", "rpm") and error["message"]
    names = [k["name"] for k in httpx.get(f"{base}/v1/admin/keys", headers=AUTH).json()["data"]]
    assert body.get("name") not in names


def test_a_key_name_of_200_characters_and_a_zero_credit_are_accepted(gateway):
    base, _ = gateway
    response = httpx.post(f"{base}/v1/admin/keys", json={"name": "n" * 200, "credits_usd": 0},
                          headers=AUTH, timeout=20)
    assert response.status_code == 201 and response.json()["balance_usd"] == 0


@pytest.mark.parametrize("usd", [1e13, 1e300, 10**30, 1e-9, 0.0000004])
def test_the_admin_api_refuses_out_of_bound_top_ups_with_a_400(gateway, usd):
    base, data = gateway
    made = httpx.post(f"{base}/v1/admin/keys", json={"name": "prepaid", "credits_usd": 1},
                      headers=AUTH, timeout=20).json()
    response = httpx.post(f"{base}/v1/admin/keys/{made['id']}/top-up", json={"usd": usd},
                          headers=AUTH, timeout=20)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "usd"
    assert "0.000001" in response.json()["error"]["message"]
    listed = httpx.get(f"{base}/v1/admin/keys", headers=AUTH).json()["data"]
    assert [k["balance_usd"] for k in listed if k["id"] == made["id"]] == [1]


def test_a_top_up_of_one_micro_dollar_adds_it(gateway):
    base, _ = gateway
    made = httpx.post(f"{base}/v1/admin/keys", json={"name": "prepaid", "credits_usd": 1},
                      headers=AUTH, timeout=20).json()
    response = httpx.post(f"{base}/v1/admin/keys/{made['id']}/top-up", json={"usd": 0.000001},
                          headers=AUTH, timeout=20)
    assert response.status_code == 200 and response.json()["balance_usd"] == 1.000001


def test_top_ups_cannot_take_a_balance_past_what_the_books_hold(gateway):
    base, data = gateway
    from costr.accounts.keys import MAX_BALANCE_MICROS
    assert MAX_BALANCE_MICROS < 2**63   # a BIGINT holds it, with room for one more top-up
    secret = "cr-" + secrets.token_urlsafe(32)
    rich = asyncio.run(seed_key(None, data, secret, name="rich", admin=False,
                                credits_usd=MAX_BALANCE_MICROS / 1e6 - 2))
    response = httpx.post(f"{base}/v1/admin/keys/{rich.id}/top-up", json={"usd": 1e9},
                          headers=AUTH, timeout=20)
    assert response.status_code == 400 and "balance past" in response.text
    assert httpx.post(f"{base}/v1/admin/keys/{rich.id}/top-up", json={"usd": 1},
                      headers=AUTH, timeout=20).status_code == 200


# -- the same bounds in `costr keys` --------------------------------------------------------

def stored_keys(tmp_path):
    async def listed():
        store = await open_store(None, tmp_path / "data")
        try:
            return await store.list_keys()
        finally:
            await store.close()
    return asyncio.run(listed())


@pytest.mark.parametrize("argv", [["--credits", "1e13"], ["--credits", "1e300"],
                                  ["--credits", "inf"], ["--credits", "1e-9"]])
def test_the_cli_refuses_out_of_bound_credit(keys, tmp_path, argv):
    status, out, err = keys("create", "--name", "big", *argv)
    assert status == 2 and out == "" and "credit" in err and "Traceback" not in err
    assert stored_keys(tmp_path) == []


def test_the_cli_refuses_a_megabyte_name(keys, tmp_path):
    status, _, err = keys("create", "--name", "x" * 1_000_000)
    assert status == 2 and "at most 200 characters" in err
    assert stored_keys(tmp_path) == []


@pytest.mark.parametrize("usd", ["1e13", "1e300", "1e-9"])
def test_the_cli_refuses_out_of_bound_top_ups(keys, tmp_path, usd):
    keys("create", "--name", "alice", "--credits", "5")
    status, _, err = keys("top-up", "alice", "--usd", usd)
    assert status == 2 and "0.000001" in err
    assert [k.balance_micros for k in stored_keys(tmp_path)] == [5_000_000]


# -- and in the dashboard's key forms, which call the same functions ------------------------

def test_the_dashboard_refuses_a_top_up_too_small_to_add_anything(tmp_path, fake_upstream):
    from dashboard_signin import csrf_token, dashboard_client, run, sign_in, store_of
    from costr.accounts.keys import issue_key
    from costr.testing import TEST_KEY
    with dashboard_client(tmp_path, fake_upstream.url) as (client, _, _):
        other, _ = run(client, lambda: issue_key(store_of(client), "other", credits_usd=1))
        sign_in(client, TEST_KEY)
        path = f"/dashboard/keys/{other.id}/top-up"
        refused = client.post(path, data={"csrf_token": csrf_token(client, "/dashboard/keys"),
                                          "usd": "0.000000001"})
        assert refused.status_code == 400 and "0.000001" in refused.text
        after = run(client, store_of(client).key_by_id_or_prefix, other.id)
        assert after.balance_micros == 1_000_000


# -- `costr keys top-up alice`, as the docs write it ---------------------------------------

def test_the_cli_finds_a_key_by_its_name(keys, tmp_path):
    keys("create", "--name", "alice", "--credits", "5")
    keys("create", "--name", "bob", "--credits", "1")
    status, out, _ = keys("top-up", "alice", "--usd", "10")
    assert status == 0 and "15.000000" in out
    status, out, _ = keys("revoke", "alice")
    assert status == 0 and "revoked" in out
    by_name = {k.name: k for k in stored_keys(tmp_path)}
    assert by_name["alice"].revoked and by_name["alice"].balance_micros == 15_000_000
    assert not by_name["bob"].revoked and by_name["bob"].balance_micros == 1_000_000


def test_a_name_two_live_keys_share_is_refused_listing_both(keys, tmp_path):
    keys("create", "--name", "alice", "--credits", "5")
    keys("create", "--name", "alice", "--credits", "5")
    status, _, err = keys("top-up", "alice", "--usd", "10")
    assert status == 1 and "2 keys are named 'alice'" in err
    for key in stored_keys(tmp_path):
        assert key.id in err and key.balance_micros == 5_000_000
    # once one is revoked, the name means the live one
    first = stored_keys(tmp_path)[0]
    assert keys("revoke", first.id)[0] == 0
    assert keys("top-up", "alice", "--usd", "1")[0] == 0
    balances = {k.id: k.balance_micros for k in stored_keys(tmp_path)}
    assert balances[first.id] == 5_000_000 and sorted(balances.values()) == [5_000_000, 6_000_000]


def test_an_unknown_name_says_so(keys):
    status, _, err = keys("revoke", "nobody")
    assert status == 1 and "id, prefix or name 'nobody'" in err


# -- an upstream answering 200 with something that is not an answer ------------------------

class GarblingUpstream(FakeUpstream):
    """The fake, except that the first `garbled` requests are answered 200 with `body`."""

    def __init__(self, body: bytes, garbled: int):
        super().__init__()
        self.body, self.garbled = body, garbled

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def garble(request, handler):
            if self.garbled > 0:
                self.garbled -= 1
                return web.Response(body=self.body, content_type="application/json")
            return await handler(request)
        app.middlewares.append(garble)
        return app


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("body", [b"<html>bad gateway</html>", b'{"choices": ', b"[1, 2]",
                                  b'{"choices": "x", "content": 5, "candidates": 7}'])
def test_a_200_that_is_not_an_answer_falls_back_to_the_next_model(tmp_path, monkeypatch,
                                                                   provider, body):
    monkeypatch.setenv(ANTHROPIC_ENV, "sk-ant-fake")
    with GarblingUpstream(body, garbled=1) as fake:
        with running_gateway(*write_config(tmp_path, POOLS[provider].format(url=fake.url)),
                             cache="none") as base:
            response = httpx.post(f"{base}/v1/chat/completions", json=ASK, headers=AUTH,
                                  timeout=20)
    assert response.status_code == 200, response.text
    assert response.json()["x_routing"]["routed_model"] == "local-standard"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("body", [b"<html>bad gateway</html>", b"data: {not json\n\n"])
def test_a_streamed_200_that_is_not_a_stream_falls_back_before_the_first_byte(
        tmp_path, monkeypatch, provider, body):
    monkeypatch.setenv(ANTHROPIC_ENV, "sk-ant-fake")
    with GarblingUpstream(body, garbled=1) as fake:
        with running_gateway(*write_config(tmp_path, POOLS[provider].format(url=fake.url)),
                             cache="none") as base:
            response = httpx.post(f"{base}/v1/chat/completions", json={**ASK, "stream": True},
                                  headers=AUTH, timeout=20)
    assert response.status_code == 200
    assert '"routed_model":"local-standard"' in response.text and "error" not in response.text


@pytest.mark.parametrize("path, family", [("/v1/chat/completions", "openai"),
                                          ("/v1/messages", "anthropic")])
def test_when_every_upstream_answers_garbage_the_client_gets_a_502_in_its_shape(
        tmp_path, path, family):
    with GarblingUpstream(b"<html>bad gateway</html>", garbled=100) as fake:
        with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake.url)),
                             cache="none") as base:
            body = {**ASK, "max_tokens": 50}
            response = httpx.post(base + path, json=body, timeout=20,
                                  headers={**AUTH, "anthropic-version": "2023-06-01"})
    assert response.status_code == 502, response.text
    assert "not JSON" in response.text and response.headers.get("x-request-id")
    if family == "anthropic":
        assert response.json()["type"] == "error" and response.json()["error"]["type"]
    else:
        assert response.json()["error"]["code"] == "upstream_error"


# -- the health check -----------------------------------------------------------------------

def test_the_health_check_tells_a_stranger_only_its_status(gateway):
    base, data = gateway
    for headers in ({}, {"authorization": "Bearer cr-not-a-key"}, new_key(data)):
        response = httpx.get(f"{base}/v1/router/health", headers=headers, timeout=20)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}, headers
    detail = httpx.get(f"{base}/v1/router/health", headers=AUTH, timeout=20).json()
    assert detail["status"] == "ok" and detail["providers"]["local"]["type"] == "openai"
    assert detail["config"]["providers_file"].endswith("providers.yaml")


def test_the_health_check_is_503_when_no_provider_is_usable(tmp_path):
    pool = LOCAL_POOL.format(url="http://127.0.0.1:9").replace(
        '{type: openai, base_url: "http://127.0.0.1:9/v1"}',
        '{type: openai, base_url: "http://127.0.0.1:9/v1", api_key_env: COSTR_TEST_NEVER_SET}')
    with running_gateway(*write_config(tmp_path, pool)) as base:
        anonymous = httpx.get(f"{base}/v1/router/health", timeout=20)
        admin = httpx.get(f"{base}/v1/router/health", headers=AUTH, timeout=20)
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "unusable"}
    assert admin.status_code == 503
    assert admin.json()["providers"]["local"]["missing_env"] == "COSTR_TEST_NEVER_SET"


# -- the database file ----------------------------------------------------------------------

def test_the_sqlite_database_is_created_owner_only(tmp_path):
    async def make():
        store = await open_store(None, tmp_path / "data")
        await store.close()
    old = os.umask(0o022)
    try:
        asyncio.run(make())
    finally:
        os.umask(old)
    files = list((tmp_path / "data").iterdir())
    assert any(p.name == "costr.db" for p in files)
    for path in [tmp_path / "data", *files]:   # the folder, the database, its -wal and -shm
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))


def test_a_database_that_cannot_be_reached_is_a_503_with_retry_after_in_each_familys_shape():
    """While PostgreSQL restarts, requests failed as 500 'internal error' (the fault drill's
    'restart PostgreSQL' row); they are a 503 saying the database is away, nothing charged."""
    from costr.accounts.store_postgres import PostgresStore
    from costr.errors import DatabaseUnavailable
    from costr.plugins import collect, make_plugin_manager

    with socket_nobody_listens_on() as port:
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/test")
        with pytest.raises(DatabaseUnavailable) as caught:
            asyncio.run(store.count_keys())
    err = caught.value
    assert err.status == 503 and err.headers["retry-after"] == "2"
    formats = collect(make_plugin_manager()).api_formats
    status, body = formats["anthropic-messages"].encode_error(err)
    assert status == 503 and body["type"] == "error" and "database" in body["error"]["message"]
    status, body = formats["openai-chat"].encode_error(err)
    assert status == 503 and body["error"]["code"] == "database_unavailable"


def socket_nobody_listens_on():
    import contextlib
    import socket

    @contextlib.contextmanager
    def port():
        with socket.socket() as sock:   # bound, never listening: connections are refused
            sock.bind(("127.0.0.1", 0))
            yield sock.getsockname()[1]
    return port()
