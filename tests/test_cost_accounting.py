"""What a request costs, pinned to the micro-dollar: cached input at its cached rate, cache
writes at theirs, streamed usage from the stream's end, missing usage estimated and flagged,
savings against the baseline on the same usage, and nothing for a failed request.

Upstreams are replayed from cassettes in each provider's wire format; the expected costs are
worked out here by hand from the prices in the shipped providers.yaml (a token count times a
price in USD per million tokens is micro-dollars)."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import yaml

from costr.testing import running_gateway, seed_key, use_cassette

from conftest import REPO

KEY = "cr-cost-accounting-tests-key-" + "c" * 20
HEADERS = {"authorization": f"Bearer {KEY}"}
ANTHROPIC = {**HEADERS, "anthropic-version": "2023-06-01"}
CREDIT_USD = 10.0
PRICES = {m["id"]: m["price"] for m in yaml.safe_load((REPO / "providers.yaml").read_text())["models"]}
BASELINE = "claude-sonnet-4-5"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The shipped providers.yaml with every provider's key set, no response cache, and a
    prepaid key with $10 of credit."""
    data = str(tmp_path_factory.mktemp("cost") / "data")
    with pytest.MonkeyPatch.context() as mp:
        for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
            mp.setenv(env, f"test-{env.lower()}")
        with running_gateway(REPO / "providers.yaml", REPO / "routing_policies", data_dir=data,
                             cache="none") as url:
            asyncio.run(seed_key(None, data, KEY, name="cost", admin=False, credits_usd=CREDIT_USD))
            yield url


def cost_micros(model: str, *, fresh: int = 0, cached: int = 0, written: int = 0, output: int = 0) -> float:
    p = PRICES[model]
    return (fresh * p["input"] + cached * p.get("cached_input", p["input"])
            + written * p.get("cache_write", p["input"]) + output * p["output"])


def balance_micros(base: str) -> int:
    credits = httpx.get(f"{base}/v1/credits", headers=HEADERS, timeout=20).json()
    assert credits["reserved_usd"] == 0
    return round(credits["balance_usd"] * 1_000_000)


def record(base: str, request_id: str) -> dict:
    page = httpx.get(f"{base}/v1/requests?limit=500", headers=HEADERS, timeout=20).json()
    (found,) = [r for r in page["data"] if r["id"] == request_id]
    return found


def micros(usd: float) -> int:
    return round(usd * 1_000_000)


def chat(base: str, body: dict) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", json=body, headers=HEADERS, timeout=20)


def sse_data(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def assert_charged(base: str, request_id: str, before: int, *, model: str, expected: float,
                   baseline: float, x_routing: dict) -> dict:
    """The ledger has the answer at `expected` micro-dollars on `model`, the key paid exactly
    that, and savings are 1 - cost / baseline cost on the same usage, as the client was told."""
    entry = record(base, request_id)
    assert entry["routed_model"] == model and entry["status"] == 200
    assert micros(entry["cost_usd"]) == round(expected)
    assert micros(entry["charged_usd"]) == round(expected)
    assert micros(entry["baseline_usd"]) == round(baseline)
    assert balance_micros(base) == before - round(expected)
    savings = round(100 * (1 - expected / baseline), 1)
    assert x_routing["savings_percent"] == savings
    assert entry["savings_percent"] == savings
    assert x_routing["routed_model"] == model
    return entry


def test_openai_cached_prompt_tokens_are_charged_at_the_cached_rate(base):
    before = balance_micros(base)
    with use_cassette(__file__, "openai_cached_prompt"):
        response = chat(base, {"model": "gpt-5-mini",
                               "messages": [{"role": "user", "content": "What does the cache do?"}]})
    assert response.status_code == 200
    body = response.json()
    assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 800
    # 1000 prompt tokens, 800 of them cached; 200 output tokens.
    expected = cost_micros("gpt-5-mini", fresh=200, cached=800, output=200)   # 50 + 20 + 400
    assert round(expected) == 470
    entry = assert_charged(base, response.headers["x-request-id"], before, model="gpt-5-mini",
                           expected=expected, x_routing=body["x_routing"],
                           baseline=cost_micros(BASELINE, fresh=200, cached=800, output=200))
    assert (entry["input_tokens"], entry["cached_tokens"], entry["output_tokens"]) == (1000, 800, 200)
    assert entry["usage_estimated"] is False


def test_anthropic_cache_reads_and_writes_are_each_priced_at_their_own_rate(base):
    before = balance_micros(base)
    with use_cassette(__file__, "anthropic_cache_read_and_write"):
        response = httpx.post(f"{base}/v1/messages", headers=ANTHROPIC, timeout=20, json={
            "model": "claude-haiku-4-5", "max_tokens": 256,
            "messages": [{"role": "user", "content": "Use the cached context."}]})
    assert response.status_code == 200
    body = response.json()
    assert body["usage"]["cache_read_input_tokens"] == 2000
    assert body["usage"]["cache_creation_input_tokens"] == 400
    # 100 fresh input tokens, 2000 read from the cache, 400 written to it; 50 output tokens.
    expected = cost_micros("claude-haiku-4-5", fresh=100, cached=2000, written=400, output=50)
    assert round(expected) == 100 + 200 + 500 + 250
    entry = assert_charged(base, response.headers["x-request-id"], before, model="claude-haiku-4-5",
                           expected=expected, x_routing=body["x_routing"],
                           baseline=cost_micros(BASELINE, fresh=100, cached=2000, written=400, output=50))
    assert (entry["input_tokens"], entry["cached_tokens"], entry["output_tokens"]) == (2500, 2000, 50)
    assert entry["family"] == "anthropic-messages" and entry["provider"] == "anthropic"


def test_a_streamed_openai_answer_is_charged_for_the_usage_in_its_final_chunk(base):
    before = balance_micros(base)
    with use_cassette(__file__, "openai_stream_usage"):
        response = chat(base, {"model": "gpt-5-mini", "stream": True,
                               "stream_options": {"include_usage": True},
                               "messages": [{"role": "user", "content": "Stream it."}]})
    assert response.status_code == 200
    chunks = sse_data(response.text)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) \
        == "Streamed and counted."
    final = chunks[-1]
    assert final["usage"]["prompt_tokens"] == 2000 and final["usage"]["completion_tokens"] == 300
    expected = cost_micros("gpt-5-mini", fresh=400, cached=1600, output=300)   # 100 + 40 + 600
    assert round(expected) == 740
    entry = assert_charged(base, response.headers["x-request-id"], before, model="gpt-5-mini",
                           expected=expected, x_routing=final["x_routing"],
                           baseline=cost_micros(BASELINE, fresh=400, cached=1600, output=300))
    assert entry["usage_estimated"] is False
    assert entry["ttft_ms"] is not None and entry["ttft_ms"] <= entry["latency_ms"]


