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
from sqlalchemy import event

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
    set_list = updates[0].split(" set ", 1)[1].split(" where ", 1)[0]
    assigned = sorted(part.split("=")[0].strip() for part in set_list.split(","))
    assert assigned == ["energy_wh", "last_meter_at", "last_meter_wh", "last_power_w"]
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
