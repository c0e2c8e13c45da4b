"""Searching the ledger for the dashboard's call history: filters, keyset pagination and
export, plus the feedback and kept prompt of one request.

Pages are keyset-paginated on (ts, id), newest first: a page is "the next N rows before (or
after) this row", so page 1,000 costs what page 1 costs, where OFFSET would walk every row
before it. The queries run through the store's own executor (`?` placeholders; PostgreSQL's
`$n` are made by the store) and are plain SQL both databases accept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import AsyncIterator

import orjson

from costr.accounts.records import Feedback, LedgerRecord
from costr.accounts.store_sql import LEDGER_COLUMNS, ledger_from_row
from costr.accounts.usage_rollups import days_with_rows

EXPORT_BATCH = 1000
_SELECT = f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger"
FEEDBACK = "SELECT request_id, key_id, rating, comment, ts FROM feedback WHERE request_id = ?"
KEPT_PROMPT = "SELECT messages FROM kept_prompts WHERE request_id = ?"


class BadFilter(ValueError):
    """A filter value that cannot mean anything (a date that is not a date, ...)."""


@dataclass(frozen=True)
class Cursor:
    """A row's place in the newest-first order: its (ts, id)."""
    ts: float
    id: str

    def encode(self) -> str:
        return f"{self.ts!r}:{self.id}"   # repr round-trips the float exactly

    @classmethod
    def decode(cls, text: str) -> Cursor:
        ts, sep, request_id = text.partition(":")
        try:
            if not sep or not request_id:
                raise ValueError(text)
            return cls(float(ts), request_id)
        except ValueError:
            raise BadFilter(f"not a page position: {text!r}") from None


@dataclass(frozen=True)
class LedgerFilter:
    """What the history shows. `key_id` None means every key (admins only: the caller decides
    that, not this module). `status`: 'ok' (< 400), 'error' (>= 400) or one status code.
    `start`/`end`: UTC dates, inclusive. `request_id`: a prefix of the request id."""
    key_id: str | None = None
    status: str | None = None
    tier: str | None = None
    model: str | None = None      # the requested or the routed model
    policy: str | None = None
    start: date | None = None
    end: date | None = None
    request_id: str | None = None

    def where(self) -> tuple[list[str], list]:
        conditions, params = [], []
        if self.key_id is not None:
            conditions.append("key_id = ?")
            params.append(self.key_id)
        if self.status == "ok":
            conditions.append("status < 400")
        elif self.status == "error":
            conditions.append("status >= 400")
        elif self.status:
            if not self.status.isdigit() or not 100 <= int(self.status) <= 599:
                raise BadFilter("status is ok, error or an HTTP status code")
            conditions.append("status = ?")
            params.append(int(self.status))
        for column in ("tier", "policy"):
            if getattr(self, column):
                conditions.append(f"{column} = ?")
                params.append(getattr(self, column))
        if self.model:
            conditions.append("(routed_model = ? OR requested_model = ?)")
            params += [self.model, self.model]
        if self.start is not None:
            conditions.append("ts >= ?")
            params.append(_midnight(self.start))
        if self.end is not None:
            conditions.append("ts < ?")
            params.append(_midnight(self.end + timedelta(days=1)))
        if self.request_id:
            # A range on the primary key finds the prefix through its index; the exact
            # comparison after it keeps the answer right under any collation.
            prefix = self.request_id
            conditions.append("id >= ? AND id < ? AND substr(id, 1, ?) = ?")
            params += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1), len(prefix), prefix]
        return conditions, params


def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


def parse_day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"{name} is a date, YYYY-MM-DD") from None


@dataclass
class Page:
    records: list[LedgerRecord]
    older: Cursor | None = None   # pass as `before` for the next older page
    newer: Cursor | None = None   # pass as `after` for the next newer page
    filters: LedgerFilter = field(default_factory=LedgerFilter)


