"""Reading an upstream's answer without letting it decide how much memory Costr spends.

A whole answer (`read_capped`) and each line of a streamed one (`capped_lines`) are read in
the chunks the network delivers and refused, with a retryable 502, as soon as they pass the
cap (`costr serve --max-answer-mb`, default 64 MB): a 200 MB answer is never held whole.
A declared Content-Length over the cap is refused before a byte of the body is read. An error
answer's body is only read as far as its message can be useful (`ERROR_BODY_BYTES`).
"""
from __future__ import annotations

from typing import AsyncIterator

from costr.errors import UpstreamError

MB = 1024 * 1024
DEFAULT_MAX_ANSWER_BYTES = 64 * MB
ERROR_BODY_BYTES = 1 * MB   # of an error answer; its message is cut far shorter anyway


def answer_too_large(cap: int, what: str = "an answer", host: str = "") -> UpstreamError:
    """Retryable: another upstream, or the same one asked again, may answer within the cap."""
    where = f"the upstream at {host}" if host else "the upstream"
    return UpstreamError(f"{where} sent {what} larger than Costr's limit of {_mb(cap)} MB "
                         "(costr serve --max-answer-mb)", upstream_status=200, retryable=True)


async def read_capped(resp, cap: int, host: str = "") -> bytes:
    """The whole body of an aiohttp response, or `answer_too_large` once it passes `cap`."""
    declared = resp.content_length
    if declared is not None and declared > cap:
        raise answer_too_large(cap, host=host)
    if declared is not None and "content-encoding" not in resp.headers:
        return await resp.read()   # no more than declared can arrive: the common case, at speed
    chunks, size = [], 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > cap:
            raise answer_too_large(cap, host=host)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_error_body(resp) -> bytes:
    """An error answer's body, up to ERROR_BODY_BYTES; the rest is left unread (the
    connection is then closed rather than reused)."""
    chunks, size = [], 0
    async for chunk in resp.content.iter_any():
        chunks.append(chunk[:ERROR_BODY_BYTES - size])
        size += len(chunks[-1])
        if size >= ERROR_BODY_BYTES:
            break
    return b"".join(chunks)


async def capped_lines(content, cap: int, host: str = "") -> AsyncIterator[bytes]:
    """The body's lines, each with its `\\n` (the last one without, when the body does not end
    in one), or `answer_too_large` for a line longer than `cap`. Unlike aiohttp's own line
    iterator (which fails on a line over 512 KB, and copies a long line once per chunk),
    pieces of a long line are kept until its end arrives and joined once."""
    pending: list[bytes] = []
    pending_size = 0
    async for chunk in content.iter_any():
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end + 1]
            if pending_size + len(piece) > cap:
                raise answer_too_large(cap, "a stream line", host)
            if pending:
                pending.append(piece)
                piece = b"".join(pending)
                pending, pending_size = [], 0
            yield piece
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
            pending_size += len(chunk) - start
            if pending_size > cap:
                raise answer_too_large(cap, "a stream line", host)
    if pending:
        yield b"".join(pending)


def _mb(size: int) -> str:
    return f"{size / MB:g}"
