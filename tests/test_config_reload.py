"""Editing the configuration while Costr serves: good edits are picked up, broken ones keep the
last good configuration serving, and requests already in flight finish."""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from costr.routing.live import ConfigHolder
from costr.plugins import collect, make_plugin_manager
from costr.testing import AUTH, running_gateway
from costr.testing.fake_upstream import FakeUpstream

REPO = Path(__file__).resolve().parents[1]
WATCH_SECONDS = 0.1

POOL = """\
tiers: [budget, standard, premium]
baseline: fake-large
providers:
  fake: {{type: openai, base_url: "{url}/v1"}}
models:
  - {{id: {budget}, provider: fake, tier: budget, price: {{input: 0.1, output: 0.4}},
     context_window: 128000}}
  - {{id: fake-standard, provider: fake, tier: standard, price: {{input: 0.5, output: 2.0}},
     context_window: 128000}}
  - {{id: fake-large, provider: fake, tier: premium, price: {{input: 3.0, output: 15.0}},
     context_window: 200000}}
{extra}"""

EXTRA_MODEL = """\
  - {id: fake-extra, provider: fake, tier: premium, price: {input: 5.0, output: 25.0},
     context_window: 200000}
"""

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Reply exactly: ok"}]}


def pool(fake: FakeUpstream, budget: str = "fake-mini", extra: str = "") -> str:
    return POOL.format(url=fake.url, budget=budget, extra=extra)


def replace_file(path: Path, text: str) -> None:
    """Write as editors that save atomically do, so the watcher never reads half a file."""
    staged = path.with_name(path.name + ".partial")
    staged.write_text(text)
    os.replace(staged, path)


def model_ids(client: httpx.Client) -> list[str]:
    return [m["id"] for m in client.get("/v1/models").json()["data"]]


