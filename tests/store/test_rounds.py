"""Shared rounds of the handshakes' database work (voltaro.service.rounds, issue 14 step
4), on a real SQLite database: many callers share a unit of work; a leader cancelled
before its round leaves no one waiting; one bad item fails only its own caller."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import trio
from sqlalchemy import text
from sqlalchemy.orm import Session

from voltaro.service.rounds import Rounds
from voltaro.store.db import Database
from voltaro.store.errors import PermanentStorageError


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'rounds.db'}", pool_size=4)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()


units: list[list[str]] = []
gate = threading.Event()


def many(s: Session, items: Mapping[str, int]) -> dict[str, int]:
    units.append(sorted(items))
    if "BAD" in items:
        s.execute(text("INSERT INTO charge_points (charger_id) VALUES (:id)"), {"id": "BAD"})
    return {k: v * 2 for k, v in items.items()}


def one(s: Session, key: str, arg: int) -> int:
    units.append([key])
    if key == "SLOW":
        gate.wait(5)
    if key == "BAD":
        s.execute(text("INSERT INTO charge_points (charger_id) VALUES (:id)"), {"id": "BAD"})
    s.execute(text("SELECT 1"))
    return arg * 2


@pytest.fixture(autouse=True)
def fresh() -> None:
    units.clear()
    gate.clear()


async def test_callers_arriving_during_a_round_share_the_next(db: Database) -> None:
    rounds: Rounds[str, int, int] = Rounds(db, many, one, missing=-1)
    results: dict[str, int] = {}

    async def ask(key: str, arg: int) -> None:
        results[key] = await rounds.run(key, arg)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "SLOW", 1)
        await trio.sleep(0.05)  # SLOW's round runs; these gather for the next
        for n in range(10):
            nursery.start_soon(ask, f"C{n}", n)
        await trio.sleep(0.05)
        gate.set()
    assert results == {"SLOW": 2, **{f"C{n}": 2 * n for n in range(10)}}
    assert units == [["SLOW"], sorted(f"C{n}" for n in range(10))]


async def test_a_leader_cancelled_before_its_round_leaves_no_one_waiting(db: Database) -> None:
    rounds: Rounds[str, int, int] = Rounds(db, many, one, missing=-1)
    results: dict[str, int] = {}

    async def ask(key: str, arg: int) -> None:
        results[key] = await rounds.run(key, arg)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "SLOW", 1)
        await trio.sleep(0.05)
        with trio.move_on_after(0.05):  # the next round's leader gives up waiting
            async with trio.open_nursery() as leader:
                leader.start_soon(ask, "LEADER", 5)
                await trio.sleep(0.01)
                nursery.start_soon(ask, "FOLLOWER", 3)
                await trio.sleep_forever()
        gate.set()
    assert results == {"SLOW": 2, "FOLLOWER": 6}


async def test_one_bad_item_fails_only_its_own_caller(db: Database) -> None:
    rounds: Rounds[str, int, int] = Rounds(db, many, one, missing=-1)
    results: dict[str, int | str] = {}

    async def ask(key: str, arg: int) -> None:
        try:
            results[key] = await rounds.run(key, arg)
        except PermanentStorageError:
            results[key] = "refused"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "SLOW", 1)
        await trio.sleep(0.05)
        for key, arg in (("A", 1), ("BAD", 2), ("B", 3)):
            nursery.start_soon(ask, key, arg)
        await trio.sleep(0.05)
        gate.set()
    assert results == {"SLOW": 2, "A": 2, "BAD": "refused", "B": 6}
