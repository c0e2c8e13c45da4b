"""The response cache in the request path: what is a hit, what never is, how hits are replayed
and accounted, and that a broken backend never breaks a request."""
from __future__ import annotations

import asyncio
import logging

import anthropic
import httpx
import openai
import pytest

from costr.testing import AUTH, TEST_KEY, running_gateway, seed_key

from conftest import LOCAL_POOL, write_config

ASK = [{"role": "user", "content": "Reply exactly: cached answer"}]
ANTHROPIC_POOL = """\
tiers: [budget, standard, premium]
baseline: claude-large
providers:
  claude: {{type: anthropic, base_url: "{url}", api_key_env: COSTR_TEST_CACHE_ANTHROPIC_KEY}}
models:
  - {{id: claude-small, provider: claude, tier: budget, price: {{input: 1.0, output: 5.0}},
     context_window: 200000, max_output_tokens: 8192, capabilities: [tools]}}
  - {{id: claude-large, provider: claude, tier: premium, price: {{input: 3.0, output: 15.0}},
     context_window: 200000, max_output_tokens: 8192, capabilities: [tools, reasoning]}}
"""


@pytest.fixture(params=["openai", "anthropic"])
def gateway(request, tmp_path, fake_upstream, monkeypatch):
    """(base URL, fake upstream, the upstream's type) for a gateway with the default cache."""
    monkeypatch.setenv("COSTR_TEST_CACHE_ANTHROPIC_KEY", "sk-ant-fake")
    pool = (ANTHROPIC_POOL if request.param == "anthropic" else LOCAL_POOL).format(url=fake_upstream.url)
    with running_gateway(*write_config(tmp_path, pool), data_dir=str(tmp_path / "data")) as base:
        yield base, fake_upstream


def chat(base: str, stream: bool = False, **headers) -> httpx.Response:
    body = {"model": "auto", "messages": ASK, "stream": stream}
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers={**AUTH, **headers}, timeout=20)


def message(base: str, stream: bool = False, **headers) -> httpx.Response:
    body = {"model": "auto", "max_tokens": 64, "messages": ASK, "stream": stream}
    return httpx.post(f"{base}/v1/messages", json=body,
                      headers={**AUTH, "anthropic-version": "2023-06-01", **headers}, timeout=20)


def test_a_repeated_chat_completion_is_a_hit_with_the_same_content(gateway):
    base, fake = gateway
    first, second = chat(base), chat(base)
    assert first.json()["x_routing"]["cache_hit"] is False
    assert second.json()["x_routing"]["cache_hit"] is True
    assert second.headers["x-costr-cache-hit"] == "true"
    assert second.json()["choices"][0]["message"]["content"] == "cached answer"
    assert len(fake.requests) == 1
    assert second.json()["x_routing"]["savings_percent"] == 100.0


def test_a_repeated_message_is_a_hit_with_the_same_content(gateway):
    base, fake = gateway
    first, second = message(base), message(base)
    assert first.json()["content"] == second.json()["content"]
    assert second.json()["x_routing"]["cache_hit"] is True
    assert len(fake.requests) == 1


