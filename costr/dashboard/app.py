"""The dashboard's routes, for the server to add under /dashboard: sign-in and sign-out, the
pages (pages/__init__.py), the packaged static files, and an HTML 404 for anything else there.

Every page endpoint is wrapped once here, so that a page only raises: SignInRequired becomes
the sign-in page (at /dashboard itself) or a 303 to it carrying `?next=`; Forbidden a 403
page; PageNotFound a 404 page; and every response gets the security headers.
"""
from __future__ import annotations

import functools
import logging
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from costr.accounts.dashboard_sessions import end_session, open_session
from costr.accounts.records import hash_secret
from costr.dashboard.pages import ROUTES as PAGE_ROUTES
from costr.dashboard.sessions import SESSION_COOKIE, SESSION_SECONDS, SIGNIN_COOKIE, SessionCookie
from costr.dashboard.web import (HERE, MOUNT, Forbidden, PageNotFound, SignInRequired,
                                 checked_form, dashboard_path, prepare, redirect, render,
                                 secured, served_over_https, session_cookie, signed_in, url)
from costr.errors import AuthenticationFailed

log = logging.getLogger("costr.dashboard")

WRONG_KEY = "That key was not accepted. Check that you pasted the whole key (it starts with cr-)."
REVOKED_KEY = "That key has been revoked. Ask an admin for a new one."
THROTTLED = "Too many failed sign-ins from this address. Wait {seconds} s and try again."


def routes() -> list[BaseRoute]:
    """Every dashboard route, with its full path (/dashboard/...)."""
    own = [Route("/login", _sign_in_page, methods=["GET"]),
           Route("/login", _sign_in, methods=["POST"]),
           Route("/logout", _sign_out, methods=["POST"])]
    pages = [Route(MOUNT + ("" if r.path == "/" else r.path), page(r.endpoint), methods=r.methods,
                   name=r.name) for r in [*own, *PAGE_ROUTES]]
    return [*pages,
            Mount(MOUNT + "/static", app=_Static(directory=HERE / "static"), name="static"),
            Route(MOUNT + "/{rest:path}", page(_not_found), methods=["GET", "HEAD"])]


class _Static(StaticFiles):
    """The packaged CSS and JS: revalidated (ETag) rather than cached blind, with the headers."""
    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("cache-control", "no-cache")
        return secured(response, cache=True)


def page(endpoint):
    """`endpoint` with the dashboard's exceptions turned into pages, and the headers set."""
    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        await prepare(request)
        try:
            response = await endpoint(request)
        except SignInRequired:
            response = _sign_in_required(request)
        except Forbidden as exc:
            response = _error_page(request, 403, "Not allowed", str(exc))
        except PageNotFound as exc:
            response = _error_page(request, 404, "Not found", str(exc))
        return secured(response)
    return wrapped


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "error.html", status=status, status_code=status, title=title,
                  message=message or "There is nothing here for this key.")


def _sign_in_required(request: Request) -> Response:
    if dashboard_path(request) == "/" and request.method == "GET":
        return render(request, "signin.html", next="/")
    wanted = dashboard_path(request) if request.method == "GET" else "/"
    if request.url.query and request.method == "GET":
        wanted += "?" + request.url.query
    return redirect(request, "/login?next=" + quote(wanted, safe=""))


def _safe_next(value: str | None) -> str:
    """Where to go after sign-in: a path inside the dashboard, never another site
    ('//evil.example', 'https://...', backslash tricks all fall back to the overview)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 32 for c in value):
        return "/"
    return value


async def _not_found(request: Request) -> Response:
    if dashboard_path(request) == "/":  # /dashboard/ -> /dashboard
        return redirect(request, "/")
    raise PageNotFound("The dashboard has no page here.")


async def _sign_in_page(request: Request) -> Response:
    try:
        await signed_in(request)
        return redirect(request, _safe_next(request.query_params.get("next")))
    except SignInRequired:
        return render(request, "signin.html", next=_safe_next(request.query_params.get("next")))


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _sign_in(request: Request) -> Response:
    """Check the key exactly as the API does (the gateway's key check), then open a session."""
    form = await checked_form(request)
    next_path = _safe_next(form.get("next"))
    state, address = await prepare(request), _client_address(request)
    wait = state.throttle.retry_after(address)
    if wait is not None:
        response = render(request, "signin.html", status=429, next=next_path,
                          error=THROTTLED.format(seconds=wait))
        response.headers["retry-after"] = str(wait)
        return response
    secret = str(form.get("key", "")).strip()
    gateway = request.app.state.gateway
    try:
        key = await gateway.books.keys.authenticate({"authorization": f"Bearer {secret}"})
    except AuthenticationFailed:
        state.throttle.failed(address)
        known = await gateway.books.store.key_by_hash(hash_secret(secret)) if secret else None
        log.info("dashboard sign-in refused from %s", address)
        return render(request, "signin.html", status=401, next=next_path,
                      error=REVOKED_KEY if known is not None and known.revoked else WRONG_KEY)
    state.throttle.succeeded(address)
    session = SessionCookie.new(key.id)
    await open_session(gateway.books.store, session.session_id, key.id, session.expires_at)
    response = redirect(request, next_path)
    response.set_cookie(SESSION_COOKIE, session.encode(state.signer), max_age=SESSION_SECONDS,
                        path=url(request), httponly=True, samesite="lax",
                        secure=served_over_https(request))
    response.delete_cookie(SIGNIN_COOKIE, path=url(request))
    return response


async def _sign_out(request: Request) -> Response:
    await checked_form(request)
    session = session_cookie(request)
    if session is not None:
        await end_session(request.app.state.gateway.books.store, session.session_id)
    response = redirect(request, "/login")
    response.delete_cookie(SESSION_COOKIE, path=url(request), httponly=True, samesite="lax",
                           secure=served_over_https(request))
    return response
