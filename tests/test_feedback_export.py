"""Feedback into training: with `feedback.keep_prompts` on, an answered auto-routed request's
conversation is kept (text only, no headers, no system prompt, within `keep_days`), and each
rated one exports, from GET /v1/router/feedback/export or `costr feedback export`, as a
routing-eval record whose messages score the same as the request did."""
from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from costr.accounts.records import KeptPrompt
from costr.accounts.store import open_store
from costr.testing import AUTH, TEST_KEY, running_gateway, seed_key

from conftest import LOCAL_POOL, REPO, write_config

KEEPING = LOCAL_POOL + "feedback: {{keep_prompts: true, keep_days: 30}}\n"
RECORD_FIELDS = {"id", "dataset", "messages", "scores", "tier", "policy", "complexity", "rating",
                 "ts"}
READ_FILE = {"type": "function", "function": {
    "name": "read_file", "description": "Read a file from the workspace",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}
HARD_ASK = ("Analyze the concurrency design of this scheduler and explain why it deadlocks, step "
            "by step. Prove the invariant that must hold, and review the edge cases: must it "
            "lock both queues? Compare two designs and evaluate their trade-offs.")
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8AAA"
         "AMBAQDJ/pLvAAAAAElFTkSuQmCC")


def serve(tmp_path: Path, fake, providers_yaml: str = KEEPING):
    data = str(tmp_path / "data")
    return running_gateway(*write_config(tmp_path, providers_yaml.format(url=fake.url)),
                           data_dir=data), data


@pytest.fixture
def keeping(tmp_path, fake_upstream):
    """(base URL, fake upstream, data dir) of a gateway that keeps prompts."""
    gateway, data = serve(tmp_path, fake_upstream)
    with gateway as base:
        yield base, fake_upstream, data


def chat_client(base: str, secret: str = TEST_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=secret, base_url=f"{base}/v1", max_retries=0)


def ask(client: openai.OpenAI, text: str, **kw):
    """(request id, x_routing) of an answered chat request."""
    raw = client.chat.completions.with_raw_response.create(
        messages=[{"role": "user", "content": text}], **{"model": "auto", **kw})
    completion = raw.parse()
    if kw.get("stream"):
        completion = list(completion)[-1]
    return raw.headers["x-request-id"], completion.x_routing


def rate(base: str, request_id: str, rating: int, headers: dict = AUTH) -> None:
    sent = httpx.post(f"{base}/v1/router/feedback", headers=headers, timeout=20,
                      json={"request_id": request_id, "rating": rating})
    assert sent.status_code == 200 and sent.json()["stored"] is True


def export(base: str, query: str = "", headers: dict = AUTH) -> httpx.Response:
    return httpx.get(f"{base}/v1/router/feedback/export{query}", headers=headers, timeout=20)


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def kept_rows(data: str) -> list[dict]:
    with sqlite3.connect(Path(data) / "costr.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM kept_prompts ORDER BY ts")]


def user_key(data: str) -> tuple[str, dict, str]:
    """(secret, headers, id) of a new non-admin key."""
    secret = "cr-" + secrets.token_urlsafe(32)
    key = asyncio.run(seed_key(None, data, secret, name="feedback-test", admin=False))
    return secret, {"authorization": f"Bearer {secret}"}, key.id


# -- off by default -----------------------------------------------------------------------------

def test_prompts_are_not_kept_unless_the_operator_turns_it_on(tmp_path, fake_upstream):
    gateway, data = serve(tmp_path, fake_upstream, LOCAL_POOL)
    with gateway as base:
        request_id, _ = ask(chat_client(base), "Reply exactly: remember nothing")
        rate(base, request_id, 5)   # feedback on a request with no kept prompt is stored as ever
        exported = export(base)
        assert exported.status_code == 200
        assert exported.text == "" and exported.headers["x-costr-skipped"] == "1"
        stats = httpx.get(f"{base}/v1/router/stats", headers=AUTH, timeout=20).json()
        assert stats["data"][0]["feedback_count"] == 1
    assert kept_rows(data) == []


# -- the record ---------------------------------------------------------------------------------

