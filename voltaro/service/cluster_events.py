"""Events for consoles across a cluster (issue 18; scale-and-security A2 step 6).

A console (Textual app, ``voltaro ctl events``) attached to any node sees the events of
every charger, whichever node serves it. Three parts, all gated by ``settings.cluster``:

- :class:`EventExport`: the hub hands it every event this node publishes (``hub.export``,
  sync, never blocking: it only appends to a bounded queue). Its own task writes them,
  in order, in batches of one batch window (``WINDOW``) or ``BATCH_MAX`` events, into
  ``cluster_events`` in one short transaction that NOTIFYs the highest id on
  ``voltaro_events``. Charger messages never wait for it.
- :class:`EventImport`: every node reads the rows after its ``last_id`` (on each
  notification, on each resync of the LISTEN connection, and every ``poll`` seconds as a
  safety net), in pages, in id order, and republishes other nodes' rows on its hub with
  :meth:`EventHub.publish_remote`: they reach consoles only, and are never exported
  again. Writers append under one advisory lock (voltaro.store.cluster_events), so ids
  commit in order and ``id > last_id`` never skips a row: gap-free and, since a charger is
  served by one node at a time, in order per charger.
- a retention loop deletes rows older than ``cluster_events_retention`` seconds.

Not exported (node-local views): ``frame`` (raw frames: per charger in the shared frame
log), ``server.health`` (this node's database and connection counts) and
``load.allocation`` (this node's load manager). Coalesced: ``meter.values``, at most one
per charger and connector per ``COALESCE_SECONDS``; the latest value wins, the one held
back is written when its second is over, or earlier, just before any other event of the
same charger, so that order per charger holds (the final meter value before
``transaction.stopped``).

When the database is away, events wait in the queue (``cluster_events_buffer``); when
it is full the newest are dropped and counted, and once the database is back a
``cluster.gap`` row is written where they were missing: every other node's consoles get a
resync (re-read the state) at that point instead of a silent gap. This node's own
consoles never miss anything (they read the hub directly).
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import trio

from voltaro.background import LoopGuard
from voltaro.control.wire import Event
from voltaro.domain.timestamps import utc_now
from voltaro.service.hub import EventHub
from voltaro.store import cluster_events
from voltaro.store.cluster_events import GAP, OutboxEvent
from voltaro.store.db import Database
from voltaro.store.errors import StorageError
from voltaro.store.notify import Notification, PgListener

log = logging.getLogger(__name__)

NODE_LOCAL = frozenset({Event.FRAME.value, Event.SERVER_HEALTH.value, Event.LOAD_ALLOCATION.value})
COALESCED = frozenset({Event.METER_VALUES.value})
COALESCE_SECONDS = 1.0
WINDOW = 0.05  # seconds an event may wait for others to share its transaction
BATCH_MAX = 500  # events per transaction
READ_PAGE = 500  # rows per read
RETRY_MAX = 2.0  # seconds between two attempts while the database is away


@dataclass(slots=True)
class _Held:
    due: float
    order: int
    event: OutboxEvent


class EventExport:
    """This node's events into the outbox (see the module)."""

    def __init__(
        self,
        db: Database,
        node_id: str,
        *,
        buffer: int = 10_000,
        window: float = WINDOW,
        coalesce: float = COALESCE_SECONDS,
    ) -> None:
        self._db = db
        self._node = node_id
        self._buffer = buffer
        self._window = window
        self._coalesce = coalesce
        self._queue: collections.deque[OutboxEvent] = collections.deque()
        self._wake = trio.Event()
        self._order = itertools.count()
        # Coalescing: when each (charger, connector) last went out, and what is held back.
        self._last_sent: dict[tuple[str, Any], float] = {}
        self._held: dict[str, dict[Any, _Held]] = {}
        self._dues: collections.deque[tuple[float, str, Any]] = collections.deque()
        self._missing = 0  # dropped since the last gap row
        self._down_since: float | None = None
        self.guard = LoopGuard("cluster event export", log)
        # Counters (status, tests, docs/scaling.md figures).
        self.offered = 0
        self.written = 0
        self.coalesced = 0
        self.dropped = 0
        self.batches = 0

    # --- the hub's side: sync, never blocking ------------------------------------------

    def offer(self, name: str, data: dict[str, Any]) -> None:
        """``hub.export``: queue one event this node published."""
        if name in NODE_LOCAL:
            return
        self.offered += 1
        event = OutboxEvent(name, time.time(), data)
        charger = event.charger_id
        if charger is None:
            self._enqueue(event)
            return
        if name in COALESCED:
            connector = data.get("connector_id")
            key = (charger, connector)
            now = time.monotonic()
            last = self._last_sent.get(key)
            if last is not None and now - last < self._coalesce:
                held = self._held.setdefault(charger, {})
                if connector in held:
                    self.coalesced += 1  # the latest wins
                    held[connector].event = event
                else:
                    due = last + self._coalesce
                    held[connector] = _Held(due, next(self._order), event)
                    self._dues.append((due, charger, connector))
                    self._wake.set()  # the writer's next wake-up moves earlier
                return
            if charger in self._held and self._held[charger].pop(connector, None) is not None:
                self.coalesced += 1  # superseded by this one, which goes now
            self._last_sent[key] = now
        self._release(charger)
        self._enqueue(event)

    def _release(self, charger: str) -> None:
        """Queue what is held back for ``charger`` (before its next event: order)."""
        held = self._held.pop(charger, None)
        if not held:
            return
        now = time.monotonic()
        for connector, item in sorted(held.items(), key=lambda kv: kv[1].order):
            self._last_sent[(charger, connector)] = now
            self._enqueue(item.event)

    def _release_due(self) -> None:
        now = time.monotonic()
        while self._dues and self._dues[0][0] <= now:
            _, charger, connector = self._dues.popleft()
            held = self._held.get(charger)
            item = held.get(connector) if held else None
            if held is None or item is None or item.due > now:
                continue  # released earlier (and maybe held again, due later)
            del held[connector]
            if not held:
                del self._held[charger]
            self._last_sent[(charger, connector)] = now
            self._enqueue(item.event)

    def _enqueue(self, event: OutboxEvent) -> None:
        if len(self._queue) >= self._buffer:
            self.dropped += 1
            if self._missing == 0:
                log.warning(
                    "cluster event outbox full (%d events waiting for the database): "
                    "dropping events; consoles on other nodes will be told to resync",
                    len(self._queue),
                )
            self._missing += 1
            return
        self._queue.append(event)
        self._wake.set()

    # --- the writer ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await self._wait_for_events()
                if len(self._queue) < BATCH_MAX:
                    await trio.sleep(self._window)  # let the batch fill
                    self._release_due()
                await self._write_batch()
        finally:
            # Shutdown: what is queued (the chargers' disconnects) goes out if it can.
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                while self._queue and self._down_since is None:
                    await self._write_batch()

    async def _wait_for_events(self) -> None:
        while True:
            self._release_due()
            if self._queue:
                return
            timeout = self._dues[0][0] - time.monotonic() if self._dues else math.inf
            self._wake = trio.Event()
            with trio.move_on_after(max(0.0, timeout)):
                await self._wake.wait()

    async def _write_batch(self) -> None:
        batch = list(itertools.islice(self._queue, BATCH_MAX))
        try:
            await self._db.run(cluster_events.append, self._node, batch)
        except StorageError as exc:
            if exc.transient:
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning(
                        "cluster event outbox: database unavailable; holding events for "
                        "other nodes' consoles (up to %d)",
                        self._buffer,
                    )
                await trio.sleep(min(RETRY_MAX, self.guard.failed(exc, "writing events")))
                return
            # The database refuses this batch: it is lost for other nodes; say so there.
            log.warning("cluster event outbox: %d events refused: %s", len(batch), exc)
            self._drop(len(batch))
            self._missing += len(batch)
            self._mark_gap()
            return
        except Exception as exc:  # a bug: never the root nursery's problem (issue 11.1)
            self._drop(len(batch))
            self._missing += len(batch)
            self._mark_gap()
            await self.guard.after_failure(exc, "writing events")
            return
        self._drop(len(batch))
        self.written += len(batch)
        self.batches += 1
        if self._down_since is not None:
            log.info(
                "cluster event outbox: database back after %.1f s; %d events dropped meanwhile",
                time.monotonic() - self._down_since,
                self._missing,
            )
            self._down_since = None
        self._mark_gap()

    def _drop(self, count: int) -> None:
        for _ in range(count):
            self._queue.popleft()

    def _mark_gap(self) -> None:
        """After events were lost: a gap row where they are missing (with no checkpoint
        since the queue made room, nothing newer is queued before it)."""
        if self._missing:
            gap = OutboxEvent(GAP, time.time(), {"node": self._node, "dropped": self._missing})
            self._queue.append(gap)
            self._missing = 0
            self._wake.set()

    def statistics(self) -> dict[str, int]:
        return {
            "offered": self.offered,
            "written": self.written,
            "coalesced": self.coalesced,
            "dropped": self.dropped,
            "batches": self.batches,
            "queued": len(self._queue),
        }


