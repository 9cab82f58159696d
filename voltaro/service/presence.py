"""The ``connected`` flags in the database follow the connections this node holds.

Losing the write that says a charger hung up must never be silent (issue 21 item 3,
issue 10 §2.4): a charger gone while the database was busy or down stayed "connected"
for good. So the flags are not written once and forgotten:

- a change (connect, hang-up) marks the charger *dirty*; this task writes the registry's
  truth for every dirty charger — whatever the order in which changes arrived — and
  keeps them dirty, retrying with backoff, until the write commits;
- every ``interval`` (and when the database comes back after a failed write) the whole
  table is reconciled with the registry: flags set for chargers this node does not hold
  are cleared, missing ones set;
- at the handshake, :meth:`ConnectionFlags.admit` waits for the round that writes the
  new charger's flag: a database that cannot take it means HTTP 503 before the upgrade,
  and a connect storm costs one transaction per round, not one per charger.

Single node: the registry is the truth. Several nodes on one PostgreSQL (issue 18,
``node_id`` given): each node sets the flags of the chargers it holds, and clears a flag
only when no other node owns the charger in charger_owners (a late "offline" from a node
that lost the charger never hides its new connection elsewhere); the flags of dead
nodes' chargers are cleared by the reaper (voltaro.service.cluster_node).
"""

from __future__ import annotations

import logging

import trio

from voltaro.background import LoopGuard
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.timestamps import utc_now
from voltaro.net.registry import Registry
from voltaro.store import charger_owners, chargers
from voltaro.store.db import Database
from voltaro.store.errors import PermanentStorageError, TransientStorageError

log = logging.getLogger(__name__)

MAX_BACKOFF = 10.0


def _reason(exc: Exception) -> str:
    """What an admission waiting for this round is told (its charger gets 503)."""
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) else "internal error"


class ConnectionFlags:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        interval: float = 60.0,
        node_id: str | None = None,
    ) -> None:
        self._db = db
        self._node_id = node_id  # several nodes: see the module
        self._registry = registry
        self._interval = interval
        self._dirty: set[str] = set()
        self._wake = trio.Event()
        self._reconcile = True  # at start: whatever a crash left in the table
        self._written = trio.Event()
        # Chargers past the handshake checks, not yet in the registry: connected.
        self._admitting: set[str] = set()
        self._waiters: dict[str, list[_Waiter]] = {}
        self.guard = LoopGuard("connected-flag writer", log)

    @property
    def pending(self) -> frozenset[str]:
        """Chargers whose flag is not yet written (for tests and status)."""
        return frozenset(self._dirty)

    def changed(self, charger_id: str) -> None:
        """The charger connected or hung up here: write its flag (soon, until stored)."""
        self._dirty.add(charger_id)
        self._wake.set()

    async def admit(self, charger_id: str) -> None:
        """Write that the charger is connecting here, batched with the other flags.

        Raises:
            StorageUnavailable: the write failed (the caller answers HTTP 503).
        """
        waiter = _Waiter()
        self._admitting.add(charger_id)
        self._waiters.setdefault(charger_id, []).append(waiter)
        self.changed(charger_id)
        try:
            await waiter.done.wait()
        except BaseException:
            self.settle(charger_id)
            raise
        if waiter.error is not None:
            self.settle(charger_id)
            raise StorageUnavailable(waiter.error)

    def settle(self, charger_id: str) -> None:
        """The admitted charger is now in the registry, or will not be: its flag follows
        the registry again."""
        self._admitting.discard(charger_id)
        self.changed(charger_id)

    def _truth(self, charger_id: str) -> bool:
        return charger_id in self._admitting or self._registry.is_connected(charger_id)

    def _release(self, ids: set[str] | None, error: str | None) -> None:
        for charger_id in list(self._waiters) if ids is None else ids:
            for waiter in self._waiters.pop(charger_id, ()):
                waiter.error = error
                waiter.done.set()

    def reconcile_soon(self) -> None:
        self._reconcile = True
        self._wake.set()

    async def settled(self) -> None:
        """Wait until nothing is pending (tests and shutdown)."""
        while self._dirty or self._reconcile:
            await self._written.wait()

    async def write_once(self) -> None:
        """One round: reconcile if due, else write the dirty flags.

        Raises:
            TransientStorageError: not written; everything stays pending.
        """
        if self._reconcile:
            held = set(self._registry.connected()) | self._admitting
            dirty, self._dirty = self._dirty, set()  # the reconcile writes every flag
            try:
                if self._node_id is None:
                    cleared, set_ = await self._db.run(
                        chargers.reconcile_connected, held, utc_now()
                    )
                else:
                    cleared, set_ = await self._db.run(
                        charger_owners.reconcile_connected_fenced, held, self._node_id
                    )
            except Exception as exc:
                self._dirty |= dirty
                self._release(dirty, _reason(exc))
                raise
            self._reconcile = False
            self._release(dirty, None)
            if cleared or set_:
                log.warning(
                    "connected flags reconciled with the %d connections held here: %d "
                    "cleared, %d set",
                    len(held),
                    cleared,
                    set_,
                )
            return
        batch, self._dirty = self._dirty, set()
        truth = {charger_id: self._truth(charger_id) for charger_id in batch}
        try:
            if self._node_id is None:
                await self._db.run(chargers.set_connected, truth, utc_now())
            else:
                await self._db.run(charger_owners.set_connected_fenced, truth, self._node_id)
        except Exception as exc:
            self._dirty |= batch
            self._release(batch, _reason(exc))
            raise
        self._release(batch, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = 0.1
        next_reconcile = trio.current_time() + self._interval
        while True:
            if not self._dirty and not self._reconcile:
                with trio.move_on_at(next_reconcile):
                    await self._wake.wait()
            self._wake = trio.Event()
            if trio.current_time() >= next_reconcile:
                self._reconcile = True
                next_reconcile = trio.current_time() + self._interval
            try:
                await self.write_once()
            except TransientStorageError:
                # Kept pending; once the database answers again, reconcile everything
                # (the outage itself is logged by the database's health report).
                self._reconcile = True
                # A new admission tries at once (its charger waits in the handshake).
                with trio.move_on_after(backoff):
                    await self._wake.wait()
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except PermanentStorageError as exc:
                log.error("connected flags not written: %s", exc.reason)
                self._release(None, exc.reason)
                self._dirty.clear()
                self._reconcile = False
            except Exception as exc:
                # Issue 11.1: never the root nursery. Everything stays pending and the
                # next round reconciles every flag with the registry.
                self._release(None, "internal error")
                self._reconcile = True
                await self.guard.after_failure(exc, "writing connected flags")
                continue
            self.guard.succeeded()
            backoff = 0.1
            self._written.set()
            self._written = trio.Event()


class _Waiter:
    """One admission waiting for the round that writes its flag."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: str | None = None