def _after_condition(before: Cursor | None, after: Cursor | None) -> tuple[list[str], list]:
    """The keyset condition, as a row-value comparison: both databases read it as a plain
    range on the (ts, id) and (key_id, ts, id) indexes, where the spelled-out OR form made them
    scan (page 21 of a million-request ledger: 98 -> 10 ms on SQLite, 214 -> 11 on PostgreSQL)."""
    if before is not None:
        return ["(ts, id) < (?, ?)"], [before.ts, before.id]
    if after is not None:
        return ["(ts, id) > (?, ?)"], [after.ts, after.id]
    return [], []


async def _span(store, filters: LedgerFilter) -> tuple[list[str], list] | None:
    """Time bounds for a filter on tier, model, policy or outcome, from the daily rollup: the
    days that hold a matching request. None when none does. Without them the ledger's (ts, id)
    index is walked until enough rows match, which for a filter matching nothing is all of it
    (a million requests: 0.5 s on SQLite, up to 1.4 s on PostgreSQL)."""
    f = filters
    if not (f.tier or f.model or f.policy or f.status) or f.request_id:
        return [], []
    failed = None if not f.status else f.status == "error" or (
        f.status != "ok" and int(f.status) >= 400)
    days = await days_with_rows(store, f.key_id, tier=f.tier, model=f.model, policy=f.policy,
                                failed=failed, first=f.start, last=f.end)
    if days is None:
        return None
    return ["ts >= ?", "ts < ?"], [_midnight(days[0]), _midnight(days[1] + timedelta(days=1))]


async def _rows(store, filters: LedgerFilter, limit: int, before: Cursor | None = None,
                after: Cursor | None = None) -> list[LedgerRecord]:
    """Up to `limit` records next to the cursor, newest first (after: oldest first)."""
    conditions, params = filters.where()   # (checks the filter values first)
    span = await _span(store, filters)
    if span is None:
        return []
    conditions, params = conditions + span[0], params + span[1]
    more, more_params = _after_condition(before, after)
    where = " AND ".join(conditions + more)
    order = "ASC" if after is not None else "DESC"
    sql = (f"{_SELECT}{' WHERE ' + where if where else ''} "
           f"ORDER BY ts {order}, id {order} LIMIT ?")
    return [ledger_from_row(r) for r in await store._fetch(sql, (*params, *more_params, limit))]


async def search_ledger(store, filters: LedgerFilter, limit: int = 50,
                        before: Cursor | None = None, after: Cursor | None = None) -> Page:
    """One page of the filtered ledger, newest first, with cursors to its neighbours (None
    where there is nothing further that way)."""
    rows = await _rows(store, filters, limit + 1, before, after)
    extra = len(rows) > limit
    rows = rows[:limit]
    if after is not None:
        rows.reverse()
    if not rows:
        return Page([], filters=filters)
    first, last = Cursor(rows[0].ts, rows[0].id), Cursor(rows[-1].ts, rows[-1].id)
    if after is not None:
        older_exists, newer_exists = True, extra
    else:
        older_exists = extra
        newer_exists = before is not None and bool(await _rows(store, filters, 1, after=first))
    return Page(rows, older=last if older_exists else None, newer=first if newer_exists else None,
                filters=filters)


async def export_ledger(store, filters: LedgerFilter) -> AsyncIterator[LedgerRecord]:
    """Every filtered record, newest first, fetched a batch at a time (the whole ledger is
    never in memory)."""
    before = None
    while True:
        rows = await _rows(store, filters, EXPORT_BATCH, before)
        for record in rows:
            yield record
        if len(rows) < EXPORT_BATCH:
            return
        before = Cursor(rows[-1].ts, rows[-1].id)


async def feedback_for(store, request_id: str) -> Feedback | None:
    rows = await store._fetch(FEEDBACK, (request_id,))
    if not rows:
        return None
    r = rows[0]
    return Feedback(r["request_id"], r["key_id"], int(r["rating"]), r["comment"] or "",
                    float(r["ts"]))


async def kept_prompt(store, request_id: str) -> list[dict] | None:
    """The request's kept conversation (chat messages), or None when it was not kept."""
    rows = await store._fetch(KEPT_PROMPT, (request_id,))
    return orjson.loads(rows[0]["messages"]) if rows else None
