"""Retention of the files chargers upload (diagnostics, security logs): files older than
``upload_retention_days`` are deleted from disk and from the list (issue 16).

A site box's disk is small and every GetDiagnostics can add up to ``upload_max_bytes``.
The sweep runs at start and then every ``interval`` seconds, ``batch`` files per unit of
work. The bytes go first, then the rows: a file whose bytes cannot be deleted keeps
its row (and a log line) and is tried again at the next sweep, so no bytes are ever
left on disk without a row that names them. Firmware images are never deleted by age
(``voltaro ctl firmware remove`` does that, refusing while they are in use).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import trio

from voltaro.background import LoopGuard
from voltaro.domain.timestamps import utc_now
from voltaro.service.files import FileTransfers
from voltaro.store import files as store
from voltaro.store.db import Database
from voltaro.store.errors import TransientStorageError

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600.0
BATCH = 200


class UploadRetention:
    def __init__(
        self,
        db: Database,
        files: FileTransfers,
        *,
        days: int,
        interval: float = SWEEP_INTERVAL,
        batch: int = BATCH,
    ) -> None:
        self._db = db
        self._files = files
        self._days = days
        self._interval = interval
        self._batch = batch
        self.removed = 0  # files deleted since start
        self.guard = LoopGuard("upload retention sweep", log)

    async def sweep(self) -> int:
        """Delete every upload older than the retention; the number deleted."""
        cutoff = utc_now() - timedelta(days=self._days)
        removed = 0
        while True:
            old = await self._db.run(store.uploads_older_than, cutoff, self._batch)
            if not old:
                return removed

            def unlink(found: list[store.StoredFile] = old) -> list[int]:
                gone = []
                for stored in found:
                    path = self._files.path_of(stored)
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as exc:
                        log.warning("upload #%d %s not deleted: %s", stored.id, path, exc)
                        continue
                    gone.append(stored.id)
                return gone

            gone = await trio.to_thread.run_sync(unlink)
            if gone:
                await self._db.run(store.remove_files, gone)
            removed += len(gone)
            self.removed += len(gone)
            if len(gone) < len(old):
                return removed  # the rest waits for the next sweep, not a busy loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if self._days <= 0:
            await trio.sleep_forever()
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info(
                        "uploads: deleted %d files older than %d days (upload_retention_days)",
                        removed,
                        self._days,
                    )
            except TransientStorageError:
                pass  # the database's health report logs the outage; the next sweep goes on
            except Exception as exc:  # never the root nursery (issue 11.1)
                self.guard.failed(exc, "deleting old uploads")
            else:
                self.guard.succeeded()
            await trio.sleep(self._interval)
