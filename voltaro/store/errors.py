"""Store errors, and the one place where database failures are classified.

Every failure of a unit of work leaves :meth:`voltaro.store.db.Database.run` as one of
two errors (style-anchors: classify once, at the boundary):

- :class:`TransientStorageError` (a :class:`StorageUnavailable`): the database cannot
  take the work *now* — connection refused or lost, pool exhausted, SQLite busy/locked,
  statement or lock timeout, serialization failure, deadlock. Retrying later may work;
  a charger is answered with a CALLERROR it will retry (OCPP 1.6 §3.7.1 / §4.10).
- :class:`PermanentStorageError`: the database refuses *this data* (a value out of a
  column's range, an integrity violation, a string it cannot hold) or the unit of work
  hit a bug. Retrying the same message can never succeed, so it is never answered with
  "try again": the ingest keeps the raw frame in quarantine instead.

Both are also :class:`sqlalchemy.exc.SQLAlchemyError` subclasses so that code written
against SQLAlchemy's hierarchy keeps catching them.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

from voltaro.domain.ports import StorageUnavailable


class AlreadyExists(Exception):
    """The record to add is there already."""


class NotFound(Exception):
    """A record the operation needs does not exist."""


class StorageError(sa_exc.SQLAlchemyError):
    """A unit of work failed; ``cause`` is the original exception, ``transient`` says
    whether the same work may succeed later."""

    transient: bool = False

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause

    @property
    def reason(self) -> str:
        """One line naming the cause, for logs and operators."""
        cause = self.cause
        if cause is None:
            return str(self)
        orig = getattr(cause, "orig", None)
        detail = str(orig if orig is not None else cause).strip().splitlines()
        first = detail[0] if detail else ""
        return f"{type(orig if orig is not None else cause).__name__}: {first}"[:300]


class TransientStorageError(StorageError, StorageUnavailable):
    """The database is unavailable, busy or too slow now; retry later."""

    transient = True


class PermanentStorageError(StorageError):
    """The database refused this work for a reason a retry cannot change."""


# psycopg SQLSTATE classes that mean "not now" rather than "never": 08 connection
# exception, 40 transaction rollback (serialization failure, deadlock), 53 insufficient
# resources, 57 operator intervention (admin shutdown, query_canceled = statement
# timeout), 55P03 lock_not_available, HV timeout.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_SQLSTATES = frozenset({"55P03", "55006"})


def _sqlstate(error: BaseException | None) -> str | None:
    state = getattr(error, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_transient(error: BaseException) -> bool:
    """True when the same unit of work may succeed if tried again later."""
    if isinstance(error, StorageError):
        return error.transient
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True  # pool timeout, connection invalidated
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        state = _sqlstate(error.orig)
        if state is not None:
            return state[:2] in _TRANSIENT_SQLSTATE_CLASSES or state in _TRANSIENT_SQLSTATES
        if isinstance(error.orig, sqlite3.OperationalError):
            # SQLite: "database is locked", "database table is locked", disk I/O trouble.
            return True
        return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
    return isinstance(error, TimeoutError | ConnectionError)


def classify(error: BaseException) -> StorageError:
    """The storage error for a failure of a unit of work (already classified: itself)."""
    if isinstance(error, StorageError):
        return error
    if is_transient(error):
        return TransientStorageError(f"database unavailable: {error}", cause=error)
    return PermanentStorageError(f"database refused the work: {error}", cause=error)
