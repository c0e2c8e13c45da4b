"""Who is calling: the API key in `Authorization: Bearer` or `x-api-key`, checked against the
store by its hash. Answers are remembered for a few seconds, by the credential as sent, so a
busy key costs one dictionary look-up per request (no database round trip, no hashing); a
revocation on this instance takes effect at once, on others within `ttl_seconds`. Only the
hash ever leaves the process."""
from __future__ import annotations

import time

from costr.accounts import observers
from costr.accounts.records import KEY_PREFIX, ApiKey, Store, hash_secret
from costr.errors import AuthenticationFailed, PermissionDenied

INVALID = ("Invalid API Key. Send a Costr key (it starts with cr-) as 'Authorization: Bearer "
           "<key>' or 'x-api-key: <key>'.")


def credential(headers) -> str | None:
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    return headers.get("x-api-key")


class KeyCache:
    def __init__(self, store: Store, ttl_seconds: float = 5.0, max_entries: int = 10_000,
                 clock=time.monotonic):
        self.store, self.ttl, self.max_entries, self.clock = store, ttl_seconds, max_entries, clock
        self._keys: dict[str, tuple[ApiKey | None, float]] = {}

    async def authenticate(self, headers) -> ApiKey:
        secret = credential(headers)
        if not secret or not secret.startswith(KEY_PREFIX):
            raise AuthenticationFailed(INVALID)
        cached = self._keys.get(secret)
        now = self.clock()
        if cached and now - cached[1] < self.ttl:
            key = cached[0]
        else:
            key = await self.store.key_by_hash(hash_secret(secret))
            if len(self._keys) >= self.max_entries:
                self._keys.clear()
            self._keys[secret] = (key, now)
        if key is None or key.revoked:
            raise AuthenticationFailed(INVALID)
        observers.authenticated(key.id)
        return key

    def forget(self, key_id: str) -> None:
        """Drop a key's cached answer (after revoking it here)."""
        self._keys = {d: entry for d, entry in self._keys.items()
                      if entry[0] is None or entry[0].id != key_id}


def require_admin(key: ApiKey) -> None:
    if not key.admin:
        raise PermissionDenied("This needs an admin key (costr keys create --admin).")
