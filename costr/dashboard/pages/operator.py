"""The operator's view (admin keys only): which providers can be used, which configuration is
in force and what the latest reload did, and routing and cache figures across every key.

The same facts /v1/router/health and /v1/router/stats serve, read from the same objects: the
live configuration, the store's per-(tier, model) stats, and the cache backend's counters.
"""
from __future__ import annotations

import time

from starlette.requests import Request
from starlette.routing import Route

from costr.accounts.records import MICROS
from costr.dashboard.web import render, require_admin, signed_in

WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
DEFAULT_WINDOW = "24h"


async def operator_page(request: Request):
    key = await signed_in(request)
    require_admin(key)
    gateway = request.app.state.gateway
    window = request.query_params.get("window", DEFAULT_WINDOW)
    if window not in WINDOWS:
        window = DEFAULT_WINDOW
    await gateway.books.ledger.flush()   # what was just answered is counted
    rows = await gateway.books.store.stats(None, time.time() - WINDOWS[window])
    return render(request, "operator.html", providers=providers(gateway),
                  configuration=configuration(gateway.config), routing=routing(gateway.config.current),
                  window=window, windows=list(WINDOWS), stats=[stats_row(r) for r in rows],
                  totals=totals(rows),
                  cache=cache(gateway))


def providers(gateway) -> list[dict]:
    """Each configured provider, whether requests can be routed to it (its credentials are
    present) and, when not, the variable to set; with the models it serves."""
    live = gateway.config.current
    missing = live.config.missing_credentials()
    models: dict[str, list[str]] = {}
    for model in live.config.models.values():
        models.setdefault(model.provider, []).append(model.id)
    return [{"name": name, "type": settings.type, "base_url": settings.base_url,
             "usable": name in live.usable, "missing_env": missing.get(name),
             "models": models.get(name, [])}
            for name, settings in live.config.providers.items()]


def configuration(holder) -> dict:
    """The files in force, when they were loaded, and what the latest reload did."""
    policy_files = sorted(p.name for p in holder.policies_dir.glob("*.y*ml"))
    return {"providers_file": str(holder.providers_path), "policies_dir": str(holder.policies_dir),
            "policy_files": policy_files, "loaded_at": holder.loaded_at,
            "last_reload": holder.last_reload}


def routing(live) -> dict:
    config = live.config
    return {"default_policy": config.routing.default_policy, "policies": sorted(live.policies),
            "scorer": config.routing.scorer, "baseline": config.baseline.id,
            "tiers": {tier: [m.id for m in live.by_tier[tier] if m.provider in live.usable]
                      for tier in config.tiers}}


def stats_row(row: dict) -> dict:
    """One (tier, model) group with money in micro-dollars and rates as percentages, as the
    page's filters take them."""
    return {**row, "cost_micros": round(row["cost_usd"] * MICROS),
            "baseline_micros": round(row["baseline_cost_usd"] * MICROS),
            "cache_saved_micros": round(row["cache_saved_usd"] * MICROS),
            "cache_hit_percent": 100 * row["cache_hit_rate"]}


def totals(rows: list[dict]) -> dict:
    """Across the window, as /v1/router/stats totals them: a request no model answered has
    no model and counts as failed."""
    answered = [r for r in rows if r["model"]]
    requests = sum(r["requests"] for r in rows)
    cost = round(sum(r["cost_usd"] for r in answered) * MICROS)
    baseline = round(sum(r["baseline_cost_usd"] for r in answered) * MICROS)
    hits = sum(r["cache_hits"] for r in answered)
    return {"requests": requests, "failed": requests - sum(r["requests"] for r in answered),
            "errors": sum(r["errors"] for r in rows),
            "cost_micros": cost, "baseline_micros": baseline,
            "savings_percent": 100 * (baseline - cost) / baseline if baseline else 0.0,
            "cache_hits": hits, "cache_hit_rate": 100 * hits / requests if requests else 0.0,
            "cache_saved_micros": round(sum(r["cache_saved_usd"] for r in answered) * MICROS)}


def cache(gateway) -> dict:
    """The response cache: off, or its backend, its settings and the counters it keeps
    (since this process opened it; `None` where a shared backend cannot tell)."""
    settings = gateway.config.current.config.cache
    backend = gateway.cache.backend
    return {"on": backend is not None and settings.enabled,
            "backend": type(backend).__name__ if backend is not None else None,
            "settings": settings, "counters": backend.stats() if backend is not None else {}}


ROUTES = [Route("/operator", operator_page, methods=["GET"])]
