"""The step of a chat request that deals with fields changing what the upstream charges (a
service tier, a server tool billed per use, a long-context beta): found by the client's API
format, then priced, stripped or refused by providers.yaml's `billing:` (costr/config/surcharges.py)
before the cache key is taken and credit is held."""
from __future__ import annotations

from costr.accounts.records import ApiKey
from costr.config.surcharges import Charges, decide_charges
from costr.routing.live import LiveConfig
from costr.routing.route import Route
from costr.wire.conversation import ChatRequest
from costr.wire.formats import ApiFormat


def price_billed_fields(fmt: ApiFormat, live: LiveConfig, request: ChatRequest, route: Route,
                        key: ApiKey) -> Charges | None:
    """What the request's billing-changing fields add to its cost (None: nothing); an unpriced
    one is stripped from the request or refused (400 naming it), as the operator chose."""
    find = getattr(fmt, "billing_features", None)
    features = find(request) if find is not None else None
    if not features:
        return None
    # Only a same-format upstream receives the client's fields; a translation drops them.
    forwarded_to = frozenset(m.id for m in route.candidates if live.passes_through(request, m))
    return decide_charges(features, live.config.billing, request, forwarded_to,
                          limited=not key.unlimited)
