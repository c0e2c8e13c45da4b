"""An agent's tool loop moving between provider types mid-conversation, driven by the real
`openai` and `anthropic` SDKs through a running Costr, against fakes that enforce each
provider's rules for what comes back: Gemini 3's thought signatures, OpenAI's 40-character
tool call ids, and Anthropic's tool_use id pattern."""
from __future__ import annotations

import json
import re

import anthropic
import openai
import pytest

from costr.testing import TEST_KEY, running_gateway

from conftest import write_config

KEY_ENV = "COSTR_TEST_CROSS_PROVIDER_ANTHROPIC_KEY"
POOL = """\
tiers: [budget, standard, premium]
baseline: claude-large
providers:
  google: {{type: gemini, base_url: "{url}/v1beta"}}
  local: {{type: openai, base_url: "{url}/v1"}}
  claude: {{type: anthropic, base_url: "{url}", api_key_env: {env}}}
models:
  - {{id: gemini-3-flash, provider: google, tier: budget, upstream_name: gemini-3-flash-preview,
     price: {{input: 0.5, output: 3.0}}, context_window: 1000000, capabilities: [tools]}}
  - {{id: gemini-3-pro, provider: google, tier: premium, upstream_name: gemini-3-pro-preview,
     price: {{input: 2.0, output: 12.0}}, context_window: 1000000, capabilities: [tools]}}
  - {{id: local-standard, provider: local, tier: standard, price: {{input: 0.5, output: 2.0}},
     context_window: 128000, capabilities: [tools]}}
  - {{id: claude-large, provider: claude, tier: premium, price: {{input: 3.0, output: 15.0}},
     context_window: 200000, max_output_tokens: 8192, capabilities: [tools]}}
"""
TASK = "Read README.md, then a.py and b.py, and tell me what the project is."
SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
SENTINEL = "skip_thought_signature_validator"


def reads(*paths: str) -> dict:
    """A script entry: the model calls read_file once for each path, in one answer."""
    return {"tool_calls": [{"name": "read_file", "arguments": {"path": p}} for p in paths]}


class OpenAIAgent:
    """A Chat Completions client running a tool loop: each step sends the whole history."""

    def __init__(self, base_url: str, stream: bool):
        self.client = openai.OpenAI(api_key=TEST_KEY, base_url=f"{base_url}/v1", max_retries=0)
        self.stream = stream
        self.messages: list[dict] = [{"role": "user", "content": TASK}]

    def step(self, model: str) -> list[str] | str:
        """One request: the ids of the calls the model made (their results appended to the
        history), or its final text."""
        request = dict(model=model, messages=self.messages, max_tokens=1024, tools=[
            {"type": "function", "function": {"name": "read_file", "parameters": SCHEMA}}])
        if self.stream:
            text, calls = "", {}
            for chunk in self.client.chat.completions.create(stream=True, **request):
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    for call in choice.delta.tool_calls or []:
                        entry = calls.setdefault(call.index, {"id": call.id, "arguments": ""})
                        entry["arguments"] += call.function.arguments or ""
            calls = [(c["id"], c["arguments"]) for c in calls.values()]
        else:
            message = self.client.chat.completions.create(**request).choices[0].message
            text = message.content or ""
            calls = [(c.id, c.function.arguments) for c in message.tool_calls or []]
        if not calls:
            return text
        self.messages.append({"role": "assistant", "content": text or None, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "read_file", "arguments": a}}
            for i, a in calls]})
        self.messages += [{"role": "tool", "tool_call_id": i,
                           "content": f"contents of {json.loads(a)['path']}"} for i, a in calls]
        return [i for i, _ in calls]


class AnthropicAgent:
    """A Messages client running a tool loop, as Claude Code does."""

    def __init__(self, base_url: str, stream: bool):
        self.client = anthropic.Anthropic(api_key=TEST_KEY, base_url=base_url, max_retries=0)
        self.stream = stream
        self.messages: list[dict] = [{"role": "user", "content": TASK}]

    def step(self, model: str) -> list[str] | str:
        request = dict(model=model, max_tokens=1024, messages=self.messages,
                       tools=[{"name": "read_file", "input_schema": SCHEMA}])
        if self.stream:
            with self.client.messages.stream(**request) as stream:
                message = stream.get_final_message()
        else:
            message = self.client.messages.create(**request)
        calls = [b for b in message.content if b.type == "tool_use"]
        if not calls:
            return "".join(b.text for b in message.content if b.type == "text")
        self.messages.append({"role": "assistant", "content": [
            b.model_dump(exclude_none=True) for b in message.content]})
        self.messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": c.id, "content": f"contents of {c.input['path']}"}
            for c in calls]})
        return [c.id for c in calls]


