"""The life of a chat request, in one place.

decode the client's format -> route (score, policy, choose model) -> call the provider, with
fallback -> settle usage and savings -> encode in the client's format.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import AsyncIterator

import anyio
import orjson
from starlette.responses import Response, StreamingResponse

from .accounting import Books, Entry
from .conversation import (ChatRequest, ChatResponse, Frame, MessageEnd, MessageStart,
                           StreamFailure, TextDelta, ThinkingDelta, ToolArgumentsDelta, Usage)
from .errors import CostrError, UpstreamError
from .formats import ApiFormat, RoutingFacts
from .live_config import ConfigHolder, LiveConfig
from .pricing import expected_usage, savings_percent
from .providers import ModelSpec
from .routing import Route, route_request
from .scoring import estimate_tokens
from .sessions import SessionTiers

log = logging.getLogger("costr.request")


@dataclass
class Gateway:
    """What every request shares: the configuration in force, the agent sessions seen, and
    the books (keys, credits, limits, ledger)."""
    config: ConfigHolder
    sessions: SessionTiers
    books: Books


async def answer_chat(gateway: Gateway, fmt: ApiFormat, body: bytes, headers) -> Response:
    entry = await gateway.books.open(fmt.name, headers)          # authenticate
    try:
        live = gateway.config.current
        request = fmt.decode_request(body, headers)              # decode the client's format
        route = route_request(live, request, headers.get("x-cost-priority"), gateway.sessions)
        entry.routed(request, route)                             # scored, policy applied
        await gateway.books.admit(entry, route, request, live.config.routing.max_attempts)
        if request.stream:
            return await stream_answer(gateway, live, fmt, request, route, entry)
        response, model = await complete_with_fallback(live, route, request)
        usage = settled_usage(response.usage, route, response)
        facts = routing_facts(live, route, model, usage)
        await gateway.books.settle(entry, model, live.config.baseline, usage, facts)
        return json_response(fmt.encode_response(response, facts),
                             headers={**facts.headers(), **entry.headers})
    except CostrError as err:
        await gateway.books.fail(entry, err)
        raise
    except BaseException:  # cancelled, or a bug: the hold is released and the loss recorded
        with anyio.CancelScope(shield=True):
            await gateway.books.fail(entry, CostrError("the request ended without an answer"))
        raise


async def complete_with_fallback(live: LiveConfig, route: Route,
                                 request: ChatRequest) -> tuple[ChatResponse, ModelSpec]:
    attempts = route.candidates[: live.config.routing.max_attempts]
    for i, model in enumerate(attempts):
        try:
            return await live.provider_for(model).complete(request, model), model
        except UpstreamError as err:
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
            if not err.retryable or i == len(attempts) - 1:
                raise client_facing(err) from None
            log.warning("%s failed (%s); falling back to %s", model.id, err.message, attempts[i + 1].id)
        except StopAsyncIteration:
            raise UpstreamError(f"{model.id} answered with an empty stream") from None
    raise AssertionError("route with no candidates")


async def stream_answer(gateway: Gateway, live: LiveConfig, fmt: ApiFormat, request: ChatRequest,
                        route: Route, entry: Entry) -> StreamingResponse:
    model, frames, first = await open_stream_with_fallback(live, route, request)
    entry.first_byte()
    encoder = fmt.stream_encoder(request)
    estimate = routing_facts(live, route, model, expected_usage(route.prompt_tokens, request.max_tokens))

    async def relay() -> AsyncIterator[bytes]:
        tally = StreamTally()
        upcoming = _with_keepalives(frames, getattr(encoder, "keepalive_seconds", None))
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
                usage = tally.settled(route)   # what was delivered is what is charged
                facts = routing_facts(live, route, model, usage)
                status, error = ((outcome.status, outcome.message) if outcome else
                                 (200, None) if completed else (499, "the client disconnected"))
                await gateway.books.settle(entry, model, live.config.baseline, usage, facts,
                                           status, error)
        if outcome:
            log.warning("stream from %s failed: %s", model.id, outcome.message)
            yield encoder.fail(outcome)
            return
        yield encoder.finish(facts, usage)

    headers = {**estimate.headers(), **entry.headers, "cache-control": "no-cache",
               "x-accel-buffering": "no"}
    return StreamingResponse(relay(), media_type="text/event-stream", headers=headers)


async def _with_keepalives(frames: AsyncIterator[Frame], every: float | None):
    """The frames, with None wherever the upstream stayed quiet for `every` seconds."""
    if not every:
        async for frame in frames:
            yield frame
        return
    pending = asyncio.ensure_future(frames.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield None
                continue
            try:
                frame = pending.result()
            except StopAsyncIteration:
                return
            yield frame
            pending = asyncio.ensure_future(frames.__anext__())
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


class StreamTally:
    """Watches a stream's events for its usage, its end, and a failure."""

    def __init__(self):
        self.usage: Usage | None = None
        self.input_usage: Usage | None = None
        self.output_chars = 0
        self.ended = False

    def observe(self, frame: Frame) -> StreamFailure | None:
        for event in frame.events:
            if isinstance(event, (TextDelta, ThinkingDelta)):
                self.output_chars += len(event.text)
            elif isinstance(event, ToolArgumentsDelta):
                self.output_chars += len(event.fragment)
            elif isinstance(event, MessageStart) and event.usage:
                self.input_usage = event.usage
            elif isinstance(event, MessageEnd):
                self.usage, self.ended = event.usage, True
            elif isinstance(event, StreamFailure):
                return event
        return None

    def settled(self, route: Route) -> Usage:
        usage = self.usage or Usage(estimated=True)
        if self.input_usage and not usage.input_tokens:
            usage.input_tokens = self.input_usage.input_tokens
            usage.cached_input_tokens = self.input_usage.cached_input_tokens
            usage.cache_write_tokens = self.input_usage.cache_write_tokens
        return _fill_estimates(usage, route.prompt_tokens, self.output_chars)


