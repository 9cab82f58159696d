"""Shared database rounds for the handshakes of a connect storm (issue 14 step 4).

Thousands of chargers connecting at once each need their record read (and, on first
contact, written) before the upgrade. One unit of work each is a worker-thread hop and a
transaction each; here the handshakes that arrive while a round is running wait for the
next one, which serves them all in one unit of work. A single charger waits for no one:
its round starts at once.

No task of its own: the first caller of a round runs it (the *leader*) and the others
wait for its outcome. A leader cancelled before its round started (its handshake timed
out) leaves the others to run their own; a round that fails for more than one caller is
run again per caller, so one bad item fails only its own handshake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

import trio

from voltaro.domain.ports import StorageUnavailable
from voltaro.store.db import Database

K = TypeVar("K")
A = TypeVar("A")
R = TypeVar("R")


class _Round(Generic[K, A, R]):
    __slots__ = ("done", "failed", "items", "outcome")

    def __init__(self) -> None:
        self.items: dict[K, A] = {}
        self.done = trio.Event()
        # The unit's results; None when it did not run or failed (ask alone then).
        self.outcome: Mapping[K, R] | None = None
        self.failed: StorageUnavailable | None = None  # the database cannot now: 503


class Rounds(Generic[K, A, R]):
    """``many(session, {key: arg}) -> {key: result}`` serves a whole round; ``one(session,
    key, arg) -> result`` a caller alone; ``missing`` is the result of a key the round's
    answer does not hold."""

    def __init__(
        self,
        db: Database,
        many: Callable[..., Mapping[K, R]],
        one: Callable[..., R],
        *,
        missing: R,
    ) -> None:
        self._db = db
        self._many = many
        self._one = one
        self._missing = missing
        self._next: _Round[K, A, R] | None = None
        self._running = trio.Lock()  # one round at a time; the next one gathers meanwhile
        self.rounds = 0  # rounds run (tests, status)

    async def run(self, key: K, arg: A) -> R:
        """This key's result, from the unit of work of the round it joined.

        Raises:
            StorageUnavailable: the database cannot do it now (TransientStorageError).
        """
        current = self._next
        leader = current is None or key in current.items
        if current is None or leader:
            current = self._next = _Round()
        current.items[key] = arg
        if leader:
            try:
                async with self._running:
                    if self._next is current:
                        self._next = None  # later arrivals open the next round
                    self.rounds += 1
                    if len(current.items) == 1:
                        return await self._db.run(self._one, key, arg)
                    try:
                        current.outcome = await self._db.run(self._many, dict(current.items))
                    except StorageUnavailable as exc:
                        current.failed = exc
                        raise
                    except Exception:
                        pass  # each asks alone: one bad item fails only its own handshake
            finally:
                if self._next is current:
                    self._next = None  # cancelled before it started: nobody leads it
                current.done.set()
        else:
            await current.done.wait()
            if current.failed is not None:
                raise StorageUnavailable(str(current.failed)) from current.failed
        if current.outcome is None:
            return await self._db.run(self._one, key, arg)
        return current.outcome.get(key, self._missing)
