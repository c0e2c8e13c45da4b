"""Calling the route's candidates in turn: an upstream that fails retryably before answering is
replaced by the next candidate, up to the configured number of attempts."""
from __future__ import annotations

import logging
from typing import AsyncIterator

from costr.errors import UpstreamError
from costr.routing.live import LiveConfig
from costr.routing.route import Route
from costr.wire.conversation import ChatRequest, ChatResponse, Frame
from costr.wire.providers import ModelSpec

log = logging.getLogger("costr.request")


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


def client_facing(err: UpstreamError) -> UpstreamError:
    """An upstream that rejected the request as malformed or too large was told something the
    client must fix: that is the client's 400, with the upstream's words."""
    if err.upstream_status in (400, 413, 422):
        return err.as_client_mistake()
    return err