def test_a_streamed_anthropic_answer_is_charged_for_its_start_and_end_usage(base):
    before = balance_micros(base)
    with use_cassette(__file__, "anthropic_stream_usage"):
        response = httpx.post(f"{base}/v1/messages", headers=ANTHROPIC, timeout=20, json={
            "model": "claude-haiku-4-5", "max_tokens": 256, "stream": True,
            "messages": [{"role": "user", "content": "Stream from Claude."}]})
    assert response.status_code == 200
    events = sse_data(response.text)
    (delta,) = [e for e in events if e["type"] == "message_delta"]
    assert delta["usage"]["output_tokens"] == 120
    # 50 fresh input tokens and 1000 cached, from message_start; 120 output, from message_delta.
    expected = cost_micros("claude-haiku-4-5", fresh=50, cached=1000, output=120)   # 50 + 100 + 600
    assert round(expected) == 750
    assert_charged(base, response.headers["x-request-id"], before, model="claude-haiku-4-5",
                   expected=expected, x_routing=delta["x_routing"],
                   baseline=cost_micros(BASELINE, fresh=50, cached=1000, output=120))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_answer_without_usage_is_estimated_and_flagged(base, stream):
    before = balance_micros(base)
    prompt = "Estimate me. " + "word " * 80   # about 100 tokens
    name = "openai_stream_no_usage" if stream else "openai_no_usage"
    with use_cassette(__file__, name):
        response = chat(base, {"model": "gpt-5-mini", "stream": stream,
                               "stream_options": {"include_usage": True} if stream else None,
                               "messages": [{"role": "user", "content": prompt}]})
    assert response.status_code == 200
    if stream:
        final = sse_data(response.text)[-1]
        usage, x_routing = final["usage"], final["x_routing"]
    else:
        usage, x_routing = response.json()["usage"], response.json()["x_routing"]
    entry = record(base, response.headers["x-request-id"])
    assert entry["usage_estimated"] is True
    # Roughly 4 characters a token: the 40-character answer and the ~420-character prompt.
    assert 5 <= entry["output_tokens"] <= 20
    assert 50 <= entry["input_tokens"] <= 200
    # The client is told the same usage the key is charged for.
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == \
        (entry["input_tokens"], entry["output_tokens"])
    expected = cost_micros("gpt-5-mini", fresh=entry["input_tokens"], output=entry["output_tokens"])
    assert_charged(base, entry["id"], before, model="gpt-5-mini", expected=expected,
                   x_routing=x_routing,
                   baseline=cost_micros(BASELINE, fresh=entry["input_tokens"], output=entry["output_tokens"]))


def test_an_explicitly_named_model_is_charged_at_that_models_price(base):
    before = balance_micros(base)
    with use_cassette(__file__, "openai_explicit_model") as cassette:
        response = chat(base, {"model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]})
    assert response.status_code == 200
    assert cassette.sent[0].json()["model"] == "gpt-5"
    expected = cost_micros("gpt-5", fresh=1000, output=100)   # 1250 + 1000
    assert round(expected) == 2250
    entry = assert_charged(base, response.headers["x-request-id"], before, model="gpt-5",
                           expected=expected, x_routing=response.json()["x_routing"],
                           baseline=cost_micros(BASELINE, fresh=1000, output=100))
    assert entry["requested_model"] == "gpt-5" and entry["tier"] == "premium"
    assert response.json()["x_routing"]["savings_percent"] == 50.0


def test_a_failed_request_is_charged_nothing(base):
    before = balance_micros(base)
    with use_cassette(__file__, "openai_server_error"):
        response = chat(base, {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "Fail"}]})
    assert response.status_code == 502
    entry = record(base, response.headers["x-request-id"])
    assert entry["status"] == 502 and entry["upstream_status"] == 500
    assert "server had an error" in entry["error"]
    assert entry["cost_usd"] == 0 and entry["charged_usd"] == 0
    assert balance_micros(base) == before
