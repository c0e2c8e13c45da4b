"""The caller's account: credits, daily usage, routing stats, request history, feedback, and
the admin API for keys and for exporting feedback as training records. Each answers for the
calling key; an admin key may name another with `?key_id=` (or `key_id=all` for every key, where
that makes sense)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, datetime, timedelta, timezone

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from costr.accounts.records import MICROS, ApiKey
from costr.accounts.feedback import rate_request
from costr.accounts.auth import require_admin
from costr.errors import InvalidRequest, NotFound
from costr.accounts.feedback_export import export_lines
from costr.wire.formats import parse_json_object
from costr.accounts.keys import KeyValueRefused, issue_key, top_up_key
from costr.server.gateway import json_response

MAX_PAGE = 500
WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def routes(endpoint) -> list[Route]:
    """`endpoint(handler)` wraps a handler `(gateway, key, request)` with authentication."""
    return [
        Route("/v1/credits", endpoint(_credits), methods=["GET"]),
        Route("/v1/usage", endpoint(_usage), methods=["GET"]),
        Route("/v1/router/stats", endpoint(_stats), methods=["GET"]),
        Route("/v1/requests", endpoint(_requests), methods=["GET"]),
        Route("/v1/router/feedback", endpoint(_feedback), methods=["POST"]),
        Route("/v1/router/feedback/export", endpoint(_export_feedback), methods=["GET"]),
        Route("/v1/admin/keys", endpoint(_list_keys), methods=["GET"]),
        Route("/v1/admin/keys", endpoint(_create_key), methods=["POST"]),
        Route("/v1/admin/keys/{ident}/revoke", endpoint(_revoke_key), methods=["POST"]),
        Route("/v1/admin/keys/{ident}/top-up", endpoint(_top_up), methods=["POST"]),
    ]


async def _subject(gateway, key: ApiKey, request: Request, allow_all: bool = False) -> str | None:
    """The key the caller asks about: its own, or (admins) `key_id`; None means every key."""
    wanted = request.query_params.get("key_id")
    if not wanted or wanted == key.id:
        return key.id
    require_admin(key)
    if wanted == "all" and allow_all:
        return None
    other = await gateway.books.store.key_by_id_or_prefix(wanted)
    if other is None:
        raise NotFound(f"No key {wanted!r}.", param="key_id", code="key_not_found")
    return other.id


def _key_view(key: ApiKey) -> dict:
    return {"id": key.id, "name": key.name, "prefix": key.prefix, "admin": key.admin,
            "revoked": key.revoked, "created_at": key.created_at,
            "balance_usd": None if key.unlimited else key.balance_micros / MICROS,
            "reserved_usd": key.reserved_micros / MICROS,
            "limits": {"requests_per_minute": key.rpm, "tokens_per_minute": key.tpm}}


async def _credits(gateway, key: ApiKey, request: Request):
    subject = await _subject(gateway, key, request)
    await gateway.books.ledger.flush()  # the charges of what was just answered are settled
    current = await gateway.books.store.key_by_id_or_prefix(subject)
    view = _key_view(current)
    available = None if current.unlimited else (current.balance_micros - current.reserved_micros) / MICROS
    return json_response({"object": "credits", "plan": "unlimited" if current.unlimited else "prepaid",
                          "unlimited": current.unlimited, "balance_usd": view["balance_usd"],
                          "available_usd": available, "reserved_usd": view["reserved_usd"],
                          "limits": view["limits"], "key": {k: view[k] for k in ("id", "name", "prefix")}})


def _day(value: str | None, default: date, name: str) -> str:
    if value is None:
        return default.isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a date, YYYY-MM-DD (got {value!r}).", param=name) from None


async def _usage(gateway, key: ApiKey, request: Request):
    subject = await _subject(gateway, key, request, allow_all=True)
    today = datetime.now(timezone.utc).date()
    start = _day(request.query_params.get("start"), today - timedelta(days=29), "start")
    end = _day(request.query_params.get("end"), today, "end")
    if start > end:
        raise InvalidRequest("'start' must not be after 'end'.", param="start")
    await gateway.books.ledger.flush()  # what the client was just answered is counted
    rows = await gateway.books.store.usage_by_day(subject, start, end)
    total = {k: sum(r[k] for r in rows) for k in ("requests", "input_tokens", "output_tokens",
                                                 "cached_tokens", "cost_usd", "baseline_cost_usd")}
    for name in ("cost_usd", "baseline_cost_usd"):
        total[name] = round(total[name], 6)  # sums of micro-dollar amounts: no float dust
    base = total["baseline_cost_usd"]
    total["savings_usd"] = round(base - total["cost_usd"], 6)
    total["savings_percent"] = round(100 * (1 - total["cost_usd"] / base), 1) if base else 0.0
    return json_response({"object": "list", "start": start, "end": end, "data": rows, "total": total})


async def _stats(gateway, key: ApiKey, request: Request):
    subject = await _subject(gateway, key, request, allow_all=True)
    window = request.query_params.get("window", "24h")
    if window not in WINDOWS:
        raise InvalidRequest(f"'window' must be one of {', '.join(WINDOWS)}.", param="window")
    await gateway.books.ledger.flush()
    groups = await gateway.books.store.stats(subject, time.time() - WINDOWS[window])
    # A request no model answered (refused, or every upstream attempt failed) has no model:
    # it is counted as failed in the totals rather than shown as a model named "".
    rows = [r for r in groups if r["model"]]
    requests = sum(r["requests"] for r in groups)
    cost = round(sum(r["cost_usd"] for r in rows), 6)
    baseline = round(sum(r["baseline_cost_usd"] for r in rows), 6)
    hits = sum(r["cache_hits"] for r in rows)
    return json_response({"object": "router.stats", "window": window, "data": rows, "totals": {
        "requests": requests, "failed": requests - sum(r["requests"] for r in rows),
        "cost_usd": cost, "baseline_cost_usd": baseline,
        "savings_percent": round(100 * (1 - cost / baseline), 1) if baseline else 0.0,
        "cache_hits": hits, "cache_hit_rate": round(hits / requests, 4) if requests else 0.0,
        "cache_saved_usd": round(sum(r["cache_saved_usd"] for r in rows), 6),
        "by_tier": _by_tier(rows)}})


def _by_tier(rows: list[dict]) -> dict:
    tiers: dict[str, dict] = {}
    for row in rows:
        t = tiers.setdefault(row["tier"] or "none", {"requests": 0, "cost_usd": 0.0, "baseline_cost_usd": 0.0})
        t["requests"] += row["requests"]
        t["cost_usd"] = round(t["cost_usd"] + row["cost_usd"], 6)
        t["baseline_cost_usd"] = round(t["baseline_cost_usd"] + row["baseline_cost_usd"], 6)
    return tiers


async def _requests(gateway, key: ApiKey, request: Request):
    subject = await _subject(gateway, key, request, allow_all=True)
    try:
        limit = min(int(request.query_params.get("limit", 50)), MAX_PAGE)
        before = request.query_params.get("before")
        before_ts = float(before) if before is not None else None
    except ValueError:
        raise InvalidRequest("'limit' must be an integer and 'before' a timestamp.", param="limit") from None
    if limit < 1:
        raise InvalidRequest("'limit' must be at least 1.", param="limit")
    await gateway.books.ledger.flush()
    records = await gateway.books.store.requests_page(subject, limit + 1, before_ts)
    page = records[:limit]
    data = [_request_view(r) for r in page]
    return json_response({"object": "list", "data": data, "has_more": len(records) > limit,
                          "next_before": page[-1].ts if len(records) > limit else None})


def _request_view(record) -> dict:
    view = asdict(record)
    for name in ("cost", "charged", "baseline"):
        view[f"{name}_usd"] = view.pop(f"{name}_micros") / MICROS
    return view


async def _feedback(gateway, key: ApiKey, request: Request):
    body = parse_json_object(await request.body())
    request_id, rating = body.get("request_id"), body.get("rating")
    await gateway.books.ledger.flush()
    await rate_request(gateway.books.store, key, request_id, rating, body.get("comment", ""))
    return json_response({"object": "feedback", "request_id": request_id, "rating": rating,
                          "stored": True})


async def _export_feedback(gateway, key: ApiKey, request: Request):
    """JSONL training records (feedback_export.py); `x-costr-skipped` counts the rated requests
    left out because their prompt was not kept."""
    require_admin(key)
    since, wanted = request.query_params.get("since"), request.query_params.get("key_id")
    try:
        since_days = float(since) if since is not None else None
    except ValueError:
        raise InvalidRequest("'since' must be a number of days.", param="since") from None
    await gateway.books.ledger.flush()
    await gateway.prompts.flush()
    lines, skipped = await export_lines(gateway.books.store, since_days,
                                        None if wanted in (None, "", "all") else wanted)
    return Response(b"".join(lines), media_type="application/x-ndjson",
                    headers={"x-costr-skipped": str(skipped)})


async def _list_keys(gateway, key: ApiKey, request: Request):
    require_admin(key)
    return json_response({"object": "list",
                          "data": [_key_view(k) for k in await gateway.books.store.list_keys()]})


async def _create_key(gateway, key: ApiKey, request: Request):
    require_admin(key)
    body = parse_json_object(await request.body())
    name = body.get("name")
    if name is None:
        raise InvalidRequest("Missing required parameter: 'name'.", param="name")
    with refused_as_400():
        new, secret = await issue_key(gateway.books.store, name, credits_usd=body.get("credits_usd"),
                                      rpm=body.get("rpm"), tpm=body.get("tpm"),
                                      admin=bool(body.get("admin")))
    return json_response({**_key_view(new), "key": secret}, status=201)


@contextmanager
def refused_as_400():
    """A value keys.py refuses (out of bounds, or not a number) is the caller's 400."""
    try:
        yield
    except KeyValueRefused as refused:
        raise InvalidRequest(str(refused), param=refused.param) from None


async def _target(gateway, request: Request) -> ApiKey:
    other = await gateway.books.store.key_by_id_or_prefix(request.path_params["ident"])
    if other is None:
        raise NotFound(f"No key {request.path_params['ident']!r}.", code="key_not_found")
    return other


async def _revoke_key(gateway, key: ApiKey, request: Request):
    require_admin(key)
    other = await _target(gateway, request)
    await gateway.books.store.revoke_key(other.id)
    gateway.books.keys.forget(other.id)
    return json_response({**_key_view(other), "revoked": True})


async def _top_up(gateway, key: ApiKey, request: Request):
    require_admin(key)
    other = await _target(gateway, request)
    body = parse_json_object(await request.body())
    amount = body.get("usd")
    if other.unlimited:
        raise InvalidRequest("This key is unlimited; it has no balance to top up.", param="usd")
    with refused_as_400():
        balance = await top_up_key(gateway.books.store, other, amount)
    return json_response({**_key_view(other), "balance_usd": balance / MICROS})
