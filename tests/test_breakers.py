"""The circuit breakers on their own (costr/routing/breakers.py), on a clock the test moves:
when one opens, whom a failure counts against, the one probe after the cool-down, and what
another instance's state does to this one's. What a client sees of them is in
tests/test_upstream_faults.py."""
from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import pytest

from costr.config.files import BreakerEntry
from costr.errors import UpstreamError, UpstreamTimeout
from costr.routing.breakers import CLOSED, HALF_OPEN, OPEN, Breakers
from costr.routing.shared_breakers import SharedBreakers
from costr.wire.providers import ModelSpec, Price
from costr.wire.upstream import Reply, error_from_reply, retry_after

MINI = ModelSpec("mini", "cheap", "budget", Price(0.1, 0.4), 128000)
NANO = ModelSpec("nano", "cheap", "budget", Price(0.05, 0.2), 128000)
SETTINGS = BreakerEntry(failures=3, failure_rate=0.5, min_calls=6, window_seconds=30,
                        cooldown_seconds=10)

TIMED_OUT = UpstreamTimeout("the upstream at cheap did not answer in time")       # no answer
OVERLOADED = UpstreamError("upstream cheap answered 503: overloaded", upstream_status=503)
BAD_REQUEST = UpstreamError("upstream cheap answered 400: bad", upstream_status=400,
                            retryable=False)


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def breakers(clock):
    return Breakers(clock)


def call(breakers: Breakers, model: ModelSpec, error: UpstreamError | None = None,
         settings: BreakerEntry = SETTINGS) -> bool:
    """One call through the breakers: False when it was skipped."""
    ticket = breakers.enter(model, settings)
    if ticket is None:
        return False
    breakers.record(ticket, error, 0.05, settings)
    return True


def test_opens_after_failures_in_a_row_and_a_success_resets_the_count(breakers):
    call(breakers, MINI, OVERLOADED)
    call(breakers, MINI, OVERLOADED)
    call(breakers, MINI)                      # answered: the count starts again
    call(breakers, MINI, OVERLOADED)
    call(breakers, MINI, OVERLOADED)
    assert breakers.passable(MINI)
    call(breakers, MINI, OVERLOADED)          # the third in a row
    assert not breakers.passable(MINI)
    assert call(breakers, MINI) is False      # skipped, not called
    assert "3 failures in a row" in breakers.why_skipped(MINI)
    assert "overloaded" in breakers.why_skipped(MINI)


def test_opens_when_half_the_recent_calls_fail(breakers, clock):
    for error in [None, OVERLOADED, None, OVERLOADED, None]:   # never 3 in a row
        call(breakers, MINI, error)
        clock.now += 1
    assert breakers.passable(MINI)             # 2 of 5: too few calls to judge, and under half
    call(breakers, MINI, OVERLOADED)
    assert not breakers.passable(MINI)
    assert "3 of 6 calls failed in 30 s" in breakers.why_skipped(MINI)


def test_failures_from_before_it_closed_do_not_count_again(breakers, clock):
    by_rate = SETTINGS.model_copy(update={"failures": 100})
    for _ in range(6):
        call(breakers, MINI, OVERLOADED, by_rate)
    assert not breakers.passable(MINI)          # 6 of 6 failed
    clock.now += 10
    for error in [None, None, None, None, None, OVERLOADED, OVERLOADED]:   # the probe, and more
        call(breakers, MINI, error, by_rate)
    assert breakers.passable(MINI)              # 8 of 13 in the window, but 2 of 7 since it closed


def test_old_calls_leave_the_window(breakers, clock):
    for error in [OVERLOADED, None, OVERLOADED, None, OVERLOADED]:
        call(breakers, MINI, error)
    clock.now += 31                            # those five are out of the 30 s window
    call(breakers, MINI, None)
    call(breakers, MINI, OVERLOADED)
    assert breakers.passable(MINI)


def test_a_failed_answer_is_the_models_and_no_answer_is_the_providers(breakers):
    for _ in range(3):
        call(breakers, MINI, OVERLOADED)
    assert not breakers.passable(MINI) and breakers.passable(NANO)   # same provider, other model
    for _ in range(3):
        call(breakers, NANO, TIMED_OUT)
    assert not breakers.passable(NANO)
    other = ModelSpec("other", "cheap", "standard", Price(1, 4), 128000)
    assert not breakers.passable(other)        # the provider did not answer: all its models wait
    assert "provider cheap" in breakers.why_skipped(other)


def test_a_refused_request_is_not_a_failure(breakers):
    for _ in range(10):
        call(breakers, MINI, BAD_REQUEST)
    assert breakers.passable(MINI)
    assert breakers.pair(MINI)[1].in_a_row == 0


def test_after_the_cool_down_one_probe_goes_and_its_success_closes(breakers, clock):
    for _ in range(3):
        call(breakers, MINI, TIMED_OUT)
    clock.now += 9.9
    assert call(breakers, MINI) is False
    clock.now += 0.2
    probe = breakers.enter(MINI, SETTINGS)
    assert probe is not None
    assert breakers.pair(MINI)[0].state == HALF_OPEN
    assert breakers.enter(MINI, SETTINGS) is None       # exactly one probe at a time
    assert "probe request in flight" in breakers.why_skipped(MINI)
    breakers.record(probe, None, 0.1, SETTINGS)
    assert breakers.pair(MINI)[0].state == CLOSED
    assert call(breakers, MINI) and call(breakers, NANO)


