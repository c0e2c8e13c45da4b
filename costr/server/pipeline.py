"""The life of a chat request, in one place.

authenticate (from the headers, before the endpoint reads the capped body: request_limits.py)
-> decode the client's format, within the message and tool limits -> route (score, policy, choose model) -> cache
lookup -> limits and credit hold -> call the provider, with fallback -> finish (account, keep the
prompt if the operator opted in, cache store) -> encode in the client's format.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import AsyncIterator

import anyio
import orjson
from starlette.responses import Response, StreamingResponse

from costr.accounts.books import Books, Entry
from costr.accounts.records import ApiKey
from costr.wire.conversation import ChatRequest, ChatResponse, Frame, Usage
from costr.errors import CostrError, ModelNotFound, UpstreamError
from costr.wire.formats import ApiFormat, RoutingFacts
from costr.accounts.kept_prompts import PromptKeeper
from costr.routing.live import ConfigHolder, LiveConfig
from costr.config.pricing import expected_usage, savings_percent
from costr.wire.providers import ModelSpec
from costr.routing.route import Route, route_request
from costr.routing.scoring import estimate_tokens
from costr.cache.responses import CachePlan, ResponseCache, replay_frames
from costr.routing.sessions import SessionTiers
from costr.server.request_limits import RequestLimits, check_request_size
from costr.server.streaming import StreamTally, settled_usage, with_keepalives

log = logging.getLogger("costr.request")


@dataclass
class Gateway:
    """What every request shares: the configuration in force, the agent sessions seen, the
    books (keys, credits, limits, ledger), the response cache, the kept prompts, and the limits
    on what a client may send."""
    config: ConfigHolder
    sessions: SessionTiers
    books: Books
    cache: ResponseCache
    prompts: PromptKeeper
    request_limits: RequestLimits = field(default_factory=RequestLimits)


async def answer_chat(gateway: Gateway, fmt: ApiFormat, body: bytes, headers,
                      key: ApiKey) -> Response:
    entry = gateway.books.open(fmt.name, key)                    # authenticated by the endpoint
    plan = None
    try:
        live = gateway.config.current
        request = fmt.decode_request(body, headers)              # decode the client's format
        check_request_size(request, gateway.request_limits)
        route = route_request(live, request, headers.get("x-cost-priority"),
                              gateway.sessions.of_key(entry.key.id), headers)
        entry.routed(request, route)                             # scored, policy applied
        plan = gateway.cache.plan(live.config.cache, request, route, entry.key.id, headers)
        cached = plan and await gateway.cache.lookup(plan)
        if cached:
            return await answer_from_cache(gateway, live, fmt, request, route, entry, cached)
        await gateway.books.admit(entry, route, request, live.config.routing.max_attempts)
        if request.stream:
            return await stream_answer(gateway, live, fmt, request, route, entry, plan)
        response, model = await complete_with_fallback(live, route, request)
        # An upstream that reported no usage gets an estimate; the client is told what it pays.
        usage = response.usage = settled_usage(response.usage, route.prompt_tokens, response)
        facts = routing_facts(live, route, model, usage)
        await finish(gateway, live, request, route, entry, model, usage, facts, plan, response)
        return json_response(fmt.encode_response(response, facts),
                             headers={**facts.headers(), **entry.headers})
    except CostrError as err:
        gateway.cache.abandon(plan)
        await gateway.books.fail(entry, err)
        raise
    except BaseException:  # cancelled, or a bug: the hold is released and the loss recorded
        gateway.cache.abandon(plan)
        with anyio.CancelScope(shield=True):
            await gateway.books.fail(entry, CostrError("the request ended without an answer"))
        raise


async def answer_from_cache(gateway: Gateway, live: LiveConfig, fmt: ApiFormat,
                            request: ChatRequest, route: Route, entry: Entry,
                            cached: tuple[ChatResponse, str]) -> Response:
    answer, served_by = cached
    model = live.config.models.get(served_by) or route.candidates[0]
    charge = live.config.cache.charge_hits
    await gateway.books.admit_hit(entry, model, answer.usage, charge)
    facts = routing_facts(live, route, model, answer.usage)
    facts.cache_hit = True
    if not charge:
        facts.savings_percent = 100.0
    await finish(gateway, live, request, route, entry, model, answer.usage, facts, free=not charge)
    headers = {**facts.headers(), **entry.headers}
    if not request.stream:
        return json_response(fmt.encode_response(answer, facts), headers=headers)
    encoder = fmt.stream_encoder(request)

    async def replay() -> AsyncIterator[bytes]:
        for frame in replay_frames(answer):
            yield encoder.encode(frame)
        yield encoder.finish(facts, answer.usage)
    return StreamingResponse(replay(), media_type="text/event-stream",
                             headers={**headers, "cache-control": "no-cache"})


async def complete_with_fallback(live: LiveConfig, route: Route,
                                 request: ChatRequest) -> tuple[ChatResponse, ModelSpec]:
    attempts = route.candidates[: live.config.routing.max_attempts]
    for i, model in enumerate(attempts):
        try:
            return await live.provider_for(model).complete(request, model), model
        except UpstreamError as err:
            route.failed.append(f"{model.id}: {err.message}"[:300])
            if not err.retryable or i == len(attempts) - 1:
                raise client_facing(err) from None
            log.warning("%s failed (%s); falling back to %s", model.id, err.message, attempts[i + 1].id)
    raise AssertionError("route with no candidates")


async def open_stream_with_fallback(live: LiveConfig, route: Route, request: ChatRequest
                                    ) -> tuple[ModelSpec, AsyncIterator[Frame], Frame]:
    """Start the stream and read its first frame, so an upstream that fails before answering
    can still be replaced by the next candidate, or reported with a proper status code."""
    attempts = route.candidates[: live.config.routing.max_attempts]
    for i, model in enumerate(attempts):
        frames = live.provider_for(model).stream(request, model)
        try:
            return model, frames, await frames.__anext__()
        except UpstreamError as err:
            await frames.aclose()
            route.failed.append(f"{model.id}: {err.message}"[:300])
            if not err.retryable or i == len(attempts) - 1:
                raise client_facing(err) from None
            log.warning("%s failed (%s); falling back to %s", model.id, err.message, attempts[i + 1].id)
        except StopAsyncIteration:
            raise UpstreamError(f"{model.id} answered with an empty stream") from None
    raise AssertionError("route with no candidates")


async def stream_answer(gateway: Gateway, live: LiveConfig, fmt: ApiFormat, request: ChatRequest,
                        route: Route, entry: Entry, plan: CachePlan | None) -> StreamingResponse:
    model, frames, first = await open_stream_with_fallback(live, route, request)
    entry.first_byte()
    encoder = fmt.stream_encoder(request)
    estimate = routing_facts(live, route, model, expected_usage(route.prompt_tokens, request.max_tokens))

    async def relay() -> AsyncIterator[bytes]:
        tally = StreamTally(collect=plan is not None)
        upcoming = with_keepalives(frames, getattr(encoder, "keepalive_seconds", None))
        outcome: CostrError | None = None   # how the upstream failed, if it did
        completed = False                   # False at the end means the client went away
        try:
            frame = first
            while True:
                if frame is None:
                    yield encoder.keepalive()
                else:
                    failure = tally.observe(frame)
                    if failure:
                        outcome = UpstreamError(failure.message, upstream_status=failure.status)
                        break
                    chunk = encoder.encode(frame)
                    if chunk:
                        yield chunk
                try:
                    frame = await upcoming.__anext__()
                except StopAsyncIteration:
                    break
            if outcome is None and not tally.ended:
                outcome = UpstreamError("the upstream stream ended before the answer was complete")
            completed = True
        except CostrError as err:
            outcome, completed = err, True
        finally:
            with anyio.CancelScope(shield=True):
                await upcoming.aclose()
                await frames.aclose()
                usage = tally.settled(route.prompt_tokens)   # what was delivered is charged
                facts = routing_facts(live, route, model, usage)
                status, error = ((outcome.status, outcome.message) if outcome else
                                 (200, None) if completed else (499, "the client disconnected"))
                answer = tally.answer(usage) if plan and status == 200 else None
                await finish(gateway, live, request, route, entry, model, usage, facts, plan,
                             answer, status, error)
                gateway.cache.abandon(plan)
        if outcome:
            log.warning("stream from %s failed: %s", model.id, outcome.message)
            yield encoder.fail(outcome)
            return
        yield encoder.finish(facts, usage)

    headers = {**estimate.headers(), **entry.headers, "cache-control": "no-cache",
               "x-accel-buffering": "no"}
    return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)


async def finish(gateway: Gateway, live: LiveConfig, request: ChatRequest, route: Route,
                 entry: Entry, model: ModelSpec, usage: Usage, facts: RoutingFacts,
                 plan: CachePlan | None = None, answer: ChatResponse | None = None,
                 status: int = 200, error: str | None = None, free: bool = False) -> None:
    """The end of every answered request, fresh, cached or streamed: settle the credit hold and
    write the ledger record, keep the prompt (if the operator opted in), and store a whole,
    successful answer in the cache."""
    await gateway.books.settle(entry, model, live.config.baseline, usage, facts, status, error,
                               free=free)
    gateway.prompts.keep(live.config.feedback, request, route, entry.record)
    if plan and answer is not None and status == 200:
        await gateway.cache.store(plan, answer, model.id)


def routing_facts(live: LiveConfig, route: Route, model: ModelSpec, usage: Usage) -> RoutingFacts:
    return RoutingFacts(
        requested_model=route.requested_model, routed_model=model.id,
        routed_provider=model.provider, tier=model.tier, confidence=route.confidence,
        savings_percent=savings_percent(model, live.config.baseline, usage),
        complexity=route.complexity.score if route.complexity else None, policy=route.policy,
        rule=route.rule)


def client_facing(err: UpstreamError) -> UpstreamError:
    """An upstream that rejected the request as malformed or too large was told something the
    client must fix: that is the client's 400, with the upstream's words."""
    if err.upstream_status in (400, 413, 422):
        return err.as_client_mistake()
    return err


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")


async def count_input_tokens(gateway: Gateway, fmt: ApiFormat, body: bytes, headers,
                             key: ApiKey) -> Response:
    """The input tokens of a request for the model it would be routed to: the upstream's own
    count where the provider offers one, else Costr's offline estimate. A model name Costr
    does not know is estimated too, so token counting never fails on it. (`key`, checked by
    the endpoint, is not charged: counting calls no model.)"""
    live = gateway.config.current
    # A format whose count requests differ from its chat requests (no max_tokens) says so.
    decode = getattr(fmt, "decode_count_request", fmt.decode_request)
    request = decode(body, headers)
    check_request_size(request, gateway.request_limits)
    tokens = None
    try:
        route = route_request(live, request, headers.get("x-cost-priority"), headers=headers)
    except ModelNotFound:
        route = None
    if route is not None:
        model = route.candidates[0]
        try:
            tokens = await live.provider_for(model).count_tokens(request, model)
        except CostrError:
            tokens = None
    if tokens is None:
        tokens = estimate_tokens(request)
    return json_response(fmt.encode_token_count(tokens))
