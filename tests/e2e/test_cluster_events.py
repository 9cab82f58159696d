"""Events for consoles across nodes (issue 18): two real servers (voltaro.app.run,
cluster = true, different node ids and ports) on one PostgreSQL database, independent
chargers (raw OCPP-J over `websockets`) and consoles speaking the control wire protocol.

A console on either node sees every charger's events in the order their node published
them, each once (none of its own node's twice), also when its node's LISTEN connection
was cut meanwhile; meter values of other nodes' chargers are coalesced to one per second
per connector, the latest winning and coming before the charger's next event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from voltaro.settings import ApiScope, ApiToken
from voltaro.store import chargers, tags
from voltaro.store.notify import libpq_url

pytestmark = pytest.mark.postgres

Frame = dict[str, Any]
METRICS = "metrics-token-0123456789"
READ = "read-token-0123456789ab"


@asynccontextmanager
async def cluster(
    postgres_url: str, tmp_path: Path, *names: str, **overrides: Any
) -> AsyncIterator[list[RunningServer]]:
    async with trio.open_nursery() as nursery:
        servers: list[RunningServer] = []
        stops: list[trio.Event] = []
        for name in names:  # one after the other: migrations run once
            (tmp_path / name).mkdir()
            settings = server_settings(
                postgres_url, tmp_path / name, cluster=True, node_id=name, **overrides
            )
            server, stop = await start_server(nursery, settings)
            servers.append(server)
            stops.append(stop)
        try:
            yield servers
        finally:
            for stop in stops:
                stop.set()
            for server in servers:
                server.db.dispose()


async def console(server: RunningServer) -> ControlClient:
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    assert (await client.request("subscribe"))["ok"]
    return client


async def read_until(
    client: ControlClient, done: Callable[[Frame], bool], within: float = 10
) -> None:
    """Collect event and resync frames into ``client.events`` until ``done`` says so."""
    with trio.fail_after(within):
        while True:
            frame = await client.read(within)
            if frame.get("type") in ("event", "resync"):
                client.events.append(frame)
                if done(frame):
                    return


async def settle(client: ControlClient, seconds: float = 0.6) -> None:
    """Whatever else arrives within ``seconds`` (a duplicate would)."""
    with trio.move_on_after(seconds):
        await read_until(client, lambda frame: False, within=seconds + 1)


def of(client: ControlClient, charger_id: str) -> list[Frame]:
    return [
        f
        for f in client.events
        if f.get("type") == "event" and f["data"].get("charger_id") == charger_id
    ]


def is_event(name: str, charger_id: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("event") == name and f["data"].get("charger_id") == charger_id


async def connected_on(client: ControlClient, charger_id: str) -> bool:
    listed = await client.request("chargers.list")
    assert listed["ok"], listed
    [view] = [c for c in listed["result"] if c["charger_id"] == charger_id]
    shown = await client.request("chargers.show", {"charger_id": charger_id})
    assert shown["result"]["connected"] == view["connected"]
    return bool(view["connected"])


async def booted(server: RunningServer, charger_id: str) -> RawCharger:
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    assert (await cp.boot())["status"] == "Accepted"
    return cp


async def status(cp: RawCharger, value: str, connector: int = 1) -> None:
    payload = {"connectorId": connector, "errorCode": "NoError", "status": value}
    assert await cp.call("StatusNotification", payload) == {}


async def meter(cp: RawCharger, tx: int, wh: int) -> None:
    reading = {"timestamp": "2026-01-01T10:00:00Z", "sampledValue": [{"value": str(wh)}]}
    payload = {"connectorId": 1, "transactionId": tx, "meterValue": [reading]}
    assert await cp.call("MeterValues", payload) == {}


async def session(cp: RawCharger, meters: list[int]) -> None:
    """Preparing, a transaction with ``meters``, stopped; then the charger goes away."""
    await status(cp, "Preparing")
    start = {
        "connectorId": 1,
        "idTag": "DRIVER",
        "meterStart": 0,
        "timestamp": "2026-01-01T10:00:00Z",
    }
    tx = (await cp.call("StartTransaction", start))["transactionId"]
    for wh in meters:
        await meter(cp, tx, wh)
    stop = {"transactionId": tx, "meterStop": meters[-1] + 10, "timestamp": "2026-01-01T11:00:00Z"}
    assert await cp.call("StopTransaction", stop) == {}
    await cp.close()


def view(frames: list[Frame]) -> list[tuple[str, Any]]:
    return [(f["event"], f["data"]) for f in frames]


async def test_a_console_on_any_node_sees_every_chargers_events_in_order_once(
    postgres_url: str, tmp_path: Path
) -> None:
    async with cluster(postgres_url, tmp_path, "na", "nb") as (a, b):
        for charger_id in ("CP-A", "CP-B"):
            a.run(chargers.add_charger, charger_id)
        a.run(tags.add_tag, "DRIVER")
        on_a, on_b = await console(a), await console(b)

        await session(await booted(b, "CP-B"), [100])
        await session(await booted(a, "CP-A"), [200])
        for client in (on_a, on_b):
            for charger_id in ("CP-A", "CP-B"):
                if not of(client, charger_id) or not any(
                    is_event("charger.disconnected", charger_id)(f) for f in client.events
                ):
                    await read_until(client, is_event("charger.disconnected", charger_id))
            await settle(client)

        # Each console sees the other node's charger exactly as that node's own
        # console does: same events, same data, same order, none twice.
        local_b, remote_b = of(on_b, "CP-B"), of(on_a, "CP-B")
        local_a, remote_a = of(on_a, "CP-A"), of(on_b, "CP-A")
        assert view(remote_b) == view(local_b)
        assert view(remote_a) == view(local_a)
        names = [name for name, _ in view(local_b)]
        for expected in (
            "charger.connected",
            "charger.boot",
            "connector.status",
            "transaction.started",
            "meter.values",
            "transaction.stopped",
            "charger.disconnected",
        ):
            assert expected in names, names
        assert names.index("transaction.started") < names.index("transaction.stopped")
        # Marked with the node that published them; a node's own events are not marked.
        assert {f.get("node") for f in remote_b} == {"nb"}
        assert {f.get("node") for f in local_b} == {None}
        assert {f.get("node") for f in remote_a} == {"na"}
        assert not [f for f in on_a.events + on_b.events if f.get("type") == "resync"]
        # Sequence numbers are each node's own and only go up.
        for client in (on_a, on_b):
            seqs = [f["seq"] for f in client.events if f.get("type") == "event"]
            assert seqs == sorted(set(seqs))
        await on_a.aclose()
        await on_b.aclose()


async def test_events_written_while_the_listen_connection_was_cut_still_arrive(
    postgres_url: str, tmp_path: Path
) -> None:
    # The safety-net poll is far away: only the listener's resync can bring them.
    tokens = (ApiToken(token=READ, scope=ApiScope.READ, name="viewer"),)
    async with cluster(
        postgres_url,
        tmp_path,
        "na",
        "nb",
        cluster_events_poll=120.0,
        http_enabled=True,
        http_port=0,
        api_tokens=tokens,
    ) as (a, b):
        a.run(chargers.add_charger, "CP-B")
        on_a = await console(a)
        cp = await booted(b, "CP-B")
        await read_until(on_a, is_event("charger.boot", "CP-B"))
        # What a console re-reads on a resync agrees with the events: connected, on
        # another node (the owner table, read when asked).
        assert await connected_on(on_a, "CP-B")
        assert a.addresses.http is not None
        async with httpx.AsyncClient(
            base_url="http://{}:{}".format(*a.addresses.http), timeout=10
        ) as http:
            auth = {"Authorization": f"Bearer {READ}"}
            # The API answers from the owner map: refreshed within a second.
            with trio.fail_after(5):
                while True:
                    one = (await http.get("/charge_points/CP-B", headers=auth)).json()
                    every = (await http.get("/charge_points", headers=auth)).json()
                    listed = [c["connected"] for c in every if c["charger_id"] == "CP-B"]
                    if one["connected"] is True and listed == [True]:
                        break
                    await trio.sleep(0.2)

        def cut() -> int:  # node A's LISTEN backend only: the shared server stays up
            with psycopg.connect(libpq_url(a.settings.database_url), autocommit=True) as admin:
                rows = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = %s",
                    ("voltaro listen na",),
                ).fetchall()
                return len(rows)

        assert await trio.to_thread.run_sync(cut) == 1
        # Written (and NOTIFYed) while A is not listening: its reconnect (1 s later)
        # resyncs the importer, which reads them from the table.
        for value in ("Preparing", "Charging", "Finishing"):
            await status(cp, value)
        await read_until(
            on_a,
            lambda f: (
                is_event("connector.status", "CP-B")(f) and f["data"]["status"] == "Finishing"
            ),
            within=8,
        )
        await settle(on_a)
        statuses = [
            f["data"]["status"] for f in of(on_a, "CP-B") if f["event"] == "connector.status"
        ]
        assert statuses == ["Preparing", "Charging", "Finishing"]

        def listening() -> int:
            with psycopg.connect(libpq_url(a.settings.database_url), autocommit=True) as admin:
                return int(
                    admin.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                        ("voltaro listen na",),
                    ).fetchone()[0]  # type: ignore[index]
                )

        assert await trio.to_thread.run_sync(listening) == 1  # it is back
        await cp.close()
        await on_a.aclose()


async def test_meter_values_of_other_nodes_are_coalesced_latest_first_before_the_stop(
    postgres_url: str, tmp_path: Path
) -> None:
    metrics = ApiToken(token=METRICS, scope=ApiScope.METRICS, name="prometheus")
    async with cluster(
        postgres_url, tmp_path, "na", "nb", http_enabled=True, http_port=0, api_tokens=(metrics,)
    ) as (a, b):
        a.run(chargers.add_charger, "CP-B")
        a.run(tags.add_tag, "DRIVER")
        on_a, on_b = await console(a), await console(b)
        meters = [100, 200, 300, 400, 500, 600]
        await session(await booted(b, "CP-B"), meters)  # well within one second
        for client in (on_a, on_b):
            await read_until(client, is_event("charger.disconnected", "CP-B"))
            await settle(client, 1.5)
        local = [f for f in of(on_b, "CP-B") if f["event"] == "meter.values"]
        remote = [f for f in of(on_a, "CP-B") if f["event"] == "meter.values"]
        assert [f["data"]["energy_wh"] for f in local] == meters  # this node: every one
        # Other nodes: the first at once, then the latest of the second, which goes out
        # before the stop (order per charger) instead of a second later.
        assert [f["data"]["energy_wh"] for f in remote] == [100, 600]
        names = [f["event"] for f in of(on_a, "CP-B")]
        assert names.index("meter.values", names.index("meter.values") + 1) == (
            names.index("transaction.stopped") - 1
        )
        # Everything but the coalesced meter values is the same on both nodes.
        assert [v for v in view(of(on_a, "CP-B")) if v[0] != "meter.values"] == [
            v for v in view(of(on_b, "CP-B")) if v[0] != "meter.values"
        ]
        # /metrics counts it: 4 of 6 meter values coalesced on b, what a imported.
        on_b_metrics, on_a_metrics = await scrape(b), await scrape(a)
        assert on_b_metrics[("voltaro_cluster_events_total", "coalesced")] == 4
        assert on_b_metrics[("voltaro_cluster_events_total", "dropped")] == 0
        assert on_a_metrics[("voltaro_cluster_events_total", "imported")] >= len(of(on_a, "CP-B"))
        assert on_a_metrics[("voltaro_cluster_events_resyncs_total", "")] == 0
        await on_a.aclose()
        await on_b.aclose()


async def scrape(server: RunningServer) -> dict[tuple[str, str], float]:
    assert server.addresses.http is not None
    host, port = server.addresses.http
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
        answer = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS}"})
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, sample.labels.get("outcome", "")): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name.startswith("voltaro_cluster_events")
    }
