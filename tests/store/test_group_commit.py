"""Group commit (issue 14 step 2, issue 21): units of work that arrive together share one
transaction, and a failure stays with the unit that caused it.

Real SQLite file and real PostgreSQL; the units are the store's own MeterValues unit of
work plus units that fail the ways a real one can (refused data, a bug, a connection
that dies in the middle of the batch).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from voltaro.domain.model import MeterValue, MeterValuesRequest, SampledValue
from voltaro.store import transactions
from voltaro.store.db import Database
from voltaro.store.errors import PermanentStorageError, TransientStorageError

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def meter_request(charger_id: str, n: int) -> MeterValuesRequest:
    return MeterValuesRequest(
        charger_id=charger_id,
        connector_id=1,
        transaction_id=None,
        meter_values=(
            MeterValue(
                timestamp=BASE + timedelta(seconds=n),
                sampled_values=(
                    SampledValue(
                        value=str(1000 + n),
                        context="Sample.Periodic",
                        format="Raw",
                        measurand="Energy.Active.Import.Register",
                        phase=None,
                        location="Outlet",
                        unit="Wh",
                    ),
                ),
            ),
        ),
        received_at=BASE,
    )


def stored(db: Database, charger_id: str) -> int:
    def count(s: Session) -> int:
        return int(
            s.execute(
                text("SELECT count(*) FROM meter_values WHERE charger_id = :c"), {"c": charger_id}
            ).scalar_one()
        )

    return db.run_sync(count)


def refused_by_the_database(s: Session) -> None:
    # NOT NULL violation: the database refuses this unit's data for good.
    s.execute(text("INSERT INTO charge_points (charger_id) VALUES (NULL)"))


def buggy(s: Session) -> None:
    raise ValueError("a bug in one unit of work")


Outcomes = dict[str, Any]


async def submit_together(
    db: Database, units: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]]
) -> Outcomes:
    """Submit every unit at once (one batch: the window is long) and collect outcomes."""
    outcomes: Outcomes = {}

    async def one(name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            outcomes[name] = await db.write(fn, *args)
        except Exception as exc:
            outcomes[name] = exc

    async with trio.open_nursery() as nursery:
        for name, (fn, args) in units.items():
            nursery.start_soon(one, name, fn, args)
    return outcomes


@pytest.fixture
def batched(db: Database) -> Database:
    db.group_commit.window = 0.3  # every unit below lands in the same batch
    db.group_commit_enabled = True  # on PostgreSQL too (the server enables it on SQLite)
    return db


async def test_units_arriving_together_share_one_transaction(batched: Database) -> None:
    db = batched
    units = {
        f"CP-{i}": (transactions.record_meter_values, (meter_request(f"CP-{i}", i),))
        for i in range(20)
    }
    outcomes = await submit_together(db, units)
    assert all(not isinstance(o, Exception) for o in outcomes.values()), outcomes
    assert (db.group_commit.batches, db.group_commit.units) == (1, 20)
    assert db.group_commit.fallbacks == 0
    assert all(stored(db, f"CP-{i}") == 1 for i in range(20))


async def test_a_refused_unit_fails_alone_and_the_others_are_stored(batched: Database) -> None:
    db = batched
    units: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        f"CP-{i}": (transactions.record_meter_values, (meter_request(f"CP-{i}", i),))
        for i in range(5)
    }
    units["bad"] = (refused_by_the_database, ())
    units.update(
        {
            f"CP-{i}": (transactions.record_meter_values, (meter_request(f"CP-{i}", i),))
            for i in range(5, 10)
        }
    )
    outcomes = await submit_together(db, units)
    assert isinstance(outcomes.pop("bad"), PermanentStorageError)
    assert all(o is not None and not isinstance(o, Exception) for o in outcomes.values()), outcomes
    assert db.group_commit.fallbacks == 1  # the batch was rolled back, then one by one
    assert [stored(db, f"CP-{i}") for i in range(10)] == [1] * 10


async def test_a_bug_in_one_unit_reaches_only_its_caller(batched: Database) -> None:
    db = batched
    units: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        f"CP-{i}": (transactions.record_meter_values, (meter_request(f"CP-{i}", i),))
        for i in range(6)
    }
    units["bug"] = (buggy, ())
    outcomes = await submit_together(db, units)
    error = outcomes.pop("bug")
    assert isinstance(error, ValueError)
    assert "a bug" in str(error)
    assert not any(isinstance(o, Exception) for o in outcomes.values())
    assert [stored(db, f"CP-{i}") for i in range(6)] == [1] * 6


async def test_a_failure_mid_batch_stores_nothing_and_the_retry_stores_each_once(
    batched: Database,
) -> None:
    """The database goes away in the middle of a batch: nothing of the batch is
    committed (so nobody may be answered), every caller is told to retry, and the
    retries store each message exactly once."""
    db = batched
    failed_once: list[bool] = []

    def dies_mid_batch(s: Session) -> None:
        if not failed_once:
            failed_once.append(True)
            # What a lost server looks like to SQLAlchemy (not a disconnect it could retry).
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    units: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        f"CP-{i}": (transactions.record_meter_values, (meter_request(f"CP-{i}", i),))
        for i in range(4)
    }
    units["dies"] = (dies_mid_batch, ())
    units.update(
        {
            f"CP-{i}": (transactions.record_meter_values, (meter_request(f"CP-{i}", i),))
            for i in range(4, 8)
        }
    )
    outcomes = await submit_together(db, units)
    assert all(isinstance(o, TransientStorageError) for o in outcomes.values()), outcomes
    assert [stored(db, f"CP-{i}") for i in range(8)] == [0] * 8  # all rolled back
    # The chargers retry (ChargerIngest._durable does): each stored exactly once.
    outcomes = await submit_together(db, units)
    assert not any(isinstance(o, Exception) for o in outcomes.values()), outcomes
    outcomes = await submit_together(db, units)  # and a second retry stores nothing twice
    assert [stored(db, f"CP-{i}") for i in range(8)] == [1] * 8


@pytest.mark.postgres
async def test_a_connection_killed_mid_batch_is_retried_on_a_fresh_one(
    postgres_url: str,
) -> None:
    """The backend running the batch is terminated between two units: the batch is rolled
    back by the server and run once more on a fresh connection; each unit stored once."""
    db = Database(postgres_url, pool_size=2)
    db.upgrade()
    db.group_commit.window = 0.3
    db.group_commit_enabled = True
    killed: list[bool] = []

    def killed_once(s: Session) -> None:
        if not killed:
            killed.append(True)
            s.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    try:
        units: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
            f"CP-{i}": (transactions.record_meter_values, (meter_request(f"CP-{i}", i),))
            for i in range(3)
        }
        units["killer"] = (killed_once, ())
        units.update(
            {
                f"CP-{i}": (transactions.record_meter_values, (meter_request(f"CP-{i}", i),))
                for i in range(3, 6)
            }
        )
        outcomes = await submit_together(db, units)
        assert killed
        assert not any(isinstance(o, Exception) for o in outcomes.values()), outcomes
        assert [stored(db, f"CP-{i}") for i in range(6)] == [1] * 6
    finally:
        db.dispose()


async def test_a_unit_cancelled_while_queued_never_runs(batched: Database) -> None:
    db = batched
    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.write, transactions.record_meter_values, meter_request("CP-1", 1))
        await trio.sleep(0.01)  # CP-1 leads and collects for 0.3 s
        with trio.move_on_after(0.05):
            await db.write(transactions.record_meter_values, meter_request("CP-2", 2))
    assert stored(db, "CP-1") == 1
    assert stored(db, "CP-2") == 0
    assert db.group_commit.units == 1


async def test_a_lone_unit_is_committed_without_waiting(db: Database) -> None:
    db.group_commit.window = 0.0
    db.group_commit_enabled = True
    await db.write(transactions.record_meter_values, meter_request("CP-1", 1))
    assert (db.group_commit.batches, stored(db, "CP-1")) == (1, 1)


class _Deadlock(Exception):
    sqlstate = "40P01"  # what psycopg reports for PostgreSQL's deadlock_detected


async def test_a_lock_conflict_in_a_batch_falls_back_to_one_unit_at_a_time(
    batched: Database,
) -> None:
    """A batch holds many row locks at once and may deadlock with another writer; its
    units then run one by one (short lock holds) instead of all failing."""
    db = batched
    conflicts: list[bool] = []

    def conflicts_in_the_batch(s: Session) -> None:
        if not conflicts:
            conflicts.append(True)
            raise OperationalError("UPDATE", {}, _Deadlock("deadlock detected"))

    units: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        f"CP-{i}": (transactions.record_meter_values, (meter_request(f"CP-{i}", i),))
        for i in range(4)
    }
    units["conflict"] = (conflicts_in_the_batch, ())
    outcomes = await submit_together(db, units)
    assert not any(isinstance(o, Exception) for o in outcomes.values()), outcomes
    assert db.group_commit.fallbacks == 1
    assert [stored(db, f"CP-{i}") for i in range(4)] == [1] * 4
