"""The caller's account as the endpoints show it: daily usage, routing stats, request history,
feedback, request ids, admin access to other keys, the admin key API, and rate limits. Every
figure is checked against what the clients themselves were told."""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from datetime import date, datetime, timedelta, timezone

import httpx
import pytest

from costr.accounts.ledger import LedgerWriter
from costr.accounts.store import open_store
from costr.testing import AUTH, running_gateway, seed_key
from costr.testing.fake_upstream import FakeUpstream

from conftest import LOCAL_POOL, write_config

ANTHROPIC = {"anthropic-version": "2023-06-01"}
KEY_SHAPE = re.compile(r"cr-[A-Za-z0-9_-]{32,}")


@pytest.fixture
def gateway(tmp_path, fake_upstream):
    """(base URL, fake upstream, data dir), with the default response cache."""
    data = str(tmp_path / "data")
    with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url)),
                         data_dir=data) as base:
        yield base, fake_upstream, data


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """(base URL, data dir) of one gateway for the tests that script no answers: each makes
    keys of its own, and everything an account endpoint shows is scoped to its key."""
    tmp = tmp_path_factory.mktemp("accounts")
    data = str(tmp / "data")
    with FakeUpstream() as fake:
        with running_gateway(*write_config(tmp, LOCAL_POOL.format(url=fake.url)), data_dir=data) as base:
            yield base, data


def new_key(data: str, **kw) -> tuple[dict, str]:
    """(headers, key id) for a fresh non-admin key with these settings."""
    secret = "cr-" + secrets.token_urlsafe(32)
    key = asyncio.run(seed_key(None, data, secret, name="account-test", admin=False, **kw))
    return {"authorization": f"Bearer {secret}"}, key.id


def chat(base: str, key: dict, text: str, *, model: str = "auto", stream: bool = False,
         **extra) -> httpx.Response:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}], **extra}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=key, timeout=20)


def message(base: str, key: dict, text: str, *, model: str = "auto", stream: bool = False,
            **extra) -> httpx.Response:
    body = {"model": model, "max_tokens": 200, "stream": stream,
            "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{base}/v1/messages", json=body, headers={**key, **ANTHROPIC}, timeout=20)


def get(base: str, path: str, key: dict) -> httpx.Response:
    return httpx.get(base + path, headers=key, timeout=20)


def sse_data(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def told(response: httpx.Response) -> tuple[int, int, dict]:
    """(input tokens, output tokens, x_routing) as the client received them, either family,
    streamed or not."""
    if response.headers["content-type"].startswith("text/event-stream"):
        events = sse_data(response.text)
        if "choices" in events[0]:   # OpenAI chunks: the last carries usage and routing
            final = events[-1]
            return final["usage"]["prompt_tokens"], final["usage"]["completion_tokens"], final["x_routing"]
        (delta,) = [e for e in events if e["type"] == "message_delta"]
        usage = delta["usage"]
        return _anthropic_input(usage), usage["output_tokens"], delta["x_routing"]
    body = response.json()
    if "choices" in body:
        return body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"], body["x_routing"]
    return _anthropic_input(body["usage"]), body["usage"]["output_tokens"], body["x_routing"]


def _anthropic_input(usage: dict) -> int:
    return usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]


def micros(usd: float) -> int:
    return round(usd * 1_000_000)


