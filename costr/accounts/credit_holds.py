"""Credit holds that outlive no crash.

Every hold (books.py) names the instance that took it and expires `hold_seconds` after it was
last renewed. At start-up, and then every minute (or every quarter of a hold's life, when that
is shorter), each instance renews the holds of its own requests still running, in one
statement, and releases every hold whose expiry has passed, whoever took it: such a hold was
left by an instance that crashed, was killed, or could not reach the database for longer than
a hold lasts. A running instance's holds are never released under it, since it renews them
long before they expire (and the holds of answered requests whose settle is still queued, as
ledger.py writes them in batches). And every second, while there are any, it releases the holds
that reserves the database failed may have left (the connection dropped as the reserve was
sent), as soon as it is back. docs/accounts.md ("Credit holds") has the whole story.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from costr.accounts.books import HOLD_SECONDS, Books
from costr.accounts.records import MICROS

log = logging.getLogger("costr.credits")

RECONCILE_SECONDS = 60.0
RETRY_SECONDS = 1.0   # how often settles the database failed are tried again
HOLD_SECONDS_ENV = "COSTR_CREDIT_HOLD_SECONDS"


def hold_seconds(setting: float | None = None) -> float:
    """How long a hold lasts unless renewed: `setting`, else $COSTR_CREDIT_HOLD_SECONDS, else
    HOLD_SECONDS (5 minutes)."""
    if setting is None:
        text = os.environ.get(HOLD_SECONDS_ENV, "").strip()
        try:
            setting = float(text) if text else HOLD_SECONDS
        except ValueError:
            raise ValueError(f"{HOLD_SECONDS_ENV} must be a number of seconds, not {text!r}") from None
    if not setting > 0:
        raise ValueError(f"a credit hold must last more than 0 seconds, not {setting}")
    return float(setting)


class HoldKeeper:
    """Renews this instance's holds and releases expired ones: once at start(), then in the
    background until close()."""

    def __init__(self, books: Books, every_seconds: float | None = None):
        self.books = books
        self.every = every_seconds or min(RECONCILE_SECONDS, books.hold_seconds / 4)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.reconcile()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def reconcile(self) -> tuple[int, int]:
        """Renew our running requests' holds, then release the expired; returns the
        (holds, micros) released. A database that cannot be reached is logged, not raised."""
        books = self.books
        try:
            held = books.held_ids()
            if held:
                await books.store.renew_holds(books.instance, held,
                                              time.time() + books.hold_seconds)
            holds, micros = await books.store.release_expired_holds(time.time())
        except Exception:  # noqa: BLE001 - the database is away: the next round catches up
            log.exception("could not renew or release credit holds; will retry in %gs", self.every)
            return 0, 0
        if holds:
            log.warning("released %d expired credit hold(s), $%.6f in all, left by requests "
                        "an instance stopped without settling", holds, micros / MICROS)
        return holds, micros

    async def settle_what_failed(self) -> int:
        """Release the holds that reserves the database failed may have left, oldest first,
        until the database fails again; returns how many went through."""
        books, done = self.books, 0
        while books.unsettled:
            hold = books.unsettled[0]   # left in place until the database takes it
            try:
                await books.store.settle(hold, 0)
            except Exception:  # noqa: BLE001 - still away: the next round tries again
                log.debug("the database still fails settles", exc_info=True)
                break
            if books.unsettled and books.unsettled[0] is hold:   # (not dropped meanwhile, when full)
                books.unsettled.popleft()
            done += 1
        if done:
            log.warning("released %d credit hold(s) that reserves cut off by the database may "
                        "have left; nothing charged", done)
        return done

    async def _run(self) -> None:
        step = min(RETRY_SECONDS, self.every)
        since_reconcile = 0.0
        while True:
            await asyncio.sleep(step)
            since_reconcile += step
            if self.books.unsettled:
                await self.settle_what_failed()
            if since_reconcile >= self.every:
                since_reconcile = 0.0
                await self.reconcile()

    async def close(self) -> None:
        """Stop, with a last try at the settles the database failed."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.books.unsettled:
            await self.settle_what_failed()