def test_a_failed_probe_opens_it_again_for_another_cool_down(breakers, clock):
    for _ in range(3):
        call(breakers, MINI, OVERLOADED)
    clock.now += 10
    assert call(breakers, MINI, OVERLOADED)            # the probe, failing
    own = breakers.pair(MINI)[1]
    assert own.state == OPEN and own.why_open == "its probe request failed"
    clock.now += 9
    assert call(breakers, MINI) is False
    clock.now += 1
    assert call(breakers, MINI)                         # the next probe, answered
    assert own.state == CLOSED


def test_a_probe_cancelled_without_an_outcome_goes_back(breakers, clock):
    for _ in range(3):
        call(breakers, MINI, OVERLOADED)
    clock.now += 10
    probe = breakers.enter(MINI, SETTINGS)
    breakers.release(probe)                             # the client went away
    assert breakers.pair(MINI)[1].state == OPEN
    assert breakers.enter(MINI, SETTINGS) is not None   # the next request may probe


def test_retry_after_keeps_the_model_skipped_that_long(breakers, clock):
    limited = UpstreamError("upstream cheap answered 429: slow down", upstream_status=429,
                            retry_after=45)
    call(breakers, MINI, limited)                        # one failure, but it asked for 45 s
    assert not breakers.passable(MINI)
    assert "retry after 45 s" in breakers.why_skipped(MINI)
    clock.now += 44
    assert not breakers.passable(MINI)
    clock.now += 1
    assert breakers.passable(MINI)


def test_calls_that_went_in_before_it_opened_do_not_keep_it_open(breakers, clock):
    in_flight = [breakers.enter(MINI, SETTINGS) for _ in range(6)]
    for ticket in in_flight[:3]:
        breakers.record(ticket, OVERLOADED, 1.0, SETTINGS)
    opened_until = breakers.pair(MINI)[1].open_until
    clock.now += 5
    for ticket in in_flight[3:]:
        breakers.record(ticket, OVERLOADED, 1.0, SETTINGS)
    assert breakers.pair(MINI)[1].open_until == opened_until


def test_disabled_breakers_never_skip(breakers):
    off = SETTINGS.model_copy(update={"enabled": False})
    for _ in range(20):
        ticket = breakers.enter(MINI, off)
        assert ticket is not None
        breakers.record(ticket, TIMED_OUT, 1.0, off)


def test_the_report_has_state_error_rate_and_latency(breakers, clock):
    for seconds, error in [(0.1, None), (0.2, None), (0.3, None), (1.0, TIMED_OUT)]:
        ticket = breakers.enter(MINI, SETTINGS)
        breakers.record(ticket, error, seconds, SETTINGS)
    report = breakers.report(["cheap", "unused"], SETTINGS)
    cheap = report["providers"]["cheap"]
    assert cheap["state"] == "closed" and cheap["failures_in_a_row"] == 1
    assert cheap["recent"] == {"calls": 4, "error_rate": 0.25,
                               "latency_ms": {"p50": 200.0, "p95": 1000.0}}
    assert report["providers"]["unused"]["recent"]["calls"] == 0
    assert report["models"] == {}
    for _ in range(3):
        call(breakers, MINI, OVERLOADED)
    assert report_state(breakers, "mini") == "open"


def report_state(breakers: Breakers, model: str) -> str:
    return breakers.report([], SETTINGS)["models"][model]["state"]


def test_another_instances_newer_state_is_adopted(breakers, clock):
    published = []
    breakers.on_change = lambda key, breaker: published.append((key, breaker.state))
    breakers.adopt("model:mini", "open", clock.now + 20, clock.now, "5 failures in a row", "boom")
    assert not breakers.passable(MINI)
    assert published == []                              # adopted, not published again
    breakers.adopt("model:mini", "closed", 0, clock.now - 1)   # older than what it knows
    assert not breakers.passable(MINI)
    breakers.adopt("model:mini", "closed", 0, clock.now + 1)   # another instance's probe answered
    assert breakers.passable(MINI)
    breakers.adopt("model:mini", "open", clock.now - 5, clock.now + 2)  # already over: ignored
    assert breakers.passable(MINI)
    for _ in range(3):
        call(breakers, MINI, OVERLOADED)
    assert published == [("model:mini", "open")]


def test_retry_after_is_read_as_seconds_or_a_date():
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after": "0.5"}) == 0.5
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert 19 < retry_after({"Retry-After": formatdate(time.time() + 20, usegmt=True)}) <= 20
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0   # past: now
    for unreadable in ["soon", "", "-1", "nan"]:
        assert retry_after({"Retry-After": unreadable}) is None
    assert retry_after({}) is None
    reply = Reply(429, {"Retry-After": "7", "Content-Type": "application/json"},
                  b'{"error": {"message": "slow down"}}')
    err = error_from_reply(reply, "http://up.example/v1/chat/completions", None)
    assert err.retry_after == 7.0 and err.retryable and err.upstream_status == 429


def test_redis_being_down_never_fails_a_request():
    """Sharing through a Redis nobody answers: state changes stay local, nothing raises, and
    the request path never waits on it."""
    async def scenario():
        breakers = Breakers()
        board = SharedBreakers(breakers, "redis://127.0.0.1:1/0", poll_seconds=0.05)
        board.start()
        try:
            started = time.monotonic()
            for _ in range(3):
                call(breakers, MINI, OVERLOADED)
            assert time.monotonic() - started < 0.05
            assert not breakers.passable(MINI)
            await asyncio.sleep(0.3)                     # the writer and reader both failed
            assert board._down and not breakers.passable(MINI)
        finally:
            await board.close()
    asyncio.run(scenario())