def settled_usage(usage: Usage, route: Route, response: ChatResponse) -> Usage:
    chars = sum(len(getattr(p, "text", "") or getattr(p, "arguments", "")) for p in response.content)
    return _fill_estimates(usage, route.prompt_tokens, chars)


def _fill_estimates(usage: Usage, prompt_tokens: int, output_chars: int) -> Usage:
    """An upstream that reported no usage gets an estimate, flagged as such."""
    if usage.input_tokens == 0 and usage.output_tokens == 0:
        return Usage(input_tokens=prompt_tokens, output_tokens=(output_chars + 3) // 4, estimated=True)
    return usage


def routing_facts(live: LiveConfig, route: Route, model: ModelSpec, usage: Usage) -> RoutingFacts:
    return RoutingFacts(
        requested_model=route.requested_model, routed_model=model.id,
        routed_provider=model.provider, tier=model.tier, confidence=route.confidence,
        savings_percent=savings_percent(model, live.config.baseline, usage),
        complexity=route.complexity.score if route.complexity else None, policy=route.policy)


def client_facing(err: UpstreamError) -> UpstreamError:
    """An upstream that rejected the request as malformed or too large was told something the
    client must fix: that is the client's 400, with the upstream's words."""
    if err.upstream_status in (400, 413, 422):
        return err.as_client_mistake()
    return err


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")


async def count_input_tokens(gateway: Gateway, fmt: ApiFormat, body: bytes, headers) -> Response:
    """The input tokens of a request for the model it would be routed to: the upstream's own
    count where the provider offers one, else Costr's offline estimate. A model name Costr
    does not know is estimated too, so token counting never fails on it."""
    await gateway.books.keys.authenticate(headers)
    live = gateway.config.current
    # A format whose count requests differ from its chat requests (no max_tokens) says so.
    decode = getattr(fmt, "decode_count_request", fmt.decode_request)
    request = decode(body, headers)
    known = request.model in live.auto_names or request.model in live.chat_models
    tokens = None
    if known:
        route = route_request(live, request, headers.get("x-cost-priority"))
        model = route.candidates[0]
        try:
            tokens = await live.provider_for(model).count_tokens(request, model)
        except CostrError:
            tokens = None
    if tokens is None:
        tokens = estimate_tokens(request)
    return json_response(fmt.encode_token_count(tokens))
