"""The overview (/dashboard): a key's credit and limits, its usage today and this month with
what routing saved against the baseline model, and charts of its last 30 days: requests, spend
and savings per day, and the routing mix (tiers, routed models, cache hits).

Usage is read from the daily rollup (accounts/usage_rollups.py), never by scanning the ledger,
so the page stays fast however long the ledger grows. Days are UTC days, as in /v1/usage.

An admin sees their own key unless they ask for another (`?key_id=` an id or display prefix)
or for every key (`?key_id=all`); any other key sees its own and is refused another's, here on
the server.
"""
from __future__ import annotations

from datetime import datetime, timezone

from starlette.requests import Request
from starlette.routing import Route

from costr.accounts.records import ApiKey
from costr.accounts.usage_rollups import CHART_DAYS, UsageOverview, credit_totals, usage_overview
from costr.dashboard.charts import daily_chart, share_chart
from costr.dashboard.web import Forbidden, PageNotFound, render, signed_in

ALL = "all"
MOST_KEYS_LISTED = 100   # an admin picks among this many keys from a list; past it, types one
NO_TIER = "none (failed before routing)"
NO_MODEL = "none (no model answered)"


async def overview(request: Request):
    key = await signed_in(request)
    subject = await _subject(request, key)
    gateway = request.app.state.gateway
    store = gateway.books.store
    await gateway.books.ledger.flush()  # what the browser's user was just answered is counted
    today = datetime.now(timezone.utc).date()
    usage = await usage_overview(store, None if subject is None else subject.id, today)
    listed = None
    if key.admin and await store.count_keys() <= MOST_KEYS_LISTED:
        listed = await store.list_keys()
    return render(request, "overview.html", subject=subject, usage=usage, charts=_charts(usage),
                  credits=await credit_totals(store) if subject is None else None,
                  today=today.isoformat(), month=today.strftime("%B %Y"), chart_days=CHART_DAYS,
                  scope=ALL if subject is None else subject.id, listed_keys=listed)


async def _subject(request: Request, key: ApiKey) -> ApiKey | None:
    """The key whose overview is asked for (None: every key)."""
    wanted = request.query_params.get("key_id", "").strip()
    if not wanted or wanted == key.id:
        return key
    if not key.admin:
        raise Forbidden("Only an admin key can see the overview of another key or of all keys.")
    if wanted == ALL:
        return None
    other = await request.app.state.gateway.books.store.key_by_id_or_prefix(wanted)
    if other is None:
        raise PageNotFound(f"No key has the id or prefix {wanted!r}.")
    return other


def _charts(usage: UsageOverview) -> dict:
    days, hits = usage.days, usage.window.cache_hits
    return {
        "requests": daily_chart(
            "requests-per-day", "Requests per day", "requests", days,
            [("bar-answered", "answered", lambda u: u.requests - u.errors),
             ("bar-failed", "failed", lambda u: u.errors)]),
        "spend": daily_chart(
            "spend-per-day", "Spend and savings per day", "usd", days,
            [("bar-spent", "spent", lambda u: u.cost_micros),
             ("bar-saved", "saved against the baseline model", lambda u: u.savings_micros)]),
        "tiers": share_chart("tier-mix", "Requests by tier",
                             [(tier or NO_TIER, n) for tier, n in usage.tiers]),
        "models": share_chart("model-mix", "Requests by routed model",
                              [(model or NO_MODEL, n) for model, n in usage.models]),
        "cache": share_chart("cache-mix", "Answered from the response cache",
                             [("cache hits", hits),
                              ("not from the cache", usage.window.requests - hits)]),
    }


ROUTES = [Route("/", overview, methods=["GET"])]
