"""The dashboard's Keys pages: a user sees their own key and its usage; an admin sees every key,
creates one (its secret shown once), tops up, changes limits and revokes; a non-admin is
refused every admin action on the server, and nothing changes. Also key_admin.set_limits on
SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import re
import time

import pytest

from conftest import fresh_postgres_schema
from costr.accounts.key_admin import set_limits
from costr.accounts.keys import issue_key
from costr.accounts.store import open_store
from costr.testing import TEST_KEY
from dashboard_signin import (USER_KEY, csrf_token, dashboard_client, record, run, sign_in,
                              store_of, write_records)

SECRET = re.compile(r"cr-[A-Za-z0-9_-]{43}")
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Reply exactly: ok"}],
        "max_tokens": 16}


@pytest.fixture
def dashboard(tmp_path, fake_upstream):
    with dashboard_client(tmp_path, fake_upstream.url) as parts:
        yield parts


def key_of(client, key_id: str):
    return run(client, store_of(client).key_by_id_or_prefix, key_id)


def make_key(client, name: str = "other", **options):
    """A key issued straight into the store: (ApiKey, secret)."""
    return run(client, lambda: issue_key(store_of(client), name, **options))


def post(client, path: str, form: dict, token_from: str = "/dashboard/keys"):
    return client.post(path, data={"csrf_token": csrf_token(client, token_from), **form})


# --- what each key sees -------------------------------------------------------------------------

def test_a_user_sees_their_own_key_and_its_usage_today_and_this_month(dashboard):
    client, admin, user = dashboard
    now = time.time()
    write_records(client, [record(user.id, "req_today", now, cost_micros=250_000, baseline_micros=1_000_000),
                           record(admin.id, "req_admin", now, cost_micros=9_000_000)])
    if time.gmtime(now).tm_mday > 1:   # an earlier day of this month counts in the month only
        write_records(client, [record(user.id, "req_earlier", now - 86400, cost_micros=750_000,
                                      baseline_micros=1_000_000)])
    sign_in(client, USER_KEY)
    page = client.get("/dashboard/keys")
    assert page.status_code == 200
    assert f'data-key-id="{user.id}"' in page.text and 'id="keys-table"' not in page.text
    assert admin.prefix not in page.text and admin.id not in page.text
    today = re.search(r'<tr data-period="today">(.*?)</tr>', page.text, re.S).group(1)
    month = re.search(r'<tr data-period="month">(.*?)</tr>', page.text, re.S).group(1)
    assert 'data-field="requests">1<' in today and 'data-field="cost">$0.25<' in today
    assert "$0.75 (75.0%)" in today
    if time.gmtime(now).tm_mday > 1:
        assert 'data-field="requests">2<' in month and 'data-field="cost">$1.00<' in month
    assert 'id="top-up-form"' not in page.text and 'id="revoke-link"' not in page.text


def test_a_user_cannot_see_another_key(dashboard):
    client, admin, user = dashboard
    sign_in(client, USER_KEY)
    assert client.get(f"/dashboard/keys/{user.id}").status_code == 200
    for path in (f"/dashboard/keys/{admin.id}", f"/dashboard/keys/{admin.id}/revoke",
                 "/dashboard/keys/no-such-key"):
        refused = client.get(path)
        assert refused.status_code == 403 and 'data-status="403"' in refused.text, path
        assert admin.prefix not in refused.text


def test_an_admin_sees_every_key(dashboard):
    client, admin, user = dashboard
    make_key(client, "limited", credits_usd=5, rpm=60, tpm=1000)
    sign_in(client, TEST_KEY)
    page = client.get("/dashboard/keys").text
    for key in (admin, user):
        assert f'data-key-id="{key.id}"' in page and key.prefix in page
    assert "$5.00" in page and ">60<" in page and ">1,000<" in page and "Unlimited" in page
    other = client.get(f"/dashboard/keys/{user.id}")
    assert other.status_code == 200 and 'id="limits-form"' in other.text
    assert client.get("/dashboard/keys/no-such-key").status_code == 404


# --- admins change keys -------------------------------------------------------------------------

def test_an_admin_creates_a_key_shown_once(dashboard):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    created = post(client, "/dashboard/keys", {"name": "<b>ci</b> & co", "credits_usd": "5",
                                               "rpm": "60", "tpm": "", "admin": "on"})
    assert created.status_code == 201 and "location" not in created.headers
    assert created.headers["cache-control"] == "no-store"
    secrets = set(SECRET.findall(created.text))
    assert len(secrets) == 1
    secret = secrets.pop()
    assert 'data-copy="new-key-secret"' in created.text
    assert "&lt;b&gt;ci&lt;/b&gt; &amp; co" in created.text and "<b>ci</b>" not in created.text
    credits = client.get("/v1/credits", headers={"authorization": f"Bearer {secret}"}).json()
    assert credits["balance_usd"] == 5 and credits["limits"] == {"requests_per_minute": 60,
                                                                 "tokens_per_minute": None}
    new_id = credits["key"]["id"]
    assert key_of(client, new_id).admin
    for path in ("/dashboard/keys", f"/dashboard/keys/{new_id}"):
        again = client.get(path)
        assert again.status_code == 200 and secret not in again.text and 'id="new-key"' not in again.text


def test_an_unlimited_key_and_a_refused_form(dashboard):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    before = len(run(client, store_of(client).list_keys))
    for form, words in (({"name": " ", "credits_usd": "5"}, "Give the key a name"),
                        ({"name": "x", "credits_usd": "lots"}, "amount in US dollars"),
                        ({"name": "x", "credits_usd": "-1"}, "zero or more"),
                        ({"name": "x", "unlimited": "on", "rpm": "0"}, "Requests per minute")):
        refused = post(client, "/dashboard/keys", form)
        assert refused.status_code == 400 and words in refused.text, form
        assert not SECRET.search(refused.text)
    assert len(run(client, store_of(client).list_keys)) == before
    made = post(client, "/dashboard/keys", {"name": "free", "unlimited": "on", "credits_usd": "3"})
    secret = SECRET.search(made.text).group(0)
    assert client.get("/v1/credits", headers={"authorization": f"Bearer {secret}"}).json()["unlimited"]


def test_an_admin_tops_up_a_key(dashboard):
    client, _, user = dashboard
    other, _ = make_key(client, credits_usd=1)
    sign_in(client, TEST_KEY)
    done = post(client, f"/dashboard/keys/{other.id}/top-up", {"usd": "2.50"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/dashboard/keys/{other.id}?done=top-up"
    assert key_of(client, other.id).balance_micros == 3_500_000
    page = client.get(done.headers["location"]).text
    assert "Credit added." in page and 'data-field="balance">$3.50<' in page
    for amount in ("0", "-2", "abc", "nan", "inf"):
        refused = post(client, f"/dashboard/keys/{other.id}/top-up", {"usd": amount})
        assert refused.status_code == 400, amount
    assert key_of(client, other.id).balance_micros == 3_500_000
    unlimited = post(client, f"/dashboard/keys/{user.id}/top-up", {"usd": "1"})
    assert unlimited.status_code == 400 and "unlimited" in unlimited.text


def test_changed_limits_hold_from_the_next_request(dashboard):
    client, _, _ = dashboard
    other, secret = make_key(client)
    auth = {"authorization": f"Bearer {secret}"}
    assert client.post("/v1/chat/completions", json=CHAT, headers=auth).status_code == 200
    sign_in(client, TEST_KEY)
    done = post(client, f"/dashboard/keys/{other.id}/limits", {"rpm": "1", "tpm": ""})
    assert done.status_code == 303
    changed = key_of(client, other.id)
    assert (changed.rpm, changed.tpm) == (1, None)
    statuses = [client.post("/v1/chat/completions", json=CHAT, headers=auth).status_code
                for _ in range(2)]
    assert statuses == [200, 429]
    assert post(client, f"/dashboard/keys/{other.id}/limits", {"rpm": "", "tpm": "5000"}).status_code == 303
    assert (key_of(client, other.id).rpm, key_of(client, other.id).tpm) == (None, 5000)
    assert post(client, f"/dashboard/keys/{other.id}/limits", {"rpm": "1.5"}).status_code == 400


def test_revoking_asks_first_then_refuses_the_key(dashboard):
    client, _, _ = dashboard
    other, secret = make_key(client, "doomed")
    sign_in(client, TEST_KEY)
    confirm = client.get(f"/dashboard/keys/{other.id}/revoke")
    assert confirm.status_code == 200 and 'id="revoke-form"' in confirm.text
    assert not key_of(client, other.id).revoked   # asking changes nothing
    done = post(client, f"/dashboard/keys/{other.id}/revoke", {},
                token_from=f"/dashboard/keys/{other.id}/revoke")
    assert done.status_code == 303 and done.headers["location"].endswith("?done=revoked")
    assert key_of(client, other.id).revoked
    assert client.get("/v1/credits", headers={"authorization": f"Bearer {secret}"}).status_code == 401
    page = client.get(done.headers["location"]).text
    assert 'data-revoked="true"' in page and 'id="limits-form"' not in page
    assert post(client, f"/dashboard/keys/{other.id}/top-up", {"usd": "1"}).status_code == 400


# --- refused: no admin, no token ----------------------------------------------------------------

def test_a_user_is_refused_every_admin_action_and_nothing_changes(dashboard):
    client, admin, user = dashboard
    other, _ = make_key(client, credits_usd=1)
    sign_in(client, USER_KEY)
    before = run(client, store_of(client).list_keys)
    for path, form in (("/dashboard/keys", {"name": "mine now", "unlimited": "on", "admin": "on"}),
                       (f"/dashboard/keys/{other.id}/top-up", {"usd": "100"}),
                       (f"/dashboard/keys/{user.id}/top-up", {"usd": "100"}),
                       (f"/dashboard/keys/{other.id}/limits", {"rpm": "", "tpm": ""}),
                       (f"/dashboard/keys/{user.id}/limits", {"rpm": "", "tpm": ""}),
                       (f"/dashboard/keys/{admin.id}/revoke", {}),
                       (f"/dashboard/keys/{user.id}/revoke", {})):
        refused = post(client, path, form, token_from=f"/dashboard/keys/{user.id}")
        assert refused.status_code == 403 and 'data-status="403"' in refused.text, path
        assert not SECRET.search(refused.text)
    assert run(client, store_of(client).list_keys) == before


def test_an_admin_form_without_its_token_changes_nothing(dashboard):
    client, _, _ = dashboard
    other, _ = make_key(client, credits_usd=1)
    sign_in(client, TEST_KEY)
    before = run(client, store_of(client).list_keys)
    for path, form in (("/dashboard/keys", {"name": "x", "unlimited": "on"}),
                       (f"/dashboard/keys/{other.id}/top-up", {"usd": "5"}),
                       (f"/dashboard/keys/{other.id}/limits", {"rpm": "1"}),
                       (f"/dashboard/keys/{other.id}/revoke", {})):
        for token in (None, "forged"):
            data = form if token is None else {**form, "csrf_token": token}
            assert client.post(path, data=data).status_code == 403, (path, token)
    assert run(client, store_of(client).list_keys) == before


# --- key_admin.set_limits -----------------------------------------------------------------------

async def check_set_limits(store) -> None:
    key, _ = await issue_key(store, "k", rpm=10)
    assert await set_limits(store, key.id, rpm=None, tpm=2000)
    changed = await store.key_by_id_or_prefix(key.id)
    assert (changed.rpm, changed.tpm) == (None, 2000)
    assert not await set_limits(store, "no-such-key", rpm=1, tpm=1)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError):
            await set_limits(store, key.id, rpm=bad, tpm=None)


def test_set_limits_on_sqlite(tmp_path):
    async def go():
        store = await open_store(None, tmp_path)
        try:
            await check_set_limits(store)
        finally:
            await store.close()
    asyncio.run(go())


def test_set_limits_on_postgres():
    async def go():
        async with fresh_postgres_schema() as url:
            store = await open_store(url)
            try:
                await check_set_limits(store)
            finally:
                await store.close()
    asyncio.run(go())
