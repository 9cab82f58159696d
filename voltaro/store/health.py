"""Database health as the operator reads it in the log: an outage is three kinds of line.

A database outage must not flood the log (issue 21 item 5): every charger retries every
message, and a full error per retry buries the cause. So:

- the first failure is logged once, at ERROR, with its cause;
- while the outage lasts, one summary line per ``interval``: how long, how many
  messages wait to be stored and from how many chargers, how many attempts failed;
- the recovery is logged once with the outage's duration.

``Database.run`` reports every attempt here (one place); the ingest registers the
messages that wait (:meth:`DatabaseHealth.waiting`). ``run`` is the summary task.

Every other component that would log a consequence of the outage once per event (the
CALLERRORs sent to each charger, the frame log's deferred batches, the health probe,
connected flags not written, control requests refused) calls :meth:`absorb` first:
during an outage it is counted here and reported in the summary and recovery lines
instead, so the number of lines does not grow with the number of chargers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from voltaro.background import LoopGuard
from voltaro.domain.ports import StorageUnavailable
from voltaro.instruments import Histogram

log = logging.getLogger("voltaro.store.health")

# A success only ends an outage when no attempt has failed for this long: with SQLite
# locked for writes, reads still succeed and would otherwise end and restart it.
SETTLE_SECONDS = 1.0


class DatabaseHealth:
    def __init__(self) -> None:
        self.down_since: float | None = None
        self.failures = 0
        self.last_failure_at = 0.0
        self.last_success_at = 0.0
        # A charger message committed: the only proof that writes work again while
        # messages wait (a locked SQLite file still answers reads).
        self.last_write_at = 0.0
        self.last_cause = ""
        self._waiting: Counter[str] = Counter()
        # What components did not log one by one during this outage: what -> count,
        # and the chargers concerned.
        self._absorbed: Counter[str] = Counter()
        self._absorbed_chargers: dict[str, set[str]] = {}
        self.guard = LoopGuard("database outage log", log)
        # Process-lifetime figures for the metrics (issue 19); failures above resets
        # with each outage, these never do.
        self.unit_seconds = Histogram()  # a unit of work as its caller waits for it
        self.errors = {"transient": 0, "permanent": 0}  # units that failed, by kind
        self.retries = 0  # a charger message's write tried again after a transient error
        self.given_up = 0  # ... not stored within db_retry_seconds: the charger retries

    def finished(self, seconds: float, error: str | None = None) -> None:
        """One unit of work ended after ``seconds``: committed, or failed with ``error``
        ("transient" or "permanent")."""
        self.unit_seconds.observe(seconds)
        if error is not None:
            self.errors[error] += 1

    # --- reports from Database.run ------------------------------------------------------

    def failed(self, cause: str) -> None:
        now = time.monotonic()
        self.last_failure_at = now
        self.last_cause = cause
        if self.down_since is None:
            self.down_since = now
            self.failures = 1
            log.error(
                "database unavailable: %s; chargers get a CALLERROR and retry, nothing "
                "acknowledged is dropped",
                cause,
            )
        else:
            self.failures += 1

    def succeeded(self) -> None:
        self.last_success_at = time.monotonic()

    def wrote(self) -> None:
        """A charger message's write committed (the ingest's durable path)."""
        self.last_write_at = self.last_success_at = time.monotonic()

    @property
    def available(self) -> bool:
        return self.down_since is None

    def absorb(self, what: str, charger_id: str | None = None) -> bool:
        """During an outage, count one event a component would otherwise log (``what``
        names the kind, e.g. "CALLERRORs sent") and return True: the caller logs nothing,
        the summary lines carry the count. Outside an outage return False."""
        if self.down_since is None:
            return False
        self._absorbed[what] += 1
        if charger_id is not None:
            self._absorbed_chargers.setdefault(what, set()).add(charger_id)
        return True

    def _held_back(self) -> str:
        """The absorbed events as a clause of a summary line ("" when there are none)."""
        if not self._absorbed:
            return ""
        parts = []
        for what, count in sorted(self._absorbed.items()):
            chargers = self._absorbed_chargers.get(what)
            parts.append(f"{count} {what}" + (f" to {len(chargers)} chargers" if chargers else ""))
        return "; not logged one by one: " + ", ".join(parts)

    # --- messages waiting to be stored ---------------------------------------------------

    @contextmanager
    def waiting(self, charger_id: str) -> Iterator[None]:
        self._waiting[charger_id] += 1
        try:
            yield
        except StorageUnavailable as exc:
            # Not stored in time without any attempt failing (every message waited
            # behind one stuck in the database: SQLite locked, a hung connection): that
            # is the start of an outage too, reported before the charger's CALLERROR.
            if self.down_since is None:
                self.failed(str(exc))
            raise
        finally:
            self._waiting[charger_id] -= 1
            if self._waiting[charger_id] <= 0:
                del self._waiting[charger_id]

    @property
    def messages_waiting(self) -> int:
        return sum(self._waiting.values())

    @property
    def chargers_waiting(self) -> int:
        return len(self._waiting)

    # --- the summary task ------------------------------------------------------------------

    def check(self, *, summary_due: bool) -> None:
        """End the outage if it settled, else log a summary line when one is due."""
        if self.down_since is None:
            return
        now = time.monotonic()
        settled = now - self.last_failure_at >= SETTLE_SECONDS
        # While charger messages wait to be stored, only one of them committing proves
        # the outage over: reads (the health probe, the background loops) go on while a
        # locked SQLite file refuses every write, and a write waiting on the lock fails
        # only after the lock timeout, so "no failure for a second" proves nothing then.
        if self.messages_waiting:
            recovered = self.last_write_at > self.last_failure_at
        else:
            recovered = self.last_success_at > self.last_failure_at
        if recovered and settled:
            log.warning(
                "database available again after %.1f s (%d failed attempts during the outage%s)",
                self.last_success_at - self.down_since,
                self.failures,
                self._held_back(),
            )
            self.down_since = None
            self.failures = 0
            self._absorbed.clear()
            self._absorbed_chargers.clear()
            return
        if summary_due:
            log.warning(
                "database still unavailable after %.0f s: %d messages from %d chargers wait "
                "to be stored, %d failed attempts%s; last error: %s",
                now - self.down_since,
                self.messages_waiting,
                self.chargers_waiting,
                self.failures,
                self._held_back(),
                self.last_cause,
            )

    async def run(
        self, interval: float, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Log the summary lines and the recovery (one task per process)."""
        task_status.started()
        tick = min(interval, SETTLE_SECONDS / 2)
        next_summary: float | None = None
        while True:
            await trio.sleep(tick)
            if self.down_since is None:
                next_summary = None
                continue
            now = time.monotonic()
            if next_summary is None:
                next_summary = self.down_since + interval
            due = now >= next_summary
            if due:
                next_summary = now + interval
            try:
                self.check(summary_due=due)
            except Exception as exc:  # issue 11.1: never the root nursery
                await self.guard.after_failure(exc, "logging the outage summary")
