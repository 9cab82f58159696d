"""The one rule of every background loop: an unexpected exception never reaches the root
nursery (issue 11.1).

The root nursery owns every service; a loop that lets an exception escape cancels all of
them, so one bad value (a lone surrogate in the frame log, an overflowing timestamp in a
last-seen batch) would end every charger's connection. Each loop therefore catches at
its own loop and hands the exception to its :class:`LoopGuard`, which

- counts it (``failures``: shown by ``voltaro ctl status`` and the console under
  ``protection.background_failures``);
- logs it with the loop's name and what it was doing: the traceback of the first
  failure, then at most one line per ``LOG_EVERY`` seconds with how many more there were
  (a loop failing every few seconds does not flood the log);
- backs off before the next attempt (``BACKOFF_FIRST`` doubling to ``BACKOFF_MAX``), so
  a loop whose every step fails does not spin; the first success resets it.

Cancellation is a BaseException and passes through untouched. A database that is down
or busy (:class:`StorageUnavailable`) is not an unexpected error: the loop backs off as
usual, but no line is logged and it is not counted as a failure; the outage is reported,
once and summarised, by the database's health log (issue 21 item 5).
"""

from __future__ import annotations

import logging

import trio

from voltaro.domain.ports import StorageUnavailable

LOG_EVERY = 60.0  # seconds between two log lines about the same loop's failures
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


class LoopGuard:
    """What one background loop did wrong: counted, logged (rate-limited), backed off."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self._log = logger
        self.failures = 0
        self.outage_retries = 0  # steps that found the database unavailable
        self._backoff = 0.0
        self._last_logged: float | None = None
        self._unlogged = 0

    def failed(self, exc: BaseException, doing: str) -> float:
        """Count and log ``exc``; return how long the loop should wait before going on."""
        if isinstance(exc, StorageUnavailable):
            self.outage_retries += 1
            self._backoff = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._backoff * 2))
            return self._backoff
        self.failures += 1
        now = trio.current_time()
        if self._last_logged is None:
            self._log.error(
                "%s: unexpected error while %s; continuing", self.name, doing, exc_info=exc
            )
            self._last_logged = now
        elif now - self._last_logged >= LOG_EVERY:
            self._log.error(
                "%s: unexpected error while %s; continuing (%d failures since the last "
                "report; latest %s: %s)",
                self.name,
                doing,
                self._unlogged + 1,
                type(exc).__name__,
                exc,
            )
            self._last_logged, self._unlogged = now, 0
        else:
            self._unlogged += 1
        self._backoff = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._backoff * 2))
        return self._backoff

    async def after_failure(self, exc: BaseException, doing: str) -> None:
        """:meth:`failed`, then wait the back-off."""
        await trio.sleep(self.failed(exc, doing))

    def succeeded(self) -> None:
        self._backoff = 0.0
