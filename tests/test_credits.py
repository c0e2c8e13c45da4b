"""Credits that cannot be overspent: a request's worst case is held before the upstream is
called (402 when the balance cannot cover it), the answer's actual cost is debited after, and
the balance always equals the credit given minus what the ledger says was charged."""
from __future__ import annotations

import asyncio
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from costr.testing import AUTH, running_gateway, seed_key

from conftest import LOCAL_POOL, write_config

ANTHROPIC = {"anthropic-version": "2023-06-01"}
# local-mini costs $0.10 / $0.40 per million input / output tokens; the fake counts a token
# per 4 characters. A 200-character answer is 50 output tokens: 20 micro-dollars, plus 0.1
# for the one-token prompt. Its worst case, with max_tokens 100, is at least 40.
ANSWER_200 = {"text": "x" * 200}


@pytest.fixture
def gateway(tmp_path, fake_upstream):
    """(base URL, fake upstream, data dir); no response cache, so every request is paid for."""
    data = str(tmp_path / "data")
    with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url)),
                         data_dir=data, cache="none") as base:
        yield base, fake_upstream, data


def new_key(data: str, **kw) -> dict:
    """Headers for a fresh non-admin key with these settings (credits_usd, rpm, tpm)."""
    secret = "cr-" + secrets.token_urlsafe(32)
    asyncio.run(seed_key(None, data, secret, name="credits-test", admin=False, **kw))
    return {"authorization": f"Bearer {secret}"}


