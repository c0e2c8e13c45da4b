"""What every request shares (the Gateway), and how every answered request ends: settled on
the books, its prompt kept if the operator opted in, stored in the cache; with the routing
facts reported to the client and the JSON response that carries them."""
from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from starlette.responses import Response

from costr.accounts.books import Books, Entry
from costr.accounts.kept_prompts import PromptKeeper
from costr.cache.responses import CachePlan, ResponseCache
from costr.config.pricing import savings_percent
from costr.routing.breakers import Breakers
from costr.routing.live import ConfigHolder, LiveConfig
from costr.routing.route import Route
from costr.routing.sessions import SessionTiers
from costr.server.request_limits import RequestLimits
from costr.wire.conversation import ChatRequest, ChatResponse, Usage
from costr.wire.formats import RoutingFacts
from costr.wire.providers import ModelSpec


@dataclass
class Gateway:
    """What every request shares: the configuration in force, the agent sessions seen, the
    books (keys, credits, limits, ledger), the response cache, the kept prompts, and the limits
    on what a client may send."""
    config: ConfigHolder
    sessions: SessionTiers
    books: Books
    cache: ResponseCache
    prompts: PromptKeeper
    request_limits: RequestLimits = field(default_factory=RequestLimits)
    breakers: Breakers = field(default_factory=Breakers)   # the upstreams' circuit breakers


async def finish(gateway: Gateway, live: LiveConfig, request: ChatRequest, route: Route,
                 entry: Entry, model: ModelSpec, usage: Usage, facts: RoutingFacts,
                 plan: CachePlan | None = None, answer: ChatResponse | None = None,
                 status: int = 200, error: str | None = None, free: bool = False) -> None:
    """The end of every answered request, fresh, cached or streamed: settle the credit hold and
    write the ledger record, keep the prompt (if the operator opted in), and store a whole,
    successful answer in the cache."""
    await gateway.books.settle(entry, model, live.config.baseline, usage, facts, status, error,
                               free=free)
    gateway.prompts.keep(live.config.feedback, request, route, entry.record)
    if plan and answer is not None and status == 200:
        await gateway.cache.store(plan, answer, model.id)


def routing_facts(live: LiveConfig, route: Route, model: ModelSpec, usage: Usage) -> RoutingFacts:
    return RoutingFacts(
        requested_model=route.requested_model, routed_model=model.id,
        routed_provider=model.provider, tier=model.tier, confidence=route.confidence,
        savings_percent=savings_percent(model, live.config.baseline, usage),
        complexity=route.complexity.score if route.complexity else None, policy=route.policy,
        rule=route.rule, fallbacks=route.fallbacks())


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json")
