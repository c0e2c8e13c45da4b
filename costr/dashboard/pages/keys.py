"""Keys: a user sees their own key and its usage; an admin sees every key, creates keys (the
secret shown once, in the response to the POST that made it, never in a URL), tops up credit,
changes rate limits and revokes.

Every admin action, and every look at a key other than one's own, is checked here on the
server (`require_admin`), whatever the pages link to. Changes are POSTs carrying the CSRF token;
after one the browser is redirected (303) so reloading the page cannot repeat it — except after
creating a key, whose page must show the secret and so is the POST's own answer.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.routing import Route

from costr.accounts.key_admin import set_limits
from costr.accounts.keys import KeyValueRefused, issue_key, top_up_key
from costr.accounts.records import MICROS, ApiKey
from costr.dashboard.web import (PageNotFound, checked_form, redirect, render, require_admin,
                                 signed_in)

MAX_NAME = 100
MAX_USD = 1_000_000_000   # far above any real amount; keeps micro-dollars well inside BIGINT
MAX_LIMIT = 10**12        # likewise for requests and tokens per minute
DONE = {"top-up": "Credit added.", "limits": "Limits changed.", "revoked": "Key revoked."}


class FormProblem(ValueError):
    """A form value the page refuses, said in words for the form's user."""


# -- reading -------------------------------------------------------------------------------

async def keys_page(request: Request):
    """Admins: every key and the form creating one. Anyone else: their own key."""
    key = await signed_in(request)
    if not key.admin:
        return await _key_page(request, key, key)
    return await _list_page(request)


async def key_page(request: Request):
    """One key's details and usage: one's own, or (admins) any."""
    key = await signed_in(request)
    return await _key_page(request, key, await _visible_key(request, key))


async def confirm_revoke_page(request: Request):
    """The confirmation step before revoking: a page saying what will happen, whose form posts
    the revocation."""
    key = await signed_in(request)
    require_admin(key)
    other = await _visible_key(request, key)
    return render(request, "key.html", subject=other, usage=None, own=other.id == key.id,
                  problem=None, done=None, confirm_revoke=True)


async def _list_page(request: Request, *, problem: str | None = None,
                     form: FormData | None = None, created: tuple[ApiKey, str] | None = None,
                     status: int = 200):
    keys = await request.app.state.gateway.books.store.list_keys()
    return render(request, "keys.html", status=status, keys=keys,
                  problem=problem, form=form or {}, created=created)


async def _key_page(request: Request, key: ApiKey, subject: ApiKey, *,
                    problem: str | None = None, status: int = 200):
    return render(request, "key.html", status=status, subject=subject,
                  usage=await key_usage(request, subject.id), own=subject.id == key.id,
                  problem=problem, done=DONE.get(request.query_params.get("done", "")),
                  confirm_revoke=False)


async def _visible_key(request: Request, key: ApiKey) -> ApiKey:
    """The key the path names, if the signed-in key may see it: its own, or any for an admin.
    A non-admin is refused (403) before the store is asked, so whether another key exists is
    not told either."""
    key_id = request.path_params["key_id"]
    if key_id == key.id:
        return key
    require_admin(key)
    other = await request.app.state.gateway.books.store.key_by_id_or_prefix(key_id)
    if other is None or other.id != key_id:
        raise PageNotFound("There is no such key.")
    return other


async def key_usage(request: Request, key_id: str) -> dict:
    """The key's requests, tokens, spend and savings today and this month (UTC days), from
    the same daily rows /v1/usage serves."""
    gateway = request.app.state.gateway
    await gateway.books.ledger.flush()   # what was just answered is counted
    today = datetime.now(timezone.utc).date()
    rows = await gateway.books.store.usage_by_day(key_id, today.replace(day=1).isoformat(),
                                                  today.isoformat())
    return {"today": _summed([r for r in rows if r["day"] == today.isoformat()]),
            "month": _summed(rows)}


def _summed(rows: list[dict]) -> dict:
    cost = round(sum(r["cost_usd"] for r in rows) * MICROS)
    baseline = round(sum(r["baseline_cost_usd"] for r in rows) * MICROS)
    return {"requests": sum(r["requests"] for r in rows),
            "input_tokens": sum(r["input_tokens"] for r in rows),
            "output_tokens": sum(r["output_tokens"] for r in rows),
            "cost_micros": cost, "baseline_micros": baseline, "savings_micros": baseline - cost,
            "savings_percent": 100 * (baseline - cost) / baseline if baseline else 0.0}


