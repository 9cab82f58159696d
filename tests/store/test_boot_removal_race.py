"""A boot batch and a removal of one of its chargers, side by side (PostgreSQL).

A batch of boots reads its chargers' rows, decides each answer, then writes. A charger
removed (or re-registered) by another transaction between that read and the write was
answered from the row it had read: Accepted, for a charger that no longer existed when
the boot committed (seen in session 7's review). The read now locks the rows, in
charger id order: the removal waits for the boot's commit, or the boot finds the row
gone and answers Rejected. Reproduced with two real transactions: the removal runs
while the batch sits between its read and its write.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event

from tests.support.pg_locks import lock_waiters
from voltaro.domain.model import BootRequest, ChargerIdentity, RegistrationStatus
from voltaro.store import chargers
from voltaro.store.db import Database

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _boot(charger_id: str) -> tuple[Any, tuple[Any, ...]]:
    request = BootRequest(
        charger_id=charger_id,
        identity=ChargerIdentity(vendor="Acme", model="X"),
        received_at=NOW,
    )
    return chargers.boot_unit, (request, 300, 60)


def test_a_charger_removed_during_a_boot_batch_is_not_answered_accepted(
    pg: Database,
) -> None:
    for charger_id in ("CP-1", "CP-2"):
        pg.run_sync(chargers.add_charger, charger_id)
        pg.run_sync(chargers.set_registration, charger_id, RegistrationStatus.ACCEPTED)
    removed = threading.Event()
    removal_errors: list[BaseException] = []
    seen_at_write: list[bool] = []

    def remove() -> None:
        try:
            pg.run_sync(chargers.remove_charger, "CP-1")
        except BaseException as exc:  # reported below
            removal_errors.append(exc)
        finally:
            removed.set()

    remover = threading.Thread(target=remove)

    def after_read(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        # The batch has read its rows: now the removal runs, and the batch goes on
        # once it committed or is waiting for a lock held by the batch.
        reads_boots = "FROM charge_points" in statement and "registration" in statement
        if reads_boots and not remover.is_alive() and not removed.is_set():
            remover.start()
            for _ in range(500):
                if removed.is_set() or lock_waiters(pg):
                    break
                threading.Event().wait(0.01)
            seen_at_write.append(removed.is_set())

    event.listen(pg.engine, "after_cursor_execute", after_read)
    try:
        decisions = pg.run_batch_sync([_boot("CP-1"), _boot("CP-2")])
    finally:
        event.remove(pg.engine, "after_cursor_execute", after_read)
        remover.join(30)

    assert removal_errors == []
    assert pg.run_sync(chargers.get_charger, "CP-1") is None  # removed in the end
    cp1, cp2 = decisions
    assert cp2.status is RegistrationStatus.ACCEPTED
    # Either the removal came first (Rejected: the charger is gone), or the boot did and
    # the removal waited for its commit: never Accepted for a row already removed.
    assert seen_at_write == [False] or cp1.status is RegistrationStatus.REJECTED, (
        seen_at_write,
        cp1,
    )
