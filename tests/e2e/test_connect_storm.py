"""A connect storm (issue 14 step 4): many chargers connecting at once are looked up and
registered in shared database rounds, not in a transaction each, and every one is still
known, registered and stored before it is upgraded. Raw OCPP-J chargers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.e2e.conftest import RunningServer, serving
from tests.support.charger import RawCharger
from voltaro.domain.model import RegistrationStatus
from voltaro.store import chargers

STORM = 30


@pytest.fixture
async def server(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with serving(
        database_url, tmp_path, unknown_chargers="accept", max_pending_per_ip=1000
    ) as running:
        yield running


@pytest.fixture
def commits() -> Iterator[list[int]]:
    """Commits on every engine of this process (the server's included) while counting."""
    counted = [0]

    def one(connection: Any) -> None:
        counted[0] += 1

    event.listen(Engine, "commit", one)
    try:
        yield counted
    finally:
        event.remove(Engine, "commit", one)


async def storm(server: RunningServer, ids: list[str]) -> list[RawCharger]:
    connected: list[RawCharger] = []

    async def one(charger_id: str) -> None:
        connected.append(await RawCharger.connect(f"{server.url}/{charger_id}", timeout=20))

    async with trio.open_nursery() as nursery:
        for charger_id in ids:
            nursery.start_soon(one, charger_id)
    return connected


async def test_unknown_chargers_connecting_at_once_share_their_database_rounds(
    server: RunningServer, commits: list[int]
) -> None:
    ids = [f"NEW-{n}" for n in range(STORM)]
    commits[0] = 0
    first = await storm(server, ids)
    # Before the upgrade each was looked up, registered and flagged connected: three
    # transactions each when every step had its own; shared rounds now.
    handshake_commits = commits[0]
    for charger_id in ids:
        stored = server.run(chargers.get_charger, charger_id)
        assert stored is not None, charger_id
        assert stored.registration is RegistrationStatus.ACCEPTED
    assert handshake_commits < STORM, handshake_commits
    for cp in first:
        assert (await cp.boot())["status"] == "Accepted"
        await cp.close()

    # Reconnecting, now known: one shared lookup round for many.
    with trio.fail_after(10):
        while any(server.run(chargers.get_charger, c).connected for c in ids):  # noqa: ASYNC110
            await trio.sleep(0.05)
    commits[0] = 0
    again = await storm(server, ids)
    assert commits[0] < STORM, commits[0]
    for cp in again:
        assert (await cp.boot())["status"] == "Accepted"
        await cp.close()
