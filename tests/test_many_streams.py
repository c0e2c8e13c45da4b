"""Many slow streams at once (costr/benchmark/many_streams.py): the fake upstream's slow mode,
the drill's own checks on a stream, and the drill run small end to end, through `costr serve`.
Speeds are never asserted; the drill's figures are only required to be there."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import orjson
import pytest

from costr.benchmark.many_streams import Progress, StreamResult, follow_stream
from costr.testing.fake_upstream import FakeUpstream, Pace

REPO = Path(__file__).resolve().parents[1]
CHAT = {"model": "fake-mini", "messages": [{"role": "user", "content": "Count."}]}


def _timed_events(url: str, body: dict) -> list[tuple[float, bytes]]:
    """Each `data:` line of a streamed answer, with the seconds since the request went out."""
    started, events = time.monotonic(), []
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=10) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append((time.monotonic() - started, line.encode()))
    return events


@pytest.mark.parametrize("fast", [False, True])
def test_a_slow_stream_sends_one_token_per_interval_then_its_usage_and_done(fast):
    streamed = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with FakeUpstream(token_interval_ms=40, stream_seconds=0.4, fast=fast) as fake:
        events = _timed_events(fake.url, streamed)
    chunks = [orjson.loads(line[len(b"data: "):]) for _, line in events[:-1]]
    assert events[-1][1] == b"data: [DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "",
                                                "refusal": None}
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert contents == [Pace.WORD] * 10
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 10
    assert {c["model"] for c in chunks} == {"fake-mini"}
    # The k-th token leaves k intervals after the role chunk, never in one burst.
    first, last_token = events[0][0], events[-4][0]
    assert last_token - first >= 0.36


def test_answers_not_streamed_are_unchanged_in_slow_mode():
    with FakeUpstream(token_interval_ms=50, stream_seconds=5) as fake:
        started = time.monotonic()
        reply = httpx.post(fake.url + "/v1/chat/completions", json=CHAT, timeout=10)
        took = time.monotonic() - started
    assert reply.json()["choices"][0]["message"]["content"] == "ok"
    assert took < 5   # answered at once, not paced


def test_slow_mode_needs_both_an_interval_and_a_duration():
    with pytest.raises(ValueError):
        FakeUpstream(token_interval_ms=50)
    done = subprocess.run([sys.executable, "-m", "costr.testing.fake_upstream", "--port", "0",
                           "--stream-seconds", "20"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "token interval" in done.stderr


def _follow(url: str, tokens: int) -> StreamResult:
    async def follow() -> StreamResult:
        async with aiohttp.ClientSession() as session:
            body = orjson.dumps({**CHAT, "stream": True})
            return await follow_stream(session, url + "/v1/chat/completions",
                                       {"Content-Type": "application/json"}, body, tokens,
                                       Progress())
    return asyncio.run(follow())


def test_the_drill_times_a_whole_stream_and_counts_its_tokens():
    with FakeUpstream(token_interval_ms=30, stream_seconds=0.3) as fake:
        result = _follow(fake.url, tokens=10)
    assert result.ok and result.error == "" and result.tokens == 10
    assert result.first_event is not None and result.largest_gap > 0


def test_the_drill_fails_a_stream_cut_short_or_missing_tokens():
    with FakeUpstream(token_interval_ms=30, stream_seconds=0.3) as fake:
        fake.set_fault("truncate", count=1)
        cut = _follow(fake.url, tokens=10)
        short = _follow(fake.url, tokens=11)
    assert not cut.ok and cut.tokens < 10 and "ClientPayloadError" in cut.error
    assert not short.ok and short.error == "10 of 11 tokens arrived"


def test_the_drill_holds_forty_slow_streams_through_the_gateway():
    done = subprocess.run(
        [sys.executable, "-m", "costr.benchmark.many_streams", "--streams", "40",
         "--interval-ms", "50", "--seconds", "1.5", "--json"],
        capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["completed"] == report["streams"] == 40
    assert report["tokens_per_stream"] == 30 and report["errors"] == {}
    rss = report["gateway_rss_mb"]
    assert all(rss[name] > 0 for name in ("before", "all_open", "peak", "after"))
    assert isinstance(report["memory_per_open_stream_kb"], float)
    assert report["gateway_descriptors_all_open"] >= 80   # a client and an upstream socket each
    assert report["gateway_cpu_seconds"] > 0 and report["gateway_busy_all_open"] is not None
    for summary in (report["first_event_ms"], report["largest_gap_ms"]):
        assert None not in (summary["p50"], summary["p99"], summary["max"])
    assert report["largest_gap_ms"]["max"] >= report["largest_gap_ms"]["p50"] > 0