@pytest.fixture
def gateway(tmp_path, fake_upstream, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-ant-fake")
    config = write_config(tmp_path, POOL.format(url=fake_upstream.url, env=KEY_ENV))
    with running_gateway(*config) as base_url:
        yield base_url


@pytest.fixture(params=[(OpenAIAgent, False), (OpenAIAgent, True), (AnthropicAgent, False),
                        (AnthropicAgent, True)],
                ids=["openai", "openai-stream", "anthropic", "anthropic-stream"])
def agent(request, gateway):
    kind, stream = request.param
    return kind(gateway, stream)


def last_sent(fake, path_part: str):
    received = fake.requests[-1]
    assert path_part in received.path, f"the last request went to {received.path}"
    return received.body


def first_calls_of_model_steps(body: dict) -> list[dict]:
    return [next(p for p in c["parts"] if "functionCall" in p)
            for c in body["contents"] if c["role"] == "model"]


def test_a_gemini_3_tool_loop_gives_each_step_its_signature_back(agent, fake_upstream):
    fake_upstream.enqueue(reads("README.md"), reads("a.py", "b.py"))
    (readme,) = agent.step("gemini-3-flash")
    assert len(readme) > 500 and re.fullmatch(r"[A-Za-z0-9_-]+", readme)  # it carries one
    a, b = agent.step("gemini-3-flash")
    assert agent.step("gemini-3-flash") == "Done: contents of b.py"
    sent = last_sent(fake_upstream, "gemini-3-flash-preview:")
    steps = [c["parts"] for c in sent["contents"] if c["role"] == "model"]
    assert [len(parts) for parts in steps] == [1, 2]
    signatures = [p.get("thoughtSignature") for parts in steps for p in parts]
    assert signatures[0] and signatures[1] and signatures[2] is None  # parallel: first only
    assert SENTINEL not in signatures


def test_a_loop_begun_on_claude_continues_on_gemini_3(agent, fake_upstream):
    fake_upstream.enqueue(reads("README.md"), reads("a.py"))
    (toolu,) = agent.step("claude-large")
    assert toolu.startswith("toolu_")
    agent.step("gemini-3-flash")
    assert agent.step("gemini-3-flash") == "Done: contents of a.py"
    claude_step, gemini_step = first_calls_of_model_steps(
        last_sent(fake_upstream, "gemini-3-flash-preview:"))
    assert claude_step["thoughtSignature"] == SENTINEL  # nothing to carry: Google's sentinel
    assert gemini_step["thoughtSignature"] not in (None, SENTINEL)


def test_a_loop_begun_on_gemini_3_continues_on_an_openai_type_upstream_and_back(agent, fake_upstream):
    fake_upstream.enqueue(reads("README.md"), reads("a.py"))
    (long_id,) = agent.step("gemini-3-flash")
    agent.step("local-standard")
    messages = last_sent(fake_upstream, "/v1/chat/completions")["messages"]
    (call,) = messages[-2]["tool_calls"]
    assert len(call["id"]) <= 40 and call["id"] != long_id
    assert messages[-1]["tool_call_id"] == call["id"]  # the pair holds

    assert agent.step("gemini-3-flash") == "Done: contents of a.py"
    gemini_step, openai_step = first_calls_of_model_steps(
        last_sent(fake_upstream, "gemini-3-flash-preview:"))
    assert gemini_step["thoughtSignature"] not in (None, SENTINEL)
    assert openai_step["thoughtSignature"] == SENTINEL


def test_a_loop_moved_from_gemini_3_flash_to_pro_sends_pro_no_signature_of_flash(
        agent, fake_upstream):
    """A session raising the tier mid-loop: Pro would refuse Flash's signature as corrupted."""
    fake_upstream.enqueue(reads("README.md"), reads("a.py"))
    agent.step("gemini-3-flash")
    agent.step("gemini-3-pro")
    assert agent.step("gemini-3-pro") == "Done: contents of a.py"
    flash_step, pro_step = first_calls_of_model_steps(
        last_sent(fake_upstream, "gemini-3-pro-preview:"))
    assert flash_step["thoughtSignature"] == SENTINEL
    assert pro_step["thoughtSignature"] not in (None, SENTINEL)


def test_a_loop_begun_on_a_server_with_dotted_ids_continues_on_claude(agent, fake_upstream):
    fake_upstream.enqueue({"tool_calls": [{"name": "read_file", "arguments": {"path": "README.md"},
                                           "id": "functions.read_file:0"}]})
    assert agent.step("local-standard") == ["functions.read_file:0"]
    assert agent.step("claude-large") == "Done: contents of README.md"
    messages = last_sent(fake_upstream, "/v1/messages")["messages"]
    (use,) = [b for b in messages[-2]["content"] if b["type"] == "tool_use"]
    (result,) = messages[-1]["content"]
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", use["id"]) and result["tool_use_id"] == use["id"]
