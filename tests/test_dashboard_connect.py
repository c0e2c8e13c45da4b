"""The dashboard's Connect page: this host's own address as the browser reached it (behind a
proxy too), the signed-in key's prefix but never the key, each agent's settings exactly as
`costr connect` prints them, the SDK and curl examples, and the auto-setup prompt."""
from __future__ import annotations

import html
import re

import pytest

from costr.cli.main import main
from costr.config.agent_setups import PLACEHOLDER_KEY, load_agents
from costr.testing import TEST_KEY
from dashboard_signin import USER_KEY, dashboard_client, sign_in


@pytest.fixture
def dashboard(tmp_path):
    with dashboard_client(tmp_path) as parts:
        yield parts


def code_block(page: str, element_id: str) -> str:
    """The text a copy button copies: the element's content, unescaped."""
    found = re.search(rf'<code id="{element_id}">(.*?)</code>', page, re.S)
    assert found, element_id
    return html.unescape(found.group(1))


def printed_by_costr_connect(capsys, agent: str, root: str) -> str:
    assert main(["connect", agent, "--base-url", root]) == 0
    return capsys.readouterr().out


def test_every_agent_gets_what_costr_connect_prints_for_this_host(dashboard, capsys, monkeypatch):
    monkeypatch.delenv("COSTR_API_KEY", raising=False)
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    page = client.get("/dashboard/connect")
    assert page.status_code == 200
    agents = load_agents()
    assert set(agents) >= {"claude-code", "hermes", "openclaw"}
    for name in agents:
        assert code_block(page.text, f"setup-{name}") == \
            printed_by_costr_connect(capsys, name, "http://testserver").rstrip()


def test_the_page_names_the_keys_prefix_and_never_the_key(dashboard):
    client, _, user = dashboard
    sign_in(client, USER_KEY)
    page = client.get("/dashboard/connect").text
    assert f'data-prefix="{user.prefix}"' in page and f"{user.prefix}…" in page
    assert USER_KEY not in page and USER_KEY[:len(user.prefix) + 4] not in page
    assert PLACEHOLDER_KEY in code_block(page, "setup-env")


def test_sdk_and_curl_examples_use_the_two_base_urls(dashboard):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    page = client.get("/dashboard/connect").text
    assert 'base_url="http://testserver/v1"' in code_block(page, "setup-openai-python")
    assert 'baseURL: "http://testserver/v1"' in code_block(page, "setup-openai-js")
    assert 'base_url="http://testserver",' in code_block(page, "setup-anthropic-python")
    assert "curl -s http://testserver/v1/chat/completions" in code_block(page, "setup-curl-openai")
    assert "curl -s http://testserver/v1/messages" in code_block(page, "setup-curl-anthropic")
    for name in ("env", "openai-python", "openai-js", "anthropic-python", "curl-openai",
                 "curl-anthropic", "claude-code", "hermes", "openclaw"):
        assert f'data-copy="setup-{name}"' in page, name


def test_the_auto_setup_prompt_has_the_facts_and_a_place_for_the_key(dashboard):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    page = client.get("/dashboard/connect").text
    prompt = code_block(page, "auto-setup-prompt")
    assert 'data-copy="auto-setup-prompt"' in page
    assert "OpenAI-compatible base URL: http://testserver/v1" in prompt
    assert "Anthropic-compatible base URL: http://testserver (no /v1" in prompt
    assert f"API key: {PLACEHOLDER_KEY}" in prompt and TEST_KEY not in prompt
    assert '"Authorization: Bearer <key>"' in prompt      # text, not a swallowed tag
    for agent in load_agents().values():
        assert f"## {agent.title}" in prompt
    assert "hermes config set model.base_url http://testserver/v1" in prompt


def test_the_address_is_the_one_a_proxy_in_front_reports(dashboard):
    client, _, _ = dashboard
    sign_in(client, TEST_KEY)
    page = client.get("/dashboard/connect", headers={
        "x-forwarded-proto": "https", "x-forwarded-host": "costr.example.com"}).text
    assert 'base_url="https://costr.example.com/v1"' in code_block(page, "setup-openai-python")
    assert "ANTHROPIC_BASE_URL=https://costr.example.com\n" in code_block(page, "setup-claude-code")
    odd = client.get("/dashboard/connect", headers={"x-forwarded-proto": "javascript",
                                                    "x-forwarded-host": "evil.example/path"}).text
    assert 'base_url="http://testserver/v1"' in code_block(odd, "setup-openai-python")


def test_the_address_keeps_the_path_prefix_it_is_served_under(tmp_path):
    """Behind a proxy at /costr (uvicorn --root-path /costr, which keeps the prefix in the
    path): the gateway's address is under /costr, not under the dashboard's mount."""
    with dashboard_client(tmp_path, root_path="/costr") as (client, _, _):
        sign_in(client, TEST_KEY, prefix="/costr")
        page = client.get("/costr/dashboard/connect").text
        assert 'base_url="http://testserver/costr/v1"' in code_block(page, "setup-openai-python")
        assert 'base_url="http://testserver/costr",' in code_block(page, "setup-anthropic-python")
        assert "/dashboard/v1" not in page


def test_signed_out_the_page_asks_for_sign_in(dashboard):
    client, _, _ = dashboard
    response = client.get("/dashboard/connect")
    assert response.status_code == 303 and "/dashboard/login" in response.headers["location"]
