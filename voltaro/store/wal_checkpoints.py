"""SQLite's WAL checkpoints, moved off the commit path.

Why (issue 14, latency at 500 msg/s from 1,000 chargers): in WAL mode SQLite copies the
log back into the database file when a commit leaves the log at ``wal_autocheckpoint``
pages (1,000 by default), *in that commit*: every two or three seconds one group commit
of three MeterValues took 23-28 ms of CPU instead of ~2 ms, and every charger whose
message was in it, or queued behind it, waited that long for its answer.

A checkpoint does not need the writer: SQLite lets a PASSIVE checkpoint run on another
connection while the writer appends to the log (it copies what no reader still needs).
So the server runs one every ``interval`` seconds in a thread of its own, on a
connection of its own, outside the database's worker slots (``Database.limiter``): a
charger's commit never waits for it, and SQLite releases the GIL while it copies. The
log then stays a fraction of the automatic threshold, and the pool's connections keep
a high ``wal_autocheckpoint`` (``AUTOCHECKPOINT_PAGES``) only as a bound for when no
checkpointer runs (commands run against the file, tests) or it falls behind.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading

import trio

from voltaro.background import LoopGuard
from voltaro.domain.ports import StorageUnavailable

log = logging.getLogger(__name__)

# Pages the log may hold before a commit checkpoints it itself (4 KiB pages: ~40 MiB).
# With the checkpointer running every ``interval`` the log stays far below it.
AUTOCHECKPOINT_PAGES = 10_000


class WalCheckpointer:
    """Runs PASSIVE checkpoints of one SQLite file, off the database's worker slots."""

    def __init__(self, path: str, *, interval: float = 0.5) -> None:
        self._path = path
        self.interval = interval
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one checkpoint at a time on the connection
        self._guard = LoopGuard("WAL checkpointer", log)
        # Figures for tests and the operator: checkpoints run, log pages copied back.
        self.checkpoints = 0
        self.pages = 0
        self.wanted = True  # something was written since the last checkpoint

    def written(self) -> None:
        """A unit of work committed: the next round has something to copy."""
        self.wanted = True

    def checkpoint(self) -> tuple[int, int]:
        """One PASSIVE checkpoint (worker thread): (pages in the log, pages copied)."""
        with self._lock:
            row = self._open().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        busy, in_log, copied = (int(x) for x in row)
        if busy == 0 and copied > 0:
            self.checkpoints += 1
            self.pages += copied
        return in_log, copied

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            # Autocommit: the PRAGMA must not run inside a transaction of ours.
            self._connection = sqlite3.connect(
                self._path, timeout=5.0, check_same_thread=False, isolation_level=None
            )
        return self._connection

    def open(self) -> None:
        """Open the connection now (worker thread): at start, not when the process may
        be out of file descriptors."""
        with self._lock:
            self._open()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with contextlib.suppress(sqlite3.Error):
            await trio.to_thread.run_sync(self.open)  # else opened by the first round
        task_status.started()
        try:
            while True:
                await trio.sleep(self.interval)
                if not self.wanted:
                    continue
                self.wanted = False
                try:
                    # Not Database.run: no worker slot, so no charger write waits for it.
                    await trio.to_thread.run_sync(self.checkpoint)
                    self._guard.succeeded()
                except sqlite3.OperationalError as exc:
                    # The file cannot be reached now (locked, out of descriptors, disk
                    # full): retried next round, without a traceback (the writers report
                    # an outage); commits still checkpoint at AUTOCHECKPOINT_PAGES. Any
                    # other error (a file that is not a database) is logged below.
                    self.wanted = True
                    await self._guard.after_failure(StorageUnavailable(str(exc)), "checkpointing")
                except Exception as exc:
                    await self._guard.after_failure(exc, "checkpointing the WAL")
        finally:
            # Closed in a thread: it may wait for a checkpoint still running there.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.close)
