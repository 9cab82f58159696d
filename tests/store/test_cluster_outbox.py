"""The cluster event outbox against the real PostgreSQL (issue 18), one piece at a time:
several nodes' hubs in one process, each with its own export and import, one database.

What a node publishes reaches every other node's console subscribers once and in order,
never its own services, its own tap or the outbox again; the LISTEN connection cut
costs no event; a database outage longer than the buffer costs a resync at the right
place instead of a silent gap, and never blocks publish; old rows are trimmed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import trio

from tests.support.outage import database_outage
from voltaro.control.wire import protection_notes
from voltaro.service.cluster_events import ClusterEvents
from voltaro.service.hub import RESYNC, EventHub, HubEvent, Subscription
from voltaro.store import cluster_events
from voltaro.store.cluster_events import OutboxEvent
from voltaro.store.db import Database
from voltaro.store.notify import PgListener, libpq_url

pytestmark = pytest.mark.postgres


@dataclass
class Node:
    name: str
    hub: EventHub
    listener: PgListener
    events: ClusterEvents


@asynccontextmanager
async def nodes(
    db: Database, *names: str, poll: float = 120.0, **options: Any
) -> AsyncIterator[list[Node]]:
    """Nodes with their hub, LISTEN connection and outbox (poll: the safety net, far
    away unless a test wants it, so that notifications are what moves events)."""
    async with trio.open_nursery() as nursery:
        out = []
        for name in names:
            hub = EventHub(4096)
            listener = PgListener(
                db.url, reconnect_delay=0.3, application_name=f"voltaro listen {name}"
            )
            events = ClusterEvents(db, hub, listener, name, poll=poll, **options)
            await nursery.start(listener.run)
            await nursery.start(events.run)
            out.append(Node(name, hub, listener, events))
        yield out
        nursery.cancel_scope.cancel()


async def take(sub: Subscription, count: int, within: float = 10) -> list[HubEvent | str]:
    got: list[HubEvent | str] = []
    with trio.fail_after(within):
        while len(got) < count:
            got.append(await sub.receive())
    return got


async def nothing_more(sub: Subscription, seconds: float = 0.5) -> None:
    with trio.move_on_after(seconds):
        extra = await sub.receive()
        raise AssertionError(f"nothing else was expected, got {extra}")


async def until(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(10):
        while not predicate():  # noqa: ASYNC110 - state owned by the nodes' tasks
            await trio.sleep(0.01)


def status(charger_id: str, n: int) -> dict[str, Any]:
    return {"charger_id": charger_id, "connector_id": 1, "status": f"S{n}"}


async def test_other_nodes_events_reach_consoles_only_once_in_order(pg: Database) -> None:
    async with nodes(pg, "n1", "n2", "n3") as (n1, n2, n3):
        tapped: list[str] = []
        n2.hub.tap = lambda name, data: tapped.append(name)
        async with (
            n2.hub.subscribe(remote=True) as console,
            n2.hub.subscribe() as service,  # a service acting on events: local only
            n1.hub.subscribe(remote=True) as own_console,
        ):
            # Three nodes writing at once: each one's events arrive in its order.
            for n in range(60):
                n1.hub.publish("connector.status", status("CP-1", n))
                n3.hub.publish("connector.status", status("CP-3", n))
                if n % 7 == 0:
                    await trio.sleep(0.02)
            got = await take(console, 120)
            assert all(isinstance(e, HubEvent) for e in got)
            events = [e for e in got if isinstance(e, HubEvent)]
            for charger, node in (("CP-1", "n1"), ("CP-3", "n3")):
                mine = [e for e in events if e.data["charger_id"] == charger]
                assert [e.data["status"] for e in mine] == [f"S{n}" for n in range(60)]
                assert {e.node for e in mine} == {node}
            await nothing_more(console)
            # Not for n2's services, its tap (metrics count each node's own), nor
            # exported again by n2.
            with trio.move_on_after(0.1):
                raise AssertionError(f"a service got {await service.receive()}")
            assert tapped == []
            assert n2.events.export.offered == 0
            # n1's console: n3's 60 (n1's own came from its hub: 60 more, not 120).
            own = await take(own_console, 120)
            assert (
                sorted(e.data["charger_id"] for e in own if isinstance(e, HubEvent))
                == ["CP-1"] * 60 + ["CP-3"] * 60
            )
            await nothing_more(own_console)
        assert n2.events.imports.imported == 120
        # Frames and node-local views stay on their node.
        async with n2.hub.subscribe(remote=True, frames=True) as console:
            n1.hub.publish("frame", {"charger_id": "CP-1", "payload": "[2]"})
            n1.hub.publish("server.health", {"database": {"ok": True}})
            n1.hub.publish("load.allocation", {"circuits": []})
            n1.hub.publish("tag.updated", {"id_tag": "T", "status": "Blocked"})
            [event] = await take(console, 1)
            assert isinstance(event, HubEvent)
            assert event.name == "tag.updated"
            await nothing_more(console)


async def test_rows_written_while_the_listen_connection_is_cut_arrive_after_it_is_back(
    pg: Database,
) -> None:
    async with nodes(pg, "n1", "n2") as (n1, n2), n2.hub.subscribe(remote=True) as console:
        n1.hub.publish("connector.status", status("CP-1", 0))
        await take(console, 1)

        def cut() -> int:  # n2's LISTEN backend only: the shared server stays up
            with psycopg.connect(libpq_url(pg.url), autocommit=True) as admin:
                return len(
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND application_name = %s",
                        ("voltaro listen n2",),
                    ).fetchall()
                )

        assert await trio.to_thread.run_sync(cut) == 1
        await until(lambda: not n2.listener.connected)
        for n in range(1, 4):  # NOTIFYed while n2 does not listen: lost
            n1.hub.publish("connector.status", status("CP-1", n))
        await until(lambda: not n1.events.export.statistics()["queued"])
        assert not n2.listener.connected  # written before it came back
        got = await take(console, 3, within=5)  # the poll is 120 s away
        assert [e.data["status"] for e in got if isinstance(e, HubEvent)] == [
            "S1",
            "S2",
            "S3",
        ]
        assert n2.listener.connects == 2
        await nothing_more(console)


async def test_an_outage_longer_than_the_buffer_costs_a_resync_where_events_are_missing(
    pg: Database,
) -> None:
    async with (
        nodes(pg, "n1", "n2", buffer=100) as (n1, n2),
        n2.hub.subscribe(remote=True) as console,
        n1.hub.subscribe() as local,
    ):
        n1.hub.publish("connector.status", status("CP-1", -1))
        await take(console, 1)
        with database_outage(pg.url):
            await trio.sleep(0.3)  # the export finds it down
            for n in range(150):  # sync: publish never waits for the database
                n1.hub.publish("connector.status", status("CP-1", n))
            assert n1.events.export.dropped == 50
            await trio.sleep(0.5)
        # n1's own subscribers lost nothing.
        assert len(await take(local, 151)) == 151
        got = await take(console, 101, within=15)
        assert [e.data["status"] for e in got[:100] if isinstance(e, HubEvent)] == [
            f"S{n}" for n in range(100)
        ]
        assert got[100] == RESYNC  # where the 50 dropped ones were
        n1.hub.publish("connector.status", status("CP-1", 999))
        [after] = await take(console, 1)
        assert isinstance(after, HubEvent)
        assert after.data["status"] == "S999"
        assert n2.events.imports.resyncs == 1
        # `status` and the console say so on n1 (protection notes).
        assert n1.events.lost() == {"dropped": 50}
        [note] = protection_notes({"cluster_events": n1.events.lost()})
        assert note.startswith("cluster events: 50 not handed to the other nodes")


async def test_meter_values_are_coalesced_per_connector_and_the_latest_wins(
    pg: Database,
) -> None:
    # Coalesced over 5 s (COALESCE_SECONDS: 1 s): "at once" and "at the window's end"
    # are seconds apart, with seconds of slack for a loaded machine.
    window = 5.0
    async with nodes(pg, "n1", "n2") as (n1, n2), n2.hub.subscribe(remote=True) as console:
        n1.events.export._coalesce = window
        for n in range(5):
            for connector in (1, 2):
                n1.hub.publish(
                    "meter.values",
                    {"charger_id": "CP-1", "connector_id": connector, "energy_wh": n},
                )
        # The first of each connector at once (~0.01 s), the latest a window later.
        first = await take(console, 2, within=window - 2)
        later = await take(console, 2, within=window + 3)
        assert [
            (e.data["connector_id"], e.data["energy_wh"])
            for e in first + later
            if isinstance(e, HubEvent)
        ] == [(1, 0), (2, 0), (1, 4), (2, 4)]
        await nothing_more(console, window + 0.5)
        assert n1.events.export.coalesced == 6


async def test_rows_older_than_the_retention_are_trimmed(pg: Database) -> None:
    old = time.time() - 7200
    await pg.run(
        cluster_events.append,
        "n9",
        [OutboxEvent("tag.updated", old, {"id_tag": f"T{n}"}) for n in range(3)],
    )
    async with nodes(pg, "n1", retention=3600.0) as (n1,):
        n1.hub.publish("tag.updated", {"id_tag": "NEW"})
        await until(lambda: n1.events.export.written >= 1)
        assert await n1.events.trim() == 3
        rows = await pg.run(cluster_events.read_after, 0, "n2", 10)
        assert [(r.id, r.origin_node, r.kind, r.data) for r in rows] == [
            (4, "n1", "tag.updated", {"id_tag": "NEW"})
        ]


async def test_a_reader_never_moves_past_a_row_that_commits_later_with_a_lower_id(
    pg: Database,
) -> None:
    """A bigserial alone lets id 2 commit before id 1: a reader at id 2 would never see
    1. Writers append under one advisory lock, so the second waits for the first."""
    from sqlalchemy.orm import Session

    def event(n: int) -> list[OutboxEvent]:
        return [OutboxEvent("tag.updated", time.time(), {"id_tag": f"T{n}"})]

    first_written, release = trio.Event(), trio.Event()
    token = trio.lowlevel.current_trio_token()

    def slow_writer() -> None:
        with Session(pg.engine) as session, session.begin():
            cluster_events.append(session, "n1", event(1))
            trio.from_thread.run_sync(first_written.set, trio_token=token)
            trio.from_thread.run(release.wait, trio_token=token)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, slow_writer)
        await first_written.wait()
        nursery.start_soon(pg.run, cluster_events.append, "n2", event(2))
        try:
            await trio.sleep(0.5)
            seen = await pg.run(cluster_events.read_after, 0, "n3", 10)
        finally:
            release.set()
    # The second writer waited for the lock: nothing was visible beyond id 0.
    assert seen == []
    rows = await pg.run(cluster_events.read_after, 0, "n3", 10)
    assert [(r.id, r.data) for r in rows] == [(1, {"id_tag": "T1"}), (2, {"id_tag": "T2"})]
