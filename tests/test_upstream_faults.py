"""What a client sees when an upstream is dead, hung or rate-limited: a circuit breaker that
opens after a few failures so later requests skip the upstream instead of waiting on it, one
probe after the cool-down, retries that honour Retry-After, a deadline that ends a hung
upstream in a 504 in the client's own error shape, the fallbacks in x_routing, the breakers in
/v1/router/health, and breaker state shared by instances on one Redis."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import anthropic
import httpx
import openai
import orjson
import pytest

from costr.testing import AUTH, TEST_KEY, running_gateway
from costr.testing.fake_upstream import FakeUpstream

from conftest import write_config

ASK = [{"role": "user", "content": "Reply exactly: ok"}]
REDIS_URL = os.environ.get("COSTR_TEST_BREAKERS_REDIS_URL", "redis://127.0.0.1:6379/12")

POOL = """\
tiers: [budget, standard, premium]
baseline: local-large
routing: {routing}
cache: {{enabled: false}}
providers:
  cheap: {{type: openai, base_url: "{cheap}/v1", timeouts: {timeouts}}}
  local: {{type: openai, base_url: "{rest}/v1"}}
models:
  - {{id: local-mini, provider: cheap, tier: budget, price: {{input: 0.1, output: 0.4}},
     context_window: 128000, max_output_tokens: 8192, capabilities: [tools, json_output]}}
  - {{id: local-standard, provider: local, tier: standard, price: {{input: 0.5, output: 2.0}},
     context_window: 128000, max_output_tokens: 16384, capabilities: [tools, vision, json_output]}}
  - {{id: local-large, provider: local, tier: premium, price: {{input: 3.0, output: 15.0}},
     context_window: 200000, max_output_tokens: 32000, capabilities: [tools, vision, json_output]}}
