"""What the Responses API remembers between requests, so `previous_response_id` and
`item_reference` can be honoured.

Kept in this instance's memory only: each answered response's whole conversation (the
messages it was asked, its own answer appended; not its `instructions`, which OpenAI does not
carry over either) and its output items by id, for `KEEP_SECONDS` after the answer, at most
`MAX_RESPONSES` responses and `MAX_ITEMS` items (the least recently used go first). Nothing is
kept for a request with `store: false`, nor for an answer that failed or whose stream the
client left before its end. After a restart, on another instance behind a load balancer, or once
expired, a reference is refused with OpenAI's `previous_response_not_found` (400), never
silently answered without its history.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from costr import Message

KEEP_SECONDS = 3600.0
MAX_RESPONSES = 2000
MAX_ITEMS = 20000


@dataclass(slots=True)
class Stored:
    messages: list[Message]
    expires: float


class ResponseStore:
    def __init__(self, keep_seconds: float = KEEP_SECONDS, max_responses: int = MAX_RESPONSES,
                 max_items: int = MAX_ITEMS, clock=time.monotonic):
        self.keep_seconds = keep_seconds
        self.max_responses = max_responses
        self.max_items = max_items
        self.clock = clock
        self._responses: OrderedDict[str, Stored] = OrderedDict()
        self._items: OrderedDict[str, tuple[dict, float]] = OrderedDict()

    def remember(self, response_id: str, messages: list[Message], items: list[dict]) -> None:
        """Keep a finished response's conversation (its answer included) and output items."""
        expires = self.clock() + self.keep_seconds
        self._responses[response_id] = Stored(messages, expires)
        self._responses.move_to_end(response_id)
        for item in items:
            if item.get("id"):
                self._items[item["id"]] = (item, expires)
                self._items.move_to_end(item["id"])
        _trim(self._responses, self.max_responses)
        _trim(self._items, self.max_items)

    def conversation(self, response_id: str) -> list[Message] | None:
        """The stored conversation of `response_id`, or None when unknown or expired."""
        stored = self._responses.get(response_id)
        if stored is None:
            return None
        if stored.expires <= self.clock():
            del self._responses[response_id]
            return None
        self._responses.move_to_end(response_id)
        return stored.messages

    def item(self, item_id: str) -> dict | None:
        found = self._items.get(item_id)
        if found is None:
            return None
        if found[1] <= self.clock():
            del self._items[item_id]
            return None
        return found[0]


def _trim(entries: OrderedDict, limit: int) -> None:
    while len(entries) > limit:
        entries.popitem(last=False)
