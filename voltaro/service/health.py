"""Server health as live events: consoles see a database outage and connection counts as
they change, not only when they re-read the whole state (issue 12 #2).

One task probes the database every ``probe_every`` seconds (a read on a pooled
connection; with PostgreSQL a dead server or a refused connection fails it) and
watches the registry; whenever the database state or the number of connected chargers
changes it publishes ``server.health``. It never raises: a probe that fails *is* the
news. A locked SQLite file is not "down" (reads go on while a writer holds the lock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from voltaro.background import LoopGuard
from voltaro.control.wire import Event
from voltaro.net.registry import Registry
from voltaro.service.hub import EventHub
from voltaro.store.db import Database

log = logging.getLogger(__name__)

PROTECTION_EVERY = 2.0


def _select_one(session: Session) -> None:
    session.execute(text("SELECT 1"))


def _reason(exc: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's background link."""
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return (message[0] if message else exc.__class__.__name__)[:200]


class HealthMonitor:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        hub: EventHub,
        *,
        probe_every: float = 2.0,
        probe_limit: float = 5.0,
    ) -> None:
        self._db = db
        self._registry = registry
        self._hub = hub
        self._probe_every = probe_every
        self._probe_limit = probe_limit
        self.database_ok = True
        self.database_error: str | None = None
        self._published: dict[str, Any] | None = None
        self._logged_outage = False
        self.guard = LoopGuard("health monitor", log)
        # Issue 11: the hardening counters, published when they change (at most every
        # PROTECTION_EVERY seconds: a flood changes them all the time).
        self.protection: Callable[[], dict[str, Any]] | None = None
        self._protection: dict[str, Any] | None = None
        self._protection_at = -PROTECTION_EVERY
        # Several nodes (issue 18): status's cluster block, kept fresh by the node.
        self.cluster: Callable[[], dict[str, Any] | None] | None = None

    def snapshot(self) -> dict[str, Any]:
        database: dict[str, Any] = {"ok": self.database_ok, "backend": self._db.backend}
        if self.database_error:
            database["error"] = self.database_error
        out = {"database": database, "connected_chargers": len(self._registry)}
        if self.protection is not None:
            now = trio.current_time()
            if self._protection is None or now - self._protection_at >= PROTECTION_EVERY:
                self._protection, self._protection_at = self.protection(), now
            out["protection"] = self._protection
        if self.cluster is not None and (block := self.cluster()) is not None:
            out["cluster"] = block
        return out

    async def probe(self) -> None:
        """One database probe; updates ``database_ok`` and ``database_error``."""
        error: str | None = None
        try:
            with trio.move_on_after(self._probe_limit) as waited:
                await self._db.run(_select_one)
            if waited.cancelled_caught:
                error = f"no answer within {self._probe_limit:g} s"
        except SQLAlchemyError as exc:
            error = _reason(exc)
        except Exception as exc:  # a probe must never end the monitor (or the server)
            log.exception("database probe failed unexpectedly")
            error = _reason(exc)
        # The outage itself is logged by the database's health report (first failure,
        # summaries, recovery); this probe adds a line only for what that report cannot
        # see (a probe that got no answer at all) and for its own recovery then.
        if error is not None and self.database_ok:
            self._logged_outage = not self._db.health.absorb("health probes failed")
            if self._logged_outage:
                log.error("database unavailable: %s", error)
        elif error is None and not self.database_ok and self._logged_outage:
            log.warning("database reachable again")
        self.database_ok = error is None
        self.database_error = error

    def publish_if_changed(self) -> bool:
        current = self.snapshot()
        if current == self._published:
            return False
        self._published = current
        self._hub.publish(Event.SERVER_HEALTH, current)
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.probe()
            self.publish_if_changed()
        except Exception as exc:  # issue 11.1: the server starts anyway
            self.guard.failed(exc, "probing the database at start")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._probe_loop)
            task_status.started()
            # Connection counts are cheap to read: check them every quarter second, so a
            # console's header follows chargers coming back after a restart at once,
            # even while a probe waits on a dead database.
            while True:
                await trio.sleep(0.25)
                try:
                    self.publish_if_changed()
                except Exception as exc:  # issue 11.1: never the root nursery
                    await self.guard.after_failure(exc, "publishing server health")

    async def _probe_loop(self) -> None:
        while True:
            await trio.sleep(self._probe_every)
            try:
                await self.probe()
                self.publish_if_changed()
                self.guard.succeeded()
            except Exception as exc:  # issue 11.1: never the root nursery
                await self.guard.after_failure(exc, "probing the database")
