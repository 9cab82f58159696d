"""The database handle: engine, migrations, and the one helper that runs units of work.

Units of work are plain functions ``fn(session, *args)`` that run in a worker thread
inside one transaction. ``Database.run`` is the only way the trio side touches the
database: it is capacity-limited to the connection pool (SQLite: one writer) and never
abandons a worker on cancel — an abandoned write could still commit a transaction id
nobody was told about (style-anchors §0.3).

It is also the one place where database failures are classified: whatever SQLAlchemy,
the driver or the binding of a value raises leaves ``run`` as a
:class:`~voltaro.store.errors.TransientStorageError` (retry later) or a
:class:`~voltaro.store.errors.PermanentStorageError` (never retry this work), and every
attempt is reported to :attr:`Database.health` for the outage log.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import trio
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from voltaro.store.errors import StorageError, classify, is_transient
from voltaro.store.group_commit import BATCHED, BatchHooks, GroupCommit, Raised, lock_order
from voltaro.store.health import DatabaseHealth
from voltaro.store.wal_checkpoints import AUTOCHECKPOINT_PAGES, WalCheckpointer
from voltaro.store.write_order import Slots

log = logging.getLogger(__name__)

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        lock_timeout: float = 10.0,
        batch_window: float = 0.002,
        batch_max: int = 64,
    ) -> None:
        self.url = normalize_url(url)
        self._lock_timeout_ms = max(1, int(lock_timeout * 1000))
        parsed = make_url(self.url)
        self.backend = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql"
        # SQLite's checkpoints run beside the writer, not in its commits (the server
        # runs it: voltaro.store.wal_checkpoints); None for PostgreSQL and :memory:.
        self.checkpointer: WalCheckpointer | None = None
        if self.backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                self.checkpointer = WalCheckpointer(parsed.database)
            self.engine: Engine = create_engine(
                self.url,
                # How long a writer waits for SQLite's lock before the attempt fails.
                connect_args={"check_same_thread": False, "timeout": lock_timeout},
                pool_size=2,
                max_overflow=0,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # SQLite has one writer: serialise units of work instead of queueing on locks.
            self.limiter = Slots(1)
        else:
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=0,
                pool_timeout=10,
                # No pre-ping: it costs a round trip per unit of work. A connection that
                # died meanwhile fails the attempt as transient (a disconnect invalidates
                # the whole pool) and the caller's retry runs on a fresh one.
                connect_args={
                    "connect_timeout": 5,
                    "options": "-c statement_timeout=15000 -c timezone=UTC",
                },
            )
            self.limiter = Slots(pool_size)
        self.health = DatabaseHealth()
        # SQLite has one writer: one batch at a time. PostgreSQL's units are bound by
        # round trips, not CPU: one batch at a time serialised them (a short soak
        # finished no session in 20 s at load 14), so up to half the pool's connections
        # run batches side by side. They cannot deadlock on the rows of the chargers
        # they hold: a batch runs its units in charger order (group_commit.lock_order),
        # the order the other writers take those rows in; MeterValues lock their
        # transaction rows in one read per batch (transactions._MeterBatch). A lock
        # conflict that still happens (e.g. one tag starting on two chargers at once)
        # falls back to one unit at a time; nothing was committed, nothing is lost.
        self.group_commit = GroupCommit(
            self,
            window=batch_window,
            max_batch=batch_max,
            concurrency=1 if self.backend == "sqlite" else max(1, pool_size // 2),
        )
        self.group_commit_enabled = True
        # Set (and replaced) whenever a unit of work gives its limiter token back: the
        # frame log waits on it instead of polling the limiter (it gives way to others).
        self._released = trio.Event()

    async def wait_released(self) -> None:
        """Wait until some unit of work finishes (gives its limiter token back)."""
        await self._released.wait()

    def signal_released(self) -> None:
        """A unit of work gave its limiter token back (``run`` and the group commit)."""
        self._released.set()
        self._released = trio.Event()
        if self.checkpointer is not None:
            self.checkpointer.written()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(session, *args, **kwargs)`` in a worker thread, in one committed
        transaction.

        Raises:
            TransientStorageError: the database cannot do it now (a StorageUnavailable).
            PermanentStorageError: the database refuses this work; do not retry it.
        """
        work = functools.partial(self._attempt, fn, *args, **kwargs)
        started = time.perf_counter()
        try:
            outcome = await trio.to_thread.run_sync(
                work, limiter=cast(trio.CapacityLimiter, self.limiter)
            )
        finally:
            self.signal_released()
        if isinstance(outcome, StorageError):
            self.health.finished(
                time.perf_counter() - started, "transient" if outcome.transient else "permanent"
            )
            if outcome.transient:
                self.health.failed(outcome.reason)
            raise outcome from outcome.cause
        self.health.finished(time.perf_counter() - started)
        self.health.succeeded()
        return outcome

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`run`, but group-committed with the other writes that arrive within
        ``batch_window`` seconds (voltaro.store.group_commit): returns once committed.

        Raises:
            TransientStorageError: not committed now; retry later.
            PermanentStorageError: the database refuses this work; do not retry it.
        """
        if not self.group_commit_enabled:
            return await self.run(fn, *args)
        result: T = await self.group_commit.run(fn, *args)
        return result

    def run_batch_sync(self, units: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
        """Run ``units`` in one transaction (worker thread); one outcome per unit: its
        result, a StorageError, or a ``group_commit.Raised`` wrapping another exception.

        When the batch fails other than transiently, it is rolled back and every unit is
        run again on its own, so one bad unit fails only itself.
        """
        if self.backend == "postgresql":
            # A row lock held elsewhere (an operator's psql session, a stuck client) must
            # not hold a whole batch until statement_timeout (15 s) and then fail every
            # charger in it: the batch and each unit of its fallback wait for a lock at
            # most ``lock_timeout`` (55P03 is a lock conflict: the batch falls back to one
            # unit at a time, and only the unit whose row is held fails, transiently).
            bound: int | None = self._lock_timeout_ms
        else:
            bound = None
        if len(units) > 1:
            try:
                return self.run_sync(_run_all, units, bound)
            except _DATA_ERRORS as exc:
                if is_transient(exc) and not _lock_conflict(exc):
                    return [classify(exc) for _ in units]
                # Refused data, or a lock conflict (deadlock, serialization failure, lock
                # not available) that a batch's longer-held row locks can cause: the
                # units run one by one below, each holding its locks only briefly.
            except Exception:
                pass  # a bug in one unit: found below, the others are still stored
            self.group_commit.fallbacks += 1
        return [self._attempt_one(fn, args, bound) for fn, args in units]

    def _attempt_one(
        self, fn: Callable[..., Any], args: tuple[Any, ...], bound: int | None = None
    ) -> Any:
        try:
            if bound is not None:
                return self._attempt(_locks_bounded, bound, fn, *args)
            return self._attempt(fn, *args)
        except Exception as exc:
            return Raised(exc)

    def _attempt(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | StorageError:
        try:
            return self.run_sync(fn, *args, **kwargs)
        except _DATA_ERRORS as exc:
            return classify(exc)

    def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for retry in (True, False):
            with Session(self.engine, expire_on_commit=False) as session:
                session.begin()
                try:
                    result = fn(session, *args, **kwargs)
                except DBAPIError as exc:
                    if not (retry and exc.connection_invalidated):
                        raise
                    # A pooled connection had died (server restarted, backend
                    # terminated) before anything was committed: SQLAlchemy has
                    # invalidated the whole pool, so one more attempt runs on a fresh
                    # connection. This replaces a pre-ping round trip per unit of work
                    # (issue 14). A failure in COMMIT itself is never retried here: the
                    # commit may have happened.
                    continue
                session.commit()
                return result
        raise AssertionError("unreachable")

    async def ping(self) -> bool:
        def _ping(session: Session) -> bool:
            session.execute(text("SELECT 1"))
            return True

        try:
            with trio.move_on_after(5):
                return await self.run(_ping)
        except SQLAlchemyError:
            return False
        return False

    def upgrade(self) -> None:
        """Bring the database to the current schema (Alembic ``upgrade head``)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()
        if self.checkpointer is not None:
            self.checkpointer.close()


