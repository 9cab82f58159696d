"""Group commit (issue 14 step 2, issue 21): units of work that arrive together share one
transaction, and a failure stays with the unit that caused it.

Real SQLite file and real PostgreSQL; the units are the store's own MeterValues unit of
work plus units that fail the ways a real one can (refused data, a bug, a connection
that dies in the middle of the batch).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from voltaro.domain.model import (
    BootRequest,
    ChargerIdentity,
    MeterValue,
    MeterValuesRequest,
    RegistrationStatus,
    SampledValue,
    StartTransactionRequest,
    StopTransactionRequest,
    TransactionState,
)
from voltaro.store import chargers, tags, transactions
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
    db: Database,
    units: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]],
    *,
    in_order: bool = False,
) -> Outcomes:
    """Submit every unit at once (one batch: the window is long) and collect outcomes;
    ``in_order``: they arrive in the dict's order, 10 ms apart."""
    outcomes: Outcomes = {}

    async def one(n: int, name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if in_order:
            await trio.sleep(0.01 * n)
        try:
            outcomes[name] = await db.write(fn, *args)
        except Exception as exc:
            outcomes[name] = exc

    async with trio.open_nursery() as nursery:
        for n, (name, (fn, args)) in enumerate(units.items()):
            nursery.start_soon(one, n, name, fn, args)
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
    # CP-1 leads and collects for 3 s: CP-2's cancel (at ~0.06 s) comes while it is
    # queued even on a machine that stalls for seconds.
    db.group_commit.window = 3.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(db.write, transactions.record_meter_values, meter_request("CP-1", 1))
        await trio.sleep(0.01)
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


def _rendezvous(gate: threading.Barrier) -> None:
    try:
        gate.wait()
    except threading.BrokenBarrierError:
        pass  # the other side could not get here (it waits on a lock): go on


@pytest.mark.postgres
async def test_overlapping_writers_take_charger_rows_in_one_order(postgres_url: str) -> None:
    """Issue 14 step 2 on PostgreSQL, the deadlock seen in a soak with overlapping
    batches: a batch that took the rows of the chargers whose messages it holds in
    arrival order (CP-B's, then CP-A's) against a writer taking them in charger order
    (the connected flags, ``chargers.set_connected``, sorted) waited on each other in a
    cycle; PostgreSQL killed one after ``deadlock_timeout``. A batch takes its units'
    rows in charger order: the two writers then only queue."""
    db = Database(postgres_url, pool_size=4)
    db.upgrade()
    db.group_commit.window = 0.3
    db.group_commit_enabled = True
    for cid in ("CP-A", "CP-B"):
        db.run_sync(chargers.add_charger, cid)
    gate = threading.Barrier(2, timeout=3)

    def flags_in_charger_order(s: Session) -> None:
        # What set_connected({"CP-A", "CP-B"}) does in one statement, in two steps so
        # that the batch runs between them.
        chargers.set_connected(s, {"CP-A": True}, BASE)
        _rendezvous(gate)
        chargers.set_connected(s, {"CP-B": True}, BASE)

    def rendezvous(s: Session) -> None:
        _rendezvous(gate)

    boot = functools.partial(chargers.boot, heartbeat_interval=60, retry_interval=30)

    def booting(cid: str) -> BootRequest:
        return BootRequest(
            charger_id=cid, identity=ChargerIdentity(vendor="V", model="M"), received_at=BASE
        )

    try:
        other: list[BaseException | None] = []

        async def other_writer() -> None:
            await trio.sleep(0.1)  # inside the batch's window
            try:
                await db.run(flags_in_charger_order)
                other.append(None)
            except TransientStorageError as exc:
                other.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_writer)
            outcomes = await submit_together(
                db,
                {
                    "CP-B": (boot, (booting("CP-B"),)),
                    "gate": (rendezvous, ()),
                    "CP-A": (boot, (booting("CP-A"),)),
                },
                in_order=True,
            )
        assert not any(isinstance(o, Exception) for o in outcomes.values()), outcomes
        assert other == [None]  # not a deadlock victim
        assert db.group_commit.fallbacks == 0  # nor the batch
    finally:
        db.dispose()


