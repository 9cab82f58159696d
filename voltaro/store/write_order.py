"""The database's worker slots, with charger messages first.

Why (issue 14, latency at 500 msg/s from 1,000 chargers): every unit of work takes one of
the database's worker slots (SQLite: one, it has one writer; PostgreSQL: the pool). With
a first-come queue, a charger's MeterValues, answered only once committed, waited behind
every background unit queued before it: a local-list sync answered by eight chargers at
once queued 30 small units (the command audit, the reported configuration, ~1-7 ms each)
and the group commit's batch waited 30-40 ms behind them, every time. The chargers see
that wait as the answer's latency; a background unit does not care about 20 ms more.

So a free slot goes first to a waiting group-commit batch (the charger messages,
``Slots.urgent``) and then to the other units (``Slots``) in arrival order, with one
bound against starvation: once the oldest other unit has waited ``patience`` seconds,
the two kinds take turns until it has run. A background writer is then delayed at most
by every other batch, never stopped, even while charger traffic saturates the database.

``Slots`` is a ``trio.CapacityLimiter``-like object (what ``trio.to_thread.run_sync``
takes as ``limiter``: ``acquire_on_behalf_of``/``release_on_behalf_of``), with the
``statistics()``, ``borrowed_tokens`` and ``total_tokens`` the metrics and the frame log
read.
"""

from __future__ import annotations

from collections import deque

import trio


class _Waiter:
    __slots__ = ("borrower", "event", "granted", "since")

    def __init__(self, borrower: object, since: float) -> None:
        self.borrower = borrower
        self.since = since
        self.granted = False
        self.event = trio.Event()


class Slots:
    """``total_tokens`` worker slots; group-commit batches (``urgent``) go first."""

    def __init__(self, total_tokens: int, *, patience: float = 0.05) -> None:
        self.total_tokens = total_tokens
        self.patience = patience
        self._borrowers: set[object] = set()
        self._urgent: deque[_Waiter] = deque()
        self._others: deque[_Waiter] = deque()
        # Whether the last slot given from the queues went to a batch: an overdue unit
        # goes next after one (turns), a batch after it.
        self._last_urgent = True
        self.urgent = _Urgent(self)

    # --- what trio.to_thread.run_sync and the metrics use -------------------------------

    @property
    def borrowed_tokens(self) -> int:
        return len(self._borrowers)

    def statistics(self) -> trio.CapacityLimiterStatistics:
        return trio.CapacityLimiterStatistics(
            borrowed_tokens=len(self._borrowers),
            total_tokens=self.total_tokens,
            borrowers=list(self._borrowers),
            tasks_waiting=len(self._urgent) + len(self._others),
        )

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await self._acquire(borrower, self._others)

    def release_on_behalf_of(self, borrower: object) -> None:
        self._borrowers.remove(borrower)
        self._grant()

    async def acquire(self) -> None:
        """A slot for the calling task, queued with the other units (as a
        ``CapacityLimiter``'s)."""
        await self.acquire_on_behalf_of(trio.lowlevel.current_task())

    def release(self) -> None:
        self.release_on_behalf_of(trio.lowlevel.current_task())

    # --- the order ----------------------------------------------------------------------

    async def _acquire(self, borrower: object, queue: deque[_Waiter]) -> None:
        if borrower in self._borrowers:
            raise RuntimeError("this borrower already holds a database slot")
        if len(self._borrowers) < self.total_tokens and not (self._urgent or self._others):
            await trio.lowlevel.checkpoint_if_cancelled()
            self._borrowers.add(borrower)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = _Waiter(borrower, trio.current_time())
        queue.append(waiter)
        try:
            await waiter.event.wait()
        except trio.Cancelled:
            if waiter.granted:
                # Given a slot in the same instant it was cancelled: pass it on.
                self.release_on_behalf_of(borrower)
            else:
                queue.remove(waiter)
            raise

    def _grant(self) -> None:
        while len(self._borrowers) < self.total_tokens and (self._urgent or self._others):
            waiter = self._next()
            self._borrowers.add(waiter.borrower)
            waiter.granted = True
            waiter.event.set()

    def _next(self) -> _Waiter:
        if not self._others:
            self._last_urgent = True
            return self._urgent.popleft()
        if self._urgent:
            overdue = trio.current_time() - self._others[0].since >= self.patience
            if not (overdue and self._last_urgent):
                self._last_urgent = True
                return self._urgent.popleft()
        self._last_urgent = False
        return self._others.popleft()


class _Urgent:
    """The view of :class:`Slots` that group-commit batches acquire through."""

    __slots__ = ("_slots",)

    def __init__(self, slots: Slots) -> None:
        self._slots = slots

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await self._slots._acquire(borrower, self._slots._urgent)

    def release_on_behalf_of(self, borrower: object) -> None:
        self._slots.release_on_behalf_of(borrower)
