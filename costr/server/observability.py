"""Watching every HTTP request for the metrics, the traces and the access log.

A pure ASGI middleware sees every request, including those refused before an endpoint runs
(401, 404, 405, 413): its method, route, status and timing. A request that reaches the books
(chat, embeddings) also brings its ledger record and route, through the watch the books fill
in (costr/accounts/observers.py). When the request is over, each sink is handed one `Served`;
a streamed answer is settled inside the response's body, so its record is complete by then.
Nothing here reads a body or a header on the request path; the sinks do their own cheap work,
and a sink that fails is logged, never the client's problem.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from starlette.routing import Mount

from costr.accounts import observers

log = logging.getLogger("costr")
UNMATCHED = "other"   # the endpoint label of a path no route serves


@dataclass(slots=True)
class Served:
    """One HTTP request, over. `entry`: its books entry (costr.accounts.books.Entry) with the
    ledger record and the route, when it reached the books."""
    method: str
    path: str             # as requested, without the query string
    endpoint: str         # the route's path template, e.g. /v1/models/{model_id:path}; "other"
    status: int           # the HTTP status sent (500 when the app failed before sending one)
    started_ns: int       # when it arrived, epoch nanoseconds
    seconds: float        # until its last byte was sent
    headers: list         # the request's raw ASGI headers, for trace context
    entry: Any = None
    key_id: str | None = None   # the caller's key id, when it authenticated

    @property
    def outcome_status(self) -> int:
        """The status the ledger records when the request reached the books (a stream that
        failed after its 200 was sent: 502, 504, or 499 when the client went away), else the
        HTTP status."""
        return self.entry.record.status if self.entry is not None else self.status


Sink = Callable[[Served], None]


class WatchRequests:
    """ASGI middleware handing each finished HTTP request to `sinks`."""

    def __init__(self, app, sinks: list[Sink]):
        self.app, self.sinks = app, sinks

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.sinks:
            return await self.app(scope, receive, send)
        started_ns, clock = time.time_ns(), time.perf_counter()
        root = scope.get("root_path", "")
        watch, token = observers.watch()
        status = 500   # unless a response starts

        async def watched_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, watched_send)
        finally:
            observers.unwatch(token)
            served = Served(scope["method"], scope["path"], endpoint_of(scope, root), status,
                            started_ns, time.perf_counter() - clock, scope["headers"], watch.entry,
                            watch.key_id)

            def tell(entry):
                served.entry = entry
                self._tell(served)
            if not watch.wait_for_entry(tell):   # else told once the entry is settled
                self._tell(served)

    def _tell(self, served: Served) -> None:
        for sink in self.sinks:
            try:
                sink(served)
            except Exception:
                log.exception("observing %s %s failed", served.method, served.endpoint)


def endpoint_of(scope, root: str) -> str:
    """The path template of the route that served the request (the dashboard's mount included),
    which a client cannot vary, unlike the path itself."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    mounted = scope.get("root_path", "")   # a Mount extends root_path by its own prefix
    prefix = mounted[len(root):] if len(mounted) > len(root) and mounted.startswith(root) else ""
    if isinstance(route, Mount):   # nothing inside the mount matched: the mount is the route
        return prefix or route.path
    return prefix + route.path
