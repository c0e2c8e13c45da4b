"""The dashboard's operator view: admins only; the providers and whether each can be used, the
configuration files in force and what the latest reload did, routing stats across every key,
and the response cache's counters."""
from __future__ import annotations

import re
import time

import pytest

from costr.testing import TEST_KEY
from dashboard_signin import USER_KEY, dashboard_client, record, sign_in, write_records

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Reply exactly: ok"}],
        "max_tokens": 16}
MISSING_ENV = "COSTR_TEST_NEVER_SET_KEY"


@pytest.fixture
def dashboard(tmp_path, fake_upstream, monkeypatch):
    monkeypatch.delenv(MISSING_ENV, raising=False)
    with dashboard_client(tmp_path, fake_upstream.url) as parts:
        yield parts


def field(page: str, name: str) -> str:
    found = re.search(rf'data-field="{name}">(.*?)</dd>', page, re.S)
    assert found, name
    return re.sub(r"<[^>]+>", "", found.group(1)).split()[0]


def test_non_admins_are_refused(dashboard):
    client, _, _ = dashboard
    sign_in(client, USER_KEY)
    refused = client.get("/dashboard/operator")
    assert refused.status_code == 403 and 'data-status="403"' in refused.text
    assert "providers-table" not in refused.text
    assert 'data-nav="operator"' not in client.get("/dashboard/keys").text


def test_providers_say_whether_they_can_be_used(tmp_path, fake_upstream, monkeypatch):
    monkeypatch.delenv(MISSING_ENV, raising=False)
    with dashboard_client(tmp_path, fake_upstream.url) as (client, _, _):
        providers = tmp_path / "providers.yaml"
        text = providers.read_text().replace(
            "providers:\n", f"providers:\n  remote: {{type: openai, api_key_env: {MISSING_ENV}}}\n")
        providers.write_text(text + "  - {id: remote-mini, provider: remote, tier: budget, "
                                    "price: {input: 0.1, output: 0.4}, context_window: 128000}\n")
        assert client.app.state.gateway.config.reload()
        sign_in(client, TEST_KEY)
        page = client.get("/dashboard/operator").text
        assert 'data-provider="local" data-usable="true"' in page
        assert 'data-provider="remote" data-usable="false"' in page
        assert f"<code>{MISSING_ENV}</code>" in page and "remote-mini" in page


def test_the_files_in_force_and_the_latest_reload(dashboard, tmp_path):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    page = client.get("/dashboard/operator").text
    assert str(tmp_path / "providers.yaml") in page and str(tmp_path / "routing_policies") in page
    assert "balanced.yaml" in page
    assert 'data-outcome="none"' in page

    holder = client.app.state.gateway.config
    providers = tmp_path / "providers.yaml"
    good = providers.read_text()
    providers.write_text(good.replace("baseline: local-large", "baseline: no-such-model"))
    assert not holder.reload()
    page = client.get("/dashboard/operator").text
    assert 'data-outcome="failed"' in page and "no-such-model" in page
    assert field(page, "baseline") == "local-large"   # the last good configuration stays

    providers.write_text(good)
    assert holder.reload()
    page = client.get("/dashboard/operator").text
    assert 'data-outcome="ok"' in page and "no-such-model" not in page


def test_routing_and_cache_stats_across_every_key(dashboard):
    client, admin, _ = dashboard
    auth = {"authorization": f"Bearer {USER_KEY}"}
    for _ in range(2):   # the second is answered from the cache
        assert client.post("/v1/chat/completions", json=CHAT, headers=auth).status_code == 200
    write_records(client, [record(admin.id, "req_admins", time.time(), routed_model="local-large",
                                  tier="premium", cost_micros=2_000_000, baseline_micros=2_000_000),
                           record(admin.id, "req_old", time.time() - 3 * 86400,
                                  routed_model="local-large", tier="premium")])
    sign_in(client, TEST_KEY)
    page = client.get("/dashboard/operator").text
    assert field(page, "requests") == "3"                 # both keys, the last 24 hours
    assert 'data-tier="premium" data-model="local-large"' in page
    assert 'data-on="true"' in page and field(page, "hits") == "1" and field(page, "entries") == "1"
    assert field(page, "ledger_hits") == "1"
    assert field(client.get("/dashboard/operator?window=7d").text, "requests") == "4"
    assert 'data-window="7d" aria-current="page"' in client.get("/dashboard/operator?window=7d").text
    assert field(client.get("/dashboard/operator?window=bogus").text, "requests") == "3"


def test_a_gateway_without_a_cache_says_so(tmp_path):
    with dashboard_client(tmp_path, cache="none") as (client, _, _):
        sign_in(client, TEST_KEY)
        page = client.get("/dashboard/operator").text
        assert 'data-on="false"' in page and "no backend" in page
