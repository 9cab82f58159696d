"""A MeterValues reading writes only the reading columns of its transaction row
(issue 14): setting every column made SQLite rewrite the row's index entries at every
reading. Real SQLite file and real PostgreSQL, the store's own group commit; the
statements are read off the driver's cursor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, replace
from datetime import timedelta
from typing import Any

import pytest
import trio
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from tests.store.test_group_commit import BASE, _start, meter_request
from voltaro.domain import transaction_lifecycle as lc
from voltaro.store import chargers, tags, transactions
from voltaro.store.db import Database


@pytest.fixture
def updates(db: Database) -> Iterator[list[str]]:
    """The UPDATE statements sent on the transactions table, as the driver got them."""
    sent: list[str] = []

    def seen(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.lstrip().upper().startswith("UPDATE TRANSACTIONS"):
            sent.append(" ".join(sql.split()).lower())

    event.listen(db.engine, "before_cursor_execute", seen)
    yield sent
    event.remove(db.engine, "before_cursor_execute", seen)


def _row(db: Database, tid: int) -> dict[str, Any]:
    tx = db.run_sync(transactions.get_transaction, tid)
    assert tx is not None
    return asdict(tx)


def _active(db: Database, cid: str) -> int:
    db.run_sync(chargers.add_charger, cid)
    db.run_sync(tags.add_tag, f"TAG-{cid}")
    return _start(db, cid, meter=1000)


def _reading(cid: str, tid: int, n: int, wh: int, w: int) -> Any:
    req = meter_request(cid, n)
    mv = req.meter_values[0]
    energy = replace(mv.sampled_values[0], value=str(wh))
    power = replace(energy, value=str(w), measurand="Power.Active.Import", unit="W")
    return replace(
        req, transaction_id=tid, meter_values=(replace(mv, sampled_values=(energy, power)),)
    )


async def _together(db: Database, requests: list[Any]) -> None:
    async def one(n: int, req: Any) -> None:
        await trio.sleep(0.01 * n)  # in this order, inside one window
        await db.write(transactions.record_meter_values, req)

    async with trio.open_nursery() as nursery:
        for n, req in enumerate(requests):
            nursery.start_soon(one, n, req)


def _assigned(sql: str) -> list[str]:
    """The columns an UPDATE statement sets, sorted."""
    set_list = sql.split(" set ", 1)[1].split(" where ", 1)[0]
    return sorted(part.split("=")[0].strip() for part in set_list.split(","))


READING_COLUMNS = ["energy_wh", "last_meter_at", "last_meter_wh", "last_power_w"]


def _raw_times(db: Database, tid: int) -> tuple[Any, Any]:
    """last_meter_at and start_time as the driver returns them (no type processing)."""

    def read(s: Session) -> tuple[Any, Any]:
        row = s.execute(
            text("SELECT last_meter_at, start_time FROM transactions WHERE transaction_id = :t"),
            {"t": tid},
        ).one()
        return row[0], row[1]

    return db.run_sync(read)


@pytest.mark.parametrize("how", ["a group commit of one", "Database.run"])
async def test_a_lone_reading_sets_only_the_reading_columns(
    db: Database, updates: list[str], how: str
) -> None:
    """At 500 msg/s most group commits hold one message: it takes the same narrow
    UPDATE, and stores its time exactly as the whole-row statement would."""
    db.group_commit.window = 0.0
    db.group_commit_enabled = True
    tid = _active(db, "CP-1")
    updates.clear()
    req = _reading("CP-1", tid, 2, 1500, 7000)
    if how == "Database.run":
        await db.run(transactions.record_meter_values, req)
    else:
        await db.write(transactions.record_meter_values, req)
        assert db.group_commit.batches == 1
    assert [_assigned(sql) for sql in updates] == [READING_COLUMNS], updates
    assert (_row(db, tid)["last_meter_wh"], _row(db, tid)["last_power_w"]) == (1500, 7000)
    # The column's own bind processing applied: the same stored form as start_time's
    # (written by the Core statement), two seconds later.
    last_meter_at, start_time = _raw_times(db, tid)
    if isinstance(start_time, str):  # SQLite keeps the text SQLAlchemy wrote
        assert last_meter_at == start_time.replace("00:00:00", "00:00:02")
    else:
        assert last_meter_at - start_time == timedelta(seconds=2)
        assert last_meter_at.tzinfo == start_time.tzinfo


async def test_readings_set_only_the_reading_columns(db: Database, updates: list[str]) -> None:
    db.group_commit.window = 0.3
    db.group_commit_enabled = True
    tid = _active(db, "CP-1")
    before = _row(db, tid)
    updates.clear()
    await _together(
        db, [_reading("CP-1", tid, 1, 1500, 7000), _reading("CP-1", tid, 2, 1800, 6500)]
    )
    assert db.group_commit.batches == 1
    assert len(updates) == 1, updates  # one statement for the batch's two readings
    assert _assigned(updates[0]) == READING_COLUMNS
    after = _row(db, tid)
    # The later reading won; nothing else of the row moved.
    assert (after["last_meter_wh"], after["last_power_w"]) == (1800, 6500)
    assert after["last_meter_at"] == BASE + timedelta(seconds=2)
    reading_columns = {"energy_wh", "last_meter_wh", "last_power_w", "last_meter_at"}
    assert {k: v for k, v in after.items() if k not in reading_columns} == {
        k: v for k, v in before.items() if k not in reading_columns
    }


async def test_a_decision_that_changes_more_than_readings_writes_the_whole_row(
    db: Database, updates: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a MeterValues decision ever change another column (the domain may grow),
    the row is written whole: nothing it decided is dropped by the narrow statement."""
    db.group_commit.window = 0.3
    db.group_commit_enabled = True
    tid = _active(db, "CP-1")
    decide = lc.decide

    def decide_and_flag(ledger: Any, event: Any) -> Any:
        after, effects = decide(ledger, event)
        flagged = [
            lc.SaveTransaction(transaction=replace(e.transaction, energy_flag="suspect"))
            if isinstance(e, lc.SaveTransaction)
            else e
            for e in effects
        ]
        return after, flagged

    monkeypatch.setattr(lc, "decide", decide_and_flag)
    updates.clear()
    await _together(
        db, [_reading("CP-1", tid, 1, 1500, 7000), _reading("CP-1", tid, 2, 1800, 6500)]
    )
    assert updates
    assert all("energy_flag" in sql for sql in updates), updates
    after = _row(db, tid)
    assert (after["energy_flag"], after["last_meter_wh"]) == ("suspect", 1800)


