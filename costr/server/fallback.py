"""Calling the route's candidates in turn, within the request's deadline.

A candidate behind an open circuit breaker (costr/routing/breakers.py) is skipped without
spending an attempt. An upstream that fails retryably before answering (could not connect,
timed out, 408/409/429/5xx, an unreadable 200) is replaced by the next candidate; the same model
is called again (`retry_wait`) only when it asked for a short wait (Retry-After), or when no
other candidate is left and it said when or dropped the connection unanswered. At most
`routing.max_attempts` upstream calls are made, all within `routing.deadline_seconds` (for a
stream: until its first event, read here before the client sees anything, so nothing is
retried once a byte has reached it).
Every candidate's turn is recorded on the route (`route.attempts`).
"""
from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from costr.config.files import RoutingEntry
from costr.errors import CircuitOpen, UpstreamError, UpstreamTimeout
from costr.routing.breakers import Breakers
from costr.routing.live import LiveConfig
from costr.routing.route import Attempt, Route
from costr.wire.conversation import ChatRequest, ChatResponse, Frame
from costr.wire.providers import ModelSpec

log = logging.getLogger("costr.request")
T = TypeVar("T")

SHORT_RETRY_AFTER = 1.0    # seconds: waited for, on the same model, even with another candidate left
LEAST_ATTEMPT_SECONDS = 0.1  # an attempt is not started with less of the deadline left


async def complete_with_fallback(breakers: Breakers, live: LiveConfig, route: Route,
                                 request: ChatRequest) -> tuple[ChatResponse, ModelSpec]:
    async def complete(model: ModelSpec) -> tuple[ChatResponse, ModelSpec]:
        return await live.provider_for(model).complete(request, model), model
    return await call_in_turn(breakers, live, route, complete)


async def open_stream_with_fallback(breakers: Breakers, live: LiveConfig, route: Route,
                                    request: ChatRequest
                                    ) -> tuple[ModelSpec, AsyncIterator[Frame], Frame]:
    """Start the stream and read its first frame, so an upstream that fails before answering
    can still be replaced by the next candidate, or reported with a proper status code."""
    async def start(model: ModelSpec) -> tuple[ModelSpec, AsyncIterator[Frame], Frame]:
        frames = live.provider_for(model).stream(request, model)
        first_byte = live.config.providers[model.provider].timeouts.first_byte
        try:
            if first_byte is None:
                return model, frames, await frames.__anext__()
            try:
                async with asyncio.timeout(first_byte):
                    return model, frames, await frames.__anext__()
            except TimeoutError:
                raise UpstreamTimeout(f"{model.id} sent nothing within its first_byte timeout "
                                      f"of {first_byte:g} s") from None
        except StopAsyncIteration:
            raise UpstreamError(f"{model.id} answered with an empty stream",
                                upstream_status=200) from None
        except BaseException:
            await frames.aclose()
            raise
    return await call_in_turn(breakers, live, route, start)


def skip_open_circuits(breakers: Breakers, live: LiveConfig, route: Route) -> None:
    """Set aside, before the credit hold is taken, the candidates behind an open breaker (each
    recorded as skipped), so the hold covers the ones that will be called; CircuitOpen (503,
    with Retry-After) when that leaves none."""
    if not live.config.routing.breaker.enabled:
        return
    passable = [model for model in route.candidates if breakers.passable(model)]
    if len(passable) == len(route.candidates):
        return
    for model in route.candidates:
        if model not in passable:
            route.attempts.append(_skipped(breakers, model))
    if not passable:
        raise every_circuit_open(breakers, route.candidates)
    route.candidates = passable


def every_circuit_open(breakers: Breakers, models: list[ModelSpec]) -> CircuitOpen:
    seconds = max(1, math.ceil(min(breakers.wait(model) for model in models)))
    names = ", ".join(model.id for model in models)
    return CircuitOpen(f"Every model this request could go to ({names}) is skipped: its "
                       "upstream failed recently and its circuit breaker is open. Retry in "
                       f"{seconds} s; /v1/router/health shows the state of each.",
                       headers={"retry-after": str(seconds)})


