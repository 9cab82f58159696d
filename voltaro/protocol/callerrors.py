"""Every CALLERROR the Central System sends to a charger: logged and counted per charger.

A charger that keeps getting CALLERRORs keeps retrying (OCPP 1.6 §3.7.1 for transaction
messages, and most firmwares for everything else); the operator must be able to see why.
Each one is logged at WARNING with the charger id, the message id, the action and the
error code. A charger stuck in a retry loop would flood the log, so per charger at most
``burst`` lines are written per ``window`` seconds; the lines held back are counted and
summarised with the next line written. The counts are kept for the process lifetime,
across reconnections, and shown by ``voltaro ctl chargers show``.

During a database outage every charger gets an InternalError for every message it
retries; those are the outage's consequence, already reported by the database's health
log. ``absorb`` (given by the composition root) takes them: counted here as always, and
summarised there instead of one line per charger (issue 21 item 5).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("voltaro.protocol")


@dataclass(slots=True)
class _ChargerErrors:
    total: int = 0
    window_start: float = 0.0
    logged_in_window: int = 0
    held_back: int = 0


class CallErrorLog:
    """Shared by every connection of the process (one instance, built at the root)."""

    def __init__(
        self,
        *,
        window: float = 60.0,
        burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
        absorb: Callable[[str, str], bool] | None = None,
        counted: Callable[[str], None] | None = None,
    ) -> None:
        """``absorb(charger_id, code)``: True when the line is reported elsewhere;
        ``counted(charger_id)``: told of every one (the charger's health counters)."""
        self._absorb = absorb
        self._counted = counted
        self._window = window
        self._burst = burst
        self._clock = clock
        self._by_charger: dict[str, _ChargerErrors] = {}
        # Per error code, for the metrics (codes are the spec's few: bounded).
        self.by_code: dict[str, int] = {}

    def sent(
        self, charger_id: str, unique_id: str, action: str | None, code: str, description: str
    ) -> None:
        """Count one CALLERROR sent to ``charger_id`` and log it unless rate-limited."""
        entry = self._by_charger.setdefault(charger_id, _ChargerErrors())
        entry.total += 1
        self.by_code[code] = self.by_code.get(code, 0) + 1
        if self._counted is not None:
            self._counted(charger_id)
        if self._absorb is not None and self._absorb(charger_id, code):
            return
        now = self._clock()
        if now - entry.window_start >= self._window:
            entry.window_start, entry.logged_in_window = now, 0
        if entry.logged_in_window >= self._burst:
            entry.held_back += 1
            return
        entry.logged_in_window += 1
        held_back, entry.held_back = entry.held_back, 0
        log.warning(
            "charger=%s CALLERROR sent: message=%s action=%s code=%s (%s)%s",
            charger_id,
            unique_id,
            action or "-",
            code,
            description,
            f"; {held_back} more not logged" if held_back else "",
        )

    def count(self, charger_id: str) -> int:
        entry = self._by_charger.get(charger_id)
        return entry.total if entry is not None else 0

    def counts(self) -> dict[str, int]:
        return {charger_id: e.total for charger_id, e in self._by_charger.items()}
