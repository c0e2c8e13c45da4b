"""The dashboard's foundation: sign-in and sessions, throttling, CSRF, escaping, security
headers, --no-dashboard and serving under a path prefix (non-browser; the browser tests are
in test_dashboard_browser.py)."""
from __future__ import annotations

import re

import pytest

from costr.accounts.dashboard_sessions import cookie_secret
from costr.dashboard.formatting import localtime, percent, usd
from costr.dashboard.sessions import (SESSION_COOKIE, SESSION_SECONDS, CookieSigner,
                                      SessionCookie, SignInThrottle)
from costr.testing import TEST_KEY
from dashboard_signin import (USER_KEY, csrf_token, dashboard_client, run, sign_in, store_of)

SECURITY_HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options",
                    "referrer-policy")


def session_cookie_header(response) -> str:
    return next(v for v in response.headers.get_list("set-cookie")
                if v.startswith(SESSION_COOKIE + "="))


@pytest.fixture
def dashboard(tmp_path):
    with dashboard_client(tmp_path) as parts:
        yield parts


# --- sign-in ------------------------------------------------------------------------------------

def test_signed_out_dashboard_shows_the_sign_in_form(dashboard):
    client, _, _ = dashboard
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert 'id="signin-form"' in page.text and 'name="key"' in page.text
    assert 'action="/dashboard/login"' in page.text


def test_other_pages_redirect_to_sign_in_remembering_where_to_go(dashboard):
    client, _, _ = dashboard
    page = client.get("/dashboard/requests?status=error")
    assert page.status_code == 303
    assert page.headers["location"] == "/dashboard/login?next=%2Frequests%3Fstatus%3Derror"
    signed = sign_in(client, TEST_KEY, next_path="/requests?status=error")
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard/requests?status=error"


def test_sign_in_sets_a_signed_http_only_cookie_without_the_key(dashboard):
    client, admin, _ = dashboard
    response = sign_in(client, TEST_KEY)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = session_cookie_header(response)
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert f"Max-Age={SESSION_SECONDS}" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie   # plain http here
    value = cookie.split(";")[0].split("=", 1)[1]
    assert TEST_KEY not in value and TEST_KEY[3:20] not in value
    assert admin.id in value         # the key id, the expiry, a session id and a signature
    page = client.get("/dashboard/requests")
    assert page.status_code == 200 and f'data-key-id="{admin.id}"' in page.text


def test_the_cookie_is_secure_when_served_over_https_at_the_proxy(dashboard):
    client, _, _ = dashboard
    token = csrf_token(client)
    response = client.post("/dashboard/login", data={"key": TEST_KEY, "csrf_token": token},
                           headers={"x-forwarded-proto": "https"})
    assert "Secure" in session_cookie_header(response)


def test_a_wrong_key_gets_the_sign_in_page_again_with_401(dashboard):
    client, _, _ = dashboard
    response = sign_in(client, "cr-not-a-key-at-all")
    assert response.status_code == 401
    assert 'id="signin-error"' in response.text and "not accepted" in response.text
    assert not any(v.startswith(SESSION_COOKIE + "=") for v in response.headers.get_list("set-cookie"))
    assert client.get("/dashboard/requests").status_code == 303


def test_a_revoked_key_cannot_sign_in_and_is_told_so(dashboard):
    client, _, user = dashboard
    run(client, store_of(client).revoke_key, user.id)
    response = sign_in(client, USER_KEY)
    assert response.status_code == 401 and "revoked" in response.text


def test_revoking_the_key_ends_its_open_sessions(dashboard):
    client, _, user = dashboard
    assert sign_in(client, USER_KEY).status_code == 303
    assert client.get("/dashboard/requests").status_code == 200
    run(client, store_of(client).revoke_key, user.id)
    after = client.get("/dashboard/requests")
    assert after.status_code == 303 and after.headers["location"].startswith("/dashboard/login")


def test_an_altered_cookie_is_not_a_session(dashboard):
    client, admin, user = dashboard
    sign_in(client, USER_KEY)
    value = client.cookies[SESSION_COOKIE]
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value, path="/dashboard")
    assert client.get("/dashboard/requests").status_code == 200
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value.replace(user.id, admin.id), path="/dashboard")
    assert client.get("/dashboard/requests").status_code == 303
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value.rpartition(".")[0] + ".forged", path="/dashboard")
    assert client.get("/dashboard/requests").status_code == 303


