"""Events for consoles across real processes (issue 18): a console attached to node n1's
control socket (the wire protocol, as the Textual console and `voltaro ctl events` speak
it) sees the events of chargers served by n2 and n3, each once and in their order, and
after the console reconnects it re-reads the state (which shows what it missed while
away) and goes on with the new events; the real Textual console on n1 shows a charger
served by n2 live."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster import Cluster
from tests.support.cluster_charger import Link

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

Frame = dict[str, Any]
KINDS = ("charger.connected", "charger.boot", "connector.status")


class Console:
    """A control-socket client: requests and the event stream (wire format only)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self.events: list[Frame] = []
        self._answers: dict[int, asyncio.Future[Frame]] = {}
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while line := await self._reader.readline():
            frame = json.loads(line)
            if frame.get("type") == "response" and frame.get("id") in self._answers:
                self._answers.pop(frame["id"]).set_result(frame)
            elif frame.get("type") in ("event", "resync"):
                self.events.append(frame)
                self._changed.set()

    async def request(self, op: str, args: dict[str, Any] | None = None) -> Frame:
        rid = next(self._ids)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._answers[rid] = future
        line = {"type": "request", "id": rid, "op": op, "args": args or {}}
        self._writer.write(json.dumps(line).encode() + b"\n")
        await self._writer.drain()
        async with asyncio.timeout(10):
            return await future

    async def wait_for(self, done: Callable[[list[Frame]], bool], within: float = 20) -> None:
        try:
            async with asyncio.timeout(within):
                while not done(self.events):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not within {within} s; events: {self.events}") from None

    def of(self, charger_id: str) -> list[Frame]:
        return [
            f
            for f in self.events
            if f.get("event") in KINDS and f["data"].get("charger_id") == charger_id
        ]


@asynccontextmanager
async def console(path: Path, kinds: tuple[str, ...] = KINDS) -> AsyncIterator[Console]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    hello = json.loads(await reader.readline())
    assert hello["type"] == "hello"
    client = Console(reader, writer)
    try:
        assert (await client.request("subscribe", {"kinds": list(kinds)}))["ok"]
        yield client
    finally:
        writer.close()
        client._task.cancel()
        await asyncio.gather(client._task, return_exceptions=True)


async def status(link: Link, value: str) -> None:
    payload = {"connectorId": 1, "errorCode": "NoError", "status": value}
    assert await link.call("StatusNotification", payload) == {}


def statuses(client: Console, charger_id: str) -> list[str]:
    return [f["data"]["status"] for f in client.of(charger_id) if f["event"] == "connector.status"]


@pytest.mark.asyncio
async def test_a_console_on_one_node_sees_chargers_on_the_others_across_a_reconnect(
    cluster: Cluster,
) -> None:
    n1, n2, n3 = cluster.nodes
    links: list[Link] = []
    try:
        async with console(n1.control_socket) as first:
            for node in (n2, n3):
                link = await Link.open(node.url, f"CP-{node.node_id}", node=node.index)
                links.append(link)
                assert await link.boot() == "Accepted"
                await status(link, "Preparing")
            await first.wait_for(
                lambda _: all(statuses(first, f"CP-{n.node_id}") == ["Preparing"] for n in (n2, n3))
            )
            for node in (n2, n3):
                seen = first.of(f"CP-{node.node_id}")
                assert [f["event"] for f in seen] == list(KINDS), seen
                assert {f.get("node") for f in seen} == {node.node_id}
        # Away: what happens now reaches no console of n1.
        for link in links:
            await status(link, "Charging")
        async with console(n1.control_socket) as again:
            # A console (re)connecting reads the state first: the shared database has
            # what the other nodes' chargers did meanwhile ...
            async def view() -> dict[str, Any]:
                listed = await again.request("chargers.list")
                assert listed["ok"], listed
                return {
                    c["charger_id"]: (c["connected"], [k.get("status") for k in c["connectors"]])
                    for c in listed["result"]
                    if c["charger_id"] in ("CP-n2", "CP-n3")
                }

            expected = {"CP-n2": (True, ["Charging"]), "CP-n3": (True, ["Charging"])}
            # Connected as the owner table says (each node's copy is refreshed every
            # second).
            async with asyncio.timeout(10):
                while (seen := await view()) != expected:  # noqa: ASYNC110 - other processes
                    await asyncio.sleep(0.2)
            assert seen == expected
            # ... then goes on with the events.
            for link in links:
                await status(link, "Finishing")
            await again.wait_for(
                lambda _: all("Finishing" in statuses(again, f"CP-{n.node_id}") for n in (n2, n3))
            )
            await asyncio.sleep(0.5)  # a duplicate would arrive meanwhile
            for node in (n2, n3):
                # "Charging" too when n1 read it from the outbox after this console
                # subscribed (written before, imported after): late, never out of order.
                assert statuses(again, f"CP-{node.node_id}") in (
                    ["Finishing"],
                    ["Charging", "Finishing"],
                )
            assert not [f for f in again.events if f.get("type") == "resync"]
    finally:
        for link in links:
            await link.close()