def _lock_conflict(exc: BaseException) -> bool:
    """A PostgreSQL lock conflict (class 40: deadlock, serialization; 55P03)."""
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(state, str) and (state.startswith("40") or state == "55P03")


def _locks_bounded(session: Session, timeout_ms: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn`` in a transaction whose lock waits end after ``timeout_ms`` (PostgreSQL)."""
    session.connection().exec_driver_sql(f"SET LOCAL lock_timeout = {int(timeout_ms)}")
    return fn(session, *args)


def _run_all(
    session: Session,
    units: list[tuple[Callable[..., Any], tuple[Any, ...]]],
    lock_timeout_ms: int | None = None,
) -> list[Any]:
    """Run a batch's units in one transaction, in charger order (``lock_order``), and
    return their results in arrival order.

    Units of a batch-aware kind (``BATCHED``: MeterValues) are prepared together (one
    locking read of all their rows) and keep their writes pending until another kind of
    unit runs or the batch ends (one executemany each): a few round trips per batch
    instead of a few per message, which is what PostgreSQL's units are bound by.
    """
    if lock_timeout_ms is not None:
        # Plain SQL: nothing for SQLAlchemy to compile or bind, once per batch.
        session.connection().exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
    order = sorted(range(len(units)), key=lambda i: (lock_order(units[i][1]), i))
    hooks: dict[int, tuple[BatchHooks, list[tuple[Any, ...]]]] = {}
    for fn, args in units:
        batch_aware = BATCHED.get(fn)
        if batch_aware is not None:
            hooks.setdefault(id(batch_aware), (batch_aware, []))[1].append(args)
    for batch_aware, of_units in hooks.values():
        batch_aware.prepare(session, of_units)
    results: list[Any] = [None] * len(units)
    for i in order:
        fn, args = units[i]
        if hooks and fn not in BATCHED:
            for batch_aware, _ in hooks.values():
                batch_aware.flush(session, lock_order(args))
        results[i] = fn(session, *args)
    for batch_aware, _ in hooks.values():
        batch_aware.flush(session, "")
    return results


# What a unit of work raises because of the database or of a value it cannot hold: a
# Python int beyond SQLite's 64 bits raises OverflowError, a lone surrogate
# UnicodeEncodeError, both before SQLAlchemy sees them. Anything else is a bug and
# propagates unchanged.
_DATA_ERRORS = (SQLAlchemyError, OverflowError, UnicodeError)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed transaction message survives a power cut, not only a crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # The server checkpoints beside the writer (WalCheckpointer); a commit does it itself
    # only when the log has grown this far (no checkpointer running, or behind).
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cursor.close()
