"""Agent sessions: a tool loop keeps the tier its ask started in, unless it needs more."""
from __future__ import annotations

import httpx

from costr.wire.conversation import ChatRequest, Image, Message, Text, ToolCall, ToolResult
from costr.routing.sessions import SessionTiers, continues_tool_loop
from costr.testing import AUTH

HARD_ASK = ("Design a lock-free concurrent queue, prove its linearizability invariant step by "
            "step, and review the edge cases under memory reordering.")


def loop_request(session: str, ask: str, result: str = "ok") -> list[dict]:
    return [{"role": "user", "content": ask},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
             "function": {"name": "read_file", "arguments": "{\"path\": \"q.c\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": result}]


def chat_tier(base: str, messages: list[dict], **headers) -> str:
    response = httpx.post(f"{base}/v1/chat/completions", json={"model": "auto", "messages": messages},
                          headers={**AUTH, **headers}, timeout=20)
    assert response.status_code == 200, response.text
    return response.json()["x_routing"]["tier"]


def test_claude_code_session_header_names_the_session(local_gateway):
    session = {"x-claude-code-session-id": "s-1"}
    hard_tier = chat_tier(local_gateway, [{"role": "user", "content": HARD_ASK}], **session)
    assert hard_tier != "budget"
    easy_looking = loop_request("s-1", "Reply exactly: next")
    assert chat_tier(local_gateway, easy_looking) == "budget"   # alone, it looks easy
    assert chat_tier(local_gateway, easy_looking, **session) == hard_tier


def test_continuations_of_an_easy_loop_stay_cheap_and_of_a_hard_loop_stay_strong(local_gateway):
    easy, hard = "Reply exactly: listing", HARD_ASK
    assert chat_tier(local_gateway, [{"role": "user", "content": easy}], **{"x-session-id": "easy"}) == "budget"
    hard_tier = chat_tier(local_gateway, [{"role": "user", "content": hard}], **{"x-session-id": "hard"})
    assert hard_tier != "budget"
    # A continuation whose visible ask is easy, in the session whose loop started hard:
    messages = loop_request("hard", easy)
    assert chat_tier(local_gateway, messages, **{"x-session-id": "hard"}) == hard_tier
    assert chat_tier(local_gateway, messages, **{"x-session-id": "easy"}) == "budget"
    assert chat_tier(local_gateway, messages) == "budget"  # no session: scored alone


def test_the_openai_user_field_names_the_session(local_gateway):
    first = httpx.post(f"{local_gateway}/v1/chat/completions", timeout=20, headers=AUTH, json={
        "model": "auto", "user": "u-7", "messages": [{"role": "user", "content": HARD_ASK}]})
    hard_tier = first.json()["x_routing"]["tier"]
    response = httpx.post(f"{local_gateway}/v1/chat/completions", timeout=20, json={
        "model": "auto", "user": "u-7", "messages": loop_request("u-7", "Reply exactly: ok")}, headers=AUTH)
    assert hard_tier != "budget" and response.json()["x_routing"]["tier"] == hard_tier
    assert chat_tier(local_gateway, loop_request("u-8", "Reply exactly: ok")) == "budget"


def test_a_new_user_turn_is_scored_afresh(local_gateway):
    chat_tier(local_gateway, [{"role": "user", "content": HARD_ASK}], **{"x-session-id": "s-2"})
    messages = [{"role": "user", "content": HARD_ASK}, {"role": "assistant", "content": "Done."},
                {"role": "user", "content": "Thanks!"}]
    assert chat_tier(local_gateway, messages, **{"x-session-id": "s-2"}) == "budget"


def test_continues_tool_loop_only_for_pure_tool_results():
    result = ToolResult("call_1", [Text("data")])
    assert continues_tool_loop(ChatRequest([Message("user", [Text("hi")]),
                                            Message("assistant", [ToolCall("call_1", "f", "{}")]),
                                            Message("user", [result])]))
    assert not continues_tool_loop(ChatRequest([Message("user", [result, Text("and now this")])]))
    assert not continues_tool_loop(ChatRequest([Message("user", [Text("hi")])]))
    assert not continues_tool_loop(ChatRequest([Message("user", [Image(url="http://x/y.png")])]))


