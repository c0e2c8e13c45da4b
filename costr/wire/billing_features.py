"""Parts of a request that change what the upstream charges, beyond its tokens at list price.

A request may ask its upstream for something billed differently: a faster service tier, a
server-side tool billed per use (web search), a beta that prices long prompts higher. Costr
forwards such fields when client and upstream speak the same format, so it must bill them too.
An API format finds them in its own family's requests (an optional `billing_features(request)`
method, see costr.wire.formats) and names each one; the operator prices a name in providers.yaml
(`billing:`, costr/config/surcharges.py), and a name left unpriced is refused, stripped or
allowed, as the operator chose. The core never knows what a name means.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from costr.wire.conversation import ChatRequest


@dataclass(frozen=True, slots=True)
class BillingFeature:
    """One such part of one request."""
    name: str    # what providers.yaml's `billing.surcharges` prices it as: "web_search"
    field: str   # where the client put it, as its API names it: "tools.2", "service_tier"
    # Whether it can cost more than the request's tokens at list price. One that can only cost
    # the same or less (a cheaper service tier) is allowed when unpriced, billed at list price.
    dearer: bool = True
    # For a feature billed per use: the most uses the request allows (a tool's max_uses), or
    # None when it sets no bound. The credit held for a limited key needs a bound.
    max_uses: int | None = None
    # Takes the feature out of `request.raw` and `request.forward_headers` (with anything that
    # pairs with it, such as its beta header), so the upstream is asked for nothing dearer.
    strip: Callable[[ChatRequest], None] | None = None
