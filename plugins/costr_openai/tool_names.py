"""Tool names OpenAI accepts: `^[a-zA-Z0-9_-]{1,64}$`. Anthropic and Gemini clients may use
longer names (MCP tools such as `mcp__server__tool` grow long) or dots; sent as they are, OpenAI
answers 400. A name that does not fit is sent as a shortened, cleaned form with a hash of the
original, the same every time (so earlier turns' tool calls match without any state), and
names in the answer are mapped back before the client sees them."""
from __future__ import annotations

import hashlib
import re

from costr.conversation import ChatRequest

LIMIT = 64
_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def wire_name(name: str) -> str:
    """`name` if OpenAI accepts it, else a stable stand-in of at most 64 characters."""
    if _VALID.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{_INVALID_CHARS.sub('_', name)[:LIMIT - 9]}_{digest}"


def original_names(request: ChatRequest) -> dict[str, str]:
    """Stand-in -> original, for the request's tools whose names were replaced."""
    return {wire: t.name for t in request.tools if (wire := wire_name(t.name)) != t.name}
