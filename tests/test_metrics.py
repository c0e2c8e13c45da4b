"""GET /metrics as Prometheus scrapes it: counters and histograms that move with the requests
clients make (through the real OpenAI SDK), upstream attempts and breaker states, label values
that no client can multiply, an admin key or a listen address of its own, and one view over
several worker processes sharing PROMETHEUS_MULTIPROC_DIR."""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from costr.testing import AUTH, TEST_KEY, running_gateway, seed_key

from conftest import LOCAL_POOL, write_config

CHAT = "/v1/chat/completions"
# Long enough that the budget model's price makes a cost above a micro-dollar.
PROMPT = "Summarise the trade-offs of caching in a web service. " * 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(url: str, headers: dict | None = AUTH) -> list:
    response = httpx.get(url, headers=headers, timeout=20)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.text)
            for sample in family.samples]


def value(samples: list, name: str, **labels) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=TEST_KEY, max_retries=0)


@pytest.fixture
def gateway(tmp_path, fake_upstream):
    data = str(tmp_path / "data")
    with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url)),
                         data_dir=data) as base:
        yield base, data


def test_counters_move_with_requests(gateway):
    base, _ = gateway
    before = scrape(f"{base}/metrics")
    routed = set()
    for i in range(3):
        raw = client(base).chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": f"{PROMPT} ({i})"}])
        routed.add((raw.headers["x-costr-routed-model"], raw.headers["x-costr-tier"]))
    assert len(routed) == 1, routed
    (model, tier), = routed
    after = scrape(f"{base}/metrics")

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    assert moved("costr_requests_total", endpoint=CHAT, status="200", model=model, tier=tier,
                 provider="local", policy="balanced") == 3
    assert moved("costr_request_duration_seconds_count", endpoint=CHAT, model=model) == 3
    assert moved("costr_upstream_attempts_total", model=model, provider="local", outcome="ok") == 3
    assert moved("costr_cost_usd_total", model=model, tier=tier) > 0
    assert moved("costr_baseline_cost_usd_total", model=model) > moved("costr_cost_usd_total", model=model)
    assert moved("costr_savings_usd_total", model=model) > 0
    assert moved("costr_tokens_total", model=model, direction="input") >= 3 * len(PROMPT) // 4
    assert moved("costr_tokens_total", model=model, direction="output") > 0
    assert moved("costr_cache_misses_total") == 3
    # a scrape counts as a request too, on its own route
    assert value(after, "costr_requests_total", endpoint="/metrics", status="200") >= 1


def test_streams_time_to_first_token_and_cache_hits(gateway):
    base, _ = gateway
    before = scrape(f"{base}/metrics")
    chunks = list(client(base).chat.completions.create(
        model="local-mini", stream=True, messages=[{"role": "user", "content": "Reply exactly: hi"}]))
    assert chunks
    for _ in range(2):   # the second is answered from the cache
        client(base).chat.completions.create(
            model="local-mini", messages=[{"role": "user", "content": "Reply exactly: again"}])
    after = scrape(f"{base}/metrics")
    assert value(after, "costr_time_to_first_token_seconds_count", model="local-mini") - \
        value(before, "costr_time_to_first_token_seconds_count", model="local-mini") == 1
    assert value(after, "costr_cache_hits_total") - value(before, "costr_cache_hits_total") == 1
    assert value(after, "costr_cache_misses_total") - value(before, "costr_cache_misses_total") == 2


def test_a_fallback_counts_each_upstream_attempt_and_opens_a_breaker(tmp_path, fake_upstream):
    """The budget model's upstream fails once: its attempt is counted as an error, the next
    candidate's as ok, and (with a breaker opening at the first failure) the model's breaker
    shows open."""
    pool = LOCAL_POOL.format(url=fake_upstream.url).replace(
        "providers:", "routing: {breaker: {failures: 1, cooldown_seconds: 600}}\nproviders:")
    fake_upstream.enqueue({"status": 500, "error": "the budget upstream is down"})
    with running_gateway(*write_config(tmp_path, pool)) as base:
        before = scrape(f"{base}/metrics")
        assert value(before, "costr_breaker_state", provider="local", model="local-mini") == 0
        raw = client(base).chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Reply exactly: ok"}])
        assert raw.headers["x-costr-routed-model"] == "local-standard"
        after = scrape(f"{base}/metrics")
    assert value(after, "costr_upstream_attempts_total", model="local-mini", outcome="error") == 1
    assert value(after, "costr_upstream_attempts_total", model="local-standard", outcome="ok") == 1
    assert value(after, "costr_requests_total", endpoint=CHAT, model="local-standard",
                 tier="standard", status="200") == 1
    assert value(after, "costr_breaker_state", provider="local", model="local-mini") == 2
    assert value(after, "costr_breaker_state", provider="local", model="") == 0


def test_what_a_client_sends_never_becomes_a_label_value(gateway):
    base, _ = gateway
    with pytest.raises(openai.NotFoundError):
        client(base).chat.completions.create(
            model="no-such-model-x7", messages=[{"role": "user", "content": "hi"}])
    httpx.get(f"{base}/made/up/path-q9", headers=AUTH, timeout=20)
    httpx.get(f"{base}/v1/models/another-made-up-id", headers=AUTH, timeout=20)
    text = httpx.get(f"{base}/metrics", headers=AUTH, timeout=20).text
    for sent in ("no-such-model-x7", "path-q9", "another-made-up-id"):
        assert sent not in text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert value(samples, "costr_requests_total", endpoint=CHAT, status="404", model="") == 1
    assert value(samples, "costr_requests_total", endpoint="other", status="404") == 1
    assert value(samples, "costr_requests_total", endpoint="/v1/models/{model_id:path}",
                 status="404") == 1


