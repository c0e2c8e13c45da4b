"""A streamed answer: opened with fallback, relayed frame by frame in the client's format, and
settled with what was actually delivered however the stream ends."""
from __future__ import annotations

import logging
from typing import AsyncIterator

import anyio
from starlette.responses import StreamingResponse

from costr.accounts.books import Entry
from costr.cache.responses import CachePlan
from costr.config.pricing import expected_usage
from costr.errors import CostrError, UpstreamError
from costr.routing.live import LiveConfig
from costr.routing.route import Route
from costr.server.fallback import open_stream_with_fallback
from costr.server.gateway import Gateway, finish, routing_facts
from costr.server.streaming import StreamTally, with_keepalives
from costr.wire.conversation import ChatRequest
from costr.wire.formats import ApiFormat

log = logging.getLogger("costr.request")


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
