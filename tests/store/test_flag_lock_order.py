"""Connected-flag writes lock charger rows in charger id order (PostgreSQL).

The group commit takes charger rows in charger id order (group_commit.lock_order), so
two batches never wait on each other in a cycle. The connected-flag writers of a
cluster node (reconcile, and the flags of connects and disconnects) updated rows in the
order PostgreSQL scanned them, the table's physical order: a reconcile that took CP-B
and then waited for CP-A, while a batch held CP-A and wanted CP-B, was a deadlock
(seen once at a cluster's start, 100 chargers booting: `DeadlockDetected`, retried,
logged at ERROR). Reproduced here with two real transactions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from tests.support.pg_locks import lock_waiters
from voltaro.domain.model import (
    BootRequest,
    ChargerIdentity,
    ConnectorStatus,
    RegistrationStatus,
    StatusNotificationRequest,
)
from voltaro.domain.timestamps import utc_now
from voltaro.store import charger_owners, chargers
from voltaro.store.db import Database

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _against_a_batch(db: Database, flag_write: Callable[[Session], Any]) -> list[str]:
    """A batch holds CP-A (first in charger id order) while ``flag_write`` runs in
    another transaction; once that one waits for a lock, the batch takes CP-B too.
    Returns what failed ("batch: ..." / "flags: ..."), [] when both committed."""
    failures: list[str] = []
    batch_holds_a = threading.Event()
    flags_done = threading.Event()

    def flags() -> None:
        batch_holds_a.wait(10)
        try:
            db.run_sync(flag_write)
        except Exception as exc:
            failures.append(f"flags: {type(exc).__name__}: {exc}")
        finally:
            flags_done.set()

    thread = threading.Thread(target=flags)
    thread.start()
    try:
        with db.engine.connect() as batch:
            batch.execute(text("SET LOCAL deadlock_timeout = '200ms'"))
            batch.execute(
                text("UPDATE charge_points SET last_seen = now() WHERE charger_id = 'CP-A'")
            )
            batch_holds_a.set()
            for _ in range(500):  # until the flag write waits (for CP-A, or for CP-B ...)
                if lock_waiters(db) or flags_done.is_set():
                    break
                threading.Event().wait(0.01)
            try:
                batch.execute(
                    text("UPDATE charge_points SET last_seen = now() WHERE charger_id = 'CP-B'")
                )
                batch.commit()
            except Exception as exc:
                failures.append(f"batch: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        thread.join(30)
    return failures


def _in_reverse_physical_order(db: Database) -> None:
    """CP-B's row first in the table, CP-A's after it: a scan meets CP-B first."""
    chargers_first = ("CP-B", "CP-A")
    for charger_id in chargers_first:
        db.run_sync(chargers.add_charger, charger_id)
    rows = db.run_sync(
        lambda s: [r[0] for r in s.execute(text("SELECT charger_id FROM charge_points"))]
    )
    assert rows == list(chargers_first)


def test_a_reconcile_and_a_batch_do_not_deadlock(pg: Database) -> None:
    _in_reverse_physical_order(pg)
    pg.run_sync(charger_owners.set_connected_fenced, {"CP-A": True, "CP-B": True}, "a")
    _in_reverse_physical_order_again = pg.run_sync(
        lambda s: [r[0] for r in s.execute(text("SELECT charger_id FROM charge_points"))]
    )
    assert _in_reverse_physical_order_again == ["CP-B", "CP-A"]

    # This node holds neither any more: the reconcile clears both flags.
    failures = _against_a_batch(
        pg, lambda s: charger_owners.reconcile_connected_fenced(s, set(), "a")
    )

    assert failures == []
    flags = pg.run_sync(
        lambda s: dict(s.execute(text("SELECT charger_id, connected FROM charge_points")).all())
    )
    assert flags == {"CP-A": False, "CP-B": False}


def test_flags_set_and_cleared_together_do_not_deadlock_with_a_batch(pg: Database) -> None:
    # One write sets CP-B and clears CP-A: set and cleared ones were written as two
    # statements, the set ones first (CP-B, then CP-A: against the batch's order).
    _in_reverse_physical_order(pg)
    pg.run_sync(charger_owners.set_connected_fenced, {"CP-A": True}, "a")

    failures = _against_a_batch(
        pg,
        lambda s: charger_owners.set_connected_fenced(s, {"CP-B": True, "CP-A": False}, "a"),
    )

    assert failures == []
    flags = pg.run_sync(
        lambda s: dict(s.execute(text("SELECT charger_id, connected FROM charge_points")).all())
    )
    assert flags == {"CP-A": False, "CP-B": True}


def test_a_single_node_reconcile_and_a_batch_do_not_deadlock(pg: Database) -> None:
    # CP-B's flag is stale (set, not held), CP-A's missing (held, not set): cleared ones
    # were written first (CP-B, then CP-A: against the batch's order).
    _in_reverse_physical_order(pg)
    pg.run_sync(chargers.set_connected, {"CP-B": True}, utc_now())

    failures = _against_a_batch(pg, lambda s: chargers.reconcile_connected(s, {"CP-A"}, utc_now()))

    assert failures == []
    flags = pg.run_sync(
        lambda s: dict(s.execute(text("SELECT charger_id, connected FROM charge_points")).all())
    )
    assert flags == {"CP-A": True, "CP-B": False}


def test_a_flag_write_and_a_batch_of_a_boot_and_a_first_status_do_not_deadlock(
    pg: Database,
) -> None:
    """Found by review: the batch locks its boots' rows first (CP-B), then a first
    StatusNotification of CP-A inserts a connector row, whose foreign key takes a KEY
    SHARE lock on CP-A's row. A flag write holding CP-A FOR UPDATE (and waiting for
    CP-B) blocked that: a deadlock. Rows locked FOR NO KEY UPDATE (what an UPDATE of
    non-key columns takes anyway) do not block a foreign key's check."""
    for charger_id in ("CP-A", "CP-B"):
        pg.run_sync(chargers.add_charger, charger_id)
        pg.run_sync(chargers.set_registration, charger_id, RegistrationStatus.ACCEPTED)
    boot = BootRequest(
        charger_id="CP-B", identity=ChargerIdentity(vendor="Acme", model="X"), received_at=NOW
    )
    status = StatusNotificationRequest(
        charger_id="CP-A",
        connector_id=1,
        status=ConnectorStatus.AVAILABLE,
        error_code="NoError",
        received_at=NOW,
    )
    flag_errors: list[BaseException] = []
    flags_done = threading.Event()

    def flag_write() -> None:
        try:
            pg.run_sync(charger_owners.set_connected_fenced, {"CP-A": True, "CP-B": True}, "a")
        except BaseException as exc:  # reported below
            flag_errors.append(exc)
        finally:
            flags_done.set()

    writer = threading.Thread(target=flag_write)

    def after_boot_read(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        # The batch holds CP-B (its boot's read): the flag write starts, takes CP-A and
        # waits for CP-B; then the batch goes on to CP-A's status.
        if "registration" in statement and "FROM charge_points" in statement:
            if writer.is_alive() or flags_done.is_set():
                return
            writer.start()
            for _ in range(500):
                if flags_done.is_set() or lock_waiters(pg):
                    break
                threading.Event().wait(0.01)

    fallbacks = pg.group_commit.fallbacks
    event.listen(pg.engine, "after_cursor_execute", after_boot_read)
    try:
        results = pg.run_batch_sync(
            [(chargers.boot_unit, (boot, 300, 60)), (chargers.record_status, (status,))]
        )
    finally:
        event.remove(pg.engine, "after_cursor_execute", after_boot_read)
        writer.join(30)

    assert flag_errors == []
    # One transaction for the batch: no deadlock made it fall back to one unit at a time.
    assert pg.group_commit.fallbacks == fallbacks
    assert results[0].status is RegistrationStatus.ACCEPTED
    flags = pg.run_sync(
        lambda s: dict(s.execute(text("SELECT charger_id, connected FROM charge_points")).all())
    )
    assert flags == {"CP-A": True, "CP-B": True}