"""


def pool(tmp_path, cheap: str, rest: str, routing: str = "{}", timeouts: str = "{read: 1}"):
    """The cheapest model on its own provider (`cheap`), the others on `rest`."""
    return write_config(tmp_path, POOL.format(cheap=cheap, rest=rest, routing=routing,
                                              timeouts=timeouts))


class ScriptedUpstream:
    """An upstream speaking just enough OpenAI chat over raw asyncio, answering each request
    with the next entry of its script: "hang" (reads the request, never answers: a hung
    server), "drop" (closes the connection unanswered), (status, headers) (an error), or "ok"; "ok" once the script is used up. `seen`
    holds (time, model) of each request."""

    def __init__(self, *script):
        self.script, self.seen = list(script), []
        self.loop = asyncio.new_event_loop()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ScriptedUpstream":
        ready = threading.Event()

        def serve() -> None:
            server = self.loop.run_until_complete(asyncio.start_server(self._answer, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            server.close()
        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = orjson.loads(await reader.readexactly(length))
            self.seen.append((time.monotonic(), body["model"]))
            entry = self.script.pop(0) if self.script else "ok"
            if entry == "hang":
                await reader.read()          # until the client gives up
                return
            if entry == "drop":
                return                       # closed without a word
            if entry == "ok":
                status, headers, payload = 200, {}, _completion(body["model"])
            else:
                status, headers = entry
                payload = orjson.dumps({"error": {"message": f"scripted {status}", "type": "x"}})
            lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json",
                     f"Content-Length: {len(payload)}", "Connection: close",
                     *(f"{k}: {v}" for k, v in headers.items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _completion(model: str) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})


def chat(base: str):
    return openai.OpenAI(api_key=TEST_KEY, base_url=f"{base}/v1", max_retries=0, timeout=30)


def messages(base: str):
    return anthropic.Anthropic(api_key=TEST_KEY, base_url=base, max_retries=0, timeout=30)


def timed(fn):
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def health(base: str, admin: bool = True) -> httpx.Response:
    return httpx.get(f"{base}/v1/router/health", headers=AUTH if admin else {}, timeout=10)


# ---- the breaker: a hung upstream is waited on a few times, then skipped ---------------------

def test_a_hung_cheap_upstream_is_skipped_once_its_breaker_opens(tmp_path, fake_upstream):
    """The issue's example: the cheapest model's upstream accepts connections and never
    answers, with a 1 s read timeout. Of 20 requests in a row only the first five (the
    breaker's default) wait the second before falling back; the other fifteen skip it."""
    with ScriptedUpstream(*["hang"] * 20) as hung:
        providers, policies = pool(tmp_path, hung.url, fake_upstream.url)
        with running_gateway(providers, policies) as base:
            client = chat(base)
            started, times, answers = time.monotonic(), [], []
            for _ in range(20):
                answer, took = timed(lambda: client.chat.completions.create(model="auto",
                                                                            messages=ASK))
                answers.append(answer)
                times.append(took)
            total = time.monotonic() - started
            state = health(base).json()
    assert all(a.x_routing["routed_model"] == "local-standard" for a in answers)
    assert total < 9, f"20 requests took {total:.1f} s"           # 20+ s without breakers
    assert all(took >= 0.9 for took in times[:5])
    assert all(took < 0.5 for took in times[5:]), times
    assert len(hung.seen) == 5                                     # never asked again
    waited = answers[0].x_routing["fallbacks"]
    assert waited == [{"model": "local-mini", "reason": waited[0]["reason"]}]
    assert "did not answer in time" in waited[0]["reason"]
    skipped = answers[-1].x_routing["fallbacks"]
    assert [f["model"] for f in skipped] == ["local-mini"]
    assert skipped[0]["reason"].startswith(
        "skipped: circuit breaker of provider cheap open (5 failures in a row")
    assert state["status"] == "degraded" and state["skipped_models"] == ["local-mini"]
    assert state["breakers"]["providers"]["cheap"]["state"] == "open"
    assert state["breakers"]["providers"]["cheap"]["recent"]["error_rate"] == 1.0
    assert state["breakers"]["providers"]["local"]["state"] == "closed"


def test_after_the_cool_down_one_probe_closes_it_or_opens_it_again(tmp_path, fake_upstream):
    routing = "{breaker: {failures: 2, cooldown_seconds: 1}}"
    with FakeUpstream() as flaky:
        providers, policies = pool(tmp_path, flaky.url, fake_upstream.url, routing)
        with running_gateway(providers, policies) as base:
            client = chat(base)
            ask = lambda: client.chat.completions.create(model="auto", messages=ASK)  # noqa: E731
            flaky.enqueue({"status": 500, "error": "on fire"}, {"status": 500, "error": "on fire"})
            assert [ask().x_routing["routed_model"] for _ in range(2)] == ["local-standard"] * 2
            skipped = ask()                                   # open: not even asked
            assert len(flaky.requests) == 2
            assert "circuit breaker of model local-mini open" in skipped.x_routing["fallbacks"][0]["reason"]
            assert health(base).json()["breakers"]["models"]["local-mini"]["state"] == "open"
            time.sleep(1.1)
            probe = ask()                                     # the probe, answered: closed
            assert probe.x_routing["routed_model"] == "local-mini"
            assert "fallbacks" not in probe.x_routing
            assert health(base).json()["breakers"]["models"] == {}

            flaky.enqueue(*[{"status": 503, "error": "overloaded"}] * 3)
            ask(), ask()                                      # open again
            time.sleep(1.1)
            failed_probe = ask()                              # the probe fails: open again
            assert failed_probe.x_routing["routed_model"] == "local-standard"
            asked = len(flaky.requests)
            after, took = timed(ask)
            assert len(flaky.requests) == asked and took < 0.5
            reason = health(base).json()["breakers"]["models"]["local-mini"]["why"]
    assert reason == "its probe request failed"
    assert "skipped" in after.x_routing["fallbacks"][0]["reason"]


def test_a_request_the_upstream_refuses_does_not_open_the_breaker(tmp_path, fake_upstream):
    routing = "{breaker: {failures: 2}}"
    with FakeUpstream() as strict:
        providers, policies = pool(tmp_path, strict.url, fake_upstream.url, routing)
        with running_gateway(providers, policies) as base:
            client = chat(base)
            strict.enqueue(*[{"status": 400, "error": "bad field"}] * 4)
            for _ in range(4):
                with pytest.raises(openai.BadRequestError):
                    client.chat.completions.create(model="auto", messages=ASK)
            answer = client.chat.completions.create(model="auto", messages=ASK)
    assert answer.x_routing["routed_model"] == "local-mini"


# ---- retries and Retry-After ------------------------------------------------------------------

def test_retry_after_is_waited_for_when_no_other_model_is_left(tmp_path, fake_upstream):
    with ScriptedUpstream((429, {"Retry-After": "1"}), "ok") as limited:
        providers, policies = pool(tmp_path, limited.url, fake_upstream.url)
        with running_gateway(providers, policies) as base:
            answer, took = timed(lambda: chat(base).chat.completions.create(
                model="local-mini", messages=ASK))
    assert answer.x_routing["routed_model"] == "local-mini"
    assert 1.0 <= took < 2.5
    (first, _), (second, _) = limited.seen
    assert second - first >= 1.0
    assert "429" in answer.x_routing["fallbacks"][0]["reason"]


def test_a_short_retry_after_keeps_the_cheap_model(tmp_path, fake_upstream):
    """With another model left, the cheap one is tried again only when it asks for a short
    wait; the answer then still costs what the router chose."""
    with ScriptedUpstream((429, {"retry-after-ms": "300"}), "ok") as limited:
        providers, policies = pool(tmp_path, limited.url, fake_upstream.url)
        with running_gateway(providers, policies) as base:
            answer, took = timed(lambda: chat(base).chat.completions.create(
                model="auto", messages=ASK))
    assert answer.x_routing["routed_model"] == "local-mini" and took >= 0.3
    assert [model for _, model in limited.seen] == ["local-mini", "local-mini"]
    assert fake_upstream.requests == []


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(tmp_path, fake_upstream):
    """Asked to come back in 30 s with a 3 s deadline and no other model: the client is told
    at once, with the upstream's Retry-After, and the model is skipped for those 30 s."""
    with ScriptedUpstream((429, {"Retry-After": "30"})) as limited:
        providers, policies = pool(tmp_path, limited.url, fake_upstream.url,
                                   "{deadline_seconds: 3}")
        with running_gateway(providers, policies) as base:
            client = chat(base).with_options(max_retries=0)
            with pytest.raises(openai.APIStatusError) as refused:
                timed(lambda: client.chat.completions.create(model="local-mini", messages=ASK))
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as skipped:
                client.chat.completions.create(model="local-mini", messages=ASK)
            took = time.monotonic() - started
    assert len(limited.seen) == 1
    assert refused.value.response.headers["retry-after"] == "30"
    assert "429" in refused.value.message
    assert skipped.value.status_code == 503 and took < 0.5
    assert skipped.value.body["code"] == "upstream_circuit_open"
    assert 28 <= int(skipped.value.response.headers["retry-after"]) <= 30


# ---- the deadline: a hung upstream ends in a 504, in the client's shape ----------------------

def test_a_hung_upstream_with_no_other_model_is_a_504_in_each_familys_shape(tmp_path, fake_upstream):
    """The read timeout is the default 300 s; the 2 s deadline ends each request."""
    with ScriptedUpstream(*["hang"] * 3) as hung:
        providers, policies = pool(tmp_path, hung.url, fake_upstream.url,
                                   "{deadline_seconds: 2}", timeouts="{}")
        with running_gateway(providers, policies) as base:
            with pytest.raises(openai.APIStatusError) as plain:
                timed(lambda: chat(base).chat.completions.create(model="local-mini", messages=ASK))
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as streamed:
                chat(base).chat.completions.create(model="local-mini", messages=ASK, stream=True)
            with pytest.raises(anthropic.APIStatusError) as family:
                messages(base).messages.create(model="local-mini", max_tokens=50, messages=ASK)
            took = time.monotonic() - started
    assert plain.value.status_code == streamed.value.status_code == 504
    assert plain.value.body["code"] == "upstream_timeout"
    assert plain.value.body["type"] == "timeout_error"
    assert "deadline of 2 s" in plain.value.body["message"]
    assert family.value.status_code == 504
    assert family.value.body["type"] == "error"
    assert family.value.body["error"]["type"] == "timeout_error"
    assert 4 <= took < 6                                        # two requests, 2 s each


def test_every_model_behind_an_open_breaker_is_a_quick_503(tmp_path, fake_upstream):
    routing = "{deadline_seconds: 1, breaker: {failures: 1, cooldown_seconds: 60}}"
    with ScriptedUpstream("hang") as hung:
        providers, policies = pool(tmp_path, hung.url, fake_upstream.url, routing)
        with running_gateway(providers, policies) as base:
            with pytest.raises(openai.APIStatusError) as first:
                chat(base).chat.completions.create(model="local-mini", messages=ASK)
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as plain:
                chat(base).chat.completions.create(model="local-mini", messages=ASK)
            with pytest.raises(anthropic.APIStatusError) as family:
                messages(base).messages.create(model="local-mini", max_tokens=50, messages=ASK)
            took = time.monotonic() - started
            routed = chat(base).chat.completions.create(model="auto", messages=ASK)
            anonymous, admin = health(base, admin=False), health(base)
    assert first.value.status_code == 504
    assert plain.value.status_code == family.value.status_code == 503 and took < 0.5
    assert plain.value.body["code"] == "upstream_circuit_open"
    assert "circuit breaker" in plain.value.body["message"]
    assert family.value.body["type"] == "error" and "circuit breaker" in family.value.body["error"]["message"]
    assert 58 <= int(plain.value.response.headers["retry-after"]) <= 60
    assert routed.x_routing["routed_model"] == "local-standard"   # auto still has a way up
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "degraded"}
    assert admin.json()["breakers"]["providers"]["cheap"]["state"] == "open"


