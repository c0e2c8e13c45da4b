"""Call history: /requests (filtered, newest first, keyset pages), /requests.csv (the same
rows, streamed) and, in request_detail.py, one request with its feedback form.

A non-admin sees only their own key's requests whatever the URL says; an admin sees every
key's and may narrow to one with `key=` (an id or a display prefix)."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from costr.accounts.ledger_search import (BadFilter, Cursor, LedgerFilter, export_ledger,
                                          parse_day, search_ledger)
from costr.accounts.records import MICROS, ApiKey, LedgerRecord
from costr.dashboard.formatting import iso_utc
from costr.dashboard.pages import request_detail
from costr.dashboard.web import render, secured, signed_in

PAGE_SIZE = 50
FILTER_PARAMS = ("status", "tier", "model", "policy", "from", "to", "q", "key")
MAX_FILTER_CHARS = 200
CSV_COLUMNS = ["time_utc", "request_id", "key_id", "status", "requested_model", "routed_model",
               "provider", "tier", "complexity", "confidence", "policy", "policy_rule",
               "input_tokens", "output_tokens", "cached_tokens", "usage_estimated", "cost_usd",
               "charged_usd", "baseline_usd", "savings_percent", "cache_hit", "latency_ms",
               "ttft_ms", "upstream_status", "error"]


def chosen_filters(request: Request) -> dict[str, str]:
    """The filter fields as sent (trimmed, empty ones left out), to fill the form back in."""
    return {name: value[:MAX_FILTER_CHARS] for name in FILTER_PARAMS
            if (value := request.query_params.get(name, "").strip())}


async def ledger_filter(request: Request, key: ApiKey, chosen: dict[str, str]) -> LedgerFilter:
    """The filters as the ledger search takes them, with the key forced server-side: a
    non-admin's own key always; an admin's choice of key, or every key."""
    key_id: str | None = key.id
    if key.admin:
        key_id = None
        if "key" in chosen:
            other = await request.app.state.gateway.books.store.key_by_id_or_prefix(chosen["key"])
            if other is None:
                raise BadFilter(f"no key {chosen['key']!r} (give its id or its prefix)")
            key_id = other.id
    return LedgerFilter(key_id=key_id, status=chosen.get("status"), tier=chosen.get("tier"),
                        model=chosen.get("model"), policy=chosen.get("policy"),
                        start=parse_day(chosen.get("from"), "from"),
                        end=parse_day(chosen.get("to"), "to"), request_id=chosen.get("q"))


def _cursor(request: Request, name: str) -> Cursor | None:
    text = request.query_params.get(name)
    return Cursor.decode(text) if text else None


async def history(request: Request) -> Response:
    key = await signed_in(request)
    gateway = request.app.state.gateway
    chosen = chosen_filters(request)
    await gateway.books.ledger.flush()   # what was just answered is listed
    try:
        filters = await ledger_filter(request, key, chosen)
        page = await search_ledger(gateway.books.store, filters, PAGE_SIZE,
                                   before=_cursor(request, "before"), after=_cursor(request, "after"))
        problem, status = None, 200
    except BadFilter as exc:
        page, problem, status = None, str(exc), 400
    live = gateway.config.current
    return render(request, "requests.html", status=status, page=page, problem=problem,
                  chosen=chosen, query=lambda **extra: urlencode({**chosen, **extra}),
                  key_names=await _key_names(request, key),
                  tiers=live.config.tiers, policies=sorted(live.policies),
                  models=sorted(live.chat_models))


async def _key_names(request: Request, key: ApiKey) -> dict[str, str]:
    """id -> name of every key, for an admin's Key column; a non-admin sees only their own."""
    if not key.admin:
        return {key.id: key.name}
    return {k.id: k.name for k in await request.app.state.gateway.books.store.list_keys()}


def csv_row(record: LedgerRecord) -> list:
    """A record as a CSV line. Text a spreadsheet would run as a formula (a requested model
    named `=HYPERLINK(...)`, say) is prefixed with a quote so it stays text."""
    values = {"time_utc": iso_utc(record.ts), "request_id": record.id,
              **{name: getattr(record, name) for name in CSV_COLUMNS
                 if hasattr(record, name) and name != "id"},
              "cost_usd": record.cost_micros / MICROS, "charged_usd": record.charged_micros / MICROS,
              "baseline_usd": record.baseline_micros / MICROS}
    return [_inert(values.get(name)) for name in CSV_COLUMNS]


def _inert(value):
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


async def history_csv(request: Request) -> Response:
    key = await signed_in(request)
    gateway = request.app.state.gateway
    await gateway.books.ledger.flush()
    try:
        filters = await ledger_filter(request, key, chosen_filters(request))
    except BadFilter as exc:
        return secured(Response(f"{exc}\n", status_code=400, media_type="text/plain"))

    async def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        async for record in export_ledger(gateway.books.store, filters):
            writer.writerow(csv_row(record))
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return secured(StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="costr-requests-{stamp}.csv"'}))


ROUTES = [
    Route("/requests", history, methods=["GET"]),
    Route("/requests.csv", history_csv, methods=["GET"]),
    *request_detail.ROUTES,
]
