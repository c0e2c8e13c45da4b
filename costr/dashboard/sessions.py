"""Session cookies, CSRF tokens and sign-in throttling for the dashboard.

A session cookie is `session_id.key_id.expires_at.signature` (HMAC-SHA256 over the rest): the
signature lets a forged or altered cookie be refused without a database round trip, and the
session's row in the store (accounts/dashboard_sessions.py) lets sign-out end it everywhere.
The signing secret is COSTR_SESSION_SECRET when set, else one the store makes once and keeps
(so restarts and every instance on the same database share it).

A CSRF token is an HMAC of the browser's session id (or, before sign-in, of a random nonce in
a short-lived cookie), so it is worthless in another browser and changes at every sign-in.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass

from costr.accounts.dashboard_sessions import cookie_secret

SESSION_COOKIE = "costr_session"
SIGNIN_COOKIE = "costr_signin"   # the pre-sign-in CSRF nonce
SESSION_SECONDS = 12 * 3600
SIGNIN_NONCE_SECONDS = 3600
SECRET_ENV = "COSTR_SESSION_SECRET"


class CookieSigner:
    def __init__(self, secret: str):
        self._secret = secret.encode()

    def _mac(self, purpose: str, text: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}\n{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, payload: str) -> str:
        return f"{payload}.{self._mac('cookie', payload)}"

    def verified(self, value: str | None) -> str | None:
        """The payload of a value this signer signed; None for anything else."""
        if not value or "." not in value:
            return None
        payload, _, signature = value.rpartition(".")
        return payload if hmac.compare_digest(signature, self._mac("cookie", payload)) else None

    def csrf_token(self, nonce: str) -> str:
        return self._mac("csrf", nonce)


@dataclass(frozen=True)
class SessionCookie:
    session_id: str
    key_id: str
    expires_at: int

    @classmethod
    def new(cls, key_id: str, now: float | None = None) -> SessionCookie:
        return cls(secrets.token_urlsafe(24), key_id, int((now or time.time()) + SESSION_SECONDS))

    def encode(self, signer: CookieSigner) -> str:
        return signer.sign(f"{self.session_id}.{self.key_id}.{self.expires_at}")

    @classmethod
    def decode(cls, signer: CookieSigner, value: str | None) -> SessionCookie | None:
        """The cookie if its signature holds (expired or not: sign-out still needs its id)."""
        payload = signer.verified(value)
        if payload is None:
            return None
        parts = payload.split(".")
        if len(parts) != 3 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]))

    @property
    def expired(self) -> bool:
        return self.expires_at <= time.time()


class SignInThrottle:
    """Failed sign-ins per client address, in this process's memory: after `limit` failures
    within `window` seconds, every further attempt from that address (right key or not) is
    answered 429 until the oldest failure leaves the window. Per instance: behind a load
    balancer each instance counts on its own, which still caps guessing at limit x instances
    per window (and a key has 256 random bits, so throttling is about noise, not odds)."""

    def __init__(self, limit: int = 5, window: float = 60.0, max_addresses: int = 10_000,
                 clock=time.monotonic):
        self.limit, self.window, self.max_addresses, self.clock = limit, window, max_addresses, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and self.clock() - failures[0] >= self.window:
            failures.popleft()
        return failures

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again; None when it may now."""
        failures = self._recent(address)
        if len(failures) < self.limit:
            return None
        return max(1, int(failures[0] + self.window - self.clock() + 0.999))

    def failed(self, address: str) -> None:
        if len(self._failures) >= self.max_addresses:
            self._failures = {a: f for a in list(self._failures) if (f := self._recent(a))}
        failures = self._recent(address)
        failures.append(self.clock())
        self._failures[address] = failures

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


@dataclass
class DashboardState:
    signer: CookieSigner
    throttle: SignInThrottle


async def dashboard_state(app_state, store) -> DashboardState:
    """The dashboard's per-app state, made on first use (the secret may need the store). Two
    first requests at once may both make it; they read the same secret, so either will do."""
    state = getattr(app_state, "dashboard", None)
    if state is None:
        secret = os.environ.get(SECRET_ENV) or await cookie_secret(store)
        state = getattr(app_state, "dashboard", None) or DashboardState(CookieSigner(secret),
                                                                         SignInThrottle())
        app_state.dashboard = state
    return state
