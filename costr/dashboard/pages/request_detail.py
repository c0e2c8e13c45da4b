"""One request: everything the ledger recorded of it, the feedback given, the kept prompt
(when the operator keeps prompts), and a form to rate it by the same rule as
POST /v1/router/feedback (accounts/feedback.py)."""
from __future__ import annotations

import json
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from costr.accounts.feedback import rate_request
from costr.accounts.ledger_search import feedback_for, kept_prompt
from costr.accounts.records import ApiKey, LedgerRecord
from costr.dashboard.web import PageNotFound, checked_form, redirect, render, signed_in
from costr.errors import InvalidRequest, NotFound

NOT_YOURS = "No request with this id was made with your key."


async def _visible_record(request: Request, key: ApiKey) -> LedgerRecord:
    """The request named in the path, if this key may see it; another key's request is 'not
    found' (for a non-admin), exactly like one that does not exist."""
    gateway = request.app.state.gateway
    await gateway.books.ledger.flush()
    record = await gateway.books.store.ledger_record(request.path_params["request_id"])
    if record is None or (record.key_id != key.id and not key.admin):
        raise PageNotFound(NOT_YOURS)
    return record


async def _page(request: Request, key: ApiKey, record: LedgerRecord, *, status: int = 200,
                problem: str | None = None, sent: dict | None = None) -> Response:
    gateway = request.app.state.gateway
    store = gateway.books.store
    await gateway.prompts.flush()
    owner = key if record.key_id == key.id else await store.key_by_id_or_prefix(record.key_id)
    return render(request, "request.html", status=status, record=record, owner=owner,
                  feedback=await feedback_for(store, record.id),
                  prompt=await kept_prompt(store, record.id),
                  keeps_prompts=gateway.config.current.config.feedback.keep_prompts,
                  saved=request.query_params.get("feedback") == "saved",
                  signals=_signals(record), problem=problem, sent=sent or {})


def _signals(record: LedgerRecord) -> list[tuple[str, str]]:
    """The scorer's signals as (name, value) pairs, as recorded (none for requests from before
    they were, or that named a model)."""
    try:
        signals = json.loads(record.routing_signals) if record.routing_signals else {}
    except ValueError:
        return []
    return [(str(name), str(value)) for name, value in signals.items()] if isinstance(
        signals, dict) else []


async def detail(request: Request) -> Response:
    key = await signed_in(request)
    return await _page(request, key, await _visible_record(request, key))


async def send_feedback(request: Request) -> Response:
    key = await signed_in(request)
    form = await checked_form(request)
    record = await _visible_record(request, key)
    rating_text, comment = str(form.get("rating", "")), str(form.get("comment", ""))
    try:
        rating = int(rating_text) if rating_text.strip().isdigit() else rating_text
        await rate_request(request.app.state.gateway.books.store, key, record.id, rating, comment)
    except InvalidRequest as exc:
        return await _page(request, key, record, status=400, problem=exc.message,
                           sent={"rating": rating_text, "comment": comment})
    except NotFound:
        raise PageNotFound(NOT_YOURS) from None
    return redirect(request, f"/requests/{quote(record.id, safe='')}?feedback=saved")


ROUTES = [
    Route("/requests/{request_id}", detail, methods=["GET"]),
    Route("/requests/{request_id}/feedback", send_feedback, methods=["POST"]),
]
