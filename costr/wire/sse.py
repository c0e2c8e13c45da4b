"""Server-sent events: reading them from an upstream and writing them to a client."""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

import orjson

from costr.wire.capped_reads import answer_too_large


@dataclass(slots=True)
class SSEvent:
    event: str | None
    data: str


async def read_events(lines: AsyncIterator[bytes],
                      max_event_bytes: int | None = None) -> AsyncIterator[SSEvent]:
    """Parse an SSE byte-line stream into events (one per blank-line-terminated record). An
    event whose data lines add up to more than `max_event_bytes` is a retryable UpstreamError
    (a single line is capped by whoever reads the lines: costr.wire.capped_reads)."""
    event: str | None = None
    data: list[str] = []
    size = 0
    async for raw in lines:
        # Bytes that are not UTF-8 are the JSON decoder's to refuse, not a crash here.
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield SSEvent(event, "\n".join(data))
            event, data, size = None, [], 0
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            size += len(raw)
            if max_event_bytes is not None and size > max_event_bytes:
                raise answer_too_large(max_event_bytes, "a stream event")
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEvent(event, "\n".join(data))


def data_line(payload) -> bytes:
    """`data: <json>\\n\\n`"""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def event_line(event: str, payload) -> bytes:
    """`event: <name>\\ndata: <json>\\n\\n`"""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