class EventImport:
    """Other nodes' events from the outbox onto this node's hub (see the module)."""

    def __init__(
        self,
        db: Database,
        hub: EventHub,
        listener: PgListener,
        node_id: str,
        *,
        poll: float = 5.0,
        retention: float = 3600.0,
        page: int = READ_PAGE,
    ) -> None:
        self._db = db
        self._hub = hub
        self._node = node_id
        self._poll = poll
        self._retention = retention
        self._page = page
        self._notes = listener.subscribe(cluster_events.CHANNEL, buffer=64)
        self.last_id = 0
        self._last_read: float | None = None  # monotonic time of the last complete read
        self._failing = False
        self.imported = 0
        self.resyncs = 0
        self.guard = LoopGuard("cluster event import", log)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Consoles see what happens from now on, as on a single node.
        self.last_id = await self._db.run(cluster_events.latest_id)
        self._last_read = time.monotonic()
        task_status.started()
        while True:
            note: Notification | None = None
            with trio.move_on_after(self._poll):
                note = await self._notes.receive()
            while True:  # one read covers every notification queued meanwhile
                try:
                    note = self._notes.receive_nowait()
                except trio.WouldBlock:
                    break
            del note  # a payload is only a hint: the table is read after last_id
            try:
                await self.catch_up()
            except StorageError as exc:
                if not self._failing:
                    self._failing = True
                    log.warning("cluster event import: cannot read the outbox: %s", exc.reason)
            except Exception as exc:
                await self.guard.after_failure(exc, "reading events")

    async def catch_up(self) -> None:
        """Read and republish every row after ``last_id``."""
        started = time.monotonic()
        if self._last_read is not None and started - self._last_read >= 0.9 * self._retention:
            # Rows this node never read may have been trimmed meanwhile: consoles re-read
            # the state, and the feed goes on from the newest row.
            self.last_id = await self._db.run(cluster_events.latest_id)
            self._resync(f"not read for {started - self._last_read:.0f} s")
        if not self._hub.wants_remote():
            # Nobody would see them: move on without reading (or parsing) the bodies.
            self.last_id = max(self.last_id, await self._db.run(cluster_events.latest_id))
            self._recovered(started)
            return
        while True:
            rows = await self._db.run(
                cluster_events.read_after, self.last_id, self._node, self._page
            )
            for row in rows:
                self.last_id = row.id
                if row.data is None:
                    continue  # this node's own event: its consoles had it from the hub
                if row.kind == GAP:
                    self._resync(f"node {row.origin_node} dropped {row.data.get('dropped')}")
                    continue
                self.imported += 1
                self._hub.publish_remote(row.kind, row.at, row.data, row.origin_node)
            if len(rows) < self._page:
                break
            await trio.lowlevel.checkpoint()
        self._recovered(started)

    def _recovered(self, started: float) -> None:
        self._last_read = started
        if self._failing:
            self._failing = False
            log.info("cluster event import: reading the outbox again (at id %d)", self.last_id)

    def _resync(self, why: str) -> None:
        self.resyncs += 1
        log.warning("cluster events were lost (%s): consoles re-read the state", why)
        self._hub.resync_remote()