def test_session_memory_is_bounded_and_forgets_idle_sessions():
    now = [0.0]
    tiers = SessionTiers(max_sessions=2, ttl_seconds=10, clock=lambda: now[0])
    tiers.remember("a", "premium")
    tiers.remember("b", "budget")
    assert tiers.started_tier("a") == "premium"   # refreshes a
    tiers.remember("c", "standard")               # evicts b, the least recently used
    assert tiers.started_tier("b") is None
    now[0] = 11
    assert tiers.started_tier("a") is None and tiers.started_tier("c") is None


def test_agent_injected_context_does_not_make_an_ask_look_hard():
    from costr.routing.scoring import user_ask
    reminder = ("<system-reminder>\nAs you answer, use this context: " + "design architecture "
                "algorithm security review " * 200 + "\n</system-reminder>")
    request = ChatRequest([Message("user", [Text(reminder), Text("Read the file notes.txt")])])
    assert user_ask(request) == "Read the file notes.txt"


# What an agent that stamps each ask and sends its own context as a separate user turn after it
# looks like on the wire (the markers and stamp as OpenClaw writes them).
AGENT_CONTEXT = ("<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>\nWorkspace: /home/user/project. Skills: "
                 "coding-agent, github. Memory: the user prefers concise answers; recent files: "
                 "src/app.py, src/db.py.\n<<<END_OPENCLAW_INTERNAL_CONTEXT>>>")


def stamped(ask: str) -> list[dict]:
    return [{"role": "user", "content": f"[Fri 2026-12-04 03:56 UTC] {ask}"},
            {"role": "user", "content": AGENT_CONTEXT}]


def test_an_agents_timestamp_and_own_context_turn_are_not_the_ask():
    from costr.routing.scoring import user_ask
    request = ChatRequest([Message("user", [Text("[Fri 2026-12-04 03:56 UTC] Reply exactly: ok")]),
                           Message("user", [Text(AGENT_CONTEXT)])])
    assert user_ask(request) == "Reply exactly: ok"
    # a bracket that is not a send time stays part of the ask
    assert user_ask(ChatRequest([Message("user", [Text("[1, 2] sorted?")])])) == "[1, 2] sorted?"


def test_a_stamped_ask_with_agent_context_routes_as_the_bare_ask(local_gateway):
    for ask in ("Reply exactly: ok", HARD_ASK):
        bare = httpx.post(f"{local_gateway}/v1/router/dry-run", headers=AUTH, timeout=20,
                          json={"model": "auto", "messages": [{"role": "user", "content": ask}]})
        wrapped = httpx.post(f"{local_gateway}/v1/router/dry-run", headers=AUTH, timeout=20,
                             json={"model": "auto", "messages": stamped(ask)})
        assert bare.status_code == wrapped.status_code == 200, wrapped.text
        assert wrapped.json()["x_routing"]["tier"] == bare.json()["x_routing"]["tier"]
        assert wrapped.json()["complexity"]["score"] == bare.json()["complexity"]["score"]


def test_markers_left_unclosed_stay_part_of_the_ask_and_closed_blocks_after_them_go():
    from costr.routing.scoring import user_ask
    text = ("<context>" * 3 + "Explain <<<BEGIN_NOTES>>> quicksort"
            + "<system-reminder>x</system-reminder><<<BEGIN_A>>>y<<<END_A>>>")
    request = ChatRequest([Message("user", [Text(text)])])
    assert user_ask(request) == "<context><context><context>Explain <<<BEGIN_NOTES>>> quicksort"
    # a state line is only the agent's when the ask carries its send-time stamp
    plain = "Compare these\nRuntime: a=1 | b=2"
    assert user_ask(ChatRequest([Message("user", [Text(plain)])])) == plain
