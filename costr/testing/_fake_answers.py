"""What the fake upstream answers, independent of any wire format.

Each wire codec (`_fake_openai`, `_fake_anthropic`, `_fake_gemini`) reduces a request to an
`Ask`, and encodes an `Answer` back; the decision in between lives here, once.
"""
from __future__ import annotations

import math
import re
import secrets
from collections import deque
from dataclasses import dataclass, field

import orjson

REPLY_EXACTLY = re.compile(r"Reply exactly:[ \t]*(.+)")
SUMMARY_CHARS = 80
FEW_PROPERTIES = 3  # a schema with at most this many properties gets them all, not just required


@dataclass(slots=True)
class Tool:
    name: str
    schema: dict


@dataclass(slots=True)
class Ask:
    """The parts of a chat request the fake's behaviour depends on."""
    model: str
    tools: list[Tool] = field(default_factory=list)
    last_is_tool_result: bool = False
    last_text: str = ""           # the last message's text, or the tool result's
    prompt_chars: int = 0         # all text of the request, for usage
    stream: bool = False
    include_usage: bool = False   # OpenAI stream_options.include_usage

    @property
    def input_tokens(self) -> int:
        return count_tokens(self.prompt_chars)


@dataclass(slots=True)
class ToolCall:
    name: str
    arguments: dict
    id: str | None = None  # None: each codec mints one in its provider's style

    @property
    def arguments_json(self) -> str:
        return orjson.dumps(self.arguments).decode()


@dataclass(slots=True)
class Answer:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    status: int = 200
    error: str = ""
    delay_ms: float = 0.0

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    @property
    def output_tokens(self) -> int:
        chars = len(self.text) + sum(len(c.name) + len(c.arguments_json) for c in self.tool_calls)
        return count_tokens(chars)

    @classmethod
    def from_entry(cls, entry: dict) -> "Answer":
        """One script entry: {"text": ...} or {"tool_calls": [{"name", "arguments"}]}, with
        optional "status"/"error" (an error in the provider's shape) and "delay_ms"."""
        calls = [ToolCall(c["name"], c.get("arguments") or {}, c.get("id"))
                 for c in entry.get("tool_calls") or []]
        status = int(entry.get("status") or (500 if entry.get("error") else 200))
        error = entry.get("error") or (f"scripted error {status}" if status >= 400 else "")
        return cls(text=entry.get("text") or "", tool_calls=calls, status=status, error=error,
                   delay_ms=float(entry.get("delay_ms") or 0))


class Script:
    """Canned answers consumed in order; once empty, the default behaviour answers."""

    def __init__(self, entries: list[dict] | None = None):
        # deque: appends from a test thread and pops on the server's loop need no lock.
        self._entries: deque[dict] = deque(entries or [])

    def extend(self, entries: list[dict]) -> None:
        self._entries.extend(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def next_answer(self, ask: Ask) -> Answer:
        try:
            return Answer.from_entry(self._entries.popleft())
        except IndexError:
            return default_answer(ask)


def default_answer(ask: Ask) -> Answer:
    """Call the first tool; after a tool result, summarise it; else obey `Reply exactly: X`."""
    if ask.last_is_tool_result:
        return Answer(text="Done: " + " ".join(ask.last_text.split())[:SUMMARY_CHARS])
    if ask.tools:
        tool = ask.tools[0]
        return Answer(tool_calls=[ToolCall(tool.name, arguments_from_schema(tool.schema))])
    match = REPLY_EXACTLY.search(ask.last_text)
    return Answer(text=match.group(1).strip() if match else "ok")


def arguments_from_schema(schema: dict) -> dict:
    """Plausible arguments for a JSON-schema object: the required properties, or all of them
    when there are few."""
    value = example_value(schema, "")
    return value if isinstance(value, dict) else {}


def example_value(schema: dict, name: str):
    if not isinstance(schema, dict):
        return "test"
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_value(schema[key][0], name)
    kind = _schema_type(schema)
    if kind == "object" or "properties" in schema:
        return _example_object(schema)
    if kind == "array":
        return [example_value(schema.get("items") or {}, name)]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    lowered = name.lower()
    return "README.md" if "path" in lowered or "file" in lowered else "test"


def _example_object(schema: dict) -> dict:
    properties = schema.get("properties") or {}
    required = [n for n in schema.get("required") or [] if n in properties]
    names = list(properties) if len(properties) <= FEW_PROPERTIES or not required else required
    return {n: example_value(properties[n], n) for n in names}


def _schema_type(schema: dict) -> str:
    kind = schema.get("type") or ""
    if isinstance(kind, list):  # ["string", "null"]
        kind = next((k for k in kind if k != "null"), "null")
    return str(kind).lower()  # Gemini writes "STRING", "OBJECT"


def count_tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def pieces(text: str, parts: int = 4) -> list[str]:
    """Split text into about `parts` pieces, so streams have several deltas."""
    if not text:
        return []
    size = max(1, math.ceil(len(text) / parts))
    return [text[i:i + size] for i in range(0, len(text), size)]


def tool_result_text(value) -> str:
    """A tool result as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (only,) = value.values()
        if isinstance(only, str):
            return only
    return orjson.dumps(value).decode()


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + secrets.token_hex(length // 2)