def test_a_rated_request_exports_as_a_record_that_scores_the_same(keeping):
    base, _, _ = keeping
    conversation = [
        {"role": "system", "content": "You are our engineer. The staging password is hunter2."},
        {"role": "user", "content": [{"type": "text", "text": "Here is the scheduler diagram."},
                                     {"type": "image_url", "image_url": {"url": PIXEL}}]},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "sched.py"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "def schedule(jobs): ..."},
        {"role": "user", "content": HARD_ASK},
    ]
    raw = chat_client(base).chat.completions.with_raw_response.create(
        model="auto", messages=conversation, tools=[READ_FILE])
    request_id, routing = raw.headers["x-request-id"], raw.parse().x_routing
    rate(base, request_id, 5)
    rate(base, request_id, 2)   # rated again: the latest rating counts

    exported = export(base)
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/x-ndjson"
    assert exported.headers["x-costr-skipped"] == "0"
    [record] = lines(exported.text)
    assert set(record) == RECORD_FIELDS
    assert record["id"] == request_id and record["dataset"] == "feedback"
    assert record["scores"] == {routing["routed_model"]: 0.25}
    assert (record["tier"], record["policy"], record["complexity"], record["rating"]) == (
        routing["tier"], "balanced", routing["complexity"], 2)
    assert time.time() - 60 < record["ts"] <= time.time()
    # Text only: no system prompt, no tool schemas, the image a placeholder.
    assert record["messages"] == [
        {"role": "user", "content": "Here is the scheduler diagram.[image]"},
        {"role": "assistant", "content": "", "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "sched.py"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "def schedule(jobs): ..."},
        {"role": "user", "content": HARD_ASK},
    ]
    assert "hunter2" not in exported.text and "read a file" not in exported.text.lower()

    # Routed again from the record alone, the conversation scores and routes as it did.
    again = httpx.post(f"{base}/v1/router/dry-run", headers=AUTH, timeout=20,
                       json={"model": "auto", "messages": record["messages"]}).json()
    assert again["complexity"]["score"] == routing["complexity"]
    assert again["x_routing"]["tier"] == routing["tier"] != "budget"


def test_every_answered_auto_request_is_kept_and_the_rest_are_counted(keeping, tmp_path):
    base, fake, _ = keeping
    client = chat_client(base)
    plain, _ = ask(client, "Reply exactly: plain")
    streamed, _ = ask(client, "Reply exactly: streamed", stream=True)
    hit, routing = ask(client, "Reply exactly: plain")
    assert routing["cache_hit"] is True
    message = anthropic.Anthropic(api_key=TEST_KEY, base_url=base, max_retries=0).messages \
        .with_raw_response.create(model="auto", max_tokens=64, messages=[
            {"role": "user", "content": "Reply exactly: messages"}])
    other_family = message.headers["x-request-id"]
    named, _ = ask(client, "Reply exactly: named", model="local-mini")
    fake.enqueue({"status": 400, "error": "the upstream refused"})
    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, "Reply exactly: refused")
    failed = refused.value.response.headers["x-request-id"]
    for request_id in (plain, streamed, hit, other_family, named, failed):
        rate(base, request_id, 4)

    exported = export(base)
    records = lines(exported.text)
    assert [r["id"] for r in records] == [plain, streamed, hit, other_family]
    assert [r["scores"] for r in records] == [{"local-mini": 0.75}] * 4
    assert records[3]["messages"] == [{"role": "user", "content": "Reply exactly: messages"}]
    assert exported.headers["x-costr-skipped"] == "2"   # the named model, the failed request

    # The learned scorer's trainer reads them: good answers from the budget tier.
    from costr_learned_scorer.training import read_examples
    path = tmp_path / "feedback.jsonl"
    path.write_text(exported.text)
    examples = read_examples(path)
    assert [(e.id, e.dataset) for e in examples] == [(r["id"], "feedback") for r in records]


# -- who may export, and what -------------------------------------------------------------------

def test_only_admin_keys_may_export(keeping):
    base, _, data = keeping
    secret, headers, _ = user_key(data)
    request_id, _ = ask(chat_client(base, secret), "Reply exactly: mine")
    rate(base, request_id, 5, headers)
    refused = export(base, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}


def test_export_filters_by_key_and_age_and_rejects_bad_queries(keeping):
    base, _, data = keeping
    secret, headers, key_id = user_key(data)
    theirs, _ = ask(chat_client(base, secret), "Reply exactly: theirs")
    mine, _ = ask(chat_client(base), "Reply exactly: mine")
    rate(base, theirs, 5, headers)
    rate(base, mine, 1)
    by_key = lines(export(base, f"?key_id={key_id}").text)
    assert [r["id"] for r in by_key] == [theirs]
    assert [r["id"] for r in lines(export(base, "?since=1&key_id=all").text)] == [theirs, mine]
    assert export(base, "?since=0.0000001").text == ""
    for query, status, param in (("?since=soon", 400, "since"), ("?since=0", 400, "since"),
                                 ("?key_id=nobody", 404, "key_id")):
        response = export(base, query)
        assert response.status_code == status and response.json()["error"]["param"] == param


