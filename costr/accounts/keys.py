"""Issuing API keys: a new secret, shown once; only its hash is stored."""
from __future__ import annotations

import secrets
import time

from costr.accounts.records import (ApiKey, Store, display_prefix, hash_secret, new_secret,
                                    usd_to_micros)


async def issue_key(store: Store, name: str, *, credits_usd: float | None = None,
                    rpm: int | None = None, tpm: int | None = None,
                    admin: bool = False) -> tuple[ApiKey, str]:
    """Create a key; returns it and its secret, which is never stored and cannot be shown
    again."""
    secret = new_secret()
    key = ApiKey(id=secrets.token_hex(8), name=name, prefix=display_prefix(secret), admin=admin,
                 balance_micros=None if credits_usd is None else usd_to_micros(credits_usd),
                 rpm=rpm, tpm=tpm, created_at=time.time())
    await store.create_key(key, hash_secret(secret))
    return key, secret