def test_sessions_are_signed_with_costr_session_secret_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv("COSTR_SESSION_SECRET", "shared-by-every-instance")
    with dashboard_client(tmp_path) as (client, admin, _):
        sign_in(client, TEST_KEY)
        cookie = SessionCookie.decode(CookieSigner("shared-by-every-instance"),
                                      client.cookies[SESSION_COOKIE])
        assert cookie is not None and cookie.key_id == admin.id
        assert SessionCookie.decode(CookieSigner(run(client, cookie_secret, store_of(client))),
                                    client.cookies[SESSION_COOKIE]) is None


def test_the_session_secret_is_made_once_and_kept(dashboard):
    client, _, _ = dashboard
    store = store_of(client)
    assert run(client, cookie_secret, store) == run(client, cookie_secret, store)


# --- throttling ---------------------------------------------------------------------------------

def test_repeated_failures_from_one_address_are_answered_429(dashboard):
    client, _, _ = dashboard
    for _ in range(5):
        assert sign_in(client, "cr-wrong").status_code == 401
    throttled = sign_in(client, TEST_KEY)   # even the right key waits
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert "Too many failed sign-ins" in throttled.text


def test_the_throttle_forgets_failures_after_its_window():
    now = [0.0]
    throttle = SignInThrottle(limit=2, window=60, clock=lambda: now[0])
    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 60 and throttle.retry_after("b") is None
    now[0] = 59.5
    assert throttle.retry_after("a") == 1
    now[0] = 60.0
    assert throttle.retry_after("a") is None
    throttle.failed("a")
    throttle.succeeded("a")
    assert throttle.retry_after("a") is None


# --- sign-out and CSRF ----------------------------------------------------------------------------

def test_sign_out_ends_the_session_even_for_a_copied_cookie(dashboard):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    copied = client.cookies[SESSION_COOKIE]
    token = csrf_token(client, "/dashboard/requests")
    out = client.post("/dashboard/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert client.get("/dashboard/requests").status_code == 303
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, copied, path="/dashboard")
    assert client.get("/dashboard/requests").status_code == 303


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_post_without_the_right_csrf_token_is_refused_and_changes_nothing(dashboard, token):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    form = {} if token is None else {"csrf_token": token}
    refused = client.post("/dashboard/logout", data=form)
    assert refused.status_code == 403 and 'id="error"' in refused.text
    assert client.get("/dashboard/requests").status_code == 200   # still signed in


def test_a_token_from_another_browser_does_not_work(dashboard):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    other_token = csrf_token(client, "/dashboard/requests")
    client.cookies.clear()
    sign_in(client, TEST_KEY)
    assert client.post("/dashboard/logout", data={"csrf_token": other_token}).status_code == 403
    assert client.get("/dashboard/requests").status_code == 200


def test_sign_in_needs_the_sign_in_pages_token(dashboard):
    client, _, _ = dashboard
    refused = client.post("/dashboard/login", data={"key": TEST_KEY})
    assert refused.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_after_sign_in_goes_only_inside_the_dashboard(dashboard):
    client, _, _ = dashboard
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        client.cookies.clear()
        response = sign_in(client, TEST_KEY, next_path=target)
        assert response.headers["location"] == "/dashboard", target


# --- escaping and headers -----------------------------------------------------------------------

def test_a_key_name_with_markup_shows_as_text(tmp_path):
    with dashboard_client(tmp_path, user_name="<script>alert('x')</script>") as (client, _, _):
        sign_in(client, USER_KEY)
        page = client.get("/dashboard/requests").text
        assert "<script>alert(" not in page
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


def assert_secured(response, *, cacheable: bool = False):
    for name in SECURITY_HEADERS:
        assert name in response.headers, name
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert "script-src 'self' 'nonce-" in policy and "default-src 'self'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    if not cacheable:
        assert response.headers["cache-control"] == "no-store"


def test_every_kind_of_dashboard_response_carries_the_security_headers(dashboard):
    client, _, _ = dashboard
    assert_secured(client.get("/dashboard"))                    # sign-in page
    assert_secured(client.get("/dashboard/requests"))           # redirect to sign-in
    assert_secured(client.get("/dashboard/no-such-page"))       # 404 page
    assert_secured(client.get("/dashboard/static/dashboard.css"), cacheable=True)
    sign_in(client, USER_KEY)
    assert_secured(client.get("/dashboard/requests"))
    assert_secured(client.get("/dashboard/requests.csv"))
    assert_secured(client.get("/dashboard/requests/req_missing"))


