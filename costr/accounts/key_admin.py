"""Changing an existing key's rate limits, which the Store's own methods do not offer: keys are
created with their limits and, until the dashboard, were never edited afterwards.

Runs through the store's executor, as store_sql.py does, with SQL both SQLite and PostgreSQL
accept. A limiter reads a key's limits from the key itself, so the change holds from the next
request that loads the key (at once on this instance once its key cache forgets the key).
"""
from __future__ import annotations

from costr.accounts.records import Store

SET_LIMITS = "UPDATE api_keys SET rpm = ?, tpm = ? WHERE id = ?"


async def set_limits(store: Store, key_id: str, *, rpm: int | None, tpm: int | None) -> bool:
    """Set a key's requests and tokens per minute (None: no limit); False when no such key."""
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None")
    return await store._execute(SET_LIMITS, (rpm, tpm, key_id)) == 1
