"""MeterValues' writes as the database holds them, on SQLite and PostgreSQL.

Issue 14 sends the transaction row's UPDATE and the samples' INSERT ... ON CONFLICT DO
NOTHING as driver-level SQL with parameters converted per column (voltaro.store.plain_sql: on
PostgreSQL the samples in pages of four rows). What is stored must be exactly what the Core
statements store: timestamps (aware with offsets, naive, with and without
microseconds), NULLs, long texts, big integers, floats; and a retried message's samples
once (the unique key). Each case is written both ways and the raw rows compared.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from voltaro.domain.model import AuthorizationStatus, StopReason, Transaction, TransactionState
from voltaro.store import transactions as t
from voltaro.store.db import Database
from voltaro.store.schema import METER_VALUE_KEY, MeterValueRow

AT = datetime(2026, 12, 6, 4, 0, 0, 123456, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))
MINUS530 = timezone(-timedelta(hours=5, minutes=30))


def _sample(i: int, **changes: Any) -> tuple[Any, ...]:
    row = {
        "charger_id": "CP-1",
        "connector_id": 1,
        "reported_transaction_id": 7,
        "transaction_id": 7,
        "at": AT + timedelta(seconds=i),
        "value": str(i),
        "context": "Sample.Periodic",
        "format": "Raw",
        "measurand": "Energy.Active.Import.Register",
        "phase": "",
        "location": "Outlet",
        "unit": "Wh",
    } | changes
    return tuple(row[name] for name in t._SAMPLE_COLUMNS)


CASES: list[list[tuple[Any, ...]]] = [
    # One sample (the latency phase's usual message).
    [_sample(0, at=AT.astimezone(PLUS2))],
    # A few (plain parameters on PostgreSQL): offsets, no microseconds, NULL link,
    # a long text, a big reported id, unicode, a phase.
    [
        _sample(1, at=datetime(2026, 12, 6, 4, 0, 1, tzinfo=MINUS530)),
        _sample(2, transaction_id=None, reported_transaction_id=2**62, value="x" * 100_000),
        _sample(3, value="é ☃ \U0001f600", phase="L1-N", unit="kWh-Import-Register-Total"),
    ],
    # A duplicate inside one message: stored once.
    [_sample(4), _sample(4)],
    # Many (two pages and the rest on PostgreSQL; driver executemany on SQLite).
    [_sample(10 + i, at=(AT + timedelta(microseconds=i)).astimezone(PLUS2)) for i in range(9)],
]


def _stored_samples(s: Session) -> list[tuple[Any, ...]]:
    cast = "CAST(at AS TEXT)"
    names = ", ".join(n if n != "at" else cast for n in t._SAMPLE_COLUMNS)
    extra = ", typeof(at)" if s.connection().dialect.name == "sqlite" else ""
    order = ", ".join(METER_VALUE_KEY)
    return [
        tuple(r)
        for r in s.execute(text(f"SELECT {names}{extra} FROM meter_values ORDER BY {order}"))
    ]


def _driver_insert(s: Session, rows: list[tuple[Any, ...]]) -> None:
    connection = s.connection()
    t._driver(connection).insert_samples(connection, list(rows))


def _core_insert(s: Session, rows: list[tuple[Any, ...]]) -> None:
    dicts = [dict(zip(t._SAMPLE_COLUMNS, r, strict=True)) for r in rows]
    statement = t._insert_ignore_statement(
        s.connection().dialect.name, MeterValueRow, METER_VALUE_KEY
    )
    s.connection().execute(statement, dicts)


def _clear(s: Session) -> None:
    s.execute(text("DELETE FROM meter_values"))
    s.execute(text("DELETE FROM transactions"))


def test_samples_stored_as_the_core_insert_stores_them(db: Database) -> None:
    for rows in CASES:
        db.run_sync(_driver_insert, rows)
        # The retry: the same samples again add nothing.
        db.run_sync(_driver_insert, rows)
        by_driver = db.run_sync(_stored_samples)
        db.run_sync(_clear)
        db.run_sync(_core_insert, rows)
        db.run_sync(_core_insert, rows)
        by_core = db.run_sync(_stored_samples)
        db.run_sync(_clear)
        assert by_driver == by_core
        assert len(by_driver) == len(set(rows))


def test_a_retry_with_another_offset_is_the_same_sample(db: Database) -> None:
    first = [_sample(0)]
    again = [_sample(0, at=AT.astimezone(MINUS530))]
    db.run_sync(_driver_insert, first)
    db.run_sync(_driver_insert, again)
    assert len(db.run_sync(_stored_samples)) == 1


BASE = Transaction(
    transaction_id=7,
    charger_id="CP-1",
    connector_id=1,
    id_tag="TAG",
    id_tag_status=AuthorizationStatus.ACCEPTED,
    start_time=AT,
    meter_start=1000,
    created_at=AT,
)

UPDATES = [
    replace(BASE, last_meter_wh=1234.5678901234567, last_power_w=0.1, last_meter_at=AT),
    replace(
        BASE,
        id_tag="T" * 20_000,
        state=TransactionState.COMPLETED,
        stop_time=datetime(2026, 12, 6, 6, 0, 0, tzinfo=PLUS2),
        meter_stop=2**62,
        stop_reason=StopReason.REMOTE,
        stop_id_tag="é ☃",
        energy_wh=2**62 - 1000,
        last_meter_wh=1e300,
        last_power_w=-0.0,
        reservation_id=2**31 - 1,
        last_meter_at=AT.astimezone(MINUS530),
        end_reason="why " * 1000,
        ended_at=datetime(2026, 12, 6, 5, 0, 0),  # naive: taken as UTC
        closed_by="operator",
        energy_flag="estimated",
    ),
    # Everything optional back to NULL.
    BASE,
]


def _stored_tx(s: Session) -> list[tuple[Any, ...]]:
    timestamps = {"start_time", "stop_time", "last_meter_at", "ended_at", "created_at"}
    names = ", ".join(
        f"CAST({n} AS TEXT)" if n in timestamps else n
        for n in ("transaction_id", *t._TX_COLUMNS, "created_at")
    )
    extra = ""
    if s.connection().dialect.name == "sqlite":
        extra = ", " + ", ".join(f"typeof({n})" for n in t._TX_COLUMNS)
    return [tuple(r) for r in s.execute(text(f"SELECT {names}{extra} FROM transactions"))]


def _insert_tx(s: Session, txs: list[Transaction]) -> None:
    for tx in txs:
        s.connection().execute(
            t._TX.insert(),
            [{"transaction_id": tx.transaction_id, "created_at": tx.created_at} | t._columns(tx)],
        )


def _driver_update(s: Session, txs: list[Transaction]) -> None:
    connection = s.connection()
    t._driver(connection).update(connection, [t._update_row(tx) for tx in txs])


def _core_update(s: Session, txs: list[Transaction]) -> None:
    s.connection().execute(t._UPDATE_TX, [t._update_params(tx) for tx in txs])


def test_transaction_update_stored_as_the_core_update_stores_it(db: Database) -> None:
    for update in UPDATES:
        for several in (False, True):
            txs = [update]
            if several:
                txs.append(replace(update, transaction_id=8, connector_id=2))
            results = []
            for write in (_driver_update, _core_update):
                db.run_sync(_insert_tx, [replace(tx, last_meter_wh=1.0) for tx in txs])
                db.run_sync(write, txs)
                results.append(sorted(db.run_sync(_stored_tx)))
                db.run_sync(_clear)
            assert results[0] == results[1], (update, several)


async def test_a_locked_or_refusing_database_still_maps_to_its_errors(tmp_path: Any) -> None:
    """The driver-level writes keep SQLAlchemy's error wrapping: SQLite's lock held by
    another writer is transient (the charger retries, "unavailable"), a value the
    column cannot hold is permanent (quarantine), and nothing is half-stored."""
    import sqlite3

    from tests.store.test_group_commit import meter_request
    from voltaro.store.errors import PermanentStorageError, TransientStorageError

    path = tmp_path / "locked.db"
    db = Database(f"sqlite:///{path}", lock_timeout=0.2)
    db.upgrade()
    try:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's lock
        try:
            with pytest.raises(TransientStorageError):
                await db.run(t.record_meter_values, meter_request("CP-L", 1))
        finally:
            other.execute("ROLLBACK")
            other.close()
        await db.run(t.record_meter_values, meter_request("CP-L", 1))
        bad = replace(meter_request("CP-L", 2), connector_id=2**63)
        with pytest.raises(PermanentStorageError):
            await db.run(t.record_meter_values, bad)
        assert len(db.run_sync(_stored_samples)) == 1
    finally:
        db.dispose()
