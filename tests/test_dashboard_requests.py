"""The dashboard's call history and request detail: what a row shows, filters, keyset pages,
CSV, feedback, and that a non-admin sees only their own key's requests."""
from __future__ import annotations

import csv
import io
import re
import time

import orjson
import pytest

from costr.accounts import ledger_search
from costr.accounts.ledger_search import feedback_for
from costr.accounts.records import KeptPrompt
from costr.dashboard.formatting import usd
from costr.testing import AUTH, TEST_KEY
from dashboard_signin import (USER_KEY, csrf_token, dashboard_client, record, run, sign_in,
                              store_of, write_records)

ROW = re.compile(r'<tr data-request-id="([^"]+)"')


def listed(html: str) -> list[str]:
    return ROW.findall(html)


def link(html: str, element_id: str) -> str | None:
    found = re.search(rf'id="{element_id}"[^>]*href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def dashboard(tmp_path):
    with dashboard_client(tmp_path) as parts:
        yield parts


@pytest.fixture
def mixed_ledger(dashboard):
    """Requests of both keys, oldest a day ago: admin's 'a*', the user's 'u*'."""
    client, admin, user = dashboard
    now = time.time()
    write_records(client, [
        record(admin.id, "req_a1", now - 86400, tier="premium", routed_model="local-large",
               policy="quality"),
        record(admin.id, "req_a2", now - 60, status=502, routed_model="", provider="", tier=None,
               error="every upstream attempt failed"),
        record(user.id, "req_u1", now - 3000, requested_model="local-standard",
               routed_model="local-standard", tier="standard"),
        record(user.id, "req_u2", now - 30, status=429, error="rate limited"),
        record(user.id, "req_u3", now - 10),
    ])
    return client, admin, user


def test_requests_made_through_the_gateway_show_with_their_routing_and_cost(tmp_path, fake_upstream):
    with dashboard_client(tmp_path, fake_upstream.url) as (client, _, _):
        answered = client.post("/v1/chat/completions", headers=AUTH, json={
            "model": "auto", "messages": [{"role": "user", "content": "Say hello. " * 2000}]})
        assert answered.status_code == 200
        request_id = answered.headers["x-request-id"]
        sign_in(client, TEST_KEY)
        html = client.get("/dashboard/requests").text
        assert listed(html) == [request_id]
        row = html[html.index(f'data-request-id="{request_id}"'):]
        row = row[:row.index("</tr>")]
        routed = answered.json()["model"]
        assert f'data-routed-model="{routed}"' in row and 'data-status="200"' in row
        stored = run(client, store_of(client).ledger_record, request_id)
        assert f'data-cost-micros="{stored.cost_micros}"' in row and stored.cost_micros > 0
        assert f'<td class="num">{usd(stored.cost_micros)}</td>' in row
        assert f'data-tier="{stored.tier}"' in row and "<time datetime=" in row
        detail = client.get(f"/dashboard/requests/{request_id}").text
        assert f'<dd data-field="routed_model">{routed}</dd>' in detail
        assert f'<dd data-field="input_tokens">{stored.input_tokens:,}</dd>' in detail


def test_a_non_admin_sees_only_their_own_requests_whatever_they_ask(mixed_ledger):
    client, admin, _ = mixed_ledger
    sign_in(client, USER_KEY)
    assert listed(client.get("/dashboard/requests").text) == ["req_u3", "req_u2", "req_u1"]
    asked = client.get(f"/dashboard/requests?key={admin.id}").text
    assert listed(asked) == ["req_u3", "req_u2", "req_u1"]
    exported = client.get(f"/dashboard/requests.csv?key={admin.id}").text
    assert {row["request_id"] for row in csv.DictReader(io.StringIO(exported))} == \
        {"req_u1", "req_u2", "req_u3"}


def test_a_non_admin_gets_404_for_another_keys_request(mixed_ledger):
    client, _, _ = mixed_ledger
    sign_in(client, USER_KEY)
    assert client.get("/dashboard/requests/req_u1").status_code == 200
    other = client.get("/dashboard/requests/req_a1")
    assert other.status_code == 404 and "req_a1" not in other.text.split('id="error"')[1]
    assert client.get("/dashboard/requests/req_nope").status_code == 404
    token = csrf_token(client, "/dashboard/requests/req_u1")
    sent = client.post("/dashboard/requests/req_a1/feedback", data={"csrf_token": token, "rating": "1"})
    assert sent.status_code == 404
    assert run(client, feedback_for, store_of(client), "req_a1") is None


def test_an_admin_sees_every_key_and_can_narrow_to_one(mixed_ledger):
    client, _, user = mixed_ledger
    sign_in(client, TEST_KEY)
    html = client.get("/dashboard/requests").text
    assert listed(html) == ["req_u3", "req_u2", "req_a2", "req_u1", "req_a1"]
    assert listed(client.get(f"/dashboard/requests?key={user.id}").text) == ["req_u3", "req_u2", "req_u1"]
    assert listed(client.get("/dashboard/requests?key=cr-user-ke").text) == ["req_u3", "req_u2", "req_u1"]
    unknown = client.get("/dashboard/requests?key=nobody")
    assert unknown.status_code == 400 and "no key" in unknown.text
    assert client.get("/dashboard/requests/req_u1").status_code == 200


@pytest.mark.parametrize("query, expected", [
    ("status=ok", ["req_u3", "req_u1", "req_a1"]),
    ("status=error", ["req_u2", "req_a2"]),
    ("status=429", ["req_u2"]),
    ("tier=premium", ["req_a1"]),
    ("model=local-standard", ["req_u1"]),             # requested or routed
    ("model=local-large", ["req_a1"]),
    ("policy=quality", ["req_a1"]),
    ("q=req_u", ["req_u3", "req_u2", "req_u1"]),      # a prefix of the request id
    ("q=req_a2", ["req_a2"]),
    ("status=ok&tier=budget", ["req_u3"]),
])
def test_filters(mixed_ledger, query, expected):
    client, _, _ = mixed_ledger
    sign_in(client, TEST_KEY)
    assert listed(client.get(f"/dashboard/requests?{query}").text) == expected


def test_date_filters_are_utc_days_inclusive(dashboard):
    client, admin, _ = dashboard
    day = 86400
    base = 1_767_225_600  # 2026-01-01 00:00 UTC
    write_records(client, [record(admin.id, "req_d0", base - 1), record(admin.id, "req_d1", base),
                           record(admin.id, "req_d2", base + day + 5),
                           record(admin.id, "req_d3", base + 2 * day)])
    sign_in(client, TEST_KEY)
    assert listed(client.get("/dashboard/requests?from=2026-01-01&to=2026-01-02").text) == \
        ["req_d2", "req_d1"]
    bad = client.get("/dashboard/requests?from=yesterday")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text


def test_pages_go_older_and_newer_by_position_even_across_equal_times(dashboard):
    client, admin, _ = dashboard
    start = time.time() - 10_000
    # 120 requests, pairs sharing a timestamp, so the id must break ties.
    write_records(client, [record(admin.id, f"req_{i:04d}", start + i // 2) for i in range(120)])
    newest_first = [f"req_{i:04d}" for i in reversed(range(120))]
    sign_in(client, TEST_KEY)
    first = client.get("/dashboard/requests").text
    assert listed(first) == newest_first[:50] and link(first, "page-newer") is None
    second = client.get(link(first, "page-older")).text
    assert listed(second) == newest_first[50:100]
    third = client.get(link(second, "page-older")).text
    assert listed(third) == newest_first[100:] and link(third, "page-older") is None
    back = client.get(link(third, "page-newer")).text
    assert listed(back) == newest_first[50:100]
    assert listed(client.get(link(back, "page-newer")).text) == newest_first[:50]


def test_pages_keep_their_filters(dashboard):
    client, admin, _ = dashboard
    start = time.time() - 1000
    write_records(client, [record(admin.id, f"req_{i:03d}", start + i,
                                  tier="premium" if i % 2 else "budget") for i in range(130)])
    sign_in(client, TEST_KEY)
    first = client.get("/dashboard/requests?tier=premium").text
    older = link(first, "page-older")
    assert "tier=premium" in older
    assert all(int(i[4:]) % 2 for i in listed(client.get(older).text))


def test_a_bad_page_position_is_a_400_not_a_crash(dashboard):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    assert client.get("/dashboard/requests?before=garbage").status_code == 400


def test_csv_streams_every_filtered_row_in_batches(dashboard, monkeypatch):
    client, admin, _ = dashboard
    monkeypatch.setattr(ledger_search, "EXPORT_BATCH", 7)
    start = time.time() - 1000
    write_records(client, [record(admin.id, f"req_{i:03d}", start + i, status=200 if i % 3 else 500)
                           for i in range(40)])
    sign_in(client, TEST_KEY)
    response = client.get("/dashboard/requests.csv?status=ok")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="costr-requests-')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["request_id"] for r in rows] == [f"req_{i:03d}" for i in reversed(range(40)) if i % 3]
    assert rows[0]["routed_model"] == "local-mini" and rows[0]["cost_usd"] == "1.8e-05"
    assert rows[0]["time_utc"].endswith("Z")


def test_csv_cells_a_spreadsheet_would_run_stay_text(dashboard):
    client, admin, _ = dashboard
    write_records(client, [record(admin.id, "req_x", requested_model="=HYPERLINK(\"http://x\")")])
    sign_in(client, TEST_KEY)
    row = next(csv.DictReader(io.StringIO(client.get("/dashboard/requests.csv").text)))
    assert row["requested_model"] == "'=HYPERLINK(\"http://x\")"


def test_detail_shows_the_recorded_routing_the_error_and_the_feedback(mixed_ledger):
    client, _, _ = mixed_ledger
    sign_in(client, TEST_KEY)
    html = client.get("/dashboard/requests/req_a2").text
    assert 'id="request-error"' in html and "every upstream attempt failed" in html
    assert '<dd data-field="status">502</dd>' in html
    assert '<dd data-field="confidence">0.80</dd>' in html
    assert 'id="feedback-none"' in html


def test_feedback_from_the_form_is_stored_by_the_api_rule(mixed_ledger):
    client, _, user = mixed_ledger
    sign_in(client, USER_KEY)
    token = csrf_token(client, "/dashboard/requests/req_u1")
    sent = client.post("/dashboard/requests/req_u1/feedback",
                       data={"csrf_token": token, "rating": "4", "comment": "fine <b>really</b>"})
    assert sent.status_code == 303
    assert sent.headers["location"] == "/dashboard/requests/req_u1?feedback=saved"
    stored = run(client, feedback_for, store_of(client), "req_u1")
    assert (stored.rating, stored.comment, stored.key_id) == (4, "fine <b>really</b>", user.id)
    page = client.get(sent.headers["location"]).text
    assert 'id="feedback-saved"' in page and 'data-rating="4"' in page
    assert "fine &lt;b&gt;really&lt;/b&gt;" in page and "<b>really" not in page
    for bad in ("0", "6", "four", ""):
        refused = client.post("/dashboard/requests/req_u1/feedback",
                              data={"csrf_token": token, "rating": bad})
        assert refused.status_code == 400 and "from 1 (bad) to 5 (good)" in refused.text
    assert run(client, feedback_for, store_of(client), "req_u1").rating == 4


def test_feedback_without_the_csrf_token_changes_nothing(mixed_ledger):
    client, _, _ = mixed_ledger
    sign_in(client, USER_KEY)
    for form in ({"rating": "5"}, {"rating": "5", "csrf_token": "made-up"}):
        refused = client.post("/dashboard/requests/req_u1/feedback", data=form)
        assert refused.status_code == 403
    assert run(client, feedback_for, store_of(client), "req_u1") is None


def test_the_api_feedback_endpoint_keeps_its_rule(mixed_ledger):
    client, _, _ = mixed_ledger
    user_auth = {"authorization": f"Bearer {USER_KEY}"}
    ok = client.post("/v1/router/feedback", headers=user_auth,
                     json={"request_id": "req_u2", "rating": 2})
    assert ok.status_code == 200 and ok.json()["stored"] is True
    assert client.post("/v1/router/feedback", headers=user_auth,
                       json={"request_id": "req_a1", "rating": 2}).status_code == 404
    assert client.post("/v1/router/feedback", headers=user_auth,
                       json={"request_id": "req_u2", "rating": True}).status_code == 400


def test_markup_in_a_request_and_its_kept_prompt_shows_as_text(dashboard):
    client, admin, _ = dashboard
    write_records(client, [record(admin.id, "req_s", requested_model="<script>alert(1)</script>",
                                  error="<img src=x onerror=alert(2)>", status=400)])
    run(client, store_of(client).keep_prompts, [KeptPrompt("req_s", admin.id, time.time(), orjson.dumps(
        [{"role": "user", "content": "<script>alert(3)</script>"}]).decode())])
    sign_in(client, TEST_KEY)
    for html in (client.get("/dashboard/requests").text, client.get("/dashboard/requests/req_s").text):
        assert "<script>alert(" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    detail = client.get("/dashboard/requests/req_s").text
    assert 'id="kept-prompt"' in detail and "&lt;script&gt;alert(3)&lt;/script&gt;" in detail


def test_without_kept_prompts_the_detail_says_why(mixed_ledger):
    client, _, _ = mixed_ledger
    sign_in(client, TEST_KEY)
    html = client.get("/dashboard/requests/req_a1").text
    assert 'id="kept-prompt-missing"' in html and "does not keep prompts" in html


# --- the same search on both databases -------------------------------------------------------

@pytest.fixture
def anyio_backend():
    return "asyncio"




def newest_first(numbers) -> list[str]:
    """Ids of records written as in the test below (request i at now - i // 2): newest first,
    and between two at the same time the greater id first."""
    return [f"req_{i:03d}" for i in sorted(numbers, key=lambda i: (i // 2, -i))]


@pytest.mark.anyio
async def test_search_pages_and_export_agree_on_both_databases(store):
    from costr.accounts import dashboard_sessions
    from costr.accounts.ledger_search import LedgerFilter, export_ledger, search_ledger
    from costr.accounts.usage_rollups import write_ledger_batch
    now = time.time()
    await write_ledger_batch(store, [record("k1", f"req_{i:03d}", now - i // 2,
                                            status=200 if i % 3 else 500) for i in range(120)])
    # a filter the rollup says nothing matches answers without reading the ledger
    assert (await search_ledger(store, LedgerFilter(key_id="k1", tier="premium"), 30)).records == []
    answered = LedgerFilter(key_id="k1", status="ok")
    pages, page = [], await search_ledger(store, answered, 30)
    while True:
        pages.append(page)
        if page.older is None:
            break
        page = await search_ledger(store, answered, 30, before=page.older)
    assert [r.id for p in pages for r in p.records] == newest_first(i for i in range(120) if i % 3)
    assert len(pages) == 3 and pages[0].newer is None
    back = await search_ledger(store, answered, 30, after=pages[-1].newer)
    assert [r.id for r in back.records] == [r.id for r in pages[-2].records]
    prefixed = await search_ledger(store, LedgerFilter(request_id="req_11"), 50)
    assert sorted(r.id for r in prefixed.records) == [f"req_11{i}" for i in range(10)]
    assert [r.id async for r in export_ledger(store, LedgerFilter(status="error"))] == \
        newest_first(i for i in range(120) if not i % 3)
    secret = await dashboard_sessions.cookie_secret(store)
    assert secret == await dashboard_sessions.cookie_secret(store)
    await dashboard_sessions.open_session(store, "s1", "k1", now + 60)
    assert await dashboard_sessions.session_key_id(store, "s1") == "k1"
    await dashboard_sessions.end_session(store, "s1")
    assert await dashboard_sessions.session_key_id(store, "s1") is None



def test_the_detail_shows_the_scorer_signals_and_the_fallbacks_tried(tmp_path, fake_upstream):
    """What the ledger records of how a request was routed: the scorer's signals, and each
    model that failed before the one that answered, with why."""
    with dashboard_client(tmp_path, fake_upstream.url) as (client, _, _):
        fake_upstream.enqueue({"status": 503, "error": "overloaded"})
        answered = client.post("/v1/chat/completions", headers=AUTH, json={
            "model": "auto", "messages": [{"role": "user", "content": "Say <b>hello</b>."}]})
        assert answered.status_code == 200
        request_id = answered.headers["x-request-id"]
        sign_in(client, TEST_KEY)
        assert listed(client.get("/dashboard/requests").text) == [request_id]   # written
        stored = run(client, store_of(client).ledger_record, request_id)
        assert stored.fallbacks and stored.fallbacks.endswith("overloaded")
        assert '"form"' in stored.routing_signals
        detail = client.get(f"/dashboard/requests/{request_id}").text
        failed_model = stored.fallbacks.split(":")[0]
        assert f"<li>{failed_model}: " in detail and "overloaded</li>" in detail
        assert '<dd data-signal="form">' in detail and 'id="request-signals"' in detail
