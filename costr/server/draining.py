"""Draining: how a `costr serve` instance behind a load balancer stops without a client seeing
a reset.

On SIGTERM the instance first *drains* for `drain_seconds` (`--drain-seconds`): it keeps
listening and answering, but `/v1/router/health` answers 503 `{"status": "draining"}` (so a
readiness probe or a health-checking balancer stops routing here) and every response carries
`Connection: close`, so a balancer's pooled keep-alive connections are closed by Costr's
answer, never under a request the balancer is sending. Then it stops listening: connections the
kernel had already queued are accepted first and read their request (closing the listener with
them queued would reset them after the balancer sent its request, which it may not retry), and
uvicorn's graceful shutdown finishes the requests in flight within its grace period. A second
SIGTERM, or Ctrl-C, ends the draining at once; Ctrl-C never drains. At any time, an error
raised after an answer went out whole does not close its connection (see `drain_gate`).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time

import orjson
import uvicorn

log = logging.getLogger("costr")

HEALTH_PATH = "/v1/router/health"
# How long connections accepted at the last moment get to deliver their request before uvicorn
# closes the connections that have none (loopback and LAN deliver it within a millisecond).
LATE_REQUEST_SECONDS = 0.2


class Draining:
    """Whether this instance is going away: set once, on the first exit signal."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None

    def begin(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def __bool__(self) -> bool:
        return self.since is not None


def drain_gate(app, draining: Draining):
    """`app` wrapped so that, while `draining`, the health check answers 503 draining and every
    response says `Connection: close`; and so that an error the app raises after its answer
    was sent whole (Starlette re-raises an unexpected error once its 500 is out) is logged here
    instead of reaching uvicorn, which would close the connection under a request body not yet
    read: the kernel then resets it, and a load balancer reading the 500 sees a reset instead,
    answers 502 and counts the instance as failing."""
    async def gate(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if draining and _route_path(scope) == HEALTH_PATH:
            return await _answer_draining(send)
        sent = False

        async def tracked_send(message):
            nonlocal sent
            if message["type"] == "http.response.start" and draining:
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                sent = True
            await send(message)
        try:
            await app(scope, receive, tracked_send)
        except Exception:
            if not sent:
                raise   # uvicorn answers 500, or ends a stream cut short by closing
            # The app's error handler logged it already (costr/server/app.py).
            log.debug("error after answering %s %s", scope.get("method"), scope.get("path"),
                      exc_info=True)
    return gate


def _route_path(scope) -> str:
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def _answer_draining(send) -> None:
    body = orjson.dumps({"status": "draining"})
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining for `drain_seconds` on the first SIGTERM before its graceful
    shutdown, and closing its listener without resetting connections the kernel queued."""

    def __init__(self, config: uvicorn.Config, draining: Draining, drain_seconds: float = 0.0):
        super().__init__(config)
        self.draining, self.drain_seconds = draining, drain_seconds

    def handle_exit(self, sig, frame) -> None:
        first = not self.draining and not self.should_exit
        self.draining.begin()
        if first and sig == signal.SIGTERM and self.drain_seconds > 0:
            self._captured_signals.append(sig)  # re-raised at exit, as uvicorn does
            log.info("SIGTERM: draining for %gs (health answers 503, connections close after "
                     "their answer), then shutting down", self.drain_seconds)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        since = self.draining.since
        if since is not None and time.monotonic() - since >= self.drain_seconds:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets=None) -> None:
        self.draining.begin()  # also when stopped another way than by a signal
        accepted = self._stop_listening()
        if accepted:
            log.info("accepted %d connection(s) queued at the close of the listener", len(accepted))
        loop = asyncio.get_running_loop()
        for conn in accepted:
            try:
                await loop.connect_accepted_socket(self._new_protocol, conn)
            except OSError:
                conn.close()
        await asyncio.sleep(LATE_REQUEST_SECONDS)
        await super().shutdown(sockets)

    def _stop_listening(self) -> list[socket.socket]:
        """Accept every connection the kernel has queued, then close the listeners, with no
        await in between: a connection queued at the close would be reset by the kernel."""
        accepted: list[socket.socket] = []
        for server in getattr(self, "servers", []):
            for listener in server.sockets or ():
                accepted += _accept_queued(listener.fileno())
            server.close()
        return accepted

    def _new_protocol(self):
        return self.config.http_protocol_class(config=self.config, server_state=self.server_state,
                                               app_state=self.lifespan.state)


def _accept_queued(fileno: int) -> list[socket.socket]:
    """The connections waiting in the queue of the listening socket `fileno` (read through a
    duplicate of it, which is closed again)."""
    listener = socket.socket(fileno=os.dup(fileno))
    accepted = []
    try:
        listener.setblocking(False)
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:   # BlockingIOError: the queue is empty
                break
            conn.setblocking(False)
            accepted.append(conn)
    finally:
        listener.close()
    return accepted
