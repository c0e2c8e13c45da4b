"""What a client may send: how large a body, how many messages and tools, how long a header.

Each limit is checked as early as what it limits can be seen, so a hostile or broken client
costs Costr little: header sizes before anything else, the body's declared length before a byte
of it is read, its actual length while it streams in (reading stops at limit + 1 bytes), and
the message and tool counts once the body is decoded into the neutral request. The endpoint
authenticates between the header check and the body read, so a caller without a valid key
never gets Costr to read its body at all.
"""
from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from costr.errors import InvalidRequest
from costr.wire.conversation import ChatRequest

MB = 1024 * 1024


class RequestTooLarge(InvalidRequest):
    """A body over the size limit: 413, which each family's shape maps to its own type."""
    status = 413
    code = "request_too_large"


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """The defaults are meant to sit far above what a legitimate client sends (a long agent
    session with its tools and pasted files; agents with many MCP servers send tens of tools,
    rarely hundreds), so that only abuse meets them, while each bounds what one request can
    make Costr hold in memory or spend scoring."""
    max_body_bytes: int = 32 * MB
    max_messages: int = 10_000
    max_tools: int = 1_000
    max_header_bytes: int = 16 * 1024   # any one header value
    max_headers: int = 128              # agents send a dozen or two


def check_headers(headers, limits: RequestLimits) -> None:
    """Refuse (400) a request whose headers are too many or one of them too long, before any of
    their values is read, kept or quoted back in an error message."""
    if len(headers.raw) > limits.max_headers:
        raise InvalidRequest(f"The request has {len(headers.raw)} headers; Costr takes at most "
                             f"{limits.max_headers}.", code="too_many_headers")
    for name, value in headers.raw:
        if len(value) > limits.max_header_bytes:
            shown = name[:64].decode("latin-1")
            raise InvalidRequest(f"The header {shown!r} is {len(value)} bytes long; Costr takes "
                                 f"header values of at most {limits.max_header_bytes} bytes.",
                                 param=shown, code="header_too_large")


async def read_capped_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 as soon as it is known to exceed `limit`: from its
    Content-Length before reading, or while it streams in (chunked), after limit + 1 bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> RequestTooLarge:
    # What the client still sends is dropped by the HTTP server as it arrives, never kept, and
    # the connection is closed once it has been idle for the keep-alive timeout. Closing it at
    # once ("connection: close") would be worse: the client's unread upload makes the kernel
    # reset the connection, and the client sees the reset instead of this 413.
    return RequestTooLarge(f"The request body is larger than this gateway's limit of "
                           f"{_size(limit)}; send less (the operator sets the limit with "
                           "costr serve --max-body-mb).")


def _size(n: int) -> str:
    return f"{n / MB:g} MB" if n >= MB else f"{n} bytes"


def check_request_size(request: ChatRequest, limits: RequestLimits) -> None:
    """Refuse (400) a decoded request with more messages or tools than the limits allow."""
    if len(request.messages) > limits.max_messages:
        raise InvalidRequest(f"The request has {len(request.messages)} messages; Costr takes at "
                             f"most {limits.max_messages}.", param="messages",
                             code="too_many_messages")
    if len(request.tools) > limits.max_tools:
        raise InvalidRequest(f"The request has {len(request.tools)} tools; Costr takes at most "
                             f"{limits.max_tools}.", param="tools", code="too_many_tools")
