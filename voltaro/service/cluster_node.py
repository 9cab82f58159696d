"""This process as one node of several on one PostgreSQL (issue 18; scale-and-security A2
"Design for PostgreSQL" §1-4, "Duplicate-connection policy").

- **Lease.** At start the node registers a new incarnation (uuid4) with a lease of
  ``lease`` seconds on the DATABASE clock, and renews it every ``lease / 3``. Locally the
  lease is known valid until *the start of the last successful renewal request* +
  ``lease`` on this process's monotonic clock: the database wrote ``now() + lease`` at a
  later instant, so the node always gives up before the others may consider it dead.
- **Self-fencing.** When that local deadline passes (the database is unreachable, the
  renewals are late, the process was paused with SIGSTOP) or a renewal finds the lease
  gone, :meth:`fenced` is True: no CALL is sent any more (the protocol layer asks before
  every CALL), new chargers are refused with 503, and every charger socket is closed
  with 1012 (service restart, RFC 6455 §7.4.1 as registered by IANA) so the chargers
  reconnect to another node. Once they are closed the node registers again as a new
  incarnation; an expired lease is never revived (the reaper may have released its
  chargers meanwhile).
- **Ownership.** :meth:`claim` after a charger authenticated: epoch + 1 in
  charger_owners; the previous owner node is told on its "evict" channel and closes its
  socket within a second if that socket's epoch is lower. :meth:`release` when a socket
  closes deletes the row only if it still has this socket's epoch.
- **Reaper.** Every ``lease / 3`` every node releases the chargers of nodes whose lease
  expired (each row once, whichever node gets there first), clears their connected
  flags and publishes ``charger.disconnected`` for them. The same round closes local
  sockets whose row says another node or epoch owns them now (a missed NOTIFY).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any

import trio

from voltaro.background import LoopGuard
from voltaro.control.wire import Event
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.timestamps import format_utc
from voltaro.net.ownership import Claimed, Fenced
from voltaro.net.registry import Registry
from voltaro.net.security_events import SecurityEvents
from voltaro.service.hub import EventHub
from voltaro.store import charger_owners, cluster_nodes
from voltaro.store.db import Database
from voltaro.store.notify import Notification, PgListener, channel_name

log = logging.getLogger(__name__)

# RFC 6455 §7.4.1 / IANA: 1012 "Service Restart": the charger should reconnect (to
# another node, through the load balancer).
CLOSE_FENCED = 1012
# What a socket superseded by a newer connection on another node is closed with: the
# same as a takeover on one node (voltaro.net.listener, R11).
CLOSE_SUPERSEDED = 1000
# Nodes whose lease expired this long ago (and who hold nothing) leave the nodes view.
FORGET_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """This node, for ``status``."""

    node_id: str
    incarnation: str
    lease_seconds: float
    lease_left: float  # seconds the lease is known valid locally (0: fenced)
    fenced: bool
    fences: int  # times this process fenced itself
    incarnations: int  # incarnations registered by this process
    evicted: int  # sockets closed because another node took their charger
    reaped: int  # chargers of dead nodes released by this node's reaper


class ClusterNode:
    """One node's lease, fencing, charger ownership and reaper (see the module)."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        hub: EventHub | None,
        *,
        node_id: str,
        lease_seconds: float,
        address: str = "",
        pg_listener: PgListener | None = None,
    ) -> None:
        self._db = db
        self._registry = registry
        self.hub = hub
        self.node_id = node_id
        self.lease = lease_seconds
        self.address = address
        self.incarnation = ""
        self._valid_until = -math.inf  # trio clock
        self._renew_due = -math.inf  # when the next renewal starts (trio clock)
        self._lost = True  # no live incarnation (before the first registration, fenced)
        self._joined = trio.Event()
        self._lost_event = trio.Event()  # set when the lease is found gone
        self._evictions = (
            pg_listener.subscribe(channel_name(charger_owners.EVICT, node_id))
            if pg_listener is not None
            else None
        )
        # Eviction notices, kept for a lease: charger -> (the epoch another node claimed
        # it with last, that node, when the notice arrived on the trio clock). The
        # listener claims a charger before the WebSocket handshake is over and registers
        # the socket after it: a notice arriving in between finds no socket to close,
        # and the socket is checked against this when it registers (superseded()).
        self._notices: dict[str, tuple[int, str, float]] = {}
        # Releases the database did not take yet: charger -> its claim.
        self._unreleased: dict[str, Claimed] = {}
        # status's cluster block as of the last reaper round (server.health carries it
        # to consoles live, cheaply: it is read every quarter second).
        self._view: dict[str, Any] | None = None
        # Other nodes' live incarnations at the last reaper round (None: not read yet).
        self._live: dict[str, str] | None = None
        self.fences = 0
        self.incarnations = 0
        self.evicted = 0
        self.reaped = 0
        self.guard = LoopGuard("cluster node", log)
        # Takeovers from other nodes count towards takeover_alert (set by the app).
        self.security: SecurityEvents | None = None
        # Tests: seconds each renewal waits before it is sent (late renewals).
        self.renew_delay = 0.0

    # --- the lease ------------------------------------------------------------------

    def fenced(self) -> bool:
        """True while the lease is not known valid by the local clock (see the module)."""
        return self._lost or trio.current_time() >= self._valid_until

    def lease_left(self) -> float:
        return 0.0 if self.fenced() else self._valid_until - trio.current_time()

    def status(self) -> NodeStatus:
        return NodeStatus(
            node_id=self.node_id,
            incarnation=self.incarnation,
            lease_seconds=self.lease,
            lease_left=round(self.lease_left(), 3),
            fenced=self.fenced(),
            fences=self.fences,
            incarnations=self.incarnations,
            evicted=self.evicted,
            reaped=self.reaped,
        )

    async def register(self) -> None:
        """Register a new incarnation with a fresh lease (and release what earlier
        incarnations of this node id held).

        Raises:
            StorageUnavailable: the database cannot take it now.
        """
        incarnation = str(uuid.uuid4())
        started = trio.current_time()
        released = await self._db.run(
            cluster_nodes.register, self.node_id, incarnation, self.address, self.lease
        )
        self.incarnation = incarnation
        self._valid_until = started + self.lease
        self._renew_due = started + self.lease / 3
        self._lost = False
        self._lost_event = trio.Event()
        self.incarnations += 1
        self._joined.set()
        log.info(
            "cluster node %s joined as incarnation %s (lease %g s%s)",
            self.node_id,
            incarnation,
            self.lease,
            f"; released {len(released)} chargers an earlier run held" if released else "",
        )
        for charger_id in released:
            self._publish_offline(charger_id, "released at node start")

    async def renew(self) -> bool:
        """Renew once; False when the lease is lost (then the node fences itself)."""
        incarnation = self.incarnation
        started = trio.current_time()
        ok = await self._db.run(cluster_nodes.renew, self.node_id, incarnation, self.lease)
        if not ok:
            self._fence(f"lease of incarnation {incarnation} is gone from the database")
            return False
        if not self._lost and incarnation == self.incarnation:
            self._valid_until = max(self._valid_until, started + self.lease)
            self._renew_due = max(self._renew_due, started + self.lease / 3)
        return True

    def _fence(self, why: str) -> None:
        """Stop acting for the cluster: no CALL, no new charger, every socket closed
        with 1012 so the chargers reconnect to a node that holds a lease."""
        if self._lost:
            return
        self._lost = True
        self._lost_event.set()
        self._joined = trio.Event()
        self.fences += 1
        sessions = self._registry.sessions()
        log.warning(
            "cluster node %s fenced itself (%s): closing %d charger connections (1012)",
            self.node_id,
            why,
            len(sessions),
        )
        for session in sessions:
            session.close(CLOSE_FENCED, "node lost its cluster lease")
        if self.hub is not None:
            self.hub.publish(
                "cluster.node_fenced",
                {"node_id": self.node_id, "reason": why, "closed": len(sessions)},
            )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register (a failure here is a start-up error), then keep the lease, watch it,
        take evictions and reap dead nodes until cancelled; a clean stop leaves the
        cluster (the lease ends now, this incarnation's chargers are released)."""
        if self._lost:
            await self.register()
        try:
            self._view = await self.snapshot()
        except Exception as exc:  # only what consoles show: never a start-up failure
            self.guard.failed(exc, "reading the nodes")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._renew_loop)
                nursery.start_soon(self._watch)
                if self._evictions is not None:
                    nursery.start_soon(self._evict_loop, self._evictions)
                task_status.started()
        finally:
            with trio.move_on_after(2, shield=True):
                await self._leave()

    async def _leave(self) -> None:
        if self._lost or not self.incarnation:
            return
        self._lost = True
        try:
            await self._db.run(cluster_nodes.leave, self.node_id, self.incarnation)
            log.info("cluster node %s left the cluster", self.node_id)
        except StorageUnavailable:
            log.warning(
                "cluster node %s could not end its lease (database unavailable)", self.node_id
            )

    async def _watch(self) -> None:
        """Fence the moment the local deadline passes, whatever the renewal is doing (a
        renewal stuck on a dead database cannot be cancelled: Database.run never
        abandons its thread)."""
        while True:
            await self._joined.wait()
            while not self.fenced():
                # Until the deadline (it moves on with every renewal), or until a
                # renewal finds the lease gone.
                with trio.move_on_at(self._valid_until):
                    await self._lost_event.wait()
            self._fence(f"no lease renewal for {self.lease:g} s")
            # Let the sockets close, then try to come back as a new incarnation.
            await trio.sleep(min(1.0, self.lease / 3))
            while self._lost:
                try:
                    await self.register()
                except Exception as exc:
                    # The database is away (not logged: its health log says so), or a
                    # bug (logged, counted): never the root nursery (issue 11.1).
                    delay = self.guard.failed(exc, "joining again")
                    await trio.sleep(
                        self.lease / 3 if isinstance(exc, StorageUnavailable) else delay
                    )

    async def _renew_loop(self) -> None:
        interval = self.lease / 3
        while True:
            # A third of the lease after the last renewal (or registration) STARTED: the
            # start-up between the registration and this loop does not count against it.
            await trio.sleep_until(self._renew_due)
            self._renew_due = trio.current_time() + interval
            if self.renew_delay:
                await trio.sleep(self.renew_delay)
            if self._lost:
                continue  # _watch registers a new incarnation
            try:
                await self.renew()
                await self._retry_releases()
                await self.reap_once()
                self._view = await self.snapshot()
                self.guard.succeeded()
            except Exception as exc:
                # StorageUnavailable included: the lease runs out and _watch fences.
                await trio.sleep(min(self.guard.failed(exc, "renewing the lease"), interval))

    # --- ownership ------------------------------------------------------------------

    def holds(self, claimed: Claimed) -> bool:
        return not self.fenced() and claimed.incarnation == self.incarnation

    async def claim(self, charger_id: str, remote: str) -> Claimed:
        if self.fenced():
            raise Fenced(f"node {self.node_id} holds no valid cluster lease")
        incarnation = self.incarnation
        asked = trio.current_time()
        result = await self._db.run(
            charger_owners.claim, charger_id, self.node_id, incarnation, remote
        )
        self._unreleased.pop(charger_id, None)  # that older row is overwritten
        if result.previous_node is not None and result.previous_node != self.node_id:
            log.info(
                "charge point %r taken over from node %s (epoch %d)",
                charger_id,
                result.previous_node,
                result.epoch,
            )
            if self.security is not None:
                self.security.taken_from_node(charger_id, remote)
        return Claimed(result.epoch, incarnation, asked)

    async def release(self, charger_id: str, claimed: Claimed) -> None:
        try:
            await self._db.run(
                charger_owners.release,
                charger_id,
                self.node_id,
                claimed.epoch,
                claimed.incarnation,
            )
        except StorageUnavailable:
            # Kept and retried with the renewals; if the lease runs out first, the
            # reaper of another node releases it.
            self._unreleased[charger_id] = claimed

    async def _retry_releases(self) -> None:
        for charger_id, claimed in list(self._unreleased.items()):
            await self._db.run(
                charger_owners.release,
                charger_id,
                self.node_id,
                claimed.epoch,
                claimed.incarnation,
            )
            if self._unreleased.get(charger_id) == claimed:
                del self._unreleased[charger_id]

    def evict(self, charger_id: str, epoch: int, by: str) -> bool:
        """Another node claimed ``charger_id`` with ``epoch``: close our socket if its
        epoch is lower (a NOTIFY that arrives after a newer local claim changes
        nothing). Remembered for a lease in any case: a socket of this charger whose
        handshake is not over yet registers after this notice (superseded())."""
        # The latest notice: they arrive in the order the claims committed, which is
        # epoch order while the row exists (and a row deleted since restarts at 1).
        self._notices[charger_id] = (epoch, by, trio.current_time())
        session = self._registry.session(charger_id)
        if session is None or session.epoch >= epoch:
            return False
        self.evicted += 1
        log.info(
            "charge point %r connected to node %s (epoch %d); closing ours (epoch %d)",
            charger_id,
            by,
            epoch,
            session.epoch,
        )
        session.moved_to = by
        session.close(CLOSE_SUPERSEDED, f"replaced by a new connection on node {by}")
        return True

    def superseded(self, charger_id: str, claimed: Claimed) -> str | None:
        """The socket of ``claimed`` is being registered: the node that took the charger
        over with a newer epoch since the claim was asked for, if its eviction notice
        already came (then the caller closes the socket at once), else None."""
        known = self._notices.get(charger_id)
        if known is None:
            return None
        epoch, by, arrived = known
        # A notice older than the claim is about an earlier connection (epochs restart
        # at 1 once a row was deleted, so its epoch may well be higher).
        if epoch <= claimed.epoch or arrived < claimed.at:
            return None
        self.evicted += 1
        log.info(
            "charge point %r connected to node %s (epoch %d) before our socket (epoch %d) "
            "was registered; closing ours",
            charger_id,
            by,
            epoch,
            claimed.epoch,
        )
        return by

    def _forget_notices(self) -> None:
        horizon = trio.current_time() - self.lease
        for charger_id in [c for c, (_, _, at) in self._notices.items() if at < horizon]:
            del self._notices[charger_id]

    async def _evict_loop(self, notes: trio.MemoryReceiveChannel[Notification]) -> None:
        async for note in notes:
            try:
                if note.payload is None:
                    await self.check_sessions()  # notifications may have been lost
                    continue
                body: dict[str, Any] = json.loads(note.payload)
                self.evict(str(body["charger_id"]), int(body["epoch"]), str(body.get("node")))
            except StorageUnavailable:
                pass  # the next reaper round checks every session again
            except Exception as exc:
                await trio.sleep(self.guard.failed(exc, "handling an eviction"))

    async def check_sessions(self) -> int:
        """Close the local sockets whose row in charger_owners is not theirs any more
        (another node or a newer epoch holds the charger, or the row is gone: a reaper
        released it); returns how many. Covers a lost eviction NOTIFY."""
        sessions = [s for s in self._registry.sessions() if s.epoch > 0]
        if not sessions:
            return 0
        owners = await self._db.run(charger_owners.owners_of, [s.charger_id for s in sessions])
        closed = 0
        for session in sessions:
            row = owners.get(session.charger_id)
            if row == (self.node_id, session.epoch):
                continue
            if self._registry.session(session.charger_id) is not session:
                continue  # already replaced here
            by = row[0] if row is not None else "(none)"
            log.info(
                "charge point %r: charger_owners says %s, not this connection (epoch %d); "
                "closing it",
                session.charger_id,
                f"node {row[0]} epoch {row[1]}" if row is not None else "nobody",
                session.epoch,
            )
            self.evicted += 1
            closed += 1
            if row is not None and row[0] != self.node_id:
                session.moved_to = row[0]  # a move; a released row is a disconnection
            session.close(CLOSE_SUPERSEDED, f"replaced by a new connection on node {by}")
        return closed

    # --- the reaper -----------------------------------------------------------------

    async def reap_once(self) -> int:
        """Release the chargers of nodes whose lease expired; returns how many."""
        reaped = await self._db.run(cluster_nodes.reap, FORGET_AFTER)
        for row in reaped:
            self._publish_offline(row.charger_id, f"node {row.node_id} lost its lease")
        if reaped:
            self.reaped += len(reaped)
            log.warning(
                "released %d chargers of nodes whose lease expired (%s)",
                len(reaped),
                ", ".join(sorted({r.node_id for r in reaped})),
            )
        await self.check_sessions()
        await self._watch_deaths()
        self._forget_notices()
        return len(reaped)

    async def _watch_deaths(self) -> None:
        """A node that died (lease expired, or replaced by a new incarnation) without
        leaving took its last unwritten outbox batch with it (voltaro.service.
        cluster_events): this node's consoles get a resync (re-read the state) instead
        of a silent gap. A clean stop resyncs them too (it cannot be told apart here)."""
        live = await self._db.run(cluster_nodes.live_incarnations)
        live.pop(self.node_id, None)
        if self._live is not None and self.hub is not None:
            gone = sorted(n for n, inc in self._live.items() if live.get(n) != inc)
            if gone:
                log.info("node(s) %s gone: consoles resync", ", ".join(gone))
                self.hub.resync_remote()
        self._live = live

    def _publish_offline(self, charger_id: str, reason: str) -> None:
        if self.hub is not None and not self._registry.is_connected(charger_id):
            self.hub.publish(
                Event.CHARGER_DISCONNECTED, {"charger_id": charger_id, "reason": reason}
            )

    async def owners(self, charger_ids: list[str] | None = None) -> dict[str, str]:
        """charger id -> the node holding it under a live lease, read now (of
        ``charger_ids`` only, when given). What a console re-reads after an event must
        agree with that event: a claim or release commits before its node publishes the
        connected/disconnected event, so this read, made after the event arrived, has it
        (an owner map refreshed every second may not yet)."""
        return await self._db.run(charger_owners.live_owners, charger_ids)

    async def nodes(self) -> list[cluster_nodes.NodeView]:
        return await self._db.run(cluster_nodes.nodes)

    def view(self) -> dict[str, Any] | None:
        """The last :meth:`snapshot` (every reaper round), with ``fenced`` as it is now:
        for ``server.health``, so a console follows the nodes without asking."""
        if self._view is None:
            return None
        return {**self._view, "fenced": self.fenced()}

    async def snapshot(self) -> dict[str, Any]:
        """``status``'s ``cluster`` block: this node, then every node with its lease on
        the database clock and how many chargers it owns (``nodes`` is empty when the
        database cannot be read)."""
        me = self.status()
        try:
            views = await self.nodes()
        except StorageUnavailable:
            views = []
        return {
            "node_id": me.node_id,
            "incarnation": me.incarnation,
            "fenced": me.fenced,
            "lease_s": me.lease_seconds,
            "lease_left_s": me.lease_left,
            "fences": me.fences,
            "evicted": me.evicted,
            "reaped": me.reaped,
            "nodes": [
                {
                    "node_id": v.node_id,
                    "address": v.address,
                    "incarnation": v.incarnation,
                    "started_at": format_utc(v.started_at),
                    "lease_until": format_utc(v.lease_until),
                    "lease_left_s": round(v.lease_left, 1),
                    "live": v.live,
                    "chargers": v.chargers,
                }
                for v in views
            ],
        }


__all__ = ["CLOSE_FENCED", "CLOSE_SUPERSEDED", "ClusterNode", "NodeStatus"]