def test_pages_load_nothing_from_elsewhere_and_script_only_from_the_package(dashboard):
    client, _, _ = dashboard
    pages = [client.get("/dashboard/login").text]
    sign_in(client, TEST_KEY)
    pages.append(client.get("/dashboard/requests").text)
    for html in pages:
        assert not re.search(r'(src|href)="(https?:)?//', html)
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/dashboard/static/dashboard.js" defer>']
        assert " style=" not in html   # no inline styles: the CSP allows none


def test_static_files_are_served_from_the_package(dashboard):
    client, _, _ = dashboard
    css = client.get("/dashboard/static/dashboard.css")
    js = client.get("/dashboard/static/dashboard.js")
    assert css.status_code == js.status_code == 200
    assert "@media (max-width: 640px)" in css.text and "time[datetime]" in js.text


def test_unknown_dashboard_paths_get_a_404_page(dashboard):
    client, _, _ = dashboard
    response = client.get("/dashboard/no-such-page")
    assert response.status_code == 404 and 'data-status="404"' in response.text


# --- turning it off, and a path prefix -------------------------------------------------------------

def test_the_dashboard_can_be_turned_off(tmp_path):
    with dashboard_client(tmp_path, dashboard=False) as (client, _, _):
        for path in ("/dashboard", "/dashboard/login", "/dashboard/requests",
                     "/dashboard/static/dashboard.css"):
            assert client.get(path).status_code == 404, path
        assert client.post("/dashboard/login", data={"key": TEST_KEY}).status_code == 404


def test_costr_serve_passes_no_dashboard_and_the_root_path_on(monkeypatch, tmp_path):
    import costr.server.app as server_app
    from costr.cli.main import main
    made, served = {}, {}
    real_create_app = server_app.create_app

    def create_app(**kw):
        made.update(kw)
        return real_create_app(**kw)
    monkeypatch.setattr(server_app, "create_app", create_app)
    from costr.server.draining import DrainingServer

    def run(server, sockets=None):   # the server `costr serve` built, not started
        served.update(root_path=server.config.root_path)
        server.started = True
    monkeypatch.setattr(DrainingServer, "run", run)
    assert main(["serve", "--data-dir", str(tmp_path), "--no-dashboard",
                 "--root-path", "/costr/"]) == 0
    assert made["dashboard"] is False and served["root_path"] == "/costr"
    monkeypatch.setenv("COSTR_ROOT_PATH", "/gateway")
    assert main(["serve", "--data-dir", str(tmp_path)]) == 0
    assert made["dashboard"] is True and served["root_path"] == "/gateway"


def test_links_redirects_and_cookies_carry_the_path_prefix(tmp_path):
    """Behind a proxy that serves Costr at /costr and strips it (uvicorn --root-path /costr):
    uvicorn hands the app root_path /costr and the path with the prefix put back."""
    with dashboard_client(tmp_path, root_path="/costr") as (client, _, _):
        page = client.get("/costr/dashboard/requests")
        assert page.headers["location"] == "/costr/dashboard/login?next=%2Frequests"
        signed = sign_in(client, TEST_KEY, prefix="/costr")
        assert signed.headers["location"] == "/costr/dashboard"
        assert "Path=/costr/dashboard" in session_cookie_header(signed)
        html = client.get("/costr/dashboard/requests").text
        assert 'href="/costr/dashboard/static/dashboard.css"' in html
        assert 'action="/costr/dashboard/logout"' in html and 'href="/costr/dashboard/keys"' in html
        assert 'href="/dashboard' not in html and 'action="/dashboard' not in html


# --- formatting ---------------------------------------------------------------------------------

def test_money_keeps_the_digits_small_amounts_need():
    assert usd(1_234_560_000) == "$1,234.56"
    assert usd(123) == "$0.000123"
    assert usd(500_000) == "$0.50"
    assert usd(12_300) == "$0.0123"
    assert usd(0) == "$0.00" and usd(-2_500_000) == "-$2.50" and usd(None) == "—"
    assert percent(42.14) == "42.1%"


def test_times_are_time_elements_for_the_browser_to_localise():
    assert str(localtime(0)) == '<time datetime="1970-01-01T00:00:00Z">1970-01-01 00:00 UTC</time>'
