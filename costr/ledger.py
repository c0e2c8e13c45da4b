"""Writing the ledger off the request path: records queue in memory and a background task
writes them in batches; closing flushes everything (a SIGTERM'd server loses nothing it
answered)."""
from __future__ import annotations

import asyncio
import logging

from .accounts import LedgerRecord, Store

log = logging.getLogger("costr.ledger")


class LedgerWriter:
    def __init__(self, store: Store, batch_size: int = 500, interval_seconds: float = 0.2):
        self.store, self.batch_size, self.interval = store, batch_size, interval_seconds
        self._pending: list[LedgerRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def record(self, record: LedgerRecord) -> None:
        """Queue a record; never waits."""
        self._pending.append(record)
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

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
            try:
                await self.store.write_ledger(batch)
            except Exception:  # the database is away: keep the records and try again later
                log.exception("could not write %d ledger records; will retry", len(batch))
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
            log.error("gave up writing %d ledger records at shutdown", len(self._pending))
