"""Charger messages take the database's next free slot before background units of work
(voltaro.store.write_order, issue 14: latency at 500 msg/s).

Real SQLite file and real PostgreSQL: every slot is held by a unit of work blocked in its
worker thread, background units queue, then a charger's MeterValues (group-committed, as
the server writes it) arrives last; when one slot frees, the MeterValues goes first.
"""

from __future__ import annotations

import threading
from typing import Any

import trio
from sqlalchemy.orm import Session

from voltaro.store import transactions
from voltaro.store.db import Database

from .test_group_commit import meter_request, stored
from .test_retention import until

BACKGROUND = 6


def background(name: str, order: list[str]) -> Any:
    def unit(_session: Session) -> None:
        order.append(name)

    unit.__name__ = name
    return unit


async def run_scenario(db: Database, *, wait_before_message: float) -> tuple[str, list[str]]:
    """Hold every slot, queue BACKGROUND units, then (after ``wait_before_message``) a
    MeterValues; free one slot: what ran first, and the order of everything."""
    order: list[str] = []
    held = [threading.Event() for _ in range(int(db.limiter.total_tokens))]

    def hold(_session: Session, gate: threading.Event) -> None:
        gate.wait(30)

    async def message() -> None:
        await db.write(transactions.record_meter_values, meter_request("CP-W", 1))
        order.append("MeterValues")

    async with trio.open_nursery() as nursery:
        for gate in held:
            nursery.start_soon(db.run, hold, gate)
        await until(lambda: db.limiter.borrowed_tokens == db.limiter.total_tokens, "held")
        for n in range(BACKGROUND):
            nursery.start_soon(db.run, background(f"bg{n}", order))
            await until(lambda n=n: db.limiter.statistics().tasks_waiting == n + 1, "queued")
        await trio.sleep(wait_before_message)
        nursery.start_soon(message)
        await until(lambda: db.limiter.statistics().tasks_waiting == BACKGROUND + 1, "waits")
        # One slot frees: whoever takes it runs alone until the next frees.
        held[0].set()
        await until(lambda: len(order) >= 1, "one ran")
        first = order[0]
        for gate in held[1:]:
            gate.set()
    assert stored(db, "CP-W") == 1
    return first, order


async def test_a_charger_message_goes_before_background_units_queued_earlier(
    db: Database,
) -> None:
    db.limiter.patience = 60.0  # nobody is overdue in this test
    first, order = await run_scenario(db, wait_before_message=0.0)
    assert first == "MeterValues", order
    # The background units all run, in their own order where one slot serialises them.
    assert sorted(order) == sorted(["MeterValues", *(f"bg{n}" for n in range(BACKGROUND))])
    if db.limiter.total_tokens == 1:
        assert order == ["MeterValues", *(f"bg{n}" for n in range(BACKGROUND))]


async def test_a_background_unit_that_waited_its_patience_takes_a_turn(db: Database) -> None:
    db.limiter.patience = 0.05
    # The background units have waited longer than their patience when the message
    # arrives: the oldest goes first, then the message (turns), not all six first.
    first, order = await run_scenario(db, wait_before_message=0.2)
    assert first == "bg0", order
    if db.limiter.total_tokens == 1:
        assert order[:3] == ["bg0", "MeterValues", "bg1"], order
