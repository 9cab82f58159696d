"""Group commit: the charger messages that arrive together share one thread hop and one
database transaction, and each is answered only after that transaction commits.

Why: with one transaction per message, each stored message paid a thread hop, a GIL
hand-over and (on SQLite with ``synchronous=FULL``) an fsync; under load the trio thread
and the database thread took turns on one core (issue 14). Batching turns N of each into
one while keeping the rule that matters (issue 21): a unit of work's result is returned
only once it is committed, so a CALLRESULT is still a promise that it is stored.

How (no background task, nothing outlives its caller):

- a caller appends its unit of work to the queue. If no batch is being led, it becomes
  the *leader*: it waits up to ``window`` seconds (or until ``max_batch`` units wait),
  takes up to ``max_batch`` units from the head of the queue and runs them in one worker
  thread, one transaction, in arrival order;
- the others wait for their outcome. At most ``concurrency`` batches run at a time (one on
  SQLite, which has one writer; a few on PostgreSQL, whose commits wait on the network
  and the server's fsync), and only one batch is collected at a time, so while batches
  are in the database the next one fills up by itself: under load batches grow, and a
  lone message waits at most ``window``;
- once the leader has taken its batch it hands the lead to the oldest unit still
  waiting (which collects the next batch if a slot is free, or when one frees).

Failures stay per message:

- a *transient* failure of the batch (database down, locked, busy) is every unit's
  transient failure: nothing was committed, each caller retries as before;
- any other failure (the database refuses one unit's data, or a bug in one unit) rolls
  the batch back and runs its units again one at a time, each in its own transaction,
  in the same thread hop: one bad message cannot fail the others.

Cancellation: a unit still in the queue may be cancelled (it is removed: nothing ran).
Once its batch has started it is not abandoned, exactly like ``Database.run``: an
abandoned write could commit a transaction id nobody was told about; its outcome is
returned when the batch ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

import trio

from voltaro.store.errors import StorageError

if TYPE_CHECKING:
    from voltaro.store.db import Database


class _Unit:
    __slots__ = ("args", "done", "fn", "outcome", "raised", "taken", "wake")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.taken = False  # part of a batch that has started: no longer cancellable
        self.done = False
        self.outcome: Any = None
        self.raised: BaseException | None = None
        self.wake = trio.Event()  # set when done, or when this unit must lead


class GroupCommit:
    """Batches units of work ``fn(session, *args)`` of one :class:`Database`."""

    def __init__(
        self, db: Database, *, window: float = 0.002, max_batch: int = 64, concurrency: int = 1
    ) -> None:
        self._db = db
        self.window = window
        self.max_batch = max(1, max_batch)
        self.concurrency = max(1, concurrency)
        self._queue: deque[_Unit] = deque()
        self._collecting = False
        self._in_flight = 0
        self._full = trio.Event()
        # Figures for the benchmark and the operator: batches run, units in them.
        self.batches = 0
        self.units = 0
        self.fallbacks = 0

    @property
    def queued(self) -> int:
        """Units waiting for a batch now."""
        return len(self._queue)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(session, *args)`` in a shared transaction; return once committed.

        Raises:
            TransientStorageError: not committed now; retry later.
            PermanentStorageError: the database refuses this unit; never retry it.
            Exception: whatever ``fn`` raised that is not a database error (a bug).
        """
        unit = _Unit(fn, args)
        started = time.perf_counter()
        self._queue.append(unit)
        if len(self._queue) >= self.max_batch:
            self._full.set()
        try:
            while not unit.done:
                # A unit already taken into a batch only waits for it: it may have been
                # woken to lead and then taken by another leader before it ran; leading
                # then (a free slot, several batches side by side) collected empty
                # batches in a loop, without a checkpoint when the window is 0.
                if not unit.taken and not self._collecting and self._in_flight < self.concurrency:
                    await self._lead()
                    continue
                unit.wake = trio.Event()
                await unit.wake.wait()
        except trio.Cancelled:
            if not unit.taken:
                self._remove(unit)
                raise
            # Its batch is in the database: like a thread that cannot be abandoned, wait
            # for the outcome and report it (the cancellation is delivered at the
            # caller's next checkpoint).
            with trio.CancelScope(shield=True):
                while not unit.done:
                    unit.wake = trio.Event()
                    await unit.wake.wait()
        # Latency as the caller waited for it: the window, the queue and the commit.
        raised = unit.raised
        kind = None
        if isinstance(raised, StorageError):
            kind = "transient" if raised.transient else "permanent"
        self._db.health.finished(time.perf_counter() - started, kind)
        if raised is not None:
            raise raised
        return unit.outcome

    def _remove(self, unit: _Unit) -> None:
        try:
            self._queue.remove(unit)
        except ValueError:
            pass

    async def _lead(self) -> None:
        self._collecting = True
        batch: list[_Unit] = []
        try:
            if self.window > 0 and len(self._queue) < self.max_batch:
                # Collect: the window is short, so it is not worth a cancellation point.
                with trio.CancelScope(shield=True), trio.move_on_after(self.window):
                    await self._full.wait()
            self._full = trio.Event()
            while self._queue and len(batch) < self.max_batch:
                unit = self._queue.popleft()
                unit.taken = True
                batch.append(unit)
        finally:
            self._collecting = False
            self._in_flight += 1
            self._hand_over()
        try:
            if batch:
                with trio.CancelScope(shield=True):
                    await self._execute(batch)
        finally:
            self._in_flight -= 1
            self._hand_over()

    def _hand_over(self) -> None:
        """Wake the oldest waiting unit: it collects the next batch if it may."""
        if self._queue:
            self._queue[0].wake.set()
        if len(self._queue) >= self.max_batch:
            self._full.set()

    async def _execute(self, batch: list[_Unit]) -> None:
        db = self._db
        try:
            # Charger messages take the next free slot before other units of work
            # (voltaro.store.write_order): their answers wait for this commit.
            outcomes = await trio.to_thread.run_sync(
                db.run_batch_sync,
                [(u.fn, u.args) for u in batch],
                limiter=cast(trio.CapacityLimiter, db.limiter.urgent),
            )
        except Exception as exc:  # the worker machinery itself failed: tell every caller
            outcomes = [_Raised(exc) for _ in batch]
        finally:
            db.signal_released()  # the frame log waits for a free slot (frame_log.py)
        self.batches += 1
        self.units += len(batch)
        for unit, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, StorageError):
                if outcome.transient:
                    db.health.failed(outcome.reason)
                unit.raised = outcome
            elif isinstance(outcome, _Raised):
                unit.raised = outcome.error
            else:
                db.health.succeeded()
                unit.outcome = outcome
            unit.done = True
            unit.wake.set()


