"""The life of a chat request, in one place.

(Every HTTP request, this one included, is timed, counted, traced and access-logged around its
endpoint by the middleware in observability.py, from the ledger record it ends with.)

authenticate (from the headers, before the endpoint reads the capped body: request_limits.py)
-> decode the client's format, within the message and tool limits -> route (score, policy, choose model)
-> price the fields that change what the upstream charges (or strip or refuse them) -> cache
lookup -> skip candidates behind an open circuit breaker -> limits and credit hold -> call the
provider, with retries and fallback, within the deadline (fallback.py) -> finish (account, keep the
prompt if the operator opted in, cache store) -> encode in the client's format.
"""
from __future__ import annotations

from typing import AsyncIterator

import anyio
from starlette.responses import Response, StreamingResponse

from costr.accounts.books import Entry
from costr.accounts.records import ApiKey
from costr.cache.responses import replay_frames
from costr.errors import CostrError
from costr.routing.live import LiveConfig
from costr.routing.route import Route, route_request
from costr.server.billed_fields import price_billed_fields
from costr.server.fallback import complete_with_fallback, skip_open_circuits
from costr.server.gateway import Gateway, finish, json_response, routing_facts
from costr.server.request_limits import check_request_size
from costr.server.streamed import stream_answer
from costr.server.streaming import settled_usage
from costr.wire.conversation import ChatRequest, ChatResponse
from costr.wire.formats import ApiFormat


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
        entry.charges = price_billed_fields(fmt, live, request, route, entry.key)  # or refused
        plan = gateway.cache.plan(live, request, route, entry.key.id, headers)
        cached = plan and await gateway.cache.lookup(plan)
        if cached:
            return await answer_from_cache(gateway, live, fmt, request, route, entry, cached)
        skip_open_circuits(gateway.breakers, live, route)        # so the hold covers who is called
        await gateway.books.admit(entry, route, request, live.config.routing.max_attempts)
        if request.stream:
            return await stream_answer(gateway, live, fmt, request, route, entry, plan)
        response, model = await complete_with_fallback(gateway.breakers, live, route, request)
        # An upstream that reported no usage gets an estimate; the client is told what it pays.
        usage = response.usage = settled_usage(response.usage, route.prompt_tokens, response)
        facts = routing_facts(live, route, model, usage)
        await finish(gateway, live, request, route, entry, model, usage, facts, plan, response)
        return json_response(fmt.encode_response(response, facts, request),
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
        return json_response(fmt.encode_response(answer, facts, request), headers=headers)
    encoder = fmt.stream_encoder(request)

    async def replay() -> AsyncIterator[bytes]:
        for frame in replay_frames(answer):
            yield encoder.encode(frame)
        yield encoder.finish(facts, answer.usage)
    return StreamingResponse(replay(), media_type="text/event-stream",
                             headers={**headers, "cache-control": "no-cache"})


