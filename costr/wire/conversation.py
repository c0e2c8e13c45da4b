"""The neutral model every wire format is decoded into and encoded from.

One request, one answer and one stream of events, whatever API family the client speaks and
whatever wire format the upstream speaks. Codecs translate; nothing else looks at wire JSON.

Conventions:
- `Usage.input_tokens` counts *every* prompt token, cached ones included (OpenAI's
  convention); `cached_input_tokens` and `cache_write_tokens` are the parts of it read from and
  written to the provider's prompt cache.
- Stop reasons use Anthropic's vocabulary: end_turn, max_tokens, stop_sequence, tool_use,
  refusal, pause_turn.
- Tool call arguments are kept as the JSON *string* the model produced, so nothing is lost
  when a model emits arguments that are not valid JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union


# ---- content parts -----------------------------------------------------------------------

@dataclass(slots=True)
class Text:
    text: str
    cache_control: dict | None = None


@dataclass(slots=True)
class Image:
    """An image, either inline (`data` is base64 with `media_type`) or by `url`."""
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    detail: str | None = None

    def as_data_url(self) -> str:
        return self.url if self.url else f"data:{self.media_type};base64,{self.data}"


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model produced it


@dataclass(slots=True)
class ToolResult:
    tool_call_id: str
    content: list[Text | Image]
    is_error: bool = False
    name: str | None = None  # the tool's name, which Gemini needs and OpenAI does not send


@dataclass(slots=True)
class Thinking:
    """Model reasoning. `signature` is set only by an upstream that signs it (Anthropic);
    `redacted_data` holds an Anthropic redacted_thinking block's opaque data."""
    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None


Part = Union[Text, Image, ToolCall, ToolResult, Thinking]
# "system" is an instruction given mid-conversation (agents send these); the leading system
# prompt lives in ChatRequest.system. A format with no such role folds it into a user turn
# with `system_reminder`.
Role = Literal["user", "assistant", "system"]


def system_reminder(message: "Message") -> "Text":
    """A mid-conversation system message as user-turn text, for formats without the role."""
    return Text("<system-reminder>\n" + text_of(message.parts) + "\n</system-reminder>")


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]


# ---- request ------------------------------------------------------------------------------

@dataclass(slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(slots=True)
class ToolChoice:
    """auto: model decides; any: must call some tool; tool: must call `name`; none: no tools."""
    mode: Literal["auto", "any", "tool", "none"] = "auto"
    name: str | None = None


@dataclass(slots=True)
class ResponseFormat:
    """text, json_object (any JSON), or json_schema (`schema`, named `name`, `strict`)."""
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict | None = None
    name: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class ChatRequest:
    messages: list[Message]
    system: list[Text] = field(default_factory=list)
    model: str = "auto"
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None  # low / medium / high, or None
    thinking_budget: int | None = None    # explicit reasoning token budget when given
    user: str | None = None
    stream: bool = False
    include_usage: bool = False           # the client asked for usage in its stream
    # Where the request came from: the client's wire format and its body as sent, so a
    # provider speaking the same format can forward it untouched.
    source_format: str = ""
    raw: dict | None = None
    forward_headers: dict[str, str] = field(default_factory=dict)  # client headers for passthrough
    session: str | None = None  # the agent session or user this request belongs to, if known

    def has_images(self) -> bool:
        for message in self.messages:
            for part in message.parts:
                if isinstance(part, Image):
                    return True
                if isinstance(part, ToolResult) and any(isinstance(p, Image) for p in part.content):
                    return True
        return False


# ---- answer -------------------------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"]


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False  # True when the upstream reported none and Costr estimated it
    # Uses of tools the upstream runs and bills per use, by the name billing prices them under
    # ({"web_search": 3}; costr.wire.billing_features)
    server_tool_uses: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    content: list[Text | ToolCall | Thinking]
    stop_reason: StopReason | None = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    created: int = 0
    # The upstream's body as it sent it, and in which wire format, for same-format passthrough.
    raw: dict | None = None
    raw_format: str = ""


# ---- stream events ------------------------------------------------------------------------
# Content blocks are numbered by `index` in the order they start; a block's deltas all carry
# its index. A decoder guarantees: BlockStart before any delta of that index, BlockStop after.

@dataclass(slots=True)
class MessageStart:
    id: str
    model: str
    usage: Usage | None = None  # input usage when the upstream reports it up front


@dataclass(slots=True)
class BlockStart:
    index: int
    kind: Literal["text", "tool_call", "thinking", "redacted_thinking"]
    tool_call_id: str | None = None
    tool_name: str | None = None
    redacted_data: str | None = None


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(slots=True)
class ToolArgumentsDelta:
    index: int
    fragment: str


@dataclass(slots=True)
class ThinkingDelta:
    index: int
    text: str = ""
    signature: str | None = None


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class MessageEnd:
    stop_reason: StopReason | None
    usage: Usage
    stop_sequence: str | None = None


@dataclass(slots=True)
class StreamFailure:
    """The upstream failed after the stream began."""
    status: int
    message: str


Event = Union[MessageStart, BlockStart, TextDelta, ToolArgumentsDelta, ThinkingDelta, BlockStop,
              MessageEnd, StreamFailure]


@dataclass(slots=True)
class Frame:
    """One upstream stream frame: its neutral events, and the frame as the upstream sent it
    (`raw`, in wire format `raw_format`) so a client of the same format can get it verbatim."""
    events: list[Event]
    raw: Any = None
    raw_format: str = ""


# ---- embeddings ---------------------------------------------------------------------------

@dataclass(slots=True)
class EmbeddingRequest:
    inputs: list[str]
    model: str = "auto"
    dimensions: int | None = None
    user: str | None = None
    raw: dict | None = None


@dataclass(slots=True)
class EmbeddingResponse:
    vectors: list[list[float]]
    model: str
    usage: Usage = field(default_factory=Usage)


def text_of(parts: list[Any]) -> str:
    """The plain text of a list of parts (text, and the text inside tool results)."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, Text):
            out.append(part.text)
        elif isinstance(part, ToolResult):
            out.append(text_of(part.content))
    return "".join(out)