@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_a_hit_is_replayed_as_a_proper_stream_of_the_callers_family(gateway, family):
    base, fake = gateway
    if family == "openai":
        chat(base)  # stored from a non-streamed answer
        client = openai.OpenAI(api_key=TEST_KEY, base_url=f"{base}/v1", max_retries=0)
        chunks = list(client.chat.completions.create(model="auto", messages=ASK, stream=True,
                                                     stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "cached answer"
        assert chunks[-1].x_routing["cache_hit"] is True and chunks[-1].usage.completion_tokens > 0
    else:
        client = anthropic.Anthropic(api_key=TEST_KEY, base_url=base, max_retries=0)
        # stored from a non-streamed answer, asked in the same anthropic-version (a request in
        # another version is another key where it passes through to an Anthropic upstream)
        client.messages.create(model="auto", max_tokens=64, messages=ASK)
        with client.messages.stream(model="auto", max_tokens=64, messages=ASK) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == "cached answer" and final.stop_reason == "end_turn"
    assert len(fake.requests) == 1


def test_a_streamed_answer_is_stored_once_complete_and_served_to_a_plain_request(gateway):
    base, fake = gateway
    streamed = chat(base, stream=True)
    assert streamed.text.endswith("data: [DONE]\n\n")
    plain = chat(base)
    assert plain.json()["x_routing"]["cache_hit"] is True
    assert plain.json()["choices"][0]["message"]["content"] == "cached answer"
    assert len(fake.requests) == 1


def test_x_no_cache_neither_reads_nor_writes(gateway):
    base, fake = gateway
    chat(base, **{"x-no-cache": "true"})
    assert chat(base).json()["x_routing"]["cache_hit"] is False  # nothing was written
    assert chat(base, **{"x-no-cache": "true"}).json()["x_routing"]["cache_hit"] is False
    assert len(fake.requests) == 3


@pytest.mark.parametrize("value", ["soon", "0", "-5", "1.5", "99999999"])
def test_a_bad_cache_ttl_is_a_400_saying_so(gateway, value):
    base, _ = gateway
    response = chat(base, **{"x-cache-ttl": value})
    assert response.status_code == 400
    assert "x-cache-ttl" in response.json()["error"]["message"]
    anthropic_shaped = message(base, **{"x-cache-ttl": value})
    assert anthropic_shaped.status_code == 400
    assert anthropic_shaped.json()["error"]["type"] == "invalid_request_error"


def test_an_entry_expires_after_its_ttl(gateway):
    base, fake = gateway
    chat(base, **{"x-cache-ttl": "1"})
    assert chat(base).json()["x_routing"]["cache_hit"] is True
    import time
    time.sleep(1.2)
    assert chat(base).json()["x_routing"]["cache_hit"] is False
    assert len(fake.requests) == 2


def test_entries_are_scoped_to_the_api_key(gateway, tmp_path):
    base, fake = gateway
    other = "cr-other-tenant-key-0123456789abcdefghijklmn"
    asyncio.run(seed_key(None, str(tmp_path / "data"), other, name="other", admin=False))
    chat(base)
    theirs = httpx.post(f"{base}/v1/chat/completions", timeout=20,
                        headers={"authorization": f"Bearer {other}"},
                        json={"model": "auto", "messages": ASK})
    assert theirs.json()["x_routing"]["cache_hit"] is False
    assert len(fake.requests) == 2


def test_errors_are_never_cached(gateway):
    base, fake = gateway
    fake.enqueue({"status": 400, "error": "no"})
    assert chat(base).status_code == 400
    second = chat(base)
    assert second.status_code == 200 and second.json()["x_routing"]["cache_hit"] is False


def test_identical_requests_arriving_together_make_one_upstream_call(tmp_path):
    from costr.testing.fake_upstream import FakeUpstream
    with FakeUpstream(delay_ms=300) as slow:
        with running_gateway(*write_config(tmp_path, LOCAL_POOL.format(url=slow.url))) as base:
            async def burst():
                async with httpx.AsyncClient(headers=AUTH, timeout=20) as client:
                    return await asyncio.gather(*(client.post(
                        f"{base}/v1/chat/completions", json={"model": "auto", "messages": ASK})
                        for _ in range(8)))
            responses = asyncio.run(burst())
        assert [r.status_code for r in responses] == [200] * 8
        assert sum(r.json()["x_routing"]["cache_hit"] for r in responses) == 7
        assert len(slow.requests) == 1


def test_hits_are_on_the_books_free_and_in_stats(gateway):
    base, _ = gateway
    first, second = chat(base), chat(base)
    records = {r["id"]: r for r in httpx.get(f"{base}/v1/requests", headers=AUTH).json()["data"]}
    miss, hit = records[first.headers["x-request-id"]], records[second.headers["x-request-id"]]
    assert hit["cache_hit"] is True and hit["charged_usd"] == 0 and hit["cost_usd"] == 0
    assert hit["cache_saved_micros"] == round(miss["cost_usd"] * 1_000_000)
    stats = httpx.get(f"{base}/v1/router/stats", headers=AUTH).json()["totals"]
    assert stats["cache_hits"] == 1 and stats["cache_hit_rate"] == 0.5
    assert stats["cache_saved_usd"] == pytest.approx(miss["cost_usd"])


def test_an_unreachable_backend_degrades_to_no_cache_with_a_warning(tmp_path, fake_upstream, caplog):
    caplog.set_level(logging.WARNING, logger="costr.cache")
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    with running_gateway(providers, policies, cache="redis://127.0.0.1:1/0") as base:
        assert chat(base).status_code == 200 and chat(base).status_code == 200
    assert len(fake_upstream.requests) == 2
    assert any("cache" in r.getMessage() for r in caplog.records)


def test_an_unknown_backend_disables_the_cache_without_failing(tmp_path, fake_upstream, caplog):
    caplog.set_level(logging.WARNING, logger="costr")
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    with running_gateway(providers, policies, cache="nosuch://x") as base:
        assert chat(base).json()["x_routing"]["cache_hit"] is False
        assert chat(base).json()["x_routing"]["cache_hit"] is False
    assert any("response cache disabled" in r.getMessage() for r in caplog.records)


def _redis_or_skip() -> str:
    import redis
    url = "redis://127.0.0.1:6379/13"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {url}: {exc}")
    return url


def test_with_redis_an_answer_through_one_instance_is_a_hit_through_another(tmp_path, fake_upstream):
    import secrets
    url = _redis_or_skip() + f"?prefix=costr-test-{secrets.token_hex(4)}:"
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    with running_gateway(providers, policies, database=database, cache=url) as first, \
            running_gateway(providers, policies, database=database, cache=url,
                            seed_test_key=False) as second:
        assert chat(first).json()["x_routing"]["cache_hit"] is False
        hit = chat(second)
        assert hit.json()["x_routing"]["cache_hit"] is True
        assert hit.json()["choices"][0]["message"]["content"] == "cached answer"
    assert len(fake_upstream.requests) == 1


def test_with_sqlite_entries_survive_a_restart(tmp_path, fake_upstream):
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    data = str(tmp_path / "data")
    with running_gateway(providers, policies, cache=url, data_dir=data) as base:
        chat(base)
    with running_gateway(providers, policies, cache=url, data_dir=data, seed_test_key=False) as base:
        assert chat(base).json()["x_routing"]["cache_hit"] is True
    assert len(fake_upstream.requests) == 1


def test_a_corrupted_sqlite_cache_degrades_to_no_cache(tmp_path, fake_upstream, caplog):
    caplog.set_level(logging.WARNING)
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not a database" * 100)
    providers, policies = write_config(tmp_path, LOCAL_POOL.format(url=fake_upstream.url))
    with running_gateway(providers, policies, cache=f"sqlite:///{path}") as base:
        assert chat(base).status_code == 200 and chat(base).status_code == 200
    assert len(fake_upstream.requests) == 2
    assert any("cache" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
