"""A streamed answer: opened with fallback, relayed frame by frame in the client's format, and
settled with what was actually delivered however the stream ends.

It ends one of four ways, each settled once and recorded with its own status: whole (200); the
upstream failed or broke off (its error, sent to the client as an error event); the client went
away (499); or the server cut it, shutting down with the stream still running at the end of its
grace period (503, sent as an error event before the connection closes: the server cancels the
request, and the cancellation is turned into that ending). The answer's cost is charged up to
what was delivered; a stream that ended before any of its content reached the client is charged
nothing (its record keeps what the upstream reported using, at its cost, and charges 0).
"""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from costr.accounts.books import Entry
from costr.cache.responses import CachePlan
from costr.config.pricing import expected_usage
from costr.errors import CostrError, UpstreamError
from costr.routing.live import LiveConfig
from costr.routing.route import Route
from costr.server.fallback import open_stream_with_fallback
from costr.server.gateway import Gateway, finish, routing_facts
from costr.server.streaming import StreamTally, carries_content, with_keepalives
from costr.wire.conversation import ChatRequest, Frame
from costr.wire.formats import ApiFormat

log = logging.getLogger("costr.request")

TAIL_SEND_SECONDS = 2.0   # how long a cut stream's error event may wait for a slow client


class ServerShutDown(CostrError):
    """The server stopped with the stream still running (its graceful-shutdown limit passed)."""
    status = 503
    kind = "unavailable"
    code = "server_shut_down"


async def stream_answer(gateway: Gateway, live: LiveConfig, fmt: ApiFormat, request: ChatRequest,
                        route: Route, entry: Entry, plan: CachePlan | None) -> StreamingResponse:
    model, frames, first = await open_stream_with_fallback(gateway.breakers, live, route, request)
    entry.first_byte()
    estimate = routing_facts(live, route, model, expected_usage(route.prompt_tokens, request.max_tokens))
    relay = Relay(gateway, live, request, route, entry, plan, model, frames, first,
                  fmt.stream_encoder(request))
    headers = {**estimate.headers(), **entry.headers, "cache-control": "no-cache",
               "x-accel-buffering": "no"}
    return RelayedStream(relay, headers)


