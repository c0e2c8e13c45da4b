"""Server-sent events: reading them from an upstream and writing them to a client."""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

import orjson


@dataclass(slots=True)
class SSEvent:
    event: str | None
    data: str


async def read_events(lines: AsyncIterator[bytes]) -> AsyncIterator[SSEvent]:
    """Parse an SSE byte-line stream into events (one per blank-line-terminated record)."""
    event: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SSEvent(event, "\n".join(data))
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
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
