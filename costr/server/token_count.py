"""POST /v1/messages/count_tokens (and any format's count endpoint): the input tokens of a
request for the model it would be routed to.

A count is a request like any other for the key's requests-per-minute limit (429 with
Retry-After, in the family's shape), since it may call the upstream with the operator's
credentials. It costs no credit and writes no ledger record (agents count often, and the
upstreams do not charge for counting); /metrics counts it under its endpoint."""
from __future__ import annotations

from starlette.responses import Response

from costr.accounts.limits import enforce
from costr.accounts.records import ApiKey
from costr.errors import CostrError, ModelNotFound
from costr.routing.route import route_request
from costr.routing.scoring import estimate_tokens
from costr.server.gateway import Gateway, json_response
from costr.server.request_limits import check_request_size
from costr.wire.formats import ApiFormat


async def count_input_tokens(gateway: Gateway, fmt: ApiFormat, body: bytes, headers,
                             key: ApiKey) -> Response:
    """The input tokens of a request for the model it would be routed to: the upstream's own
    count where the provider offers one, else Costr's offline estimate. A model name Costr
    does not know is estimated too, so token counting never fails on it. (`key`, checked by
    the endpoint, counts against its requests per minute but is not charged.)"""
    live = gateway.config.current
    # A format whose count requests differ from its chat requests (no max_tokens) says so.
    decode = getattr(fmt, "decode_count_request", fmt.decode_request)
    request = decode(body, headers)
    check_request_size(request, gateway.request_limits)
    await enforce(gateway.books.limiter, key.id, key.rpm, None)   # tokens: counting uses none
    tokens = None
    try:
        route = route_request(live, request, headers.get("x-cost-priority"), headers=headers)
    except ModelNotFound:
        route = None
    if route is not None:
        model = route.candidates[0]
        try:
            tokens = await live.provider_for(model).count_tokens(request, model)
        except CostrError:
            tokens = None
    if tokens is None:
        tokens = estimate_tokens(request)
    return json_response(fmt.encode_token_count(tokens))