def test_metrics_need_an_admin_key(gateway):
    base, data = gateway
    assert httpx.get(f"{base}/metrics", timeout=20).status_code == 401
    secret = "cr-" + secrets.token_urlsafe(32)
    asyncio.run(seed_key(None, data, secret, name="member", admin=False))
    refused = httpx.get(f"{base}/metrics", headers={"authorization": f"Bearer {secret}"}, timeout=20)
    assert refused.status_code == 403
    assert "admin" in refused.json()["error"]["message"]
    assert scrape(f"{base}/metrics")


def test_a_metrics_port_serves_without_a_key_and_the_api_port_does_not(tmp_path, fake_upstream):
    port = free_port()
    with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url)),
                         metrics_port=port) as base:
        client(base).chat.completions.create(
            model="local-mini", messages=[{"role": "user", "content": "Reply exactly: ok"}])
        samples = scrape(f"http://127.0.0.1:{port}/metrics", headers=None)
        assert value(samples, "costr_requests_total", endpoint=CHAT, model="local-mini") == 1
        assert httpx.get(f"{base}/metrics", headers=AUTH, timeout=20).status_code == 404
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=20).status_code == 404


def test_workers_sharing_a_multiprocess_directory_are_scraped_as_one(tmp_path, fake_upstream):
    """Two `costr serve` processes (as two workers would be) with one PROMETHEUS_MULTIPROC_DIR:
    a scrape of either counts the requests both answered."""
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    shared = tmp_path / "prometheus"
    shared.mkdir()
    data = tmp_path / "data"
    asyncio.run(seed_key(None, str(data), TEST_KEY))
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    ports = [free_port(), free_port()]
    workers = [subprocess.Popen(
        [sys.executable, "-m", "costr", "serve", "--port", str(port), "--providers", str(providers),
         "--policies", str(policies), "--data-dir", str(data), "--no-dashboard",
         "--log-level", "warning"], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for port in ports]
    try:
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for base, worker in zip(bases, workers):
            wait_ready(base, worker)
        for base, times in zip(bases, (2, 1)):
            for i in range(times):
                client(base).chat.completions.create(
                    model="local-mini", messages=[{"role": "user", "content": f"Reply exactly: {i}"}])
        for base in bases:
            samples = scrape(f"{base}/metrics")
            assert value(samples, "costr_requests_total", endpoint=CHAT, model="local-mini") == 3
            assert value(samples, "costr_request_duration_seconds_count", endpoint=CHAT) == 3
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=20)
            worker.stderr.close()


def serve(tmp_path, upstream_url: str, *options: str) -> tuple[subprocess.Popen, str]:
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=upstream_url))
    data = tmp_path / "data"
    asyncio.run(seed_key(None, str(data), TEST_KEY))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "costr", "serve", "--port", str(port), "--providers", str(providers),
         "--policies", str(policies), "--data-dir", str(data), "--no-dashboard", *options],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, process)
    return process, base


def stop(process: subprocess.Popen) -> list[str]:
    process.terminate()
    _, err = process.communicate(timeout=30)
    return err.decode().splitlines()


def test_costr_serve_takes_a_metrics_port(tmp_path, fake_upstream):
    port = free_port()
    process, base = serve(tmp_path, fake_upstream.url, "--metrics-port", str(port))
    try:
        client(base).chat.completions.create(
            model="local-mini", messages=[{"role": "user", "content": "Reply exactly: ok"}])
        samples = scrape(f"http://127.0.0.1:{port}/metrics", headers=None)
        assert value(samples, "costr_requests_total", endpoint=CHAT, model="local-mini") == 1
        assert httpx.get(f"{base}/metrics", headers=AUTH, timeout=20).status_code == 404
    finally:
        stop(process)


def wait_ready(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"costr serve exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/v1/router/health", timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("costr serve did not start")


def test_a_request_settled_after_its_response_ended_is_observed_once_settled():
    """A stream whose client went away can be settled after the server is done with the
    request, from another context: it is observed then, once, with its ledger record."""
    import contextvars

    from costr.accounts import observers
    from costr.accounts.books import Entry
    from costr.accounts.records import ApiKey, LedgerRecord
    from costr.server.observability import WatchRequests

    entry = Entry(ApiKey("k1", "k", "cr-xxxxxxx"), LedgerRecord("req_1", "k1", 0.0, "", "openai-chat"))
    seen = []

    async def app(scope, receive, send):
        observers.opened(entry)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def settle_later():
        entry.settled, entry.record.status = True, 499
        observers.finished(entry)

    async def run():
        async def send(message):
            pass
        await WatchRequests(app, [seen.append])(
            {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []},
            None, send)
        assert seen == []   # its entry is still open
        await asyncio.get_running_loop().create_task(settle_later(), context=contextvars.Context())
    asyncio.run(run())
    served, = seen
    assert served.entry is entry and served.outcome_status == 499 and served.status == 200