def test_health_is_503_when_no_tier_can_be_served(tmp_path):
    routing = "{deadline_seconds: 1, breaker: {failures: 1}}"
    with ScriptedUpstream("hang", "hang") as hung:
        providers, policies = pool(tmp_path, hung.url, hung.url, routing)
        with running_gateway(providers, policies) as base:
            assert health(base, admin=False).json() == {"status": "ok"}
            for model in ["local-mini", "local-large"]:      # one on each provider
                with pytest.raises(openai.APIStatusError):
                    chat(base).chat.completions.create(model=model, messages=ASK)
            anonymous, admin = health(base, admin=False), health(base)
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "unusable"}
    assert admin.status_code == 503
    assert sorted(admin.json()["skipped_models"]) == ["local-large", "local-mini", "local-standard"]


# ---- streams ---------------------------------------------------------------------------------

def test_a_stream_falls_back_within_its_first_byte_timeout(tmp_path, fake_upstream):
    """A streamed answer waits `first_byte` for the hung upstream, not the read timeout, and
    its last chunk's x_routing names the model it left."""
    with ScriptedUpstream("hang") as hung:
        providers, policies = pool(tmp_path, hung.url, fake_upstream.url,
                                   timeouts="{read: 300, first_byte: 0.5}")
        with running_gateway(providers, policies) as base:
            chunks, took = timed(lambda: list(chat(base).chat.completions.create(
                model="auto", messages=ASK, stream=True)))
    assert 0.5 <= took < 2
    facts = chunks[-1].x_routing
    assert facts["routed_model"] == "local-standard"
    assert facts["fallbacks"][0]["model"] == "local-mini"
    assert "first_byte timeout of 0.5 s" in facts["fallbacks"][0]["reason"]