class Relay:
    """One stream on its way to the client: its chunks, then its settling and last chunk."""

    def __init__(self, gateway: Gateway, live: LiveConfig, request: ChatRequest, route: Route,
                 entry: Entry, plan: CachePlan | None, model, frames: AsyncIterator[Frame],
                 first: Frame, encoder):
        self.gateway, self.live, self.request, self.route = gateway, live, request, route
        self.entry, self.plan, self.model, self.encoder = entry, plan, model, encoder
        self.frames, self.first = frames, first
        self.tally = StreamTally(collect=plan is not None)
        self.upcoming = with_keepalives(frames, getattr(encoder, "keepalive_seconds", None))
        self.outcome: CostrError | None = None   # how it failed, if it did
        self.completed = False    # the upstream's stream was read to its end (or failed)
        self.delivered = False    # some of the answer's content reached the client
        self.client_left = False
        self.settled = False
        self.chunks = self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        """The answer in the client's format, frame by frame, as it comes."""
        try:
            frame = self.first
            while True:
                if frame is None:
                    yield self.encoder.keepalive()
                else:
                    failure = self.tally.observe(frame)
                    if failure:
                        self.outcome = UpstreamError(failure.message, upstream_status=failure.status)
                        break
                    chunk = self.encoder.encode(frame)
                    if chunk:
                        yield chunk
                        self.delivered = self.delivered or carries_content(frame)
                try:
                    frame = await self.upcoming.__anext__()
                except StopAsyncIteration:
                    break
            if self.outcome is None and not self.tally.ended:
                self.outcome = UpstreamError("the upstream stream ended before the answer was complete")
            self.completed = True
        except CostrError as err:
            self.outcome, self.completed = err, True

    async def end(self, cut: CostrError | None = None) -> bytes:
        """Settle the stream (once) and return the chunk that ends it for the client: its
        closing events, or an error event. `cut`: why the server is ending it unfinished."""
        with anyio.CancelScope(shield=True):
            if not self.settled:
                self.settled = True
                if cut is not None and self.outcome is None and not self.completed:
                    self.outcome = cut
                try:
                    await self._settle()
                except CostrError as err:   # the books could not be written (database away):
                    self.outcome = err      # the client is told, rather than the stream cut
                except Exception:  # noqa: BLE001 - likewise, for a failure Costr did not foresee
                    log.exception("settling a stream failed")
                    self.outcome = CostrError("Costr could not record this answer; it has been logged.")
        if self.outcome:
            return self.encoder.fail(self.outcome)
        return self.encoder.finish(self.facts, self.usage)

    async def _settle(self) -> None:
        for stream in (self.chunks, self.upcoming, self.frames):
            try:
                await stream.aclose()
            except Exception:  # noqa: BLE001 - an upstream closing badly still gets settled
                log.debug("closing a finished stream failed", exc_info=True)
        outcome, route = self.outcome, self.route
        status, error = ((outcome.status, outcome.message) if outcome else
                         (200, None) if self.completed else (499, "the client disconnected"))
        if outcome:
            log.warning("stream from %s ended unfinished: %s", self.model.id, outcome.message)
        # What was delivered is charged; nothing is when none of the answer reached the client.
        charged = status == 200 or self.delivered
        usage = self.tally.settled(route.prompt_tokens) if charged else self.tally.reported()
        self.usage, self.facts = usage, routing_facts(self.live, route, self.model, usage)
        gateway, live = self.gateway, self.live
        if charged:
            answer = self.tally.answer(usage) if self.plan and status == 200 else None
            await finish(gateway, live, self.request, route, self.entry, self.model, usage,
                         self.facts, self.plan, answer, status, error)
        else:
            await gateway.books.settle(self.entry, self.model, live.config.baseline, usage,
                                       self.facts, status, error, charge=False)
        gateway.cache.abandon(self.plan)


class RelayedStream(StreamingResponse):
    """The streamed response: the relay's chunks, then its last chunk once it is settled. A
    stream the server cancels (shutting down) is settled and ends with an error event; one
    whose client left is settled as such; one never started is settled all the same.

    uvicorn drops what is sent after the client has gone (ASGI 2.3), so the client's leaving is
    heard from `receive`: one plain task listens for it and cancels the relay, where
    Starlette's StreamingResponse would open an anyio task group per stream (a third of the
    CPU a short stream cost)."""

    def __init__(self, relay: Relay, headers: dict[str, str]):
        super().__init__(relay.chunks, media_type="text/event-stream", headers=headers)
        self.relay = relay
        self.started = False   # the response's status and headers went out

    async def stream_response(self, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        self.started = True
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        last = await self.relay.end()
        await send({"type": "http.response.body", "body": last, "more_body": False})

    async def __call__(self, scope, receive, send) -> None:
        relay = self.relay
        relaying = asyncio.current_task()

        async def hear_the_client_leave() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            relay.client_left = True
            if not relay.settled:
                relaying.cancel()
        listener = asyncio.get_running_loop().create_task(hear_the_client_leave())
        try:
            await self.stream_response(send)
        except BaseException as exc:
            if isinstance(exc, (OSError, ClientDisconnect)):
                relay.client_left = True
            if relay.client_left and isinstance(exc, asyncio.CancelledError) \
                    and relaying.uncancel() == 0:
                return   # our own listener stopped the relay: the client is gone, nothing to send
            if relay.settled or relay.client_left:
                raise
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            cut = (ServerShutDown("The server shut down mid-answer; ask again.") if cancelled
                   else CostrError("Costr could not relay the rest of the answer; it has been logged."))
            last = await relay.end(cut)
            if self.started:
                with anyio.move_on_after(TAIL_SEND_SECONDS, shield=True):
                    await send({"type": "http.response.body", "body": last, "more_body": False})
            if not cancelled:
                raise
            # Cancelled by the server: the answer has ended properly, with its error event.
        finally:
            listener.cancel()
            if not relay.settled:   # the client left, or the body was never started
                await relay.end()