def lock_order(args: tuple[Any, ...]) -> str:
    """The charger a unit of work is about: a batch runs its units in this order.

    Why (issue 14 step 2, PostgreSQL): the rows a charger message locks are that
    charger's (its charge_points, connectors and transactions rows, its connector's
    advisory lock), and the other writers that lock many chargers' rows at once (the
    connected flags, last-seen times) take them in charger id order. A batch that took
    them in arrival order could wait on such a writer, or on an overlapping batch, in a
    cycle: a deadlock that PostgreSQL breaks after ``deadlock_timeout`` (1 s). In one
    global order two writers only queue. Units of one charger keep their arrival order
    (the sort is stable); units about no charger go first.
    """
    first = args[0] if args else None
    if isinstance(first, str):
        return first  # units called as fn(session, charger_id, ...)
    charger_id = getattr(first, "charger_id", None)
    return charger_id if isinstance(charger_id, str) else ""


class BatchHooks:
    """How one kind of unit of work runs batch-aware (voltaro.store.transactions):

    ``prepare(session, [args of each such unit])`` before the batch's units run (e.g.
    one ``SELECT ... FOR UPDATE`` of every row they read, in lock order); then each
    unit runs as usual and may keep its writes pending in the session;
    ``flush(session, charger_id)`` writes what is pending (e.g. one executemany) before
    any other kind of unit runs (it must see those writes) and at the end of the batch,
    and forgets what was read of ``charger_id``'s rows (``""``: of every charger),
    which that other unit may change.

    Without a batch (``Database.run``, or the fallback one unit at a time) nothing is
    prepared and the unit does its own reads and writes.
    """

    __slots__ = ("flush", "prepare")

    def __init__(
        self,
        prepare: Callable[[Any, list[tuple[Any, ...]]], None],
        flush: Callable[[Any, str], None],
    ) -> None:
        self.prepare = prepare
        self.flush = flush


BATCHED: dict[Callable[..., Any], BatchHooks] = {}
"""Units of work that run batch-aware inside a group commit, and how."""


class PendingWrites(Protocol):
    """What a ``prepare`` keeps in ``session.info`` for its units (see ``flush_kept``)."""

    def write(self, session: Any) -> None: ...

    def forget(self, charger_id: str) -> None: ...


def flush_kept(key: str) -> Callable[[Any, str], None]:
    """The ``flush`` of a kind whose ``prepare`` keeps its pending writes in
    ``session.info[key]``: write them, then forget what was read of ``charger_id``'s
    rows (``""``: of every charger)."""

    def flush(session: Any, charger_id: str) -> None:
        pending: PendingWrites | None = session.info.get(key)
        if pending is not None:
            pending.write(session)
            pending.forget(charger_id)

    return flush


class _Raised:
    """A unit that raised something other than a database error (kept for its caller)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


Raised = _Raised
