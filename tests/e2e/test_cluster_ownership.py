"""Two in-process nodes (voltaro.app.run with cluster = true) on one PostgreSQL database,
and an independent raw OCPP-J charger (issue 18): ownership with epochs, eviction across
nodes, self-fencing on a lost lease."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from sqlalchemy import text

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.test_ctl import ctl
from tests.support.charger import HandshakeRefused, RawCharger
from voltaro.settings import ApiScope, ApiToken, UnknownChargers
from voltaro.store import chargers

pytestmark = pytest.mark.postgres

TOKEN = "cluster-status-token-0123456789"
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
    # A long lease: the reaper round (every lease / 3: 20 s) that also checks every
    # socket's row cannot be what closes A's socket here; the eviction NOTIFY must.
    async with (
        node(postgres_url, tmp_path, "a", node_lease_seconds=60) as a,
        node(postgres_url, tmp_path, "b", node_lease_seconds=60) as b,
    ):
        on_a = await RawCharger.connect(f"{a.url}/CP-1")
        assert (await on_a.boot())["status"] == "Accepted"
        assert owners(a) == {"CP-1": ("a", 1)}
        await eventually(lambda: connected(a, "CP-1"))

        on_b = await RawCharger.connect(f"{b.url}/CP-1")
        opened = trio.current_time()
        # A's socket is closed as a takeover (as on one node): ~0.01 s, far from the
        # next reaper round (20 s).
        assert await on_a.wait_closed(timeout=10) == 1000
        closed_after = trio.current_time() - opened
        assert closed_after < 5.0, closed_after
        assert owners(b) == {"CP-1": ("b", 2)}
        # A's late release and "disconnected" write carry epoch 1: B's claim stands.
        await trio.sleep(0.5)
        assert owners(b) == {"CP-1": ("b", 2)}
        assert connected(b, "CP-1")
        assert "currentTime" in await on_b.call("Heartbeat", {})

        # And back: B is evicted the same way, epoch 3.
        again = await RawCharger.connect(f"{a.url}/CP-1")
        assert await on_b.wait_closed(timeout=10) == 1000
        assert owners(a) == {"CP-1": ("a", 3)}
        await again.close()
        await eventually(lambda: owners(a) == {})
        await eventually(lambda: not connected(a, "CP-1"))


async def test_an_eviction_that_arrives_before_the_old_socket_is_registered_still_closes_it(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claims CP-LATE (epoch 1) but has not registered the socket yet (the WebSocket
    handshake is not finished: held here); B claims it meanwhile (epoch 2) and A is told
    on its evict channel while it has no socket for it. When A's socket registers, its
    epoch is already superseded: it is closed at once, as a takeover (1000), not at A's
    next reaper round (a third of the 60 s lease)."""
    from voltaro.service.cluster_node import ClusterNode

    claim, evict = ClusterNode.claim, ClusterNode.evict
    claimed_on_a, go_on = trio.Event(), trio.Event()
    told_a: list[bool] = []

    async def held_claim(self: ClusterNode, charger_id: str, remote: str) -> Any:
        result = await claim(self, charger_id, remote)
        if self.node_id == "a":
            claimed_on_a.set()
            await go_on.wait()  # the handshake of A's socket is not over yet
        return result

    def seen_evict(self: ClusterNode, *args: Any, **kwargs: Any) -> bool:
        closed = evict(self, *args, **kwargs)
        if self.node_id == "a":
            told_a.append(closed)
        return closed

    monkeypatch.setattr(ClusterNode, "claim", held_claim)
    monkeypatch.setattr(ClusterNode, "evict", seen_evict)
    async with (
        node(postgres_url, tmp_path, "a", node_lease_seconds=60) as a,
        node(postgres_url, tmp_path, "b", node_lease_seconds=60) as b,
    ):
        on_a: list[RawCharger] = []

        async def connect_to_a() -> None:
            on_a.append(await RawCharger.connect(f"{a.url}/CP-LATE"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(connect_to_a)
            with trio.fail_after(10):
                await claimed_on_a.wait()
            on_b = await RawCharger.connect(f"{b.url}/CP-LATE")
            assert owners(b) == {"CP-LATE": ("b", 2)}
            await eventually(lambda: bool(told_a))
            assert told_a == [False]  # no socket to close yet
            go_on.set()
        registered = trio.current_time()
        assert await on_a[0].wait_closed(timeout=10) == 1000
        closed_after = trio.current_time() - registered
        assert closed_after < 5.0, closed_after  # ~0.01 s; the reaper round: 20 s
        assert owners(b) == {"CP-LATE": ("b", 2)}
        assert "currentTime" in await on_b.call("Heartbeat", {})
        await trio.sleep(0.5)  # A's late release and "offline" change nothing
        assert owners(b) == {"CP-LATE": ("b", 2)}
        assert connected(b, "CP-LATE")
        await on_b.close()


async def test_one_id_fighting_over_two_nodes_raises_a_takeover_alert(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two live devices with one id (cloned credentials, two units configured alike)
    that a load balancer sends to different nodes: each connection takes the id over
    from the other node. More than 5 takeovers of one id within 10 minutes on a node
    raise ``takeover_alert`` there (scale-and-security A2 "Duplicate-connection policy"
    §4), as on one node; a single move (a node died, its chargers reconnected elsewhere)
    is no security event."""
    async with (
        node(postgres_url, tmp_path, "a", node_lease_seconds=30) as a,
        node(postgres_url, tmp_path, "b", node_lease_seconds=30) as b,
    ):

        async def alerts(server: RunningServer) -> list[dict[str, Any]]:
            done = await ctl(server, "--json", "security", "events")
            assert done.returncode == 0, done.stderr
            summary = json.loads(done.stdout)
            return [e for e in summary["recent"] if e["kind"].startswith("takeover")]

        sockets: list[RawCharger] = []
        for i in range(14):
            sockets.append(await RawCharger.connect(f"{(a, b)[i % 2].url}/CP-TWIN"))
            if i:
                # The other node closed its socket: taken over (~0.01 s; the reaper
                # round would take up to 10 s).
                assert await sockets[-2].wait_closed(timeout=5) == 1000
            if i == 1:
                assert await alerts(a) == []
                assert await alerts(b) == []
        # a took it over 6 times (connections 3, 5, ..., 13), b 7 times.
        for server in (a, b):
            found = await alerts(server)
            assert [e["kind"] for e in found] == ["takeover_alert"], found
            assert found[0]["charger_id"] == "CP-TWIN"
        await sockets[-1].close()


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
        b.run(chargers.set_password, "CP-2", b"secret-secret")
        with pytest.raises(HandshakeRefused) as refused:
            await RawCharger.connect(f"{b.url}/CP-2")
        assert refused.value.status == 401
        assert owners(a) == {"CP-2": ("a", 1)}
        assert "currentTime" in await on_a.call("Heartbeat", {})


async def test_a_node_that_lost_its_lease_closes_its_chargers_1012_then_rejoins(
    postgres_url: str, tmp_path: Path
) -> None:
    # Renewed every 6 s: the renewal that finds the lease gone comes 0-6 s after it is
    # gone, the local deadline (last renewal + lease) 12-18 s after.
    lease = 18.0
    async with (
        node(
            postgres_url, tmp_path, "a", http_enabled=True, http_port=0, node_lease_seconds=lease
        ) as a,
        httpx.AsyncClient() as http,
        trio.open_nursery() as nursery,
    ):
        assert a.addresses.http is not None
        ready_url = "http://{}:{}/health/ready".format(*a.addresses.http)
        readiness: list[tuple[int, dict[str, Any]]] = []

        async def probe() -> None:  # what a load balancer's health check sees
            while True:
                answer = await http.get(ready_url)
                readiness.append((answer.status_code, answer.json()))
                await trio.sleep(0.05)

        charger = await RawCharger.connect(f"{a.url}/CP-3")
        await charger.boot()
        (before,) = rows(a, "SELECT incarnation FROM cluster_nodes WHERE node_id = 'a'")
        # The lease runs out on the database clock (as after a pause past it): the next
        # renewal (within lease / 3) finds it gone and the node fences itself.
        rows(
            a,
            "UPDATE cluster_nodes SET lease_until = (now() AT TIME ZONE 'UTC') "
            "- interval '1 second' RETURNING node_id",
        )
        expired = trio.current_time()
        nursery.start_soon(probe)
        assert await charger.wait_closed(timeout=lease + 2) == 1012
        fenced_after = trio.current_time() - expired
        assert fenced_after < lease / 3 + 4, fenced_after  # 10 s: below the 12 s deadline
        # It comes back as a new incarnation (about a second after it closed its
        # sockets, not a whole lease (18 s) later) and takes chargers again.
        refusals: list[int] = []
        with trio.fail_after(8):
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
        # Readiness said so while it was fenced (a balancer skips it), then ok again: a
        # probe answered after the rejoin says ok (the rejoin, connect and Heartbeat can
        # all fit between two probes 50 ms apart, so wait for one).
        rejoined = len(readiness)
        with trio.fail_after(5):
            while len(readiness) <= rejoined or readiness[-1][0] != 200:  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
        assert (503, {"status": "unavailable", "database": "ok", "cluster": "fenced"}) in readiness
        assert readiness[-1] == (200, {"status": "ok", "database": "ok", "cluster": "ok"})


async def test_status_shows_every_node_its_lease_and_the_chargers_it_owns(
    postgres_url: str, tmp_path: Path
) -> None:
    """`voltaro ctl status` and GET /status on any node: the nodes, their leases on the
    database clock, how many chargers each owns; an expired node is shown as such and
    its chargers are released by the reaper of a live node."""
    async with (
        node(
            postgres_url,
            tmp_path,
            "a",
            http_enabled=True,
            http_port=0,
            api_tokens=(ApiToken(token=TOKEN, scope=ApiScope.READ, name="ops"),),
        ) as a,
        node(postgres_url, tmp_path, "b") as b,
    ):
        c1 = await RawCharger.connect(f"{a.url}/CP-S1")
        c2 = await RawCharger.connect(f"{a.url}/CP-S2")
        c3 = await RawCharger.connect(f"{b.url}/CP-S3")
        # A node that died without leaving (its lease runs out, nobody renews it); 15 s of
        # lease left so that `ctl status` below, a new process, still sees it live on a
        # loaded machine.
        rows(
            a,
            "INSERT INTO cluster_nodes VALUES ('ghost', 'g-1', '10.9.9.9:9000', "
            "(now() AT TIME ZONE 'UTC') - interval '1 hour', "
            "(now() AT TIME ZONE 'UTC') + interval '15 seconds') RETURNING node_id",
        )
        a.run(chargers.add_charger, "CP-G")
        rows(a, "UPDATE charge_points SET connected = true WHERE charger_id = 'CP-G' RETURNING 1")
        rows(
            a,
            "INSERT INTO charger_owners VALUES ('CP-G', 'ghost', 'g-1', 4, "
            "(now() AT TIME ZONE 'UTC'), NULL) RETURNING charger_id",
        )
        done = await ctl(a, "--json", "status")
        assert done.returncode == 0, done.stderr
        cluster = json.loads(done.stdout)["cluster"]
        assert cluster["node_id"] == "a"
        assert cluster["fenced"] is False
        assert 0 < cluster["lease_left_s"] <= LEASE
        by_node = {n["node_id"]: n for n in cluster["nodes"]}
        assert {k: (v["live"], v["chargers"]) for k, v in by_node.items()} == {
            "a": (True, 2),
            "b": (True, 1),
            "ghost": (True, 1),
        }
        # The ghost's lease runs out; a live node's reaper releases its charger.
        # At ~16 s (its lease, then a reaper round within a second); never without one.
        await eventually(lambda: owners(a).get("CP-G") is None, within=15 + LEASE + 10)
        assert not connected(a, "CP-G")
        text_view = await ctl(b, "status")
        assert text_view.returncode == 0, text_view.stderr
        shown = text_view.stdout.decode()
        assert "2 live of 3" in shown
        assert "FENCED" not in shown
        lines = {line.split()[0]: line.split() for line in shown.splitlines() if line.strip()}
        assert lines["node"][1] == "b"  # the node that answered
        assert lines["b"][:3] == ["b", "*", "live"]
        assert lines["b"][5] == "1"
        assert lines["a"][1] == "live"
        assert lines["a"][4] == "2"
        assert lines["ghost"][1] == "EXPIRED"
        assert lines["ghost"][4:6] == ["0", "10.9.9.9:9000"]
        http = a.addresses.http
        assert http is not None
        async with httpx.AsyncClient() as client:
            response = await client.get(
                f"http://{http[0]}:{http[1]}/status",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        assert response.status_code == 200, response.text
        body = response.json()["cluster"]
        assert body["node_id"] == "a"
        assert {n["node_id"]: n["chargers"] for n in body["nodes"]} == {
            "a": 2,
            "b": 1,
            "ghost": 0,
        }
        for charger in (c1, c2, c3):
            await charger.close()
