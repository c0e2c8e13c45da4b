"""Issuing API keys (a new secret, shown once; only its hash is stored), topping them up, and
finding one by id, display prefix or name.

The bounds on what an admin may type live here, so the admin API, `costr keys` and the
dashboard refuse the same values in the same words: a name of a few words, not a megabyte; an
amount the books can hold as whole micro-dollars (so $0.000000001 is refused, not silently
added as nothing) and far below where a BIGINT overflows (so $1e13 is refused, not a 500).
"""
from __future__ import annotations

import secrets
import time

from costr.accounts.records import (MICROS, ApiKey, Store, display_prefix, hash_secret,
                                    new_secret, usd_to_micros)

MAX_NAME_CHARS = 200
MIN_USD = 1 / MICROS             # one micro-dollar, the smallest amount the books hold
MAX_USD = 1_000_000_000          # per credit or top-up: far above any real amount
MAX_BALANCE_MICROS = 10**18      # no balance (or hold) goes past this; BIGINT ends at 9.2e18
MAX_LIMIT = 10**12               # requests or tokens per minute


class KeyValueRefused(ValueError):
    """A value for a key that Costr refuses; `param` names the admin API's field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def checked_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise KeyValueRefused("A key needs a name.", "name")
    if len(name) > MAX_NAME_CHARS:
        raise KeyValueRefused(f"A key's name is at most {MAX_NAME_CHARS} characters "
                              f"(this one has {len(name):,}).", "name")
    return name


def _in_bounds(usd: object) -> bool:
    # Compared as given: a huge int or inf is out of bounds, NaN fails every comparison.
    return (not isinstance(usd, bool) and isinstance(usd, (int, float))
            and MIN_USD <= usd <= MAX_USD)


def credit_micros(usd: object) -> int:
    """A new key's starting credit: 0, or between $0.000001 and $1,000,000,000."""
    if usd == 0 and not isinstance(usd, bool):
        return 0
    if not _in_bounds(usd):
        raise KeyValueRefused(f"A key's credit must be 0 or from ${MIN_USD:.6f} to "
                              f"${MAX_USD:,} (leave it out for unlimited).", "credits_usd")
    return usd_to_micros(usd)


def top_up_micros(usd: object) -> int:
    """A top-up: between $0.000001 and $1,000,000,000."""
    if not _in_bounds(usd):
        raise KeyValueRefused(f"A top-up must be from ${MIN_USD:.6f} to ${MAX_USD:,}.", "usd")
    return usd_to_micros(usd)


def checked_limit(value: object, param: str) -> int | None:
    """Requests or tokens per minute: None (no limit) or a whole number from 1 to 10**12."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise KeyValueRefused(f"'{param}' must be a whole number from 1 to {MAX_LIMIT:,}.", param)
    return value


async def issue_key(store: Store, name: str, *, credits_usd: float | None = None,
                    rpm: int | None = None, tpm: int | None = None,
                    admin: bool = False) -> tuple[ApiKey, str]:
    """Create a key; returns it and its secret, which is never stored and cannot be shown
    again. Raises KeyValueRefused for a value out of bounds."""
    name = checked_name(name)
    balance = None if credits_usd is None else credit_micros(credits_usd)
    rpm, tpm = checked_limit(rpm, "rpm"), checked_limit(tpm, "tpm")
    secret = new_secret()
    key = ApiKey(id=secrets.token_hex(8), name=name, prefix=display_prefix(secret), admin=admin,
                 balance_micros=balance, rpm=rpm, tpm=tpm, created_at=time.time())
    await store.create_key(key, hash_secret(secret))
    return key, secret


async def top_up_key(store: Store, key: ApiKey, usd: object) -> int | None:
    """Add `usd` to a prepaid key's balance; returns the new balance in micro-dollars. Raises
    KeyValueRefused for an amount out of bounds or one that would take the balance past
    MAX_BALANCE_MICROS (checked against `key` as the caller read it)."""
    micros = top_up_micros(usd)
    if (key.balance_micros or 0) + micros > MAX_BALANCE_MICROS:
        raise KeyValueRefused(f"This top-up would take the key's balance past "
                              f"${MAX_BALANCE_MICROS // MICROS:,}.", "usd")
    return await store.top_up(key.id, micros)


class AmbiguousKey(LookupError):
    """More than one key answers to a name; the message lists them."""


async def find_key(store: Store, ident: str) -> ApiKey | None:
    """The key with this id or display prefix, or else the one key with this name (a revoked
    key counts only when no live key has the name). None when nothing matches; AmbiguousKey
    when a name is shared."""
    key = await store.key_by_id_or_prefix(ident)
    if key is not None:
        return key
    named = [k for k in await store.list_keys() if k.name == ident]
    live = [k for k in named if not k.revoked]
    matches = live or named
    if len(matches) > 1:
        listed = ", ".join(f"{k.id} ({k.prefix}...{', revoked' if k.revoked else ''})"
                           for k in matches)
        raise AmbiguousKey(f"{len(matches)} keys are named {ident!r}: {listed}; "
                           "give an id or prefix instead")
    return matches[0] if matches else None
