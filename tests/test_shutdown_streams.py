"""Streams and money when Costr stops or a stream ends early (costr/server/streamed.py).

Found by stopping a real `costr serve` under streaming clients: streams still running when
the graceful-shutdown limit cut them ended silently, were recorded as 499 "client
disconnected", and their charges reached the balance while none of their ledger records were
written (the server cancelled them and went on to close the ledger before they settled). And a
stream that delivered nothing was charged for its prompt. Now a cut stream ends with an error
event in the client's format and is booked as 503 "the server shut down mid-answer", its
charge and its record written together; a stream none of whose content reached the client is
charged nothing. Every test runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import asyncio
import signal
import threading
import time

import anthropic
import httpx
import openai
import pytest

from costr.accounts.store import open_store
from costr.testing import running_gateway, seed_key
from costr.testing.fake_upstream import write_gateway_config
from slow_streams import Instance, SlowUpstream

pytestmark = pytest.mark.anyio

LIMITED_KEY = "cr-limited-key-for-shutdown-stream-tests-01234"
CREDIT = 1_000_000   # micro-dollars: $1
SHUT_DOWN = "The server shut down mid-answer; ask again."


@pytest.fixture
def slow_config(tmp_path, db_url):
    """(providers, policies, limited key id) in front of a slow upstream, on db_url."""
    with SlowUpstream() as upstream:
        providers, policies = write_gateway_config(tmp_path, upstream.url)
        key = asyncio.run(seed_key(db_url, None, LIMITED_KEY, name="limited", admin=False,
                                   credits_usd=CREDIT / 1e6))
        yield providers, policies, key.id


class StreamingClient(threading.Thread):
    """Streams one answer with an SDK, keeping its request id, what arrived and how it ended."""

    def __init__(self, url: str, family: str, prompt: str):
        super().__init__(daemon=True)
        self.url, self.family, self.prompt = url, family, prompt
        self.request_id: str | None = None
        self.text = ""
        self.error: Exception | None = None
        self.content = threading.Event()

    def run(self) -> None:
        try:
            if self.family == "openai":
                client = openai.OpenAI(base_url=f"{self.url}/v1", api_key=LIMITED_KEY, max_retries=0)
                stream = client.chat.completions.create(
                    model="fake-large", stream=True,
                    messages=[{"role": "user", "content": self.prompt}])
                self.request_id = stream.response.headers["x-request-id"]
                for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        self.text += chunk.choices[0].delta.content
                        self.content.set()
            else:
                client = anthropic.Anthropic(base_url=self.url, api_key=LIMITED_KEY, max_retries=0)
                with client.messages.stream(model="fake-large", max_tokens=1000, messages=[
                        {"role": "user", "content": self.prompt}]) as stream:
                    self.request_id = stream.response.headers["x-request-id"]
                    for text in stream.text_stream:
                        self.text += text
                        self.content.set()
        except Exception as exc:  # noqa: BLE001 - how it ended is what the test looks at
            self.error = exc
        finally:
            self.content.set()


async def books(db_url: str, key_id: str, request_ids: list[str]):
    """(balance, reserved, holds left, {request id: its ledger record})."""
    store = await open_store(db_url)
    try:
        key = await store.key_by_id_or_prefix(key_id)
        holds = await store._fetch("SELECT id FROM credit_holds")
        records = {rid: await store.ledger_record(rid) for rid in request_ids}
        return key.balance_micros, key.reserved_micros, len(holds), records
    finally:
        await store.close()


def start_streams(url: str) -> list[StreamingClient]:
    clients = [StreamingClient(url, family, f"slow 300 0.1 client-{i}")
               for i, family in enumerate(["openai", "openai", "anthropic"])]
    for client in clients:
        client.start()
    for client in clients:
        assert client.content.wait(20) and client.text, client.error
    return clients


async def test_streams_cut_at_the_shutdown_limit_end_with_an_error_event_and_are_booked(
        tmp_path, db_url, slow_config):
    """SIGTERM, and SIGTERM again, with three 30 s streams running and a 2 s grace period."""
    providers, policies, key_id = slow_config
    instance = Instance(tmp_path, providers, policies, db_url, grace_seconds=2)
    try:
        clients = start_streams(instance.url)
        instance.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        instance.proc.send_signal(signal.SIGTERM)
        assert instance.proc.wait(20) == -signal.SIGTERM, instance.output()
        for client in clients:
            client.join(10)
            assert client.text.startswith("w0 w1 "), client.text
            # the error event, in each SDK's own terms
            assert client.error is not None and SHUT_DOWN in str(client.error), repr(client.error)
        balance, reserved, holds, records = await books(
            db_url, key_id, [c.request_id for c in clients])
        for client in clients:
            record = records[client.request_id]
            assert record is not None, f"no ledger record for {client.request_id}"
            assert (record.status, record.error) == (503, SHUT_DOWN)
            assert record.output_tokens > 0 and record.charged_micros > 0
        # every charge with its record, nothing left held
        assert CREDIT - balance == sum(r.charged_micros for r in records.values())
        assert (reserved, holds) == (0, 0)
        assert "Traceback" not in instance.output(), instance.output()
    finally:
        instance.stop()


async def test_a_forced_exit_charges_nothing_it_did_not_record(tmp_path, db_url, slow_config):
    """SIGTERM then Ctrl-C: uvicorn exits at once, without finishing anything. What was
    held comes back once the holds expire; nothing is charged without a record."""
    providers, policies, key_id = slow_config
    env = {"COSTR_CREDIT_HOLD_SECONDS": "2"}
    instance = Instance(tmp_path, providers, policies, db_url, grace_seconds=2, env=env)
    try:
        clients = start_streams(instance.url)
        instance.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        instance.proc.send_signal(signal.SIGINT)
        instance.proc.wait(10)
        for client in clients:
            client.join(10)
        ids = [c.request_id for c in clients]
        balance, reserved, _, records = await books(db_url, key_id, ids)
        assert CREDIT - balance == sum(r.charged_micros for r in records.values() if r)
    finally:
        instance.stop()
    restarted = Instance(tmp_path, providers, policies, db_url, env=env)
    try:
        deadline = time.monotonic() + 15
        while (found := await books(db_url, key_id, ids))[1:3] != (0, 0):
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        assert CREDIT - found[0] == sum(r.charged_micros for r in found[3].values() if r)
    finally:
        restarted.stop()


# ---- streams that end before any content reached the client ---------------------------------

@pytest.fixture
def gateway(tmp_path, db_url, slow_config):
    providers, policies, key_id = slow_config
    with running_gateway(providers, policies, database=db_url, cache="none") as url:
        yield url, key_id


async def _settled(db_url: str, key_id: str, request_id: str):
    deadline = time.monotonic() + 10
    while True:
        balance, reserved, holds, records = await books(db_url, key_id, [request_id])
        if records[request_id] is not None and reserved == 0:
            return balance, holds, records[request_id]
        assert time.monotonic() < deadline, "the stream was never settled"
        await asyncio.sleep(0.1)


def _stream(url: str, prompt: str, read_lines: int | None = None) -> tuple[str, list[str]]:
    """Stream with the limited key: (request id, the data lines read); with `read_lines`, hang
    up after that many."""
    lines: list[str] = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=30,
                      headers={"authorization": f"Bearer {LIMITED_KEY}"},
                      json={"model": "fake-large", "stream": True,
                            "messages": [{"role": "user", "content": prompt}]}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                lines.append(line)
            if read_lines is not None and len(lines) >= read_lines:
                break
        return response.headers["x-request-id"], lines


@pytest.mark.parametrize("delivered", [0, 3])
async def test_a_stream_the_upstream_cut_is_charged_for_what_reached_the_client(gateway, db_url,
                                                                           delivered):
    url, key_id = gateway
    request_id, lines = _stream(url, f"cut-after {delivered}")
    assert '"error"' in lines[-2] and "broke off" in lines[-2] and lines[-1] == "data: [DONE]"
    balance, holds, record = await _settled(db_url, key_id, request_id)
    assert record.status == 502 and holds == 0
    assert CREDIT - balance == record.charged_micros
    if delivered:
        assert record.output_tokens > 0 and record.charged_micros > 0
    else:   # nothing reached the client: not charged, and no usage the upstream did not report
        assert (record.charged_micros, record.input_tokens, record.output_tokens) == (0, 0, 0)


@pytest.mark.parametrize("after_content", [False, True])
async def test_a_client_leaving_is_charged_for_what_reached_it(gateway, db_url, after_content):
    url, key_id = gateway
    # the role chunk only, or that and the first word
    request_id, lines = _stream(url, "slow 20 0.5", read_lines=2 if after_content else 1)
    balance, holds, record = await _settled(db_url, key_id, request_id)
    assert (record.status, record.error) == (499, "the client disconnected") and holds == 0
    assert CREDIT - balance == record.charged_micros
    assert (record.charged_micros > 0) is after_content
