"""The Starlette app, with a fast lane for the requests that are nearly all of the traffic.

A POST to an API format's own path (chat completions, messages, count_tokens, embeddings) goes
straight to its endpoint: one dictionary look-up instead of Starlette's router trying each
route's pattern in turn, and no pass through Starlette's two exception middlewares and its
request/response wrappers, which between them wrapped every message sent four times over.
These endpoints answer every error they foresee in their family's shape themselves
(app._format_endpoint); the lane adds only what Starlette's outer middleware would have done
for the rest: an unforeseen error is logged and answered 500 in the same JSON shape, if the
answer has not started. Each request in the lane is watched (metrics, traces, access log) by
the same WatchRequests as every other. Everything else (other methods, other paths, the
dashboard) goes through Starlette as before.
"""
from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from costr.server.observability import WatchRequests, Sink

log = logging.getLogger("costr")


class CostrApp(Starlette):
    """Starlette, plus the fast lane for `lane_routes` (POST routes with a fixed path)."""

    def __init__(self, *, lane_routes: list[Route], sinks: list[Sink], on_error, **starlette):
        super().__init__(routes=starlette.pop("routes"), **starlette)
        self._lane = {route.path: route for route in lane_routes}
        self._on_error = on_error   # (request, exc) -> the 500 response
        self._watched_lane = WatchRequests(self._in_lane, sinks)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path, root = scope["path"], scope.get("root_path", "")
            route = self._lane.get(path[len(root):] if root and path.startswith(root) else path)
            if route is not None:
                scope["app"], scope["route"] = self, route
                return await self._watched_lane(scope, receive, send)
        await super().__call__(scope, receive, send)

    async def _in_lane(self, scope, receive, send) -> None:
        started = False

        async def watched_send(message) -> None:
            nonlocal started
            started = True
            await send(message)
        request = Request(scope, receive)
        try:
            response = await scope["route"].endpoint(request)
            await response(scope, receive, watched_send)
        except Exception as exc:
            if started:
                raise   # uvicorn closes a response cut short
            await (await self._on_error(request, exc))(scope, receive, send)
