"""Fixtures for the dashboard's browser tests: a gateway serving the dashboard, headless
Chromium driven by Playwright, and screenshots of what the browser showed.

The browser is Debian's `chromium`, launched through Playwright's `executable_path`:
Playwright's own browser download needs the internet, and `.ci/run` installs the Debian package
when it is missing. Without chromium or without the playwright package the tests skip, saying
which is missing. Screenshots go to `dashboard-screenshots/` at the top of the repository
(git-ignored; they are outputs for a person to look at, overwritten by every run).
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from costr.testing import AUTH, TEST_KEY, running_gateway
from costr.testing.fake_upstream import FakeUpstream

from conftest import LOCAL_POOL, REPO, write_config

SCREENSHOTS = REPO / "dashboard-screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}    # an iPhone 12-14 in portrait
# Not the machine's zone, so a page that shows UTC where it promised local time is caught.
BROWSER_TIMEZONE = "Asia/Kolkata"

# The shared pool plus kept prompts, so a request's detail page has a prompt to show (escaped).
BROWSER_POOL = LOCAL_POOL + "feedback: {{keep_prompts: true, keep_days: 30}}\n"


def chromium_path() -> str | None:
    """COSTR_CHROMIUM when set, else Debian's chromium on PATH."""
    return os.environ.get("COSTR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass(frozen=True)
class Site:
    """The gateway under test: its base URL and the dashboard's address within it."""
    base: str

    def url(self, path: str = "") -> str:
        """The dashboard page at `path` ("" is the overview, "/requests" the call history)."""
        return f"{self.base}/dashboard{path}"

    def create_key(self, name: str, **fields) -> dict:
        """A key made through the admin API (for tests about something else than creating
        keys); the answer includes its secret as `key`."""
        response = httpx.post(f"{self.base}/v1/admin/keys", json={"name": name, **fields}, headers=AUTH)
        response.raise_for_status()
        return response.json()

    def revoke_key(self, key_id: str) -> None:
        httpx.post(f"{self.base}/v1/admin/keys/{key_id}/revoke", headers=AUTH).raise_for_status()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One gateway for a test module, its only provider a fake upstream on loopback, TEST_KEY an
    unlimited admin key. Tests share it, so each one that changes keys makes its own."""
    with FakeUpstream() as fake:
        providers, policies = write_config(tmp_path_factory.mktemp("dashboard"),
                                           BROWSER_POOL.format(url=fake.url))
        with running_gateway(providers, policies) as base:
            yield Site(base)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's executable; the module's tests skip, saying why, without one or without
    the playwright package."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install chromium, or set COSTR_CHROMIUM)")
    return executable


@pytest.fixture(scope="module")
def browser(chromium, site):
    """Headless Chromium for a test module (started once: it takes about half a second).
    Started after the gateway: Playwright's sync API keeps an event loop running in this
    thread from then on, and starting a gateway needs `asyncio.run`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()


@contextmanager
def browser_page(browser, viewport: dict = DESKTOP):
    """A page in a fresh browser context (its own cookies: a person of their own), in a zone
    that is not the machine's. A script error, a console error (a CSP refusal is one) or a
    stylesheet, script or image that failed to load fails the test."""
    context = browser.new_context(viewport=viewport, timezone_id=BROWSER_TIMEZONE, locale="en-US")
    context.set_default_timeout(5_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda message: _console_problem(message, problems))
    page.on("response", lambda response: _subresource_problem(response, problems))
    try:
        yield page
    finally:
        context.close()
    assert not problems, problems


def _console_problem(message, problems: list[str]) -> None:
    """Console errors but the browser's note on every 4xx page (a refusal shown is not a fault;
    a missing stylesheet or script is caught by `_subresource_problem`)."""
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        problems.append(f"console: {message.text} ({message.location.get('url')})")


def _subresource_problem(response, problems: list[str]) -> None:
    if response.request.resource_type != "document" and response.status >= 400:
        problems.append(f"{response.status} for {response.request.resource_type} {response.url}")


@pytest.fixture
def page(browser):
    """A desktop-sized page (see `browser_page`)."""
    with browser_page(browser, DESKTOP) as desktop:
        yield desktop


@pytest.fixture
def phone(browser):
    """A 390 x 844 page, as a phone shows it."""
    with browser_page(browser, PHONE) as small:
        yield small


def shot(page, name: str) -> Path:
    """Save the whole page as dashboard-screenshots/NAME.png, for a person to look at."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page, site: Site, key: str = TEST_KEY, *, next_path: str = "") -> None:
    """Sign in through the sign-in form, as a person would, then go to `next_path`."""
    page.goto(site.url())
    page.fill("#signin-key", key)
    page.click("#signin-submit")
    page.wait_for_url(site.url())
    assert page.locator("body").get_attribute("data-signed-in") == "true", page.content()
    if next_path:
        page.goto(site.url(next_path))