def test_keys_and_headers_never_reach_the_database(keeping):
    base, _, data = keeping
    secret, headers, _ = user_key(data)
    upstream_like = "sk-" + secrets.token_urlsafe(24)
    client = openai.OpenAI(api_key=secret, base_url=f"{base}/v1", max_retries=0,
                           default_headers={"x-api-key": upstream_like, "x-custom-auth": upstream_like})
    request_id, _ = ask(client, "Reply exactly: keep my words, not my key")
    rate(base, request_id, 5, headers)
    assert export(base).status_code == 200   # everything queued is written
    rows = kept_rows(data)
    assert [(r["request_id"], json.loads(r["messages"])) for r in rows] == [
        (request_id, [{"role": "user", "content": "Reply exactly: keep my words, not my key"}])]
    assert set(rows[0]) == {"request_id", "key_id", "ts", "messages"}
    stored = b"".join(p.read_bytes() for p in Path(data).iterdir() if p.name.startswith("costr.db"))
    assert b"keep my words" in stored
    for credential in (secret, upstream_like, TEST_KEY):
        assert credential.encode() not in stored


# -- retention ----------------------------------------------------------------------------------

def test_kept_prompts_older_than_keep_days_are_deleted(tmp_path, fake_upstream):
    data = str(tmp_path / "data")
    now = time.time()

    async def seed() -> None:
        store = await open_store(None, data)
        try:
            await store.keep_prompts([
                KeptPrompt("req_old", "k", now - 31 * 86400, '[{"role": "user", "content": "old"}]'),
                KeptPrompt("req_new", "k", now - 29 * 86400, '[{"role": "user", "content": "new"}]')])
        finally:
            await store.close()
    asyncio.run(seed())
    gateway, _ = serve(tmp_path, fake_upstream)
    with gateway:
        deadline = time.monotonic() + 10
        while "req_old" in {r["request_id"] for r in kept_rows(data)}:
            assert time.monotonic() < deadline, "the expired prompt was not deleted"
            time.sleep(0.05)
        assert [r["request_id"] for r in kept_rows(data)] == ["req_new"]


# -- costr feedback export ----------------------------------------------------------------------

def run_costr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "costr", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_the_command_writes_what_the_endpoint_serves(keeping, tmp_path):
    base, _, data = keeping
    client = chat_client(base)
    kept, _ = ask(client, "Reply exactly: kept")
    named, _ = ask(client, "Reply exactly: named", model="local-large")
    rate(base, kept, 3)
    rate(base, named, 3)
    served = export(base)   # also writes what is queued, for the command to read
    result = run_costr("feedback", "export", "--data-dir", data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == served.text and [r["id"] for r in lines(result.stdout)] == [kept]
    assert "exported 1 rated request(s); 1 rated request(s) had no kept prompt" in result.stderr

    out = tmp_path / "mine.jsonl"
    result = run_costr("feedback", "export", "--data-dir", data, "--since", "1",
                       "--key-id", TEST_KEY[:10], "--out", str(out))
    assert result.returncode == 0 and result.stdout == ""
    assert out.read_text() == served.text
    result = run_costr("feedback", "export", "--data-dir", data, "--key-id", "nobody")
    assert result.returncode == 2 and "No key 'nobody'" in result.stderr


def test_tool_output_is_cut_short_and_the_users_words_are_kept_whole(keeping):
    base, _, _ = keeping
    long_ask = "Refactor this, keeping every edge case: " + "the parser must accept x. " * 200
    file_text = "print('hello')\n" * 500
    raw = chat_client(base).chat.completions.with_raw_response.create(model="auto", messages=[
        {"role": "user", "content": "Read main.py"},
        {"role": "assistant", "content": "Reading it. " * 200, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "read_file", "arguments": '{"path": "main.py"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": file_text},
        {"role": "user", "content": long_ask}])
    rate(base, raw.headers["x-request-id"], 5)
    user, assistant, tool, ask_again = lines(export(base).text)[0]["messages"]
    assert user == {"role": "user", "content": "Read main.py"} and ask_again["content"] == long_ask
    assert tool["content"] == file_text[:1000] + f"...[{len(file_text) - 1000} more characters not kept]"
    assert assistant["content"].startswith("Reading it. ") and len(assistant["content"]) < 1100
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"path": "main.py"}'
