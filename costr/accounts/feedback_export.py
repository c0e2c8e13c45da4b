"""Ratings as training data: each rated request whose prompt was kept (kept_prompts.py) becomes
one routing-eval record, so an operator can retrain a scorer on their own traffic.

    {"id", "dataset": "feedback", "messages", "scores": {routed_model: (rating - 1) / 4},
     "tier", "policy", "complexity", "rating", "ts"}

A request rated more than once counts with its latest rating. Rated requests with no kept
prompt (kept prompts off, a model named rather than auto, no answer, or past retention) are
counted, never written as records. `costr feedback export` and GET /v1/router/feedback/export
(admin keys) share this.
"""
from __future__ import annotations

import time

import orjson

from costr.accounts.records import RatedRequest, Store
from costr.errors import InvalidRequest, NotFound

DATASET = "feedback"
DAY_SECONDS = 86400


def training_record(rated: RatedRequest) -> dict:
    return {"id": rated.request_id, "dataset": DATASET, "messages": rated.messages,
            "scores": {rated.routed_model: (rated.rating - 1) / 4}, "tier": rated.tier,
            "policy": rated.policy, "complexity": rated.complexity, "rating": rated.rating,
            "ts": rated.ts}


async def export_lines(store: Store, since_days: float | None = None,
                       key: str | None = None) -> tuple[list[bytes], int]:
    """(one JSON line per exportable rated request, oldest first; how many rated requests had
    no kept prompt). `key`: an id or display prefix, None for every key."""
    if since_days is not None and not since_days > 0:
        raise InvalidRequest("'since' must be a positive number of days.", param="since")
    key_id = None
    if key is not None:
        found = await store.key_by_id_or_prefix(key)
        if found is None:
            raise NotFound(f"No key {key!r}.", param="key_id", code="key_not_found")
        key_id = found.id
    since_ts = 0.0 if since_days is None else time.time() - since_days * DAY_SECONDS
    lines, skipped = [], 0
    for rated in await store.rated_requests(since_ts, key_id):
        if rated.messages is None:
            skipped += 1
        else:
            lines.append(orjson.dumps(training_record(rated)) + b"\n")
    return lines, skipped
