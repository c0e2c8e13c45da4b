"""`python -m costr.benchmark.bare_relay --port P --upstream URL`: the floor of Costr's stack.

Starlette on uvicorn (uvloop, httptools) with one POST route that reads the body, forwards it
to the upstream with aiohttp and returns the upstream's bytes, a streamed answer chunk by
chunk: no key, no routing, no cache, no books. `costr bench --peer relay` measures it.
"""
from __future__ import annotations

import argparse
import contextlib

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def relay_app(upstream: str) -> Starlette:
    client: dict[str, aiohttp.ClientSession] = {}

    async def relay(request: Request) -> Response:
        answer = await client["session"].post(upstream + request.url.path, data=await request.body(),
                                              headers={"Content-Type": "application/json"})
        if answer.content_type != "text/event-stream":
            async with answer:
                return Response(await answer.read(), answer.status, media_type=answer.content_type)

        async def chunks():
            async with answer:
                async for chunk in answer.content.iter_any():
                    yield chunk
        return StreamingResponse(chunks(), answer.status, media_type="text/event-stream")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # The same client settings as the gateway's (costr/wire/upstream.py).
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
        async with aiohttp.ClientSession(connector=connector) as client["session"]:
            yield

    return Starlette(routes=[Route("/v1/chat/completions", relay, methods=["POST"])],
                     lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m costr.benchmark.bare_relay",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL")
    args = parser.parse_args(argv)
    uvicorn.run(relay_app(args.upstream.rstrip("/")), host="127.0.0.1", port=args.port,
                loop="uvloop", http="httptools", log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
