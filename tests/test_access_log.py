"""`costr serve --log-format json`: every line on stderr is one JSON object, and each HTTP
request, answered or refused before any endpoint ran (401, 404, 413), has exactly one access
line with its request id, the key's id (never the key), where it was routed, its tokens, cost
and timing. The default text format writes no access lines."""
from __future__ import annotations

import json

import httpx
import openai

from costr.testing import AUTH, TEST_KEY

from test_metrics import serve, stop

ASK = [{"role": "user", "content": "Reply exactly: ok"}]


def test_json_logs_have_one_access_line_per_request(tmp_path, fake_upstream):
    process, base = serve(tmp_path, fake_upstream.url, "--log-format", "json", "--max-body-mb", "0.01")
    try:
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=TEST_KEY, max_retries=0)
        answered = sdk.chat.completions.with_raw_response.create(model="auto", messages=ASK)
        streamed = list(sdk.chat.completions.create(model="local-mini", messages=ASK, stream=True))
        assert streamed
        assert httpx.post(f"{base}/v1/chat/completions", json={"model": "auto", "messages": ASK},
                          headers={"authorization": "Bearer cr-not-a-real-key"}).status_code == 401
        assert httpx.get(f"{base}/no/such/path", headers=AUTH).status_code == 404
        big = {"model": "auto", "messages": [{"role": "user", "content": "x" * 20_000}]}
        assert httpx.post(f"{base}/v1/chat/completions", json=big, headers=AUTH).status_code == 413
        assert httpx.get(f"{base}/v1/models", headers=AUTH).status_code == 200
    finally:
        lines = stop(process)
    records = [json.loads(line) for line in lines]   # every line is JSON, uvicorn's too
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"].startswith("uvicorn") for r in records)
    access = [r for r in records if r["logger"] == "costr.access" and r["path"] != "/v1/router/health"]
    assert [(r["method"], r["path"], r["status"]) for r in access] == [
        ("POST", "/v1/chat/completions", 200), ("POST", "/v1/chat/completions", 200),
        ("POST", "/v1/chat/completions", 401), ("GET", "/no/such/path", 404),
        ("POST", "/v1/chat/completions", 413), ("GET", "/v1/models", 200)]
    chat, stream, refused, unknown, too_big, models = access
    assert chat["request_id"] == answered.headers["x-request-id"]
    assert chat["key_id"] and chat["key_id"] == stream["key_id"]
    assert chat["requested_model"] == "auto"
    assert chat["routed_model"] == answered.headers["x-costr-routed-model"]
    assert chat["provider"] == "local" and chat["tier"] == "budget" and chat["policy"] == "balanced"
    assert chat["cache_hit"] is False and chat["fallbacks"] is None and chat["error"] is None
    assert chat["input_tokens"] > 0 and chat["output_tokens"] > 0 and chat["cost_usd"] >= 0
    assert chat["latency_ms"] > 0
    # a stream is logged once it has ended, with what it delivered
    assert stream["routed_model"] == "local-mini" and stream["output_tokens"] > 0
    assert stream["ttft_ms"] is not None and stream["ttft_ms"] <= stream["latency_ms"]
    for line in (refused, unknown):
        assert line["key_id"] is None and line["routed_model"] is None
    # a request that got past the key check but opened no ledger entry still names its key
    for line in (too_big, models):
        assert line["key_id"] == chat["key_id"] and line["routed_model"] is None
    assert unknown["endpoint"] == "other"
    everything = "\n".join(lines)
    assert TEST_KEY not in everything and "cr-not-a-real-key" not in everything


def test_text_logs_keep_their_format_and_have_no_access_lines(tmp_path, fake_upstream):
    process, base = serve(tmp_path, fake_upstream.url)
    try:
        sdk = openai.OpenAI(base_url=f"{base}/v1", api_key=TEST_KEY, max_retries=0)
        sdk.chat.completions.create(model="auto", messages=ASK)
    finally:
        lines = stop(process)
    assert lines and not any(line.startswith("{") for line in lines)
    assert not any("costr.access" in line or "/v1/chat/completions" in line for line in lines)