async def call_in_turn(breakers: Breakers, live: LiveConfig, route: Route,
                       call: Callable[[ModelSpec], Awaitable[T]]) -> T:
    """`call(model)` for the route's candidates in turn until one answers (see the module's
    docstring); raise the last failure, in the client's terms, when none did."""
    routing = live.config.routing
    loop = asyncio.get_running_loop()
    deadline = loop.time() + routing.deadline_seconds
    candidates, calls_left, i, retried = route.candidates, routing.max_attempts, 0, 0
    last: UpstreamError | None = None
    while i < len(candidates) and calls_left and deadline - loop.time() >= LEAST_ATTEMPT_SECONDS:
        model = candidates[i]
        ticket = breakers.enter(model, routing.breaker)
        if ticket is None:
            route.attempts.append(_skipped(breakers, model))
            i, retried = i + 1, 0
            continue
        attempt = Attempt(model.id, model.provider, time.time())
        route.attempts.append(attempt)
        calls_left -= 1
        started, remaining = loop.time(), deadline - loop.time()
        try:
            try:
                async with asyncio.timeout(remaining):
                    result = await call(model)
            except TimeoutError:
                raise UpstreamTimeout(f"{model.id} did not answer within the request's deadline "
                                      f"of {routing.deadline_seconds:g} s") from None
        except UpstreamError as err:
            last = err
        except BaseException:   # cancelled (the client went away), or a bug
            breakers.release(ticket)
            attempt.ended, attempt.outcome = time.time(), "error"
            attempt.error = "the request ended before the upstream answered"
            raise
        else:
            breakers.record(ticket, None, loop.time() - started, routing.breaker)
            attempt.ended, attempt.upstream_status = time.time(), 200
            return result
        breakers.record(ticket, last, loop.time() - started, routing.breaker)
        _ended(attempt, last)
        if not last.retryable:
            raise client_facing(last) from None
        others = any(breakers.passable(m) for m in candidates[i + 1:])
        wait = retry_wait(last, retried, routing, others) if calls_left else None
        if wait is not None and loop.time() + wait + LEAST_ATTEMPT_SECONDS < deadline:
            log.warning("%s failed (%s); trying it again in %.2f s", model.id, last.message, wait)
            await asyncio.sleep(wait)
            retried += 1
            continue
        i, retried = i + 1, 0
        if calls_left and i < len(candidates):
            log.warning("%s failed (%s); falling back to %s", model.id, last.message,
                        candidates[i].id)
    if last is not None:
        raise client_facing(last) from None
    if candidates and i == len(candidates):   # all skipped: opened since skip_open_circuits
        raise every_circuit_open(breakers, candidates)
    raise UpstreamTimeout(f"the request's deadline of {routing.deadline_seconds:g} s left no "
                          "time to call an upstream")


def retry_wait(err: UpstreamError, retried: int, routing: RoutingEntry,
               others: bool) -> float | None:
    """How long to wait before calling the same model again, or None to move on. The client
    feels every second, so with another candidate left only a short Retry-After is waited for;
    with none left, the model is retried `routing.retries` times where Costr knows more than
    the client: the upstream said when (Retry-After), or it dropped the connection without
    answering (refused, reset: a restart, a stale pooled connection), which costs little to
    try again, after an exponential backoff with jitter (so that retries from many requests do
    not arrive at once). Any other failure reaches the client, whose SDK retries 429s and 5xx
    itself: a second layer of retries would multiply the calls and the wait."""
    if retried >= routing.retries or not (err.retry_after is not None or dropped(err)):
        return None
    if err.retry_after is not None:
        if others and err.retry_after > SHORT_RETRY_AFTER:
            return None
        return err.retry_after + random.uniform(0, 0.1)
    if others:
        return None
    return routing.retry_backoff_seconds * 2 ** retried * random.uniform(0.5, 1.5)


def dropped(err: UpstreamError) -> bool:
    """No answer, and not for lack of time: the connection was refused or broke off."""
    return not err.upstream_status and not isinstance(err, UpstreamTimeout)


def _ended(attempt: Attempt, err: UpstreamError) -> None:
    attempt.ended = time.time()
    attempt.outcome = "timeout" if isinstance(err, UpstreamTimeout) else "error"
    attempt.error = err.message
    attempt.upstream_status = err.upstream_status or None


def _skipped(breakers: Breakers, model: ModelSpec) -> Attempt:
    now = time.time()
    return Attempt(model.id, model.provider, now, now, "skipped", breakers.why_skipped(model))


def client_facing(err: UpstreamError) -> UpstreamError:
    """An upstream that rejected the request as malformed or too large was told something the
    client must fix: that is the client's 400, with the upstream's words. An upstream's
    Retry-After is passed on."""
    if err.upstream_status in (400, 413, 422):
        return err.as_client_mistake()
    if err.retry_after is not None:
        err.headers.setdefault("retry-after", str(max(1, math.ceil(err.retry_after))))
    return err
