"""Several `costr serve` processes sharing one PostgreSQL database (and, for rate limits, one
Redis), as an operator runs them behind a load balancer: a key's credit is never overspent,
the account endpoints agree with each other and with what clients received, an instance
stopped with SIGTERM under load loses no ledger record of an answer it delivered, and a key's
rate limits hold across instances sharing a limits backend.

Each test gets a fresh PostgreSQL schema; skipped, with the reason, when no server answers
(or, for the shared limits, when Redis does not).
"""
from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from costr.testing.fake_upstream import FakeUpstream

pytestmark = pytest.mark.anyio
from conftest import fresh_postgres_schema
REDIS_URL = os.environ.get("COSTR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# One model, so every request is held and charged at the same prices (USD per million tokens,
# so a token costs `price` micro-dollars).
PRICE_IN, PRICE_OUT = 1.0, 40.0
PROVIDERS = """\
tiers: [budget]
baseline: solo
providers:
  fake: {{type: openai, base_url: "{url}/v1"}}
models:
  - {{id: solo, provider: fake, tier: budget, price: {{input: {price_in}, output: {price_out}}},
     context_window: 128000, max_output_tokens: 4096}}
"""
POLICY = "type: thresholds\nthresholds: {}\n"

MAX_TOKENS = 200
ANSWER = "x" * (4 * MAX_TOKENS)  # the fake counts ceil(chars / 4) tokens: exactly max_tokens


def prompt(i: int) -> str:
    """Distinct for every i, so the response cache never answers one request with another's
    answer; the same length for every i, so every request is held and charged alike."""
    return f"Request {i:06d}.\nReply exactly: {ANSWER}"


PROMPT_CHARS = len(prompt(0))
# What Books.admit holds (costr/accounting.py): the offline prompt estimate (chars // 4, plus 4
# per message, plus 8) with a 25% margin and 16 tokens, plus max_tokens of output.
ESTIMATE = PROMPT_CHARS // 4 + 4 + 8
HOLD = round((int(ESTIMATE * 1.25) + 16) * PRICE_IN + MAX_TOKENS * PRICE_OUT)
# What the answer costs: the fake reports ceil(chars / 4) prompt tokens and the answer's tokens.
PROMPT_TOKENS = math.ceil(PROMPT_CHARS / 4)
COST = round(PROMPT_TOKENS * PRICE_IN + MAX_TOKENS * PRICE_OUT)

AFFORDABLE = 50
CREDIT = AFFORDABLE * HOLD  # micro-dollars
# Why exactly AFFORDABLE requests succeed, whatever the timing: a refusal means the balance
# less what is held fell below HOLD, which needs at least AFFORDABLE admissions (each admitted
# request holds HOLD, or has already been charged COST < HOLD); and the balance never goes
# negative, so at most CREDIT // COST can be charged. The prices make both bounds AFFORDABLE.
assert CREDIT // HOLD == CREDIT // COST == AFFORDABLE


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
async def database():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    async with fresh_postgres_schema() as url:
        yield url


@pytest.fixture
def fake():
    with FakeUpstream(delay_ms=30, record=False) as upstream:
        yield upstream


@pytest.fixture
def config(tmp_path, fake) -> tuple[Path, Path]:
    providers = tmp_path / "providers.yaml"
    providers.write_text(PROVIDERS.format(url=fake.url, price_in=PRICE_IN, price_out=PRICE_OUT))
    policies = tmp_path / "routing_policies"
    policies.mkdir()
    (policies / "balanced.yaml").write_text(POLICY)
    return providers, policies


@dataclass
class Instance:
    proc: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve(tmp_path, config, database):
    """`serve(n, limits=None)` starts n `costr serve` processes on the shared database and
    waits until each answers its health check; every one is stopped afterwards."""
    providers, policies = config
    started: list[Instance] = []

    def start(count: int, limits: str | None = None) -> list[Instance]:
        batch = []
        for _ in range(count):
            port = free_port()
            log = tmp_path / f"serve-{port}.log"
            command = [sys.executable, "-m", "costr", "serve", "--providers", str(providers),
                       "--policies", str(policies), "--database", database,
                       "--port", str(port), "--log-level", "warning"]
            if limits:
                command += ["--limits", limits]
            with log.open("wb") as out:
                proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
            batch.append(Instance(proc, f"http://127.0.0.1:{port}", log))
        started.extend(batch)
        for instance in batch:
            wait_until_healthy(instance)
        return batch

    try:
        yield start
    finally:
        for instance in started:
            if instance.proc.poll() is None:
                instance.proc.terminate()
        for instance in started:
            try:
                instance.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                instance.proc.kill()
                instance.proc.wait()


def wait_until_healthy(instance: Instance, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if instance.proc.poll() is not None:
            pytest.fail(f"costr serve exited with {instance.proc.returncode}:\n{instance.output()}")
        try:
            if httpx.get(f"{instance.url}/v1/router/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"costr serve did not become healthy in {timeout} s:\n{instance.output()}")
        time.sleep(0.1)


def create_key(database: str, *options: str) -> str:
    """`costr keys create`, as an operator runs it; returns the key it prints."""
    done = subprocess.run([sys.executable, "-m", "costr", "keys", "create", "--database", database,
                           "--name", "t", *options], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    assert secret.startswith("cr-") and "\n" not in secret, done.stdout
    return secret


def usd(micros: int) -> str:
    return f"{micros / 1_000_000:.6f}"


def micros(amount_usd: float) -> int:
    return round(amount_usd * 1_000_000)


def client(connections: int = 400) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=60, limits=httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections))


async def chat(http: httpx.AsyncClient, instance: Instance, key: str, i: int) -> httpx.Response:
    return await http.post(f"{instance.url}/v1/chat/completions",
                           headers={"authorization": f"Bearer {key}"},
                           json={"model": "auto", "max_tokens": MAX_TOKENS,
                                 "messages": [{"role": "user", "content": prompt(i)}]})


async def account(http: httpx.AsyncClient, instance: Instance, key: str, path: str) -> dict:
    response = await http.get(f"{instance.url}{path}", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    return response.json()


async def all_requests(http: httpx.AsyncClient, instance: Instance, key: str) -> list[dict]:
    """Every ledger record of the key, through /v1/requests, page by page."""
    records, before = [], None
    while True:
        page = await account(http, instance, key, "/v1/requests?limit=500"
                             + ("" if before is None else f"&before={before!r}"))
        records += page["data"]
        if not page["has_more"]:
            return records
        before = page["next_before"]


async def test_a_key_is_never_charged_beyond_its_balance_across_two_instances(serve, database):
    key = create_key(database, "--credits", usd(CREDIT))
    first, second = serve(2)
    async with client() as http:
        responses = await asyncio.gather(*(chat(http, (first, second)[i % 2], key, i)
                                           for i in range(200)))
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {200: AFFORDABLE, 402: 200 - AFFORDABLE}, \
            [r.text for r in responses if r.status_code not in (200, 402)][:3]
        answered = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 402]
        for r in refused:
            error = r.json()["error"]
            assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
            assert f"${usd(HOLD)}" in error["message"]  # the hold this test expects
        for r in answered:
            body = r.json()
            assert body["choices"][0]["message"]["content"] == ANSWER
            assert (body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]) == \
                (PROMPT_TOKENS, MAX_TOKENS)
        sent_ids = {r.headers["x-request-id"]: r.status_code for r in responses}
        assert len(sent_ids) == 200

        # Both instances tell the same story.
        credits = [await account(http, i, key, "/v1/credits") for i in (first, second)]
        records = await all_requests(http, second, key)
        usage = await account(http, first, key, "/v1/usage")
        stats = await account(http, second, key, "/v1/router/stats")

    assert credits[0] == credits[1]
    balance = micros(credits[0]["balance_usd"])
    assert balance == CREDIT - AFFORDABLE * COST >= 0
    assert micros(credits[0]["reserved_usd"]) == 0
    assert micros(credits[0]["available_usd"]) == balance

    # The ledger holds exactly the requests the clients made, each with the status it got.
    assert {r["id"]: r["status"] for r in records} == sent_ids
    charged = sum(micros(r["charged_usd"]) for r in records)
    assert charged == CREDIT - balance
    for r in records:
        expected = COST if r["status"] == 200 else 0
        assert (micros(r["cost_usd"]), micros(r["charged_usd"])) == (expected, expected), r

    # /v1/usage, /v1/router/stats and /v1/requests agree, and with what the clients received.
    total = usage["total"]
    assert total["requests"] == stats["totals"]["requests"] == len(records) == 200
    assert micros(total["cost_usd"]) == micros(stats["totals"]["cost_usd"]) == charged
    assert stats["totals"]["failed"] == 200 - AFFORDABLE   # refused: no model answered them
    assert all(row["model"] for row in stats["data"])
    received = [r.json()["usage"] for r in answered]
    assert total["input_tokens"] == sum(u["prompt_tokens"] for u in received) \
        == sum(r["input_tokens"] for r in records)
    assert total["output_tokens"] == sum(u["completion_tokens"] for u in received) \
        == sum(r["output_tokens"] for r in records)


async def test_an_instance_stopped_with_sigterm_under_load_loses_no_delivered_record(
        serve, database, fake):
    fake.delay = 0.1  # so requests are in flight at the moment of the signal
    initial = 100_000 * HOLD
    key = create_key(database, "--credits", usd(initial))
    doomed, survivor = serve(2)
    delivered: list[tuple[str, float]] = []  # (x-request-id, when it arrived) of each 200
    other: list[httpx.Response] = []
    signalled: list[float] = []
    count = iter(range(10**6))

    async def load(http: httpx.AsyncClient) -> None:
        while True:
            try:
                response = await chat(http, doomed, key, next(count))
            except httpx.TransportError:
                if signalled:  # the instance is going or gone: the load stops
                    return
                raise
            if response.status_code == 200:
                delivered.append((response.headers["x-request-id"], time.monotonic()))
            else:
                other.append(response)

    async with client(16) as http:
        workers = [asyncio.create_task(load(http)) for _ in range(8)]
        await asyncio.sleep(1.0)
        assert not other, [r.text for r in other[:3]]
        signalled.append(time.monotonic())
        doomed.proc.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(doomed.proc.wait, 60)
        await asyncio.wait_for(asyncio.gather(*workers), 60)
        records = {r["id"]: r for r in await all_requests(http, survivor, key)}
        credits = await account(http, survivor, key, "/v1/credits")

    # uvicorn shuts down gracefully, then re-raises the signal, so the process dies of it.
    assert exit_code == -signal.SIGTERM, doomed.output()
    assert "Traceback" not in doomed.output() and "ledger" not in doomed.output(), doomed.output()
    drained = [rid for rid, at in delivered if at > signalled[0]]
    assert len(delivered) > 20 and drained, "no request was in flight at the signal"
    lost = [rid for rid, _ in delivered if rid not in records]
    assert lost == [], f"{len(lost)} of {len(delivered)} delivered answers have no ledger record"
    assert all(records[rid]["status"] == 200 for rid, _ in delivered)
    # No hold outlives the instance, and what was charged is what the ledger says.
    assert micros(credits["reserved_usd"]) == 0
    charged = sum(micros(r["charged_usd"]) for r in records.values())
    assert micros(credits["balance_usd"]) == initial - charged
    assert charged >= len(delivered) * COST


def redis_reachable(url: str) -> str | None:
    """None when Redis answers, else why not."""
    import redis

    try:
        connection = redis.Redis.from_url(url, socket_connect_timeout=2)
        connection.ping()
        connection.close()
        return None
    except redis.RedisError as exc:
        return str(exc)


def start_of_a_fresh_window(room: float = 5.0) -> None:
    """Limits count in fixed one-minute windows: wait out the last seconds of one, so the
    requests that follow all fall in the same window."""
    left = 60 - time.time() % 60
    if left < room:
        time.sleep(left + 0.05)


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_rate_limits_hold_across_instances_sharing_a_limits_backend(serve, database, backend):
    """With Redis, two instances share each key's windows: rpm 5 means 5 in all. With
    memory:// each instance counts alone, so the same spread gets twice as many through."""
    if backend == "redis":
        unreachable = redis_reachable(REDIS_URL)
        if unreachable:
            pytest.skip(f"Redis not reachable at {REDIS_URL}: {unreachable}")
    by_requests = create_key(database, "--rpm", "5")
    by_tokens = create_key(database, "--tpm", "1")
    first, second = serve(2, limits=REDIS_URL if backend == "redis" else "memory://")
    alternate = [first, second] * 5
    # The keys are new, so their windows in Redis are too (and expire within two minutes).
    start_of_a_fresh_window()
    async with client() as http:
        responses = [await chat(http, instance, by_requests, i)
                     for i, instance in enumerate(alternate)]
        tokens = [await chat(http, instance, by_tokens, 100 + i)
                  for i, instance in enumerate(alternate[:2])]

    statuses = [r.status_code for r in responses]
    if backend == "memory":
        assert statuses == [200] * 10
        assert [r.status_code for r in tokens] == [200, 200]
        return
    assert statuses == [200] * 5 + [429] * 5
    for refused in [*responses[5:], tokens[1]]:
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    # tpm: the first request's tokens, counted by one instance, shut the other out.
    assert [r.status_code for r in tokens] == [200, 429]
