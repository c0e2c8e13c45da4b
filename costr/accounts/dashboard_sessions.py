"""Dashboard sign-in sessions, and the secret that signs their cookies, kept in the store.

Kept in the store rather than in one process or one data folder so that every instance sharing
the database honours the same sessions (a browser may reach any instance behind a load
balancer), a sign-out ends the session everywhere, and a restart signs nobody out. The cookie
carries only the session id, the key id and the expiry, signed; never the key's secret.
"""
from __future__ import annotations

import secrets
import time

# Migration 6 (appended to store_sql.MIGRATIONS).
TABLES = [
    """CREATE TABLE dashboard_sessions (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at)",
    """CREATE TABLE dashboard_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL)""",
]

COOKIE_SECRET = "session-cookie"
INSERT_SECRET = ("INSERT INTO dashboard_secrets (name, value, created_at) VALUES (?, ?, ?) "
                 "ON CONFLICT (name) DO NOTHING")
SECRET = "SELECT value FROM dashboard_secrets WHERE name = ?"
INSERT_SESSION = ("INSERT INTO dashboard_sessions (id, key_id, created_at, expires_at) "
                  "VALUES (?, ?, ?, ?)")
SESSION_KEY = "SELECT key_id FROM dashboard_sessions WHERE id = ? AND expires_at > ?"
END_SESSION = "DELETE FROM dashboard_sessions WHERE id = ?"
FORGET_EXPIRED = "DELETE FROM dashboard_sessions WHERE expires_at <= ?"


async def cookie_secret(store) -> str:
    """The secret that signs session cookies: made by the first instance that asks, then the
    same for every instance and every restart (insert-if-absent, then read, so two instances
    starting together agree)."""
    await store._execute(INSERT_SECRET, (COOKIE_SECRET, secrets.token_urlsafe(48), time.time()))
    return (await store._fetch(SECRET, (COOKIE_SECRET,)))[0]["value"]


async def open_session(store, session_id: str, key_id: str, expires_at: float) -> None:
    """Record a new session, clearing out expired ones on the way (sign-ins are rare enough
    that this keeps the table small without a sweeper)."""
    now = time.time()
    await store._execute(FORGET_EXPIRED, (now,))
    await store._execute(INSERT_SESSION, (session_id, key_id, now, float(expires_at)))


async def session_key_id(store, session_id: str) -> str | None:
    """The key id of a live session; None once it has ended or expired."""
    rows = await store._fetch(SESSION_KEY, (session_id, time.time()))
    return rows[0]["key_id"] if rows else None


async def end_session(store, session_id: str) -> None:
    await store._execute(END_SESSION, (session_id,))