class ClusterEvents:
    """The outbox of one node: export, import and retention (see the module)."""

    def __init__(
        self,
        db: Database,
        hub: EventHub,
        listener: PgListener,
        node_id: str,
        *,
        retention: float = 3600.0,
        buffer: int = 10_000,
        poll: float = 5.0,
    ) -> None:
        self._db = db
        self._retention = retention
        self.export = EventExport(db, node_id, buffer=buffer)
        self.imports = EventImport(db, hub, listener, node_id, poll=poll, retention=retention)
        hub.export = self.export.offer
        self.trimmed = 0
        self.guard = LoopGuard("cluster event retention", log)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.export.run)
            await nursery.start(self.imports.run)
            nursery.start_soon(self._retain)
            task_status.started()

    async def trim(self) -> int:
        """Delete the rows older than the retention period; returns how many."""
        removed = await self._db.run(
            cluster_events.trim, utc_now() - timedelta(seconds=self._retention)
        )
        self.trimmed += removed
        return removed

    async def _retain(self) -> None:
        interval = min(60.0, self._retention / 4)
        while True:
            await trio.sleep(interval)
            try:
                await self.trim()
            except Exception as exc:  # StorageUnavailable: quiet back-off (LoopGuard)
                await self.guard.after_failure(exc, "trimming old events")

    @property
    def guards(self) -> list[LoopGuard]:
        return [self.export.guard, self.imports.guard, self.guard]

    def lost(self) -> dict[str, int]:
        """What ``status`` shows (protection notes): events dropped, never the queue
        length that moves with every event."""
        return {"dropped": self.export.dropped}

    def statistics(self) -> dict[str, int]:
        return {
            **self.export.statistics(),
            "imported": self.imports.imported,
            "resyncs": self.imports.resyncs,
            "trimmed": self.trimmed,
            "last_id": self.imports.last_id,
        }
