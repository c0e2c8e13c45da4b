"""Who hears how a request ended on the books: the server's metrics, traces and access log.

The server watches each HTTP request (`watch()`, in the request's own context) and is told
here which books entry the request opened and when that entry was settled, with no import
of the server: the books call `opened` and `finished`, two context-variable look-ups per
request. A streamed answer is settled inside the response's body iteration, before the
request's last byte is sent; one whose client went away may be settled after the server is
done with the request, and the watch then hears of it late, from any context.
"""
from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any, Callable

_current: ContextVar[RequestWatch | None] = ContextVar("costr_request_watch", default=None)
_LATE_LIMIT = 10_000   # watches waiting for an entry that was never settled are dropped past this
_late: dict[int, RequestWatch] = {}   # by id(entry): requests over whose entry is still open


class RequestWatch:
    """One HTTP request being watched: its books entry, once it has one. `on_late` is called
    with the entry when it is settled after the server has finished with the request."""
    __slots__ = ("entry", "on_late", "key_id")

    def __init__(self):
        self.entry: Any = None
        self.key_id: str | None = None   # the caller's key, once authenticated (never the key)
        self.on_late: Callable[[Any], None] | None = None

    def wait_for_entry(self, on_late: Callable[[Any], None]) -> bool:
        """The server is done with the request: True when its entry is still open, in which
        case `on_late(entry)` is called once it is settled."""
        entry = self.entry
        if entry is None or entry.settled:
            return False
        self.on_late = on_late
        if len(_late) >= _LATE_LIMIT:
            _late.pop(next(iter(_late)))
        _late[id(entry)] = self
        return True


def watch() -> tuple[RequestWatch, Token]:
    """Start watching the request running in this context."""
    current = RequestWatch()
    return current, _current.set(current)


def unwatch(token: Token) -> None:
    _current.reset(token)


def authenticated(key_id: str) -> None:
    """The request watched in this context was made with the key `key_id`: requests that open
    no books entry (models, account endpoints, /metrics) are still logged with it."""
    current = _current.get()
    if current is not None:
        current.key_id = key_id


def opened(entry) -> None:
    """The books opened `entry` for the request watched in this context, if any."""
    current = _current.get()
    if current is not None:
        current.entry = entry


def finished(entry) -> None:
    """`entry` was settled: a request the server is already done with hears of it now."""
    if _late:
        late = _late.pop(id(entry), None)
        if late is not None and late.entry is entry and late.on_late is not None:
            late.on_late(entry)