def wait_for(condition, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(WATCH_SECONDS / 2)
    raise AssertionError(f"timed out waiting for {what}")


class ReloadLog:
    """Counts the holder's reload outcomes (logged from the server's thread)."""

    def __init__(self, caplog):
        self.caplog = caplog
        caplog.set_level(logging.INFO, logger="costr.config")

    def count(self, fragment: str) -> int:
        return sum(fragment in r.getMessage() for r in self.caplog.records
                   if r.name == "costr.config")

    def wait_for_rejection(self, before: int) -> str:
        wait_for(lambda: self.count("not reloaded") > before, what="the broken edit to be seen")
        return [r.getMessage() for r in self.caplog.records if "not reloaded" in r.getMessage()][-1]


@pytest.fixture
def fake():
    with FakeUpstream() as running:
        yield running


@pytest.fixture
def files(tmp_path, fake) -> tuple[Path, Path]:
    providers = tmp_path / "providers.yaml"
    providers.write_text(pool(fake))
    policies = tmp_path / "routing_policies"
    shutil.copytree(REPO / "routing_policies", policies)
    return providers, policies


@pytest.fixture
def client(files):
    with running_gateway(*files, watch_seconds=WATCH_SECONDS) as base_url:
        with httpx.Client(base_url=base_url, timeout=10, headers=AUTH) as http:
            yield http


def test_an_added_model_is_picked_up_while_serving(client, files, fake):
    assert "fake-extra" not in model_ids(client)
    replace_file(files[0], pool(fake, extra=EXTRA_MODEL))
    ids = wait_for(lambda: (ids := model_ids(client)) and "fake-extra" in ids and ids,
                   what="fake-extra in /v1/models")
    assert ids[1:] == ["fake-mini", "fake-standard", "fake-large", "fake-extra"]
    assert client.get("/v1/models/fake-extra").json()["tier"] == "premium"


def test_a_renamed_budget_model_is_routed_to_after_reload(client, files, fake):
    assert client.post("/v1/chat/completions", json=CHAT).json()["x_routing"]["routed_model"] == "fake-mini"
    replace_file(files[0], pool(fake, budget="fake-nano"))
    wait_for(lambda: "fake-nano" in model_ids(client), what="fake-nano in /v1/models")
    assert "fake-mini" not in model_ids(client)
    answer = client.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["x_routing"]["routed_model"] == "fake-nano"
    assert fake.requests[-1].body["model"] == "fake-nano"


@pytest.mark.parametrize("break_pool,complaint", [
    (lambda good: "tiers: [budget, standard\nbaseline: fake-large\n", "not valid YAML"),
    (lambda good: good.replace("price:", "prcie:", 1), "prcie"),  # an unknown key
    (lambda good: good.replace("context_window: 128000}", "context_window: 128000, "
                               "options: {max_token_field: max_tokens}}", 1),
     "max_token_field: unknown option"),  # an option the provider type does not read
], ids=["invalid-yaml", "unknown-key", "unknown-option"])
def test_a_broken_edit_keeps_the_last_good_config(client, files, fake, caplog, break_pool,
                                                  complaint):
    log = ReloadLog(caplog)
    before_ids = model_ids(client)
    broken = break_pool(pool(fake, budget="fake-nano"))
    rejections = log.count("not reloaded")
    replace_file(files[0], broken)
    message = log.wait_for_rejection(rejections)
    assert complaint in message and str(files[0]) in message

    assert model_ids(client) == before_ids
    answer = client.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["x_routing"]["routed_model"] == "fake-mini"
    assert client.get("/v1/router/health").json()["config_loaded"] is True

    # the next good edit is picked up again
    replace_file(files[0], pool(fake, budget="fake-nano"))
    wait_for(lambda: "fake-nano" in model_ids(client), what="fake-nano after the fix")
    assert client.post("/v1/chat/completions", json=CHAT).json()["x_routing"]["routed_model"] == "fake-nano"


def test_a_new_policy_file_is_picked_up(client, files):
    dry_run = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-cost-priority": "frugal"}
    assert client.post("/v1/router/dry-run", json=dry_run, headers=headers).status_code == 400
    replace_file(files[1] / "frugal.yaml", "type: thresholds\nthresholds: {standard: 0.95}\n")
    response = wait_for(lambda: (r := client.post("/v1/router/dry-run", json=dry_run,
                                                  headers=headers)).status_code == 200 and r,
                        what="the frugal policy")
    assert response.json()["x_routing"]["policy"] == "frugal"


def test_a_request_in_flight_during_a_reload_completes(tmp_path, caplog):
    log = ReloadLog(caplog)
    with FakeUpstream(delay_ms=500) as slow:
        providers = tmp_path / "providers.yaml"
        providers.write_text(pool(slow))
        policies = tmp_path / "routing_policies"
        shutil.copytree(REPO / "routing_policies", policies)
        with running_gateway(providers, policies, watch_seconds=WATCH_SECONDS) as base_url:
            result: dict = {}

            def send():
                with httpx.Client(base_url=base_url, timeout=10, headers=AUTH) as http:
                    result["response"] = http.post("/v1/chat/completions", json=CHAT)

            sender = threading.Thread(target=send)
            sender.start()
            wait_for(lambda: slow.requests, what="the request to reach the upstream")
            reloads = log.count("configuration reloaded")
            replace_file(providers, pool(slow, budget="fake-nano"))
            wait_for(lambda: log.count("configuration reloaded") > reloads, what="the reload")
            assert sender.is_alive(), "the request finished before the reload; nothing was tested"
            sender.join(10)

            response = result["response"]
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == "ok"
            assert response.json()["x_routing"]["routed_model"] == "fake-mini"
            with httpx.Client(base_url=base_url, timeout=10, headers=AUTH) as http:
                assert "fake-nano" in model_ids(http)


# ---- the holder itself ---------------------------------------------------------------------

def test_holder_reload_keeps_the_last_good_config(files, fake):
    holder = ConfigHolder(*files, collect(make_plugin_manager()), http=None, poll_seconds=60)
    good = holder.current
    replace_file(files[0], "models: [\n")
    assert holder.reload() is False and holder.current is good
    replace_file(files[0], pool(fake, budget="fake-nano"))
    assert holder.reload() is True
    assert list(holder.current.chat_models)[0] == "fake-nano"


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread()
                    or not hasattr(signal, "SIGHUP"), reason="SIGHUP handlers need the main thread")
def test_sighup_reloads_without_waiting_for_the_file_poll(files, fake):
    holder = ConfigHolder(*files, collect(make_plugin_manager()), http=None, poll_seconds=60)

    async def hang_up_and_wait():
        holder.start_watching()
        try:
            replace_file(files[0], pool(fake, budget="fake-nano"))
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if "fake-nano" in holder.current.chat_models:
                    return True
            return False
        finally:
            holder.stop_watching()

    assert asyncio.run(hang_up_and_wait())