async def connected_on(client: Console, charger_id: str) -> tuple[bool, bool]:
    """What ``chargers.show`` and ``chargers.list`` say of the charger now."""
    shown = await client.request("chargers.show", {"charger_id": charger_id})
    listed = await client.request("chargers.list")
    assert shown["ok"], shown
    assert listed["ok"], listed
    (row,) = [c for c in listed["result"] if c["charger_id"] == charger_id]
    return shown["result"]["connected"], row["connected"]


def got(event: str, charger_id: str) -> Callable[[list[Frame]], bool]:
    return lambda events: any(
        f.get("event") == event and f["data"].get("charger_id") == charger_id for f in events
    )


@pytest.mark.asyncio
@pytest.mark.nodes(2)
async def test_the_state_a_console_rereads_agrees_with_the_event_it_just_got(
    cluster: Cluster,
) -> None:
    """A console that gets another node's ``charger.connected`` for a charger it does not
    know re-reads the state at once (a resync): the answer must already say connected,
    or the console shows the charger offline until its next resync. The same right after
    ``charger.disconnected``. Several rounds: each is a chance for a stale answer."""
    n1, n2 = cluster.nodes
    kinds = ("charger.connected", "charger.disconnected")
    async with console(n1.control_socket, kinds) as client:
        for round_ in range(5):
            charger_id = f"CP-now-{round_}"
            link = await Link.open(n2.url, charger_id, node=n2.index)
            try:
                await client.wait_for(got("charger.connected", charger_id))
                assert await connected_on(client, charger_id) == (True, True), round_
            finally:
                await link.close()
            await client.wait_for(got("charger.disconnected", charger_id))
            assert await connected_on(client, charger_id) == (False, False), round_


@pytest.mark.asyncio
@pytest.mark.nodes(2)
async def test_the_console_on_one_node_shows_a_charger_on_the_other_live(
    cluster: Cluster,
) -> None:
    """The real Textual console attached to n1: a charger served by n2 comes online,
    starts charging and goes offline in its table, from n2's events. (The first event,
    charger.connected, names a charger the console does not know: it re-reads the state,
    which must already say online: chargers.list reads the owner table then.)"""
    from textual.widgets import DataTable

    from console.app import ConsoleApp
    from tests.console.support import until

    n1, n2 = cluster.nodes
    app = ConsoleApp(str(n1.control_socket))
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one("#chargers", DataTable)
        link = await Link.open(n2.url, "CP-far", node=n2.index)
        try:
            assert await link.boot() == "Accepted"
            await status(link, "Charging")

            def cell(column: str) -> str:
                return str(table.get_cell("CP-far", column))

            async with asyncio.timeout(20):
                await until(pilot, lambda: table.row_count == 1)
                await until(pilot, lambda: "online" in cell("link"))
                await until(pilot, lambda: "Charging" in cell("conn"))
            # The row names the node that holds the charger.
            assert cell("link") == "online n2"
            await status(link, "Finishing")
            async with asyncio.timeout(20):
                await until(pilot, lambda: "Finishing" in cell("conn"))
        finally:
            await link.close()
        # And offline once it left n2.
        async with asyncio.timeout(20):
            await until(pilot, lambda: "online" not in cell("link"))
        # A charger of n1 itself: its node too.
        near = await Link.open(n1.url, "CP-near", node=n1.index)
        try:
            assert await near.boot() == "Accepted"
            async with asyncio.timeout(20):
                await until(pilot, lambda: table.row_count == 2)
                await until(pilot, lambda: str(table.get_cell("CP-near", "link")) == "online n1")
        finally:
            await near.close()


@pytest.mark.asyncio
@pytest.mark.nodes(2)
async def test_a_charger_taken_over_by_another_node_stays_online_on_every_console(
    cluster: Cluster,
) -> None:
    """CP-move connects to n1, then to n2 (its old socket half-open, say): n2's claim
    takes it over and n1 closes the old socket. For consoles on either node the charger
    moved, it never went offline: no ``charger.disconnected`` after n2's
    ``charger.connected`` (as a takeover on one node publishes none), and the state they
    re-read says connected, on n2."""
    n1, n2 = cluster.nodes
    kinds = ("charger.connected", "charger.disconnected")
    async with (
        console(n1.control_socket, kinds) as on_n1,
        console(n2.control_socket, kinds) as on_n2,
    ):
        old = await Link.open(n1.url, "CP-move", node=n1.index)
        new: Link | None = None
        try:
            for client in (on_n1, on_n2):
                await client.wait_for(got("charger.connected", "CP-move"))
            new = await Link.open(n2.url, "CP-move", node=n2.index)
            async with asyncio.timeout(5):
                await old.closed.wait()
            assert old.close_code == 1000, (old.close_code, old.close_reason)
            await asyncio.sleep(1.5)  # n1's events reach n2's console through the outbox
            for client in (on_n1, on_n2):
                seen = [
                    (f["event"], f.get("node"))
                    for f in client.events
                    if f["data"].get("charger_id") == "CP-move"
                ]
                last = seen[-1]
                assert last[0] == "charger.connected", seen
                shown = await client.request("chargers.show", {"charger_id": "CP-move"})
                assert (shown["result"]["connected"], shown["result"]["node"]) == (True, "n2")
            assert [f.get("node") for f in on_n2.events if f["event"] == "charger.connected"] == [
                "n1",
                None,
            ]
        finally:
            await old.close()
            if new is not None:
                await new.close()