def _start(db: Database, cid: str, meter: int = 1000) -> int:
    result = db.run_sync(
        transactions.start_transaction,
        StartTransactionRequest(
            charger_id=cid,
            connector_id=1,
            id_tag=f"TAG-{cid}",
            meter_start=meter,
            timestamp=BASE,
            received_at=BASE,
        ),
        allow_concurrent=False,
    )
    return int(result.transaction_id)


def _reading(cid: str, tx: int | None, n: int) -> MeterValuesRequest:
    return replace(meter_request(cid, n), transaction_id=tx)


async def test_meter_values_of_a_batch_share_their_reads_and_writes(batched: Database) -> None:
    """Issue 14 step 2: a batch's MeterValues lock their transaction rows in one read and
    write them in one UPDATE and one INSERT (PostgreSQL's units are bound by round
    trips), with the same outcome as one message at a time: a retried message stored
    once, a later reading wins, a StopTransaction after a reading in the same batch
    sees it, a reading for an unknown transaction stored unlinked."""
    db = batched
    ids = [f"CP-{i}" for i in range(8)]
    txs = {}
    for cid in ids:
        db.run_sync(chargers.add_charger, cid)
        db.run_sync(tags.add_tag, f"TAG-{cid}")
        txs[cid] = _start(db, cid)

    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split()[0].upper())

    units: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        cid: (transactions.record_meter_values, (_reading(cid, txs[cid], 5),)) for cid in ids
    }
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        outcomes = await submit_together(db, units)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert not any(isinstance(o, Exception) for o in outcomes.values()), outcomes
    assert (db.group_commit.batches, db.group_commit.fallbacks) == (1, 0)
    # One locking read, one UPDATE (executemany), one INSERT of every sample; no
    # statement per message.
    assert statements.count("SELECT") == 1, statements
    assert statements.count("UPDATE") == 1, statements
    assert statements.count("INSERT") == 1, statements
    for cid in ids:
        tx = db.run_sync(transactions.get_transaction, txs[cid])
        assert tx is not None
        assert tx.last_meter_wh == 1005, (cid, tx)
        assert stored(db, cid) == 1

    # Mixed: a retry and a newer reading of CP-0, CP-1's reading then its stop, a reading
    # for a transaction nobody knows.
    stop_1 = StopTransactionRequest(
        charger_id="CP-1",
        transaction_id=txs["CP-1"],
        meter_stop=1500,
        timestamp=BASE + timedelta(hours=1),
        id_tag=None,
        received_at=BASE + timedelta(hours=1),
    )
    mixed: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        "CP-0 again": (transactions.record_meter_values, (_reading("CP-0", txs["CP-0"], 5),)),
        "CP-0 newer": (transactions.record_meter_values, (_reading("CP-0", txs["CP-0"], 9),)),
        "CP-1 reading": (transactions.record_meter_values, (_reading("CP-1", txs["CP-1"], 7),)),
        "CP-1 stop": (transactions.stop_transaction, (stop_1,)),
        "CP-2 unknown": (transactions.record_meter_values, (_reading("CP-2", 424242, 8),)),
    }
    outcomes = await submit_together(db, mixed, in_order=True)
    assert not any(isinstance(o, Exception) for o in outcomes.values()), outcomes
    assert (db.group_commit.batches, db.group_commit.fallbacks) == (2, 0)
    tx0 = db.run_sync(transactions.get_transaction, txs["CP-0"])
    assert tx0 is not None
    assert tx0.last_meter_wh == 1009
    assert stored(db, "CP-0") == 2  # readings 5 (once) and 9
    tx1 = db.run_sync(transactions.get_transaction, txs["CP-1"])
    assert tx1 is not None
    assert (tx1.state, tx1.meter_stop, tx1.energy_wh) == (
        TransactionState.COMPLETED,
        1500,
        500,
    )
    assert stored(db, "CP-1") == 2
    assert stored(db, "CP-2") == 2  # the unknown transaction's reading, unlinked


