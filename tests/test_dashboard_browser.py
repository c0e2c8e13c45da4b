"""The dashboard in a real browser (headless Chromium through Playwright): sign in, requests sent
through the OpenAI and Anthropic SDKs seen in the call history as the SDKs reported them,
filters, a request's detail and its feedback, keys made and revoked by an admin, a non-admin
refused, a revoked key's session ended, sign-out, and the pages at a phone's width.

Every page visited is saved under dashboard-screenshots/ (see tests/dashboard_browser.py), to be
looked at: a test can check what a page says, not whether it reads well.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import anthropic
import httpx
import openai
import pytest

from costr.dashboard.formatting import percent, usd
from costr.testing import TEST_KEY

# The fixtures are imported to be used by name (browser, chromium, page, phone, site).
from dashboard_browser import (BROWSER_TIMEZONE, PHONE, browser, browser_page,  # noqa: F401
                               chromium, page, phone, shot, sign_in, site)

# $ per million tokens, as LOCAL_POOL prices them: what each request should have cost.
PRICES = {"local-mini": (0.1, 0.4), "local-standard": (0.5, 2.0), "local-large": (3.0, 15.0)}
HARD_PROMPT = "Prove that for every prime p > 3, p^2 - 1 is divisible by 24."
MARKUP_PROMPT = ("Reply exactly: <script>document.title='pwned'</script>"
                 "<img src=x onerror=\"document.title='pwned'\">")


@dataclass(frozen=True)
class Sent:
    """A request made through an SDK, and what the SDK got back about it."""
    request_id: str
    routing: dict        # x_routing
    input_tokens: int
    output_tokens: int

    @property
    def cost_micros(self) -> int:
        per_input, per_output = PRICES[self.routing["routed_model"]]
        return round(self.input_tokens * per_input + self.output_tokens * per_output)


def openai_request(base: str, prompt: str, *, priority: str | None = None,
                   key: str = TEST_KEY) -> Sent:
    client = openai.OpenAI(api_key=key, base_url=f"{base}/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}],
        extra_headers={"x-cost-priority": priority} if priority else None)
    answer = raw.parse()
    return Sent(raw.headers["x-request-id"], answer.x_routing, answer.usage.prompt_tokens,
                answer.usage.completion_tokens)


def anthropic_request(base: str, prompt: str) -> Sent:
    client = anthropic.Anthropic(api_key=TEST_KEY, base_url=base, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="auto", max_tokens=64, messages=[{"role": "user", "content": prompt}])
    answer = raw.parse()
    usage = answer.usage
    return Sent(raw.headers["x-request-id"], answer.x_routing,
                usage.input_tokens + (usage.cache_read_input_tokens or 0), usage.output_tokens)


@pytest.fixture(scope="module")
def traffic(site) -> dict[str, Sent]:
    """Requests the admin key made through both SDKs: an easy one each, a hard one asking for
    quality (a higher tier), and one whose prompt is markup (kept, so its detail shows it)."""
    return {"openai": openai_request(site.base, "Reply exactly: sent with the OpenAI SDK"),
            "anthropic": anthropic_request(site.base, "Reply exactly: sent with the Anthropic SDK"),
            "hard": openai_request(site.base, HARD_PROMPT, priority="quality"),
            "markup": openai_request(site.base, MARKUP_PROMPT)}


def row(page, request_id: str):
    return page.locator(f"#requests-table tbody tr[data-request-id='{request_id}']")


def field(page, name: str) -> str:
    return page.locator(f"#request-detail dd[data-field='{name}']").inner_text().strip()


def assert_private_page(response) -> None:
    """The headers item 7 asks of every dashboard page."""
    headers = response.headers
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"


def assert_forms_carry_csrf(page) -> None:
    """Every form that changes something (POST) carries a non-empty CSRF token."""
    for form in page.locator("form[method=post]").all():
        assert form.locator("input[name=csrf_token]").get_attribute("value"), form.inner_html()


# ---- signing in and out ----------------------------------------------------------------------

def test_sign_in_refuses_a_wrong_key_and_admits_the_admin(page, site, traffic):
    response = page.goto(site.url())
    assert_private_page(response)
    assert page.locator("body").get_attribute("data-signed-in") == "false"
    shot(page, "sign-in")
    page.fill("#signin-key", "cr-not-a-key-at-all")
    page.click("#signin-submit")
    assert page.locator("#signin-error").is_visible()
    assert "not accepted" in page.locator("#signin-error").inner_text()
    shot(page, "sign-in-refused")

    page.fill("#signin-key", TEST_KEY)
    page.click("#signin-submit")
    page.wait_for_url(site.url())
    assert page.locator("body").get_attribute("data-page") == "overview"
    assert page.locator("#whoami").get_attribute("data-admin") == "true"
    cookies = page.context.cookies()
    assert TEST_KEY not in "".join(c["value"] for c in cookies) + page.content()
    session = [c for c in cookies if c["httpOnly"]]
    assert session and all(c["sameSite"] in ("Lax", "Strict") and c["expires"] > 0 for c in session)
    assert_forms_carry_csrf(page)
    shot(page, "overview")


def test_overview_counts_the_requests_made(page, site, traffic):
    sign_in(page, site)
    today = page.locator("#usage-today")
    assert int(today.get_attribute("data-requests")) == len(traffic)
    assert int(today.get_attribute("data-cost-micros")) == sum(s.cost_micros for s in traffic.values())
    shares = page.locator("#chart-tier-mix g.share-row").evaluate_all(
        "rows => Object.fromEntries(rows.map(r => [r.dataset.label, Number(r.dataset.count)]))")
    tiers = [sent.routing["tier"] for sent in traffic.values()]
    assert shares == {tier: tiers.count(tier) for tier in tiers}


def test_a_page_asked_for_before_sign_in_is_reached_after_it(page, site):
    page.goto(site.url("/keys"))
    assert page.locator("#signin-form").is_visible()
    page.fill("#signin-key", TEST_KEY)
    page.click("#signin-submit")
    page.wait_for_url(site.url("/keys"))


def test_sign_out_ends_the_session(page, site):
    sign_in(page, site)
    page.click("#signout-button")
    assert page.locator("#signin-form").is_visible()
    page.goto(site.url("/requests"))
    assert page.locator("#signin-form").is_visible()
    assert page.locator("body").get_attribute("data-signed-in") == "false"


def test_the_nav_works_from_the_keyboard(page, site):
    sign_in(page, site)
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.nav") == "requests":
            break
    else:
        pytest.fail("Tab never reached the Requests link")
    page.keyboard.press("Enter")
    page.wait_for_url(site.url("/requests"))


# ---- call history ----------------------------------------------------------------------------

def test_sdk_requests_show_in_the_call_history_as_the_sdks_reported_them(page, site, traffic):
    sign_in(page, site, next_path="/requests")
    assert_forms_carry_csrf(page)
    for sent in traffic.values():
        line = row(page, sent.request_id)
        assert line.count() == 1, f"no row for {sent.request_id}"
        assert line.get_attribute("data-routed-model") == sent.routing["routed_model"]
        assert line.get_attribute("data-tier") == sent.routing["tier"]
        assert int(line.get_attribute("data-cost-micros")) == sent.cost_micros
        text = line.inner_text()
        for shown in (sent.routing["routed_model"], sent.routing["tier"], usd(sent.cost_micros),
                      percent(sent.routing["savings_percent"])):
            assert shown in text, (shown, text)
    tiers = {sent.routing["tier"] for sent in traffic.values()}
    assert len(tiers) > 1, "the hard prompt should have gone to a higher tier than the easy ones"
    shot(page, "requests")


def test_times_are_shown_in_the_browsers_zone(page, site, traffic):
    sign_in(page, site, next_path="/requests")
    stamp = row(page, traffic["openai"].request_id).locator("time")
    page.wait_for_function("el => el.dataset.local !== undefined", arg=stamp.element_handle())
    moment = datetime.fromisoformat(stamp.get_attribute("datetime").replace("Z", "+00:00"))
    local = moment.astimezone(ZoneInfo(BROWSER_TIMEZONE))
    assert local.strftime("%H:%M") in stamp.inner_text() and "UTC" not in stamp.inner_text()


def test_filtering_by_tier_keeps_only_that_tier(page, site, traffic):
    sign_in(page, site, next_path="/requests")
    hard, easy = traffic["hard"], traffic["openai"]
    page.select_option("#requests-filter [name=tier]", hard.routing["tier"])
    page.locator("#requests-filter [type=submit]").click()
    page.wait_for_url(re.compile(r"tier=" + hard.routing["tier"]))
    tiers = page.locator("#requests-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.tier)")
    assert tiers and set(tiers) == {hard.routing["tier"]}
    assert row(page, hard.request_id).count() == 1 and row(page, easy.request_id).count() == 0
    shot(page, "requests-filtered")
    with page.expect_download() as download:
        page.click("#requests-csv")
    rows = list(csv.DictReader(Path(download.value.path()).read_text().splitlines()))
    assert {r["tier"] for r in rows} == {hard.routing["tier"]}
    assert hard.request_id in {value for r in rows for value in r.values()}


def test_a_request_detail_takes_feedback(page, site, traffic):
    sent = traffic["anthropic"]
    sign_in(page, site, next_path="/requests")
    row(page, sent.request_id).locator("a.request-link").click()
    assert page.locator("#request-detail").get_attribute("data-request-id") == sent.request_id
    assert field(page, "routed_model") == sent.routing["routed_model"]
    assert field(page, "tier") == sent.routing["tier"]
    assert field(page, "cost") == usd(sent.cost_micros)
    shot(page, "request-detail")

    page.check("#feedback-form input[name=rating][value='4']")
    page.fill("#feedback-form [name=comment]", "Right answer, <b>cheap</b> model.")
    page.click("#feedback-submit")
    assert page.locator("#feedback-saved").is_visible()
    assert page.locator("#feedback-current").get_attribute("data-rating") == "4"
    assert "Right answer, <b>cheap</b> model." in page.locator("#feedback-current").inner_text()
    shot(page, "request-detail-feedback")


def test_a_kept_prompt_made_of_markup_shows_as_text(page, site, traffic):
    sent = traffic["markup"]
    sign_in(page, site, next_path=f"/requests/{sent.request_id}")
    assert "<script>document.title='pwned'</script>" in page.locator("#kept-prompt").inner_text()
    assert page.title() != "pwned" and page.locator("#content img[src=x]").count() == 0
    shot(page, "request-detail-markup")


# ---- the other pages -------------------------------------------------------------------------

def test_connect_page_gives_this_hosts_settings(page, site):
    sign_in(page, site, next_path="/connect")
    assert page.locator("#base-urls [data-field=v1_url] > code").inner_text() == f"{site.base}/v1"
    assert page.locator("#base-urls [data-field=root] > code").inner_text() == site.base
    assert page.locator("#connect-key").get_attribute("data-prefix") == TEST_KEY[:10]
    assert TEST_KEY not in page.content()     # the prefix only, and a placeholder in the snippets
    assert f"{site.base}/v1" in page.locator("#setup-openai-python").inner_text()
    assert page.locator("#auto-setup-prompt").inner_text().strip()
    shot(page, "connect")


def test_operator_view_shows_the_providers(page, site, traffic):
    sign_in(page, site, next_path="/operator")
    assert page.locator("#providers-table tr[data-provider=local]").get_attribute("data-usable") == "true"
    for sent in traffic.values():
        routing = sent.routing
        assert page.locator(f"#stats-table tr[data-tier='{routing['tier']}']"
                            f"[data-model='{routing['routed_model']}']").count() == 1
    shot(page, "operator")


def test_pages_fit_a_phone(phone, site, traffic):
    sign_in(phone, site)
    for path, name in (("", "overview-phone"), ("/requests", "requests-phone")):
        phone.goto(site.url(path))
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path or '/'} is {width} px wide at {PHONE['width']} px"
        shot(phone, name)


# ---- keys, and who may see what --------------------------------------------------------------

def test_admin_creates_a_key_whose_user_is_refused_what_is_not_theirs(browser, page, site, traffic):
    sign_in(page, site, next_path="/keys")
    assert_forms_carry_csrf(page)
    shot(page, "keys")
    page.fill("#create-name", "CI <b>bot</b>")
    page.fill("#create-credits", "5")
    page.click("#create-key-submit")
    secret = page.locator("#new-key-secret").inner_text().strip()
    assert secret.startswith("cr-")
    assert "New key: CI <b>bot</b>" in page.locator("#new-key h2").inner_text()   # escaped
    shot(page, "key-created")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("button[data-copy=new-key-secret]")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    page.goto(site.url("/keys"))
    assert page.locator("#new-key").count() == 0 and secret not in page.content()
    assert httpx.get(f"{site.base}/v1/usage", headers={"authorization": f"Bearer {secret}"}).status_code == 200

    with browser_page(browser) as user:      # whoever was given the new key
        sign_in(user, site, secret)
        assert user.locator("#whoami").get_attribute("data-admin") == "false"
        assert user.locator("#nav a[data-nav=operator]").count() == 0
        response = user.goto(site.url("/operator"))
        assert response.status == 403
        assert user.locator("#error").get_attribute("data-status") == "403"
        shot(user, "refused")
        response = user.goto(site.url(f"/requests/{traffic['openai'].request_id}"))
        assert response.status in (403, 404)
        assert user.locator("#error").get_attribute("data-status") in ("403", "404")
        response = user.goto(site.url(f"/keys/{page.locator('#whoami').get_attribute('data-key-id')}"))
        assert response.status == 403
        own_request = openai_request(site.base, "Reply exactly: mine", key=secret)
        user.goto(site.url("/requests"))
        shown = user.locator("#requests-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.requestId)")
        assert shown == [own_request.request_id]
        user.goto(site.url("/keys"))
        assert user.locator("#keys-table").count() == 0
        own = user.locator("#whoami").get_attribute("data-key-id")
        assert user.locator("#key-detail").get_attribute("data-key-id") == own
        shot(user, "keys-non-admin")


def test_admin_tops_up_and_revokes_a_key(page, site):
    other = site.create_key("to be revoked", credits_usd=1)
    sign_in(page, site, next_path=f"/keys/{other['id']}")
    page.fill("#top-up-usd", "2.50")
    page.click("#top-up-submit")
    assert page.locator("#key-done").inner_text() == "Credit added."
    assert page.locator("#key-detail dd[data-field=balance]").inner_text().strip() == "$3.50"

    page.click("#revoke-link")
    assert page.locator("#revoke-confirm").is_visible()
    shot(page, "key-revoke-confirm")
    page.click("#revoke-submit")
    assert page.locator("#key-detail").get_attribute("data-revoked") == "true"
    assert page.locator("#key-done").inner_text() == "Key revoked."
    refused = httpx.get(f"{site.base}/v1/usage", headers={"authorization": f"Bearer {other['key']}"})
    assert refused.status_code == 401


def test_a_revoked_keys_session_stops_working(page, site):
    doomed = site.create_key("revoked while signed in")
    sign_in(page, site, doomed["key"])
    assert page.locator("body").get_attribute("data-signed-in") == "true"
    site.revoke_key(doomed["id"])
    page.reload()
    assert page.locator("#signin-form").is_visible()
    page.fill("#signin-key", doomed["key"])
    page.click("#signin-submit")
    assert "revoked" in page.locator("#signin-error").inner_text()


def test_a_form_sent_without_its_csrf_token_changes_nothing(page, site):
    sign_in(page, site, next_path="/keys")
    page.fill("#create-name", "forged")
    page.locator("#create-key-form input[name=csrf_token]").evaluate("field => field.remove()")
    with page.expect_navigation() as navigation:
        page.click("#create-key-submit")
    assert navigation.value.status == 403
    assert page.locator("#error").get_attribute("data-status") == "403"
    page.goto(site.url("/keys"))
    assert "forged" not in page.locator("#keys-table").inner_text()
