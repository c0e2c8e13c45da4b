"""What every dashboard page uses: who is signed in, the CSRF-checked form, rendering with
autoescape and the security headers, and prefix-aware links and redirects.

Pages are plain Starlette endpoints (`pages/*.py`); app.py wraps each so that SignInRequired,
Forbidden and PageNotFound raised here or in a page become the sign-in page, a redirect to it,
a 403 page or a 404 page. Links and redirects carry the ASGI root_path, so the dashboard works
under a path prefix behind a reverse proxy (`costr serve --root-path /costr`).
"""
from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from costr.accounts.dashboard_sessions import session_key_id
from costr.accounts.records import ApiKey
from costr.dashboard.formatting import FILTERS
from costr.dashboard.sessions import (SESSION_COOKIE, SIGNIN_COOKIE, SIGNIN_NONCE_SECONDS,
                                      DashboardState, SessionCookie, dashboard_state)

MOUNT = "/dashboard"
HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"

TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters.update(FILTERS)


class SignInRequired(Exception):
    """Nobody is signed in (or the session ended, or its key was revoked)."""


class Forbidden(Exception):
    """Signed in, but not allowed: not an admin, or a form without its CSRF token."""


class PageNotFound(Exception):
    """Nothing here for this key (another key's request is 'not found', not 'forbidden', so
    a non-admin cannot learn which request ids exist)."""


# --- where things are --------------------------------------------------------------------------

def root_path(request: Request) -> str:
    """The path prefix a reverse proxy serves Costr under ('' when none)."""
    return request.scope.get("root_path", "").rstrip("/")


def dashboard_path(request: Request) -> str:
    """The request's path relative to the dashboard: '/requests' for /PREFIX/dashboard/requests."""
    path = request.scope["path"]
    prefix = root_path(request)
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix):]
    path = path[len(MOUNT):] if path.startswith(MOUNT) else path
    return path or "/"


def url(request: Request, path: str = "/") -> str:
    """A dashboard path as a link: url(r, '/requests') -> /PREFIX/dashboard/requests."""
    base = root_path(request) + MOUNT
    return base if path in ("", "/") else base + (path if path.startswith("/") else "/" + path)


def static_url(request: Request, name: str) -> str:
    return url(request, f"/static/{name}")


def redirect(request: Request, path: str) -> Response:
    """303 See Other to a dashboard path (after a POST, the browser GETs the new page)."""
    return secured(RedirectResponse(url(request, path), status_code=303))


def served_over_https(request: Request) -> bool:
    """HTTPS here or at the proxy in front. X-Forwarded-Proto is honoured from anyone: all it
    can do is make the cookie Secure, never less safe."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


# --- who is signed in --------------------------------------------------------------------------

def _state(request: Request) -> DashboardState:
    return request.app.state.dashboard


async def prepare(request: Request) -> DashboardState:
    """Make the dashboard's state (app.py calls this before every page)."""
    return await dashboard_state(request.app.state, request.app.state.gateway.books.store)


def session_cookie(request: Request) -> SessionCookie | None:
    return SessionCookie.decode(_state(request).signer, request.cookies.get(SESSION_COOKIE))


async def signed_in(request: Request) -> ApiKey:
    """The session's key, read from the store on every request: a session that was ended, or
    whose key was revoked or deleted, stops working at once."""
    cached = getattr(request.state, "dashboard_key", None)
    if cached is not None:
        return cached
    await prepare(request)
    session = session_cookie(request)
    if session is None or session.expired:
        raise SignInRequired()
    store = request.app.state.gateway.books.store
    if await session_key_id(store, session.session_id) != session.key_id:
        raise SignInRequired()
    key = await store.key_by_id_or_prefix(session.key_id)
    if key is None or key.revoked or key.id != session.key_id:
        raise SignInRequired()
    request.state.dashboard_key = key
    return key


def require_admin(key: ApiKey) -> None:
    if not key.admin:
        raise Forbidden("This page needs an admin key.")


# --- CSRF --------------------------------------------------------------------------------------

def csrf_token(request: Request) -> str:
    """The token forms must send back: bound to the session, or before sign-in to a nonce
    cookie that render() sets when the browser has none."""
    signer = _state(request).signer
    session = session_cookie(request)
    if session is not None:
        return signer.csrf_token("session:" + session.session_id)
    nonce = signer.verified(request.cookies.get(SIGNIN_COOKIE)) or \
        getattr(request.state, "new_signin_nonce", None)
    if nonce is None:
        nonce = request.state.new_signin_nonce = secrets.token_urlsafe(24)
    return signer.csrf_token("signin:" + nonce)


async def checked_form(request: Request) -> FormData:
    """The POSTed form (url-encoded, as the dashboard's forms send it), once its `csrf_token`
    matches this browser's; Forbidden otherwise, before anything is changed."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        raise Forbidden("The form was not sent as a form.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Forbidden("The form is too large.")
    try:
        form = FormData(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=200))
    except (UnicodeDecodeError, ValueError):
        raise Forbidden("The form could not be read.") from None
    await prepare(request)
    sent = form.get("csrf_token")
    has_nonce = request.cookies.get(SESSION_COOKIE) or request.cookies.get(SIGNIN_COOKIE)
    if not isinstance(sent, str) or not has_nonce or \
            not secrets.compare_digest(sent, csrf_token(request)):
        raise Forbidden("The form's security token is missing or out of date. Reload the page "
                        "and try again.")
    return form


# --- rendering ---------------------------------------------------------------------------------

def content_security_policy(nonce: str) -> str:
    return ("default-src 'self'; script-src 'self' 'nonce-{n}'; style-src 'self'; "
            "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'").format(n=nonce)


def secured(response: Response, nonce: str | None = None, *, cache: bool = False) -> Response:
    """The headers every dashboard response carries (a page's own CSP, with its nonce, wins)."""
    headers = response.headers
    headers.setdefault("content-security-policy",
                       content_security_policy(nonce or secrets.token_urlsafe(16)))
    headers.setdefault("x-frame-options", "DENY")
    headers.setdefault("x-content-type-options", "nosniff")
    headers.setdefault("referrer-policy", "same-origin")
    headers.setdefault("cross-origin-opener-policy", "same-origin")
    if not cache:
        headers.setdefault("cache-control", "no-store")
    return response


def _active(request: Request) -> str:
    first = dashboard_path(request).strip("/").split("/")[0]
    return first or "overview"


def render(request: Request, template: str, *, status: int = 200, **context) -> HTMLResponse:
    """Render templates/<template> with autoescaping and the dashboard's common context."""
    key = getattr(request.state, "dashboard_key", None)
    nonce = secrets.token_urlsafe(16)
    common = {"request": request, "key": key, "is_admin": bool(key and key.admin),
              "csrf_token": csrf_token(request), "nonce": nonce, "active": _active(request),
              "url": lambda path="/": url(request, path),
              "static": lambda name: static_url(request, name)}
    html = TEMPLATES.get_template(template).render({**common, **context})
    response = secured(HTMLResponse(html, status_code=status), nonce)
    fresh = getattr(request.state, "new_signin_nonce", None)
    if fresh is not None:
        response.set_cookie(SIGNIN_COOKIE, _state(request).signer.sign(fresh),
                            max_age=SIGNIN_NONCE_SECONDS, path=url(request), httponly=True,
                            samesite="strict", secure=served_over_https(request))
    return response
