"""Writing off the request path: records queue in memory and a background task writes them in
batches; closing flushes everything (a SIGTERM'd server loses nothing it answered: the app's
shutdown closes the writers only once the requests it cut short have settled). The ledger is
written this way, and so are kept prompts (kept_prompts.py)."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from costr.accounts.records import Store
from costr.accounts.usage_rollups import ADD_TO_ROLLUP, rollup_increments

log = logging.getLogger("costr.ledger")


class BatchWriter:
    """Queues records and writes them with `write(batch)`. `max_pending`: beyond it the oldest
    queued records are dropped (for records worth less than the memory they would hold while
    the database is away); None keeps everything until it is written."""

    what = "records"   # for the log

    def __init__(self, write: Callable[[list], Awaitable[None]], batch_size: int = 500,
                 interval_seconds: float = 0.2, max_pending: int | None = None):
        self.write, self.batch_size, self.interval = write, batch_size, interval_seconds
        self.max_pending = max_pending
        self._pending: list = []
        self._dropped = 0
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()   # a flush returns once what was queued before it is written
        self._task: asyncio.Task | None = None
        self._closing = False
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def record(self, record) -> None:
        """Queue a record; never waits."""
        if self._closed:   # nothing will write it: say so rather than lose it silently
            log.error("%s arrived after their writer was closed: one is not written", self.what)
            return
        self._pending.append(record)
        if self.max_pending is not None and len(self._pending) > self.max_pending:
            if not self._dropped:
                log.warning("more than %d %s queued: dropping the oldest until the database "
                            "takes them", self.max_pending, self.what)
            self._dropped += len(self._pending) - self.max_pending
            del self._pending[: len(self._pending) - self.max_pending]
        if len(self._pending) >= self.batch_size:
            self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.flush()
            await self.between_batches()

    async def between_batches(self) -> None:
        """Called by the background task after each flush; housekeeping goes here."""

    async def flush(self) -> None:
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
            try:
                await self.write(batch)
                if self._dropped:
                    log.warning("%d %s were dropped while the database was away",
                                self._dropped, self.what)
                    self._dropped = 0
            except Exception:  # the database is away: keep the records and try again later
                log.exception("could not write %d %s; will retry", len(batch), self.what)
                self._pending[:0] = batch
                if not self._closing:
                    return
                await asyncio.sleep(0.5)

    async def close(self, timeout_seconds: float = 30.0) -> None:
        """Stop the background task and write everything still queued."""
        self._closing = True
        self._wake.set()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await asyncio.wait_for(self.flush(), timeout=timeout_seconds)
        except asyncio.TimeoutError:
            log.error("gave up writing %d %s at shutdown", len(self._pending), self.what)
        self._closed = True


class LedgerWriter(BatchWriter):
    """Writes each batch to the ledger and adds it to the daily rollup (usage_rollups.py).

    A limited key's record comes with its credit hold and charge (`settle=(hold, micros)`,
    books.py): the batch's settles and their records are written in one transaction, so no
    charge is ever without its record, and the request's answer never waits on the database
    (its hold keeps the credit covered until then)."""

    what = "ledger records"

    def __init__(self, store: Store, batch_size: int = 500, interval_seconds: float = 0.2):
        super().__init__(self._write_batch, batch_size, interval_seconds)
        self.store = store
        self._written: set[str] = set()   # ids of queued records already in the ledger (a retry)
        self._settles: dict[str, tuple] = {}   # by record id: (hold, charge) still to settle

    def record(self, record, settle: tuple | None = None) -> None:
        if settle is not None and not self._closed:
            self._settles[record.id] = settle
        super().record(record)

    def settling(self, key_id: str) -> bool:
        """Whether a hold of this key is queued to be settled."""
        return any(hold.key_id == key_id for hold, _ in self._settles.values())

    def pending_holds(self) -> list[str]:
        """The ids of the holds queued to be settled (renewed meanwhile, like running ones)."""
        return [hold.id for hold, _ in list(self._settles.values())]

    async def _write_batch(self, records: list) -> None:
        """The settles with their records in one transaction, then the other records (the
        insert ignores records already written), then the rollup in a transaction of its own
        only once those succeeded, so a retried batch keeps them equal and settles nothing
        twice (write_ledger_batch in usage_rollups.py does the same)."""
        written, settles = self._written, self._settles
        if settles:
            mine = [(*settles[r.id], r) for r in records if r.id in settles]
            if mine:
                await self.store.settle_many(mine)
                for *_, r in mine:   # in the ledger now: a retry of this batch skips them
                    del settles[r.id]
                    written.add(r.id)
        fresh = [r for r in records if r.id not in written] if written else records
        if fresh:
            await self.store.write_ledger(fresh)
            written.update(r.id for r in fresh)
        await self.store._execute_many(ADD_TO_ROLLUP, rollup_increments(records))
        written.difference_update(r.id for r in records)
