"""GET /metrics on a listen address of its own (`costr serve --metrics-port`), without a key:
for an operator who keeps that address where only Prometheus reaches it. It runs on the app's
event loop, started and stopped with the app, so a scrape reads the same gateway the requests
use."""
from __future__ import annotations

from aiohttp import web

from costr.server.metrics import Metrics


class MetricsListener:
    def __init__(self, metrics: Metrics, host: str, port: int):
        self.metrics, self.host, self.port = metrics, host, port
        self._runner: web.AppRunner | None = None

    async def start(self, gateway) -> None:
        async def scrape(request: web.Request) -> web.Response:
            rendered = await self.metrics.render(gateway)
            return web.Response(body=rendered.body,
                                headers={"content-type": rendered.headers["content-type"]})
        app = web.Application()
        app.router.add_get("/metrics", scrape)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise RuntimeError(f"--metrics-port: cannot listen on {self.host}:{self.port} "
                               f"({exc.strerror or exc})") from None

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
