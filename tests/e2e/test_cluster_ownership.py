"""Two in-process nodes (voltaro.app.run with cluster = true) on one PostgreSQL database,
and an independent raw OCPP-J charger (issue 18): ownership with epochs, eviction across
nodes, self-fencing on a lost lease."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import text

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.support.charger import HandshakeRefused, RawCharger
from voltaro.settings import UnknownChargers

pytestmark = pytest.mark.postgres

LEASE = 3.0  # the smallest lease the settings accept: renewed every second


@asynccontextmanager
async def node(
    postgres_url: str, tmp_path: Path, node_id: str, **overrides: Any
) -> AsyncIterator[RunningServer]:
    folder = tmp_path / node_id
    folder.mkdir()
    settings = server_settings(
        postgres_url,
        folder,
        cluster=True,
        node_id=node_id,
        **{"node_lease_seconds": LEASE, "unknown_chargers": UnknownChargers.ACCEPT, **overrides},
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            yield server
        finally:
            stop.set()
            server.db.dispose()


def rows(server: RunningServer, statement: str) -> list[Any]:
    return server.run(lambda s: list(s.execute(text(statement)).all()))


def owners(server: RunningServer) -> dict[str, tuple[str, int]]:
    return {
        r.charger_id: (r.node_id, r.epoch)
        for r in rows(server, "SELECT charger_id, node_id, epoch FROM charger_owners")
    }


def connected(server: RunningServer, charger_id: str) -> bool:
    (row,) = rows(server, f"SELECT connected FROM charge_points WHERE charger_id = '{charger_id}'")
    return bool(row.connected)


async def eventually(check: Any, *, within: float = 5.0) -> None:
    """Poll ``check()`` (sync) until it is true, within a deadline."""
    with trio.fail_after(within):
        while not check():  # noqa: ASYNC110 - polling state another node changes
            await trio.sleep(0.05)


async def test_a_connection_on_another_node_takes_the_charger_over(
    postgres_url: str, tmp_path: Path
) -> None:
    # A long lease: the reaper round (every lease / 3) that also checks every socket's
    # row cannot be what closes A's socket here; the eviction NOTIFY must.
    async with (
        node(postgres_url, tmp_path, "a", node_lease_seconds=30) as a,
        node(postgres_url, tmp_path, "b", node_lease_seconds=30) as b,
    ):
        on_a = await RawCharger.connect(f"{a.url}/CP-1")
        assert (await on_a.boot())["status"] == "Accepted"
        assert owners(a) == {"CP-1": ("a", 1)}
        await eventually(lambda: connected(a, "CP-1"))

        on_b = await RawCharger.connect(f"{b.url}/CP-1")
        opened = trio.current_time()
        # A's socket is closed as a takeover (as on one node), within a second.
        assert await on_a.wait_closed(timeout=2) == 1000
        closed_after = trio.current_time() - opened
        assert closed_after < 1.0, closed_after
        assert owners(b) == {"CP-1": ("b", 2)}
        # A's late release and "disconnected" write carry epoch 1: B's claim stands.
        await trio.sleep(0.5)
        assert owners(b) == {"CP-1": ("b", 2)}
        assert connected(b, "CP-1")
        assert "currentTime" in await on_b.call("Heartbeat", {})

        # And back: B is evicted the same way, epoch 3.
        again = await RawCharger.connect(f"{a.url}/CP-1")
        assert await on_b.wait_closed(timeout=2) == 1000
        assert owners(a) == {"CP-1": ("a", 3)}
        await again.close()
        await eventually(lambda: owners(a) == {})
        await eventually(lambda: not connected(a, "CP-1"))


async def test_an_unauthenticated_connection_takes_nothing_over(
    postgres_url: str, tmp_path: Path
) -> None:
    async with (
        node(postgres_url, tmp_path, "a") as a,
        node(postgres_url, tmp_path, "b", unknown_chargers=UnknownChargers.REJECT) as b,
    ):
        on_a = await RawCharger.connect(f"{a.url}/CP-2")
        await on_a.boot()
        # B knows CP-2 (same database) but it has a password now: no credentials, 401.
        from voltaro.store import chargers

        b.run(chargers.set_password, "CP-2", b"secret-secret")
        with pytest.raises(HandshakeRefused) as refused:
            await RawCharger.connect(f"{b.url}/CP-2")
        assert refused.value.status == 401
        assert owners(a) == {"CP-2": ("a", 1)}
        assert "currentTime" in await on_a.call("Heartbeat", {})


async def test_a_node_that_lost_its_lease_closes_its_chargers_1012_then_rejoins(
    postgres_url: str, tmp_path: Path
) -> None:
    async with node(postgres_url, tmp_path, "a") as a:
        charger = await RawCharger.connect(f"{a.url}/CP-3")
        await charger.boot()
        (before,) = rows(a, "SELECT incarnation FROM cluster_nodes WHERE node_id = 'a'")
        # The lease runs out on the database clock (as after a pause past it): the next
        # renewal (within LEASE / 3) finds it gone and the node fences itself.
        rows(
            a,
            "UPDATE cluster_nodes SET lease_until = (now() AT TIME ZONE 'UTC') "
            "- interval '1 second' RETURNING node_id",
        )
        expired = trio.current_time()
        assert await charger.wait_closed(timeout=LEASE) == 1012
        assert trio.current_time() - expired < LEASE / 3 + 1
        # It comes back as a new incarnation and takes chargers again.
        refusals: list[int] = []
        with trio.fail_after(10):
            while True:
                try:
                    charger = await RawCharger.connect(f"{a.url}/CP-3")
                    break
                except HandshakeRefused as exc:
                    refusals.append(exc.status)
                    await trio.sleep(0.2)
        assert set(refusals) <= {503}
        (after,) = rows(a, "SELECT incarnation FROM cluster_nodes WHERE node_id = 'a'")
        assert after.incarnation != before.incarnation
        (owner,) = rows(a, "SELECT node_id, incarnation FROM charger_owners")
        assert (owner.node_id, owner.incarnation) == ("a", after.incarnation)
        assert "currentTime" in await charger.call("Heartbeat", {})
        await charger.close()
