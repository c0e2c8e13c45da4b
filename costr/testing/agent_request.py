"""A coding agent's request, for the benchmark and tests: large, realistic in shape."""
from __future__ import annotations

import json
import random


def agent_request(tokens: int) -> bytes:
    """An Anthropic Messages request shaped like a coding agent's late in a task, about `tokens`
    long: a long system prompt, 20 tool schemas, injected context in the first user turn, then
    tool calls and their results until the size is reached."""
    rng = random.Random(7)
    vocabulary = ("the of and to in is for on that with function return value file path error "
                  "import class def self test cache session entry expired").split()

    def words(n: int) -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(n))

    tools = [{"name": f"tool_{i}", "description": words(150), "input_schema": {
        "type": "object", "properties": {f"arg_{j}": {"type": "string", "description": words(20)}
                                         for j in range(6)}}} for i in range(20)]
    messages = [{"role": "user", "content": [
        {"type": "text", "text": f"<system-reminder>{words(2000)}</system-reminder>"},
        {"type": "text", "text": "Make the session cache evict expired entries lazily, then run "
                                 "the tests and fix what fails."}]}]
    body = {"model": "auto", "max_tokens": 4096, "system": [{"type": "text", "text": words(3000)}],
            "tools": tools, "messages": messages}
    turn = 0
    while len(json.dumps(body)) < tokens * 4:   # about 4 characters a token
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": words(40)},
            {"type": "tool_use", "id": f"toolu_{turn}", "name": "tool_1", "input": {"arg_0": words(10)}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{turn}", "content": words(1000)}]})
        turn += 1
    return json.dumps(body).encode()

