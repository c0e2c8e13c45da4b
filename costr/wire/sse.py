"""Server-sent events: reading them from an upstream and writing them to a client."""
from __future__ import annotations

from dataclasses import dataclass

import orjson

from costr.wire.capped_reads import answer_too_large


@dataclass(slots=True)
class SSEvent:
    event: str | None
    data: str


class SSEParser:
    """Server-sent events (one per blank-line-terminated record), parsed from the body's chunks
    as they arrive, with no generator per line: `feed(chunk)` returns the events the chunk
    completes, `close()` those the end of the body completes. A line longer than `max_line_bytes`
    or an event whose data lines add up to more than `max_event_bytes` is `answer_too_large`
    (a retryable UpstreamError); pieces of a long line are kept until its end and joined once."""

    __slots__ = ("max_line", "max_event", "host", "_pending", "_pending_size", "_event", "_data",
                 "_size")

    def __init__(self, max_line_bytes: int, max_event_bytes: int | None = None, host: str = ""):
        self.max_line, self.max_event, self.host = max_line_bytes, max_event_bytes, host
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._event: str | None = None
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[SSEvent]:
        events: list[SSEvent] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end + 1]
            if self._pending_size + len(piece) > self.max_line:
                raise answer_too_large(self.max_line, "a stream line", self.host)
            if self._pending:
                self._pending.append(piece)
                piece = b"".join(self._pending)
                self._pending, self._pending_size = [], 0
            self._line(piece, events)
            start = end + 1
        if start < len(chunk):
            self._pending.append(chunk[start:])
            self._pending_size += len(chunk) - start
            if self._pending_size > self.max_line:
                raise answer_too_large(self.max_line, "a stream line", self.host)
        return events

    def close(self) -> list[SSEvent]:
        events: list[SSEvent] = []
        if self._pending:
            self._line(b"".join(self._pending), events)
            self._pending = []
        if self._data:
            events.append(SSEvent(self._event, "\n".join(self._data)))
            self._data = []
        return events

    def _line(self, raw: bytes, events: list[SSEvent]) -> None:
        # Bytes that are not UTF-8 are the JSON decoder's to refuse, not a crash here.
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if self._data:
                events.append(SSEvent(self._event, "\n".join(self._data)))
            self._event, self._data, self._size = None, [], 0
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._size += len(raw)
            if self.max_event is not None and self._size > self.max_event:
                raise answer_too_large(self.max_event, "a stream event")
            self._data.append(value)
        elif name == "event":
            self._event = value


def data_line(payload) -> bytes:
    """`data: <json>\\n\\n`"""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def event_line(event: str, payload) -> bytes:
    """`event: <name>\\ndata: <json>\\n\\n`"""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