# ---- several instances: the state is shared through Redis ------------------------------------

def redis_or_skip():
    import redis
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
        client.delete("costr:breakers")
        return client
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")


def test_instances_on_one_redis_share_what_their_breakers_learned(tmp_path, fake_upstream):
    """Instance A opens the breaker of a hung upstream; instance B, which never called it,
    skips it about a second later instead of waiting on it itself."""
    shared = redis_or_skip()
    routing = "{breaker: {failures: 2, cooldown_seconds: 60}}"
    try:
        with ScriptedUpstream(*["hang"] * 4) as hung:
            providers, policies = pool(tmp_path, hung.url, fake_upstream.url, routing)
            with running_gateway(providers, policies, limits=REDIS_URL) as a, \
                    running_gateway(providers, policies, limits=REDIS_URL) as b:
                for _ in range(2):
                    chat(a).chat.completions.create(model="auto", messages=ASK)
                time.sleep(1.5)                       # B reads the shared state each second
                answer, took = timed(lambda: chat(b).chat.completions.create(model="auto",
                                                                             messages=ASK))
                b_health = health(b).json()
    finally:
        shared.delete("costr:breakers")
    assert len(hung.seen) == 2 and took < 0.5
    assert answer.x_routing["fallbacks"][0]["reason"].startswith(
        "skipped: circuit breaker of provider cheap open (2 failures in a row")
    assert b_health["breakers"]["providers"]["cheap"]["state"] == "open"