def chat(base: str, key: dict, *, model: str = "local-mini", max_tokens: int = 100,
         stream: bool = False, content: str = "hi") -> httpx.Response:
    body = {"model": model, "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=key, timeout=20)


def message(base: str, key: dict, *, stream: bool = False, max_tokens: int = 100) -> httpx.Response:
    body = {"model": "local-mini", "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{base}/v1/messages", json=body, headers={**key, **ANTHROPIC}, timeout=20)


def credits(base: str, key: dict) -> dict:
    response = httpx.get(f"{base}/v1/credits", headers=key, timeout=20)
    assert response.status_code == 200
    return response.json()


def micros(usd: float | None) -> int:
    return round(usd * 1_000_000)


def ledger(base: str, key: dict) -> list[dict]:
    response = httpx.get(f"{base}/v1/requests?limit=500", headers=key, timeout=20)
    assert response.status_code == 200
    assert not response.json()["has_more"]
    return response.json()["data"]


def assert_books_balance(base: str, key: dict, initial_usd: float) -> list[dict]:
    """The balance is the initial credit minus what the ledger charged, to the micro-dollar."""
    records = ledger(base, key)
    charged = sum(micros(r["charged_usd"]) for r in records)
    assert charged == sum(micros(r["cost_usd"]) for r in records)  # never charged more or less
    now = credits(base, key)
    assert micros(now["balance_usd"]) == micros(initial_usd) - charged
    assert now["balance_usd"] >= 0 and now["reserved_usd"] == 0
    return records


def test_requests_are_refused_with_402_once_the_balance_cannot_cover_their_worst_case(gateway):
    base, fake, data = gateway
    key = new_key(data, credits_usd=0.000110)
    fake.enqueue(*[ANSWER_200] * 4)
    statuses = [chat(base, key).status_code for _ in range(5)]
    # Each answer costs about 20 micro-dollars, but 40+ is held first: after four answers the
    # 30 left would pay for a fifth answer, not for its worst case.
    assert statuses == [200, 200, 200, 200, 402]
    left = credits(base, key)
    assert 0 < micros(left["balance_usd"]) < 40

    refused = chat(base, key)
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    refused = message(base, key)
    assert refused.status_code == 402
    body = refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "billing_error"
    # A smaller worst case still fits.
    fake.enqueue({"text": "x" * 20})
    assert chat(base, key, max_tokens=10).status_code == 200
    records = assert_books_balance(base, key, 0.000110)
    assert [r["status"] for r in records] == [200, 402, 402, 402, 200, 200, 200, 200]
    assert len(fake.requests) == 5  # refused requests never reached the upstream


def test_the_balance_is_the_credit_minus_the_ledgers_charges_exactly(gateway):
    base, fake, data = gateway
    key = new_key(data, credits_usd=0.05)
    fake.enqueue({"text": "a" * 37}, {"text": "b" * 401}, {"text": "c" * 1203},
                 {"text": "d" * 999}, {"text": "e" * 57})
    answers = [chat(base, key, content="short question"),
               chat(base, key, model="local-standard", stream=True, content="x" * 333),
               chat(base, key, model="local-large", max_tokens=1000, content="y" * 2001),
               message(base, key, max_tokens=500),
               message(base, key, stream=True)]
    for answer in answers:
        answer.read()
        assert answer.status_code == 200
    records = assert_books_balance(base, key, 0.05)
    assert len(records) == 5 and all(r["cost_usd"] > 0 for r in records)
    assert {r["routed_model"] for r in records} == {"local-mini", "local-standard", "local-large"}


def test_a_failed_upstream_request_charges_nothing_and_is_on_the_ledger(gateway):
    base, fake, data = gateway
    key = new_key(data, credits_usd=1)
    fake.enqueue({"status": 500, "error": "the model is on fire"},
                 {"status": 500, "error": "the model is on fire"})
    response = chat(base, key, model="auto")
    assert response.status_code == 502
    assert len(fake.requests) == 2  # the fallback failed too
    (record,) = assert_books_balance(base, key, 1)
    assert record["id"] == response.headers["x-request-id"]
    assert record["status"] == 502 and record["upstream_status"] == 500
    assert "the model is on fire" in record["error"]
    assert record["cost_usd"] == 0 and record["charged_usd"] == 0
    assert credits(base, key)["balance_usd"] == 1


def test_the_worst_case_is_held_while_a_request_runs_and_released_after(gateway):
    base, fake, data = gateway
    key = new_key(data, credits_usd=1)
    fake.enqueue({"text": "slow", "delay_ms": 600})
    done = []
    worker = threading.Thread(target=lambda: done.append(chat(base, key, max_tokens=1000)))
    worker.start()
    held = 0.0
    deadline = time.monotonic() + 5
    while not held and time.monotonic() < deadline:
        held = credits(base, key)["reserved_usd"]
        time.sleep(0.02)
    worker.join(10)
    # Held: at least 1000 output tokens at $0.40 per million.
    assert micros(held) >= 400
    assert done[0].status_code == 200
    assert credits(base, key)["reserved_usd"] == 0


def test_nothing_stays_reserved_after_requests_end_however_they_end(gateway):
    base, fake, data = gateway
    key = new_key(data, credits_usd=1)
    fake.enqueue(ANSWER_200)
    assert chat(base, key).status_code == 200
    fake.enqueue(ANSWER_200)
    assert chat(base, key, stream=True).status_code == 200
    fake.enqueue({"status": 500}, {"status": 500})
    assert chat(base, key, model="auto").status_code == 502
    fake.enqueue({"status": 400, "error": "no"})
    assert chat(base, key).status_code == 400
    fake.enqueue({"status": 503}, {"status": 503})
    assert chat(base, key, model="auto", stream=True).status_code == 502
    fake.enqueue({"text": "z" * 4000, "delay_ms": 200})
    with httpx.stream("POST", f"{base}/v1/chat/completions", headers=key, timeout=20, json={
            "model": "local-mini", "max_tokens": 2000, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}) as response:
        assert response.status_code == 200  # and the client hangs up without reading on
    deadline = time.monotonic() + 5
    while credits(base, key)["reserved_usd"] and time.monotonic() < deadline:
        time.sleep(0.05)
    records = assert_books_balance(base, key, 1)
    assert len(records) == 6


def test_concurrent_requests_never_overspend(gateway):
    base, fake, data = gateway
    # Room for about ten worst cases (each at least 40 micro-dollars, a little more for input).
    key = new_key(data, credits_usd=0.000420)
    fake.enqueue(*[{"text": "x" * 400, "delay_ms": 300}] * 50)
    lowest_available = []
    stop = threading.Event()

    def watch():
        with httpx.Client(headers=key, timeout=20) as client:
            while not stop.is_set():
                lowest_available.append(client.get(f"{base}/v1/credits").json()["available_usd"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(50) as pool:
            statuses = [r.status_code for r in pool.map(lambda _: chat(base, key), range(50))]
    finally:
        stop.set()
        watcher.join(10)
    assert set(statuses) <= {200, 402}
    assert 5 <= statuses.count(200) <= 10
    assert lowest_available and min(lowest_available) >= 0
    records = assert_books_balance(base, key, 0.000420)
    assert len(records) == 50
    assert sorted(r["status"] for r in records) == sorted(statuses)


def test_a_top_up_through_the_admin_api_lets_requests_through_again(gateway):
    base, fake, data = gateway
    key = new_key(data, credits_usd=0.00001)
    assert chat(base, key).status_code == 402
    key_id = credits(base, key)["key"]["id"]
    topped = httpx.post(f"{base}/v1/admin/keys/{key_id}/top-up", json={"usd": 0.5},
                        headers=AUTH, timeout=20)
    assert topped.status_code == 200
    assert micros(topped.json()["balance_usd"]) == 500_010
    assert micros(credits(base, key)["balance_usd"]) == 500_010
    fake.enqueue(ANSWER_200)
    assert chat(base, key).status_code == 200
    assert_books_balance(base, key, 0.50001)


def test_credits_show_the_plan_balance_and_limits(gateway):
    base, _, data = gateway
    prepaid = credits(base, new_key(data, credits_usd=12.5, rpm=30, tpm=40000))
    assert prepaid["plan"] == "prepaid" and prepaid["unlimited"] is False
    assert prepaid["balance_usd"] == 12.5 and prepaid["available_usd"] == 12.5
    assert prepaid["reserved_usd"] == 0
    assert prepaid["limits"] == {"requests_per_minute": 30, "tokens_per_minute": 40000}

    unlimited = credits(base, new_key(data))
    assert unlimited["plan"] == "unlimited" and unlimited["unlimited"] is True
    assert unlimited["balance_usd"] is None and unlimited["available_usd"] is None
    assert unlimited["limits"] == {"requests_per_minute": None, "tokens_per_minute": None}
    assert credits(base, AUTH)["plan"] == "unlimited"


def test_an_unlimited_key_is_never_refused_for_credit(gateway):
    base, fake, data = gateway
    key = new_key(data)
    fake.enqueue({"text": "x" * 4000})
    response = chat(base, key, model="local-large", max_tokens=32000, content="y" * 40000)
    assert response.status_code == 200
    (record,) = ledger(base, key)
    assert record["cost_usd"] > 0 and record["charged_usd"] == 0