# -- changing (admins) ---------------------------------------------------------------------

async def create_key(request: Request):
    key = await signed_in(request)
    require_admin(key)
    form = await checked_form(request)
    try:
        name = _name(form.get("name", ""))
        credits = None if form.get("unlimited") else _usd(form.get("credits_usd", ""), "Credit",
                                                          allow_zero=True)
        rpm = _limit(form.get("rpm", ""), "Requests per minute")
        tpm = _limit(form.get("tpm", ""), "Tokens per minute")
        created = await issue_key(request.app.state.gateway.books.store, name,
                                  credits_usd=credits, rpm=rpm, tpm=tpm,
                                  admin=bool(form.get("admin")))
    except (FormProblem, KeyValueRefused) as problem:   # keys.py's bounds, in its words
        return await _list_page(request, problem=str(problem), form=form, status=400)
    return await _list_page(request, created=created, status=201)


async def top_up(request: Request):
    key, other, form = await _admin_change(request)
    try:
        _refuse_revoked(other)
        if other.unlimited:
            raise FormProblem("This key is unlimited; it has no balance to top up.")
        amount = _usd(form.get("usd", ""), "The amount", allow_zero=False)
        await top_up_key(request.app.state.gateway.books.store, other, amount)
    except (FormProblem, KeyValueRefused) as problem:
        return await _key_page(request, key, other, problem=str(problem), status=400)
    return redirect(request, f"/keys/{other.id}?done=top-up")


async def change_limits(request: Request):
    key, other, form = await _admin_change(request)
    try:
        _refuse_revoked(other)
        rpm = _limit(form.get("rpm", ""), "Requests per minute")
        tpm = _limit(form.get("tpm", ""), "Tokens per minute")
    except FormProblem as problem:
        return await _key_page(request, key, other, problem=str(problem), status=400)
    gateway = request.app.state.gateway
    await set_limits(gateway.books.store, other.id, rpm=rpm, tpm=tpm)
    gateway.books.keys.forget(other.id)   # this instance applies them from the next request
    return redirect(request, f"/keys/{other.id}?done=limits")


async def revoke(request: Request):
    _, other, _ = await _admin_change(request)
    gateway = request.app.state.gateway
    await gateway.books.store.revoke_key(other.id)
    gateway.books.keys.forget(other.id)
    return redirect(request, f"/keys/{other.id}?done=revoked")


async def _admin_change(request: Request) -> tuple[ApiKey, ApiKey, FormData]:
    """The signed-in admin, the key the path names and the checked form."""
    key = await signed_in(request)
    require_admin(key)
    form = await checked_form(request)
    return key, await _visible_key(request, key), form


def _refuse_revoked(key: ApiKey) -> None:
    """A revoked key's credit and limits no longer matter: changing them is a mistake."""
    if key.revoked:
        raise FormProblem("This key is revoked.")


# -- form values ---------------------------------------------------------------------------

def _name(value: str) -> str:
    name = value.strip()
    if not name:
        raise FormProblem("Give the key a name.")
    if len(name) > MAX_NAME:
        raise FormProblem(f"A key's name is at most {MAX_NAME} characters.")
    return name


def _usd(value: str, what: str, *, allow_zero: bool) -> float:
    try:
        amount = float(value.strip().lstrip("$").replace(",", ""))
    except ValueError:
        raise FormProblem(f"{what} must be an amount in US dollars, such as 5 or 12.50.") from None
    if not math.isfinite(amount) or amount < 0 or (amount == 0 and not allow_zero):
        raise FormProblem(f"{what} must be {'zero or more' if allow_zero else 'more than zero'}.")
    if amount > MAX_USD:
        raise FormProblem(f"{what} must be at most ${MAX_USD:,}.")
    return amount


def _limit(value: str, what: str) -> int | None:
    """Blank: no limit."""
    text = value.strip().replace(",", "")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise FormProblem(f"{what} must be a whole number from 1 to {MAX_LIMIT:,}, "
                          "or blank for no limit.")
    return int(text)


ROUTES = [
    Route("/keys", keys_page, methods=["GET"]),
    Route("/keys", create_key, methods=["POST"]),
    Route("/keys/{key_id}", key_page, methods=["GET"]),
    Route("/keys/{key_id}/top-up", top_up, methods=["POST"]),
    Route("/keys/{key_id}/limits", change_limits, methods=["POST"]),
    Route("/keys/{key_id}/revoke", confirm_revoke_page, methods=["GET"]),
    Route("/keys/{key_id}/revoke", revoke, methods=["POST"]),
]
