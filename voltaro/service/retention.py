"""Retention of the raw frame log: frames older than ``frame_log_retention_days`` go.

The sweep runs at start and then every ``interval`` seconds. It deletes in bounded
batches, each its own unit of work (issue 10 §2.7): one huge DELETE would hold SQLite's
single writer, or PostgreSQL row locks under ``statement_timeout``, for as long as it
takes, and every charger message waiting behind it would run out of its answer budget.
Between two batches the database is free: a charger's write waiting for it goes first
(charger messages take a free slot first: voltaro.store.write_order), so billing and
status writes are delayed by at most one batch.

A failure never ends the server (the sweep is a background task): what was deleted
stays deleted, the rest is tried at the next sweep. A database outage is reported by
the database's health log, not once more here.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import trio

from voltaro.background import LoopGuard
from voltaro.domain.timestamps import utc_now
from voltaro.store import frames
from voltaro.store.db import Database
from voltaro.store.errors import StorageError, TransientStorageError

log = logging.getLogger(__name__)

PURGE_BATCH = 5000  # frames per unit of work
SWEEP_INTERVAL = 3600.0  # seconds between sweeps


class Retention:
    def __init__(
        self,
        db: Database,
        *,
        days: int,
        batch: int = PURGE_BATCH,
        interval: float = SWEEP_INTERVAL,
    ) -> None:
        self._db = db
        self._days = days
        self._batch = batch
        self._interval = interval
        self.purged = 0  # frames deleted since start
        self.failed_sweeps = 0
        self.guard = LoopGuard("frame-log retention sweep", log)

    async def sweep(self) -> int:
        """Delete every frame older than the retention period, ``batch`` at a time.

        Raises:
            StorageError: a batch failed; the batches before it stay done.
        """
        cutoff = utc_now() - timedelta(days=self._days)
        removed = 0
        while True:
            batch = await self._db.run(frames.purge_frames, cutoff, self._batch)
            removed += batch
            self.purged += batch
            if batch < self._batch:
                return removed
            # Let whatever waits for the database (and every other task) go first.
            await trio.lowlevel.checkpoint()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self._days <= 0:
            await trio.sleep_forever()
        while True:
            before = self.purged
            try:
                removed = await self.sweep()
                if removed:
                    log.info("frame log: purged %d frames older than %d days", removed, self._days)
            except TransientStorageError:
                # Logged by the database's health report; the next sweep goes on.
                self.failed_sweeps += 1
            except StorageError as exc:
                # The database refused the work: a background task never takes the
                # server down (issue 10 §2.7).
                self.failed_sweeps += 1
                log.warning(
                    "frame log retention sweep stopped after %d frames, retried in %.0f s: %s",
                    self.purged - before,
                    self._interval,
                    exc,
                )
            except Exception as exc:
                # Not a database answer: a bug. Logged with its traceback, counted in
                # `status` (issue 11.1); the next sweep goes on.
                self.failed_sweeps += 1
                self.guard.failed(
                    exc, f"purging old frames (stopped after {self.purged - before} frames)"
                )
            await trio.sleep(self._interval)
