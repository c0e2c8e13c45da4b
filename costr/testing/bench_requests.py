"""The requests `costr bench` sends: one `RequestPath` per path through the gateway, with its
body, headers, key and the checks every answer must pass.

It lives here rather than in costr/benchmark/ because it spells out wire formats by name (the
core names no provider; tests/test_architecture.py holds that).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from costr.testing.agent_request import agent_request

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
DRY_RUN = "/v1/router/dry-run"
PROMPT = "Say hello in one short sentence."
AGENT_TOKENS = 100_000
MAX_TOKENS = 64
MESSAGES_HEADERS = {"anthropic-version": "2023-06-01"}
CHAT_DONE = b"data: [DONE]"
MESSAGES_DONE = b"event: message_stop"


@dataclass(frozen=True)
class RequestPath:
    """One kind of request. `unique`: each request's prompt carries a counter, so the response
    cache misses (and stores) as it would on real traffic; otherwise one body is repeated.
    `key`: which key sends it ("credited", "unlimited" or "postgres", the last created in the
    PostgreSQL database of a second gateway). `cache_hit`: the x-costr-cache-hit header every
    measured answer from the gateway must carry (None: not checked). `stream_end`: the event a
    streamed answer must contain in its last bytes; None for a plain JSON answer, which must
    contain `answer_marker` instead. `upstream_twin`: the path whose request, sent straight to
    the upstream, is this one's baseline (None: the gateway answers alone, so no baseline).
    `share`: the fraction of --requests this path sends (the agent request is 400 KB)."""
    name: str
    about: str
    endpoint: str
    body: dict | None
    unique: bool
    key: str = "credited"
    key_header: str = "authorization"
    headers: dict[str, str] = field(default_factory=dict)
    cache_hit: bool | None = False
    stream_end: bytes | None = None
    answer_marker: bytes = b'"choices"'
    upstream_twin: str | None = "miss"
    share: float = 1.0

    @property
    def streamed(self) -> bool:
        return self.stream_end is not None

    def template(self, model: str = "auto") -> str:
        """The body as JSON text; for a unique path, with a `%d` where the counter goes (the
        load generator fills it in by string formatting, to stay cheap)."""
        if self.body is None:
            return agent_request(AGENT_TOKENS).decode()
        text = json.dumps({**self.body, "model": model})
        if not self.unique:
            return text
        return text.replace("%", "%%").replace(PROMPT, PROMPT[:-1] + " (%d).")

    def request_headers(self, key: str) -> dict[str, str]:
        auth = f"Bearer {key}" if self.key_header == "authorization" else key
        return {"Content-Type": "application/json", self.key_header: auth, **self.headers}


def _chat(stream: bool = False) -> dict:
    body = {"model": "auto", "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": PROMPT}]}
    return {**body, "stream": True} if stream else body


_messages = _chat  # the Messages API's body has the same shape for a one-turn text request
_MESSAGES = {"key_header": "x-api-key", "headers": MESSAGES_HEADERS,
             "answer_marker": b'"content"'}

PATHS: list[RequestPath] = [
    RequestPath("miss", "OpenAI chat, a new prompt each time: cache miss and store",
                CHAT, _chat(), unique=True),
    RequestPath("no-cache", "OpenAI chat, one prompt, x-no-cache: true", CHAT, _chat(),
                unique=False, headers={"x-no-cache": "true"}),
    RequestPath("hit", "OpenAI chat, one prompt: a cache hit after the first", CHAT, _chat(),
                unique=False, cache_hit=True),
    RequestPath("unlimited", "as no-cache, with a key without a credit limit", CHAT, _chat(),
                unique=False, key="unlimited", headers={"x-no-cache": "true"}),
    RequestPath("anthropic", "Anthropic Messages, a new prompt each time", MESSAGES,
                _messages(), unique=True, **_MESSAGES),
    RequestPath("stream", "OpenAI chat streamed, a new prompt each time", CHAT,
                _chat(stream=True), unique=True, stream_end=CHAT_DONE, upstream_twin="stream"),
    RequestPath("anthropic-stream", "Anthropic Messages streamed, a new prompt each time",
                MESSAGES, _messages(stream=True), unique=True, stream_end=MESSAGES_DONE,
                upstream_twin="stream", **_MESSAGES),
    RequestPath("postgres", "as miss, through a gateway keeping its books in PostgreSQL",
                CHAT, _chat(), unique=True, key="postgres"),
    RequestPath("dry-run", "bare handling: key, decode, route, answer; no upstream, no cache",
                DRY_RUN, _chat(), unique=True, cache_hit=None, answer_marker=b'"x_routing"',
                upstream_twin=None),
    RequestPath("agent-dry-run", f"a coding agent's {AGENT_TOKENS // 1000}k-token Anthropic "
                "request (20 tools, 100 tool calls and results), dry-run", DRY_RUN, None,
                unique=False, cache_hit=None, answer_marker=b'"x_routing"', upstream_twin=None,
                share=1 / 20),
]
BY_NAME = {path.name: path for path in PATHS}