async def test_a_whole_row_after_a_narrow_reading_keeps_the_later_readings(
    db: Database, updates: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first reading of a batch changes only readings, the second also another
    column: the row is written whole once, with the second reading's values (a narrow
    write left pending for it would run after and put the first reading back)."""
    db.group_commit.window = 0.3
    db.group_commit_enabled = True
    tid = _active(db, "CP-1")
    decide = lc.decide

    def flag_the_second(ledger: Any, event: Any) -> Any:
        after, effects = decide(ledger, event)
        if event.request.meter_values[0].sampled_values[0].value != "1800":
            return after, effects
        return after, [
            lc.SaveTransaction(transaction=replace(e.transaction, energy_flag="suspect"))
            if isinstance(e, lc.SaveTransaction)
            else e
            for e in effects
        ]

    monkeypatch.setattr(lc, "decide", flag_the_second)
    updates.clear()
    await _together(
        db, [_reading("CP-1", tid, 1, 1500, 7000), _reading("CP-1", tid, 2, 1800, 6500)]
    )
    assert db.group_commit.batches == 1
    assert len(updates) == 1, updates
    assert "energy_flag" in updates[0]
    after = _row(db, tid)
    assert (after["energy_flag"], after["last_meter_wh"], after["last_power_w"]) == (
        "suspect",
        1800,
        6500,
    )