def test_a_dropped_connection_to_the_only_model_is_retried_after_a_backoff(tmp_path, fake_upstream):
    """An upstream that closed the connection without answering (a restart, a stale pooled
    connection), with no other model left, is called once more; an error status without a
    Retry-After goes to the client, whose SDK has its own retries."""
    with ScriptedUpstream("drop", "ok", (503, {})) as flaky:
        providers, policies = pool(tmp_path, flaky.url, fake_upstream.url)
        with running_gateway(providers, policies) as base:
            retried = chat(base).chat.completions.create(model="local-mini", messages=ASK)
            assert len(flaky.seen) == 2
            with pytest.raises(openai.APIStatusError) as failed:
                chat(base).chat.completions.create(model="local-mini", messages=ASK)
            assert len(flaky.seen) == 3
    assert retried.x_routing["routed_model"] == "local-mini"
    assert [f["model"] for f in retried.x_routing["fallbacks"]] == ["local-mini"]
    assert "could not reach" in retried.x_routing["fallbacks"][0]["reason"]
    assert failed.value.status_code == 502 and "503" in failed.value.message


EMBEDDINGS = """\
tiers: [budget, standard, premium]
baseline: local-mini
routing: {{deadline_seconds: 1, breaker: {{failures: 1, cooldown_seconds: 60}}}}
default_embedding_model: local-embed
providers:
  cheap: {{type: openai, base_url: "{url}/v1"}}
models:
  - {{id: local-mini, provider: cheap, tier: budget, price: {{input: 0.1, output: 0.4}},
     context_window: 128000}}
  - {{id: local-embed, provider: cheap, mode: embedding, price: {{input: 0.02, output: 0}},
     context_window: 8192}}
"""


def test_embeddings_have_the_deadline_and_the_breakers_too(tmp_path):
    with ScriptedUpstream("hang") as hung:
        providers, policies = write_config(tmp_path, EMBEDDINGS.format(url=hung.url))
        with running_gateway(providers, policies) as base:
            client = chat(base)
            with pytest.raises(openai.APIStatusError) as hung_up:
                timed(lambda: client.embeddings.create(model="auto", input="hello"))
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as skipped:
                client.embeddings.create(model="auto", input="hello")
            took = time.monotonic() - started
    assert hung_up.value.status_code == 504 and hung_up.value.body["code"] == "upstream_timeout"
    assert skipped.value.status_code == 503 and took < 0.5
    assert skipped.value.body["code"] == "upstream_circuit_open"
    assert len(hung.seen) == 1


def test_the_routing_settings_are_checked_with_their_lines(tmp_path):
    from costr.config.files import load_config
    from costr.errors import ConfigError

    routing = "\n  deadline_seconds: 0\n  breaker: {failures: 0, cooldown_secs: 5}\n"
    providers, policies = pool(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9", routing,
                               timeouts="{first_byte: -1}")
    with pytest.raises(ConfigError) as refused:
        load_config(providers, policies)
    problems = "\n".join(refused.value.problems)
    assert "providers.yaml:4: routing.deadline_seconds: Input should be greater than 0" in problems
    assert "providers.yaml:5: routing.breaker.failures: Input should be greater than or equal to 1" in problems
    assert "providers.yaml:5: routing.breaker.cooldown_secs: unknown key" in problems
    assert "providers.timeouts.first_byte" not in problems      # said at its own line:
    assert "providers.cheap.timeouts.first_byte: Input should be greater than 0" in problems
    defaults = load_config(*pool(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9"))
    assert defaults.routing.deadline_seconds == 600 and defaults.routing.retries == 1
    assert defaults.routing.breaker.failures == 5 and defaults.routing.breaker.cooldown_seconds == 30