# Run in a child process: the defect it guards against spins the trio loop without a
# checkpoint, which nothing inside the process can interrupt.
_TAKEN_UNIT_SCRIPT = """
import sys, threading, time
import trio
from sqlalchemy import text
from voltaro.store.db import Database

db = Database(sys.argv[1], pool_size=4, batch_window=0)
assert db.group_commit.concurrency == 2, db.group_commit.concurrency
release = threading.Event()

def blocking(s):
    release.wait(10)
    s.execute(text("SELECT 1"))
    return "blocking"

def quick(s):
    s.execute(text("SELECT 1"))
    return "quick"

async def main():
    results = []

    async def first():
        results.append(await db.write(blocking))
        # A message that arrives as this batch ends (no checkpoint in between).
        results.append(await db.write(quick))

    async def one(fn):
        results.append(await db.write(fn))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.sleep(0.2)
        nursery.start_soon(one, blocking)
        await trio.sleep(0.2)
        nursery.start_soon(one, quick)  # both batch slots busy: it waits in the queue
        await trio.sleep(0.2)
        release.set()
        time.sleep(0.5)  # both batches end before the loop looks again: seen together
    print(sorted(results))

trio.run(main)
db.dispose()
"""


@pytest.mark.postgres
def test_a_unit_taken_into_a_batch_never_leads_another(postgres_url: str) -> None:
    """Overlapping batches (PostgreSQL, issue 14 step 2) with ``db_batch_window = 0``
    (allowed: "must not be negative"): a queued unit woken to lead the next batch, but
    taken into another leader's batch before it ran, found a free batch slot, led an
    empty batch without a checkpoint and did so forever while its own batch was in
    flight: the whole server hung, no charger answered. Every unit must complete."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for _ in range(3):  # the two batch ends are seen together almost always; be sure
        try:
            done = subprocess.run(
                [sys.executable, "-c", _TAKEN_UNIT_SCRIPT, postgres_url],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("the event loop hung: a unit already in a batch kept leading empty ones")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "['blocking', 'blocking', 'quick', 'quick']", done.stdout


@pytest.mark.postgres
async def test_a_message_waiting_on_a_held_row_lock_does_not_fail_the_others(
    postgres_url: str,
) -> None:
    """One charger's transaction row is locked by a long transaction elsewhere (an
    operator's psql session, a stuck client): its MeterValues waits until the
    statement_timeout cancels it (57014, transient). In a batch that cancellation is
    every unit's transient failure, so another charger's MeterValues that only shared
    the batch is not stored (its charger gets a CALLERROR after db_retry_seconds).
    Before group commit on PostgreSQL it committed at once. Now a batch waits for a
    lock at most ``lock_timeout`` (the app passes db_retry_seconds / 3, at least 0.5 s),
    falls back to one unit at a time, and only the unit whose row is held fails."""
    db = Database(postgres_url, pool_size=4, lock_timeout=0.5)
    db.upgrade()

    @event.listens_for(db.engine, "connect")
    def _short_timeout(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:  # 2 s instead of 15: a quicker test
            cursor.execute("SET statement_timeout = 2000")
        dbapi_connection.commit()

    db.engine.dispose()
    try:
        db.group_commit.window = 0.3
        db.group_commit_enabled = True
        txs = {}
        for cid in ("CP-A", "CP-B"):
            db.run_sync(chargers.add_charger, cid)
            db.run_sync(tags.add_tag, f"TAG-{cid}")
            txs[cid] = _start(db, cid)
        holder = db.engine.connect()
        holder.begin()
        holder.execute(
            text("SELECT 1 FROM transactions WHERE transaction_id = :t FOR UPDATE"),
            {"t": txs["CP-A"]},
        )
        try:
            units: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
                cid: (transactions.record_meter_values, (_reading(cid, txs[cid], 5),))
                for cid in ("CP-A", "CP-B")
            }
            outcomes = await submit_together(db, units)
        finally:
            holder.rollback()
            holder.close()
        assert isinstance(outcomes["CP-A"], TransientStorageError), outcomes
        assert not isinstance(outcomes["CP-B"], Exception), outcomes
        assert stored(db, "CP-B") == 1
    finally:
        db.dispose()


async def test_boots_of_a_batch_share_their_reads_and_writes(batched: Database) -> None:
    """Issue 14: a reconnect storm boots every charger. A batch's BootNotifications read
    their charge point rows in one query and write in one executemany per statement
    (three round trips per charger before), with the same answers and the same rows as
    one boot at a time: first boot, same firmware again, new firmware (a stored
    LocalAuthListEnabled false is forgotten), an operator's heartbeat interval, a Pending
    charger, a removed one, and one charger booting twice in the batch."""
    db = batched
    unit = chargers.boot_unit

    def scenario(prefix: str) -> list[tuple[str, BootRequest]]:
        def boot(cid: str, firmware: str, seconds: int = 0) -> tuple[str, BootRequest]:
            return (
                f"{prefix}{cid}",
                BootRequest(
                    charger_id=f"{prefix}{cid}",
                    identity=ChargerIdentity(vendor="V", model="M", firmware_version=firmware),
                    received_at=BASE + timedelta(seconds=seconds),
                ),
            )

        return [
            boot("A", "1"),
            boot("B", "1"),
            boot("C", "2"),
            boot("D", "1"),
            boot("E", "1"),
            boot("F", "1"),
            boot("G", "1"),
            boot("G", "1", 1),
        ]

    def setup(prefix: str) -> None:
        for cid in "ABCDEFG":
            db.run_sync(chargers.add_charger, f"{prefix}{cid}")
        db.run_sync(chargers.set_registration, f"{prefix}E", RegistrationStatus.PENDING)

        def earlier(s: Session) -> None:
            s.execute(
                text(
                    "UPDATE charge_points SET vendor = 'V', model = 'M', firmware_version = '1' "
                    "WHERE charger_id IN (:b, :c)"
                ),
                {"b": f"{prefix}B", "c": f"{prefix}C"},
            )
            s.execute(
                text("UPDATE charge_points SET heartbeat_interval = 77 WHERE charger_id = :d"),
                {"d": f"{prefix}D"},
            )
            for cid in "ABCD":
                for key, value in (("HeartbeatInterval", "5"), ("LocalAuthListEnabled", "false")):
                    s.execute(
                        text(
                            "INSERT INTO charger_configuration "
                            "(charger_id, key, value, readonly, unknown, updated_at) "
                            "VALUES (:c, :k, :v, false, false, :at)"
                        ),
                        {"c": f"{prefix}{cid}", "k": key, "v": value, "at": BASE},
                    )

        db.run_sync(earlier)
        db.run_sync(chargers.remove_charger, f"{prefix}F")

    def state(prefix: str) -> list[tuple[Any, ...]]:
        def read(s: Session) -> list[tuple[Any, ...]]:
            points = s.execute(
                text(
                    "SELECT charger_id, vendor, model, firmware_version, last_boot, rebooting "
                    "FROM charge_points WHERE charger_id LIKE :p ORDER BY charger_id"
                ),
                {"p": f"{prefix}%"},
            )
            config = s.execute(
                text(
                    "SELECT charger_id, key, value, unknown FROM charger_configuration "
                    "WHERE charger_id LIKE :p ORDER BY charger_id, key"
                ),
                {"p": f"{prefix}%"},
            )
            return [(str(r[0])[len(prefix) :], *r[1:]) for r in [*points.all(), *config.all()]]

        return db.run_sync(read)

    setup("ONE-")
    setup("BAT-")
    one_by_one = [db.run_sync(unit, request, 60, 30) for _, request in scenario("ONE-")]

    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split()[0].upper())

    requests = scenario("BAT-")
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        outcomes = await submit_together(
            db,
            {f"{cid} {n}": (unit, (request, 60, 30)) for n, (cid, request) in enumerate(requests)},
            in_order=True,
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert (db.group_commit.batches, db.group_commit.fallbacks) == (1, 0)
    batched_decisions = [outcomes[f"{cid} {n}"] for n, (cid, _) in enumerate(requests)]
    assert batched_decisions == one_by_one
    assert [(d.status, d.interval, d.same_identity) for d in one_by_one] == [
        (RegistrationStatus.ACCEPTED, 60, False),  # A: first boot
        (RegistrationStatus.ACCEPTED, 60, True),  # B: same firmware
        (RegistrationStatus.ACCEPTED, 60, False),  # C: new firmware
        (RegistrationStatus.ACCEPTED, 77, False),  # D: the operator's interval
        (RegistrationStatus.PENDING, 30, False),  # E: pending
        (RegistrationStatus.REJECTED, 30, False),  # F: removed
        (RegistrationStatus.ACCEPTED, 60, False),  # G: first boot
        (RegistrationStatus.ACCEPTED, 60, True),  # G again: sees the first
    ]
    assert state("BAT-") == state("ONE-")
    # One read of every row, one executemany per kind of write: no statement per boot.
    assert statements.count("SELECT") == 1, statements
    assert statements.count("UPDATE") == 3, statements