def records(base: str, key: dict, query: str = "") -> list[dict]:
    page = get(base, f"/v1/requests?limit=500{query}", key).json()
    assert not page["has_more"]
    return page["data"]


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def clear_of_minute_edge(margin: float = 3.0) -> None:
    """Rate limits count in one-minute windows: start a limit test well inside one."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.05)


# -- usage -------------------------------------------------------------------------------------

def test_daily_usage_agrees_with_the_requests_and_with_what_clients_were_told(gateway):
    base, fake, data = gateway
    key, _ = new_key(data)
    fake.enqueue({"text": "a" * 120}, {"text": "b" * 333}, {"text": "c" * 47}, {"text": "d" * 401})
    responses = [chat(base, key, "first question"),
                 chat(base, key, "second question, streamed " * 20, stream=True),
                 message(base, key, "third question"),
                 message(base, key, "fourth question, streamed " * 30, stream=True)]
    assert [r.status_code for r in responses] == [200] * 4
    inputs, outputs, routing = zip(*(told(r) for r in responses))

    usage = get(base, "/v1/usage", key)
    assert usage.status_code == 200
    (row,) = usage.json()["data"]
    assert row["day"] == utc_today().isoformat()
    assert row["requests"] == 4
    assert row["input_tokens"] == sum(inputs) and row["output_tokens"] == sum(outputs)

    ledger = records(base, key)
    by_id = {r["id"]: r for r in ledger}
    assert set(by_id) == {r.headers["x-request-id"] for r in responses}
    for response, x_routing in zip(responses, routing):
        entry = by_id[response.headers["x-request-id"]]
        assert entry["savings_percent"] == x_routing["savings_percent"]
        assert entry["routed_model"] == x_routing["routed_model"]
    cost = sum(micros(r["cost_usd"]) for r in ledger)
    baseline = sum(micros(r["baseline_usd"]) for r in ledger)
    assert 0 < cost < baseline
    assert micros(row["cost_usd"]) == cost and micros(row["baseline_cost_usd"]) == baseline
    assert micros(row["savings_usd"]) == baseline - cost
    assert row["savings_percent"] == pytest.approx(100 * (1 - cost / baseline), abs=0.051)
    total = usage.json()["total"]
    assert total["requests"] == 4 and micros(total["cost_usd"]) == cost


def test_usage_is_filtered_by_start_and_end_dates(shared):
    base, data = shared
    key, _ = new_key(data)
    assert chat(base, key, "Reply exactly: dated").status_code == 200
    today, day = utc_today(), timedelta(days=1)

    def days(query: str) -> list[str]:
        response = get(base, f"/v1/usage?{query}", key)
        assert response.status_code == 200, response.text
        return [r["day"] for r in response.json()["data"]]

    assert days(f"start={today}&end={today}") == [today.isoformat()]
    assert days(f"start={today - 7 * day}") == [today.isoformat()]
    assert days(f"start={today + day}&end={today + 2 * day}") == []
    assert days(f"end={today - day}") == []


@pytest.mark.parametrize("query, param", [
    ("start=2025-13-01", "start"), ("end=yesterday", "end"), ("start=24/11/2026", "start"),
    ("start=2026-02-10&end=2026-02-01", "start")])
def test_a_bad_usage_date_is_a_400_naming_it(shared, query, param):
    base, _ = shared
    response = get(base, f"/v1/usage?{query}", AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


# -- stats and feedback --------------------------------------------------------------------------

def test_stats_per_tier_and_model_with_cache_hits_latency_and_feedback(gateway):
    base, fake, data = gateway
    key, _ = new_key(data)
    fake.enqueue({"text": "one", "delay_ms": 30}, {"text": "two", "delay_ms": 60},
                 {"text": "three", "delay_ms": 10})
    mini = [chat(base, key, "mini one", model="local-mini"), chat(base, key, "mini two", model="local-mini")]
    assert [r.status_code for r in mini] == [200, 200]
    assert chat(base, key, "standard one", model="local-standard").status_code == 200
    hit = chat(base, key, "mini one", model="local-mini")   # the same request again
    assert hit.json()["x_routing"]["cache_hit"] is True
    for response, rating in zip(mini, (4, 1)):
        sent = httpx.post(f"{base}/v1/router/feedback", headers=key, timeout=20, json={
            "request_id": response.headers["x-request-id"], "rating": rating, "comment": "noted"})
        assert sent.status_code == 200 and sent.json()["stored"] is True

    response = get(base, "/v1/router/stats?window=1h", key)
    assert response.status_code == 200
    rows = {(r["tier"], r["model"]): r for r in response.json()["data"]}
    assert set(rows) == {("budget", "local-mini"), ("standard", "local-standard")}
    ledger = records(base, key)
    for (tier, model), row in rows.items():
        mine = [r for r in ledger if r["routed_model"] == model]
        cost = sum(micros(r["cost_usd"]) for r in mine)
        baseline = sum(micros(r["baseline_usd"]) for r in mine)
        assert row["requests"] == len(mine)
        assert micros(row["cost_usd"]) == cost
        assert row["savings_percent"] == pytest.approx(100 * (1 - cost / baseline), abs=0.051)
        assert 0 < row["p50_latency_ms"] <= row["p95_latency_ms"]
    budget, standard_row = rows[("budget", "local-mini")], rows[("standard", "local-standard")]
    assert budget["requests"] == 3 and budget["cache_hits"] == 1
    assert budget["cache_hit_rate"] == 0.3333
    assert standard_row["requests"] == 1 and standard_row["cache_hit_rate"] == 0
    assert (budget["feedback_count"], budget["mean_rating"]) == (2, 2.5)
    assert (standard_row["feedback_count"], standard_row["mean_rating"]) == (0, None)
    totals = response.json()["totals"]
    assert totals["requests"] == 4 and totals["cache_hits"] == 1
    assert set(totals["by_tier"]) == {"budget", "standard"}


def test_stats_count_failed_requests_apart_and_show_rounded_figures(gateway):
    """A request no model answered is counted in the totals as failed, not listed as a model
    named ""; money is whole micro-dollars, rates and latencies are rounded."""
    base, fake, data = gateway
    key, _ = new_key(data)
    for text in ("first", "second", "third", "first"):   # the last one is a cache hit
        assert chat(base, key, text, model="local-mini").status_code == 200
    fake.enqueue({"status": 500, "error": "down"}, {"status": 500, "error": "down"})
    assert chat(base, key, "Reply exactly: never").status_code == 502   # every attempt failed
    assert chat(base, key, "hello", model="no-such-model").status_code == 404

    stats = get(base, "/v1/router/stats", key).json()
    assert [(row["tier"], row["model"]) for row in stats["data"]] == [("budget", "local-mini")]
    totals, row = stats["totals"], stats["data"][0]
    assert (totals["requests"], totals["failed"], row["requests"]) == (6, 2, 4)
    assert set(totals["by_tier"]) == {"budget"} and totals["by_tier"]["budget"]["requests"] == 4
    assert (row["cache_hit_rate"], totals["cache_hit_rate"]) == (0.25, 0.1667)
    for figures in (row, totals, totals["by_tier"]["budget"]):
        for name, value in figures.items():
            if name.endswith("_usd"):
                assert value == round(value, 6), (name, value)
    for name in ("p50_latency_ms", "p95_latency_ms"):
        assert row[name] == round(row[name], 2)


def test_stats_are_scoped_to_the_calling_key(shared):
    base, data = shared
    mine, _ = new_key(data)
    theirs, _ = new_key(data)
    assert chat(base, theirs, "Reply exactly: not yours", model="local-large").status_code == 200
    assert get(base, "/v1/router/stats", mine).json()["data"] == []
    assert [r["model"] for r in get(base, "/v1/router/stats", theirs).json()["data"]] == ["local-large"]


@pytest.mark.parametrize("window", ["2h", "", "forever"])
def test_an_unknown_stats_window_is_a_400(shared, window):
    base, _ = shared
    response = get(base, f"/v1/router/stats?window={window}", AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "window"


def test_feedback_is_only_for_the_callers_own_requests(shared):
    base, data = shared
    mine, _ = new_key(data)
    theirs, _ = new_key(data)
    request_id = chat(base, theirs, "Reply exactly: theirs").headers["x-request-id"]
    for body in ({"request_id": request_id, "rating": 5},
                 {"request_id": "req_" + "0" * 32, "rating": 5}):
        refused = httpx.post(f"{base}/v1/router/feedback", json=body, headers=mine, timeout=20)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "request_not_found"
    assert get(base, "/v1/router/stats", theirs).json()["data"][0]["feedback_count"] == 0


@pytest.mark.parametrize("body", [
    {"rating": 0}, {"rating": 6}, {"rating": "5"}, {"rating": 4.5}, {"rating": True}, {},
    {"rating": 3, "comment": 7}, {"rating": 3, "request_id": ""}])
def test_malformed_feedback_is_a_400(shared, body):
    base, _ = shared
    request_id = chat(base, AUTH, "Reply exactly: rate me").headers["x-request-id"]
    response = httpx.post(f"{base}/v1/router/feedback", json={"request_id": request_id, **body},
                          headers=AUTH, timeout=20)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# -- request history and request ids --------------------------------------------------------------

def test_requests_are_listed_newest_first_in_pages(gateway):
    base, _, data = gateway
    key, _ = new_key(data)
    ids = [chat(base, key, f"Reply exactly: number {i}").headers["x-request-id"] for i in range(5)]
    seen, before, pages = [], None, []
    while True:
        query = "/v1/requests?limit=2" + (f"&before={before}" if before is not None else "")
        page = get(base, query, key).json()
        pages.append(len(page["data"]))
        seen += [r["id"] for r in page["data"]]
        if not page["has_more"]:
            assert page["next_before"] is None
            break
        before = page["next_before"]
    assert pages == [2, 2, 1]
    assert seen == ids[::-1]
    assert [r["id"] for r in get(base, "/v1/requests", key).json()["data"]] == ids[::-1]


@pytest.mark.parametrize("query", ["limit=0", "limit=ten", "before=yesterday"])
def test_a_bad_request_history_query_is_a_400(shared, query):
    base, _ = shared
    assert get(base, f"/v1/requests?{query}", AUTH).status_code == 400


def test_every_answer_and_every_error_after_authentication_carries_its_request_id(gateway):
    base, fake, data = gateway
    key, _ = new_key(data)
    poor, _ = new_key(data, credits_usd=0.000001)
    limited, _ = new_key(data, rpm=1)
    clear_of_minute_edge()
    fake.enqueue({"text": "plain"}, {"text": "streamed"}, {"text": "message"},
                 {"text": "streamed message"}, {"status": 500}, {"status": 500}, {"text": "once"})
    responses = {
        "chat": chat(base, key, "one"),
        "chat stream": chat(base, key, "two", stream=True),
        "messages": message(base, key, "three"),
        "messages stream": message(base, key, "four", stream=True),
        "upstream failure": chat(base, key, "five"),
        "invalid request": httpx.post(f"{base}/v1/messages", headers={**key, **ANTHROPIC}, timeout=20,
                                      json={"model": "auto", "messages": []}),
        "unknown model": chat(base, key, "six", model="no-such-model"),
        "bad priority": httpx.post(
            f"{base}/v1/chat/completions", timeout=20, headers={**key, "x-cost-priority": "cheapest"},
            json={"model": "auto", "messages": [{"role": "user", "content": "eight"}]}),
        "no credit": chat(base, poor, "nine"),
        "within the limit": message(base, limited, "ten"),
        "over the limit": message(base, limited, "eleven"),
    }
    statuses = {name: r.status_code for name, r in responses.items()}
    assert statuses == {"chat": 200, "chat stream": 200, "messages": 200, "messages stream": 200,
                        "upstream failure": 502, "invalid request": 400, "unknown model": 404,
                        "bad priority": 400, "no credit": 402, "within the limit": 200,
                        "over the limit": 429}
    ledger = {r["id"]: r for r in records(base, AUTH, "&key_id=all")}
    ids = [r.headers["x-request-id"] for r in responses.values()]
    assert len(set(ids)) == len(ids)
    for name, response in responses.items():
        entry = ledger[response.headers["x-request-id"]]
        assert entry["status"] == response.status_code, name


# -- one key looking at another ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/usage", "/v1/requests", "/v1/credits", "/v1/router/stats"])
def test_an_admin_key_may_read_another_keys_account_and_a_normal_key_may_not(shared, path):
    base, data = shared
    owner, owner_id = new_key(data, credits_usd=3)
    nosy, _ = new_key(data)
    request_id = chat(base, owner, "Reply exactly: private").headers["x-request-id"]

    as_admin = get(base, f"{path}?key_id={owner_id}", AUTH)
    assert as_admin.status_code == 200
    assert as_admin.json() == get(base, path, owner).json()
    if path == "/v1/requests":
        assert [r["id"] for r in as_admin.json()["data"]] == [request_id]
    if path == "/v1/credits":
        assert as_admin.json()["key"]["id"] == owner_id and as_admin.json()["balance_usd"] < 3

    refused = get(base, f"{path}?key_id={owner_id}", nosy)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert request_id not in get(base, "/v1/requests", nosy).text
    assert get(base, f"{path}?key_id=no-such-key", AUTH).status_code == 404


# -- the admin key API ---------------------------------------------------------------------------

def test_the_admin_api_creates_lists_tops_up_and_revokes_keys(gateway):
    base, fake, _ = gateway
    created = httpx.post(f"{base}/v1/admin/keys", headers=AUTH, timeout=20,
                         json={"name": "ci", "credits_usd": 0.5, "rpm": 100, "tpm": 50000})
    assert created.status_code == 201
    made = created.json()
    secret, key_id = made["key"], made["id"]
    assert KEY_SHAPE.fullmatch(secret) and made["prefix"] == secret[:len(made["prefix"])]
    assert (made["name"], made["balance_usd"], made["admin"]) == ("ci", 0.5, False)
    key = {"authorization": f"Bearer {secret}"}

    assert chat(base, key, "Reply exactly: at once").status_code == 200   # works immediately
    spent = micros(records(base, key)[0]["charged_usd"])
    assert spent > 0

    listing = get(base, "/v1/admin/keys", AUTH)
    assert listing.status_code == 200
    assert secret not in listing.text and not KEY_SHAPE.search(listing.text)
    (listed,) = [k for k in listing.json()["data"] if k["id"] == key_id]
    assert (listed["name"], listed["prefix"], listed["revoked"]) == ("ci", made["prefix"], False)
    assert listed["limits"] == {"requests_per_minute": 100, "tokens_per_minute": 50000}

    topped = httpx.post(f"{base}/v1/admin/keys/{key_id}/top-up", json={"usd": 0.25},
                        headers=AUTH, timeout=20)
    assert topped.status_code == 200
    assert micros(topped.json()["balance_usd"]) == 750_000 - spent
    assert micros(get(base, "/v1/credits", key).json()["balance_usd"]) == 750_000 - spent

    revoked = httpx.post(f"{base}/v1/admin/keys/{key_id}/revoke", headers=AUTH, timeout=20)
    assert revoked.status_code == 200
    assert chat(base, key, "Reply exactly: too late").status_code == 401
    (listed,) = [k for k in get(base, "/v1/admin/keys", AUTH).json()["data"] if k["id"] == key_id]
    assert listed["revoked"] is True
    assert len(fake.requests) == 1


def test_an_admin_key_made_through_the_api_can_use_the_admin_api(shared):
    base, _ = shared
    made = httpx.post(f"{base}/v1/admin/keys", json={"name": "ops", "admin": True},
                      headers=AUTH, timeout=20).json()
    assert made["admin"] is True and made["balance_usd"] is None
    assert get(base, "/v1/admin/keys", {"x-api-key": made["key"]}).status_code == 200


@pytest.mark.parametrize("path, body, status", [
    ("/v1/admin/keys", {}, 400),
    ("/v1/admin/keys", {"name": "x", "credits_usd": -1}, 400),
    ("/v1/admin/keys", {"name": "x", "rpm": 0}, 400),
    ("/v1/admin/keys/no-such-key/top-up", {"usd": 1}, 404),
    ("/v1/admin/keys/no-such-key/revoke", {}, 404),
    ("/v1/admin/keys/{unlimited}/top-up", {"usd": 1}, 400),
    ("/v1/admin/keys/{prepaid}/top-up", {"usd": 0}, 400),
    ("/v1/admin/keys/{prepaid}/top-up", {"usd": "ten"}, 400),
])
def test_the_admin_api_refuses_bad_input(shared, path, body, status):
    base, data = shared
    _, unlimited = new_key(data)
    prepaid_key, prepaid = new_key(data, credits_usd=1)
    response = httpx.post(base + path.format(unlimited=unlimited, prepaid=prepaid), json=body,
                          headers=AUTH, timeout=20)
    assert response.status_code == status
    assert get(base, "/v1/credits", prepaid_key).json()["balance_usd"] == 1


# -- rate limits -------------------------------------------------------------------------------

def assert_retry_after(response: httpx.Response) -> None:
    assert response.headers["retry-after"].isdigit()
    assert 1 <= int(response.headers["retry-after"]) <= 60


def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(gateway):
    base, fake, data = gateway
    key, _ = new_key(data, rpm=3)
    clear_of_minute_edge()
    assert [chat(base, key, f"Reply exactly: {i}").status_code for i in range(3)] == [200] * 3

    refused = chat(base, key, "Reply exactly: 4")
    assert refused.status_code == 429
    assert_retry_after(refused)
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"

    refused = message(base, key, "Reply exactly: 5")
    assert refused.status_code == 429
    assert_retry_after(refused)
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert len(fake.requests) == 3
    # Other keys are not held back by this one's limit.
    assert chat(base, AUTH, "Reply exactly: someone else").status_code == 200


def test_a_key_over_its_tokens_per_minute_gets_429_once_its_tokens_are_used(gateway):
    base, fake, data = gateway
    key, _ = new_key(data, tpm=100)
    clear_of_minute_edge()
    fake.enqueue({"text": "x" * 600})   # 150 output tokens: over the minute's 100
    first = chat(base, key, "Write at length")
    assert first.status_code == 200 and first.json()["usage"]["total_tokens"] > 100
    for refused in (chat(base, key, "And again"), message(base, key, "And again")):
        assert refused.status_code == 429
        assert_retry_after(refused)
    assert len(fake.requests) == 1


# -- the ledger outlives the process ----------------------------------------------------------

class HourlyLedgerWriter(LedgerWriter):
    """A writer whose batch timer will not fire during a test: what it holds at shutdown is
    written then or never."""

    def __init__(self, store, **kw):
        super().__init__(store, interval_seconds=3600)


def test_every_request_is_in_the_ledger_after_the_gateway_shuts_down(tmp_path, fake_upstream,
                                                                      monkeypatch):
    monkeypatch.setattr("costr.server.app.LedgerWriter", HourlyLedgerWriter)
    data = str(tmp_path / "data")
    config = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    with running_gateway(*config, data_dir=data) as base:
        with httpx.Client(headers=AUTH, timeout=20) as client:
            ids = [client.post(f"{base}/v1/chat/completions", json={
                "model": "auto", "stream": i % 3 == 0,
                "messages": [{"role": "user", "content": f"Reply exactly: {i}"}]}).headers["x-request-id"]
                for i in range(30)]

    async def stored() -> set[str]:
        store = await open_store(None, data)
        try:
            return {r.id for r in await store.requests_page(None, 1000, None)}
        finally:
            await store.close()
    assert set(ids) <= asyncio.run(stored())
