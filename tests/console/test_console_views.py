"""Broken today #7-#9 and the operator's views, against a real server and independent
chargers: live F2 and F3, frames one line each with a filter and the full frame on
Enter, AuthorizationKey never shown, tags blocked/unblocked only after a 'y', alerts kept
until acknowledged, an interrupted transaction closed from F3."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from textual.widgets import DataTable, Static

from console.app import ConsoleApp
from tests.console.support import RawCharger, Server, running_server, until

pytestmark = pytest.mark.asyncio

NOW = "2026-01-01T10:00:00Z"


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


@pytest_asyncio.fixture
async def charger(server: Server) -> AsyncIterator[RawCharger]:
    await server.ctl("chargers.add", {"charger_id": "CP-1"})
    cp = await RawCharger.connect(
        server.port, "CP-1", {"ChangeConfiguration": {"status": "Accepted"}}
    )
    await cp.boot()
    await cp.status(1, "Available")
    try:
        yield cp
    finally:
        await cp.close()


def table_text(table: DataTable[Any]) -> str:
    return "\n".join(" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count))


async def ready(pilot: Any, app: ConsoleApp, charger_id: str = "CP-1") -> None:
    async with asyncio.timeout(10):
        await until(pilot, lambda: not app.stale and charger_id in app.table.rows)


async def test_details_are_live_and_frames_readable(server: Server, charger: RawCharger) -> None:
    reply = await server.ctl(
        "command",
        {
            "charger_id": "CP-1",
            "action": "ChangeConfiguration",
            "args": {"key": "AuthorizationKey", "value": "s3cret-key-123"},
        },
    )
    assert reply["ok"], reply
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("f2")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "DetailScreen")
        screen = app.screen
        frames = screen.query_one("#frames", DataTable)
        async with asyncio.timeout(5):
            await until(pilot, lambda: frames.row_count > 0)
        # One line per frame; the secret is nowhere: frames, commands, configuration.
        assert "s3cret" not in table_text(frames)
        assert "ChangeConfiguration" in table_text(frames)
        assert "s3cret" not in str(screen.query_one("#commands", Static).render())
        # Live: a fault on the charger shows in the open view.
        await charger.status(1, "Faulted", "GroundFailure", vendorErrorCode="E42", info="RCD")
        connectors = screen.query_one("#detail-connectors", DataTable)
        async with asyncio.timeout(5):
            await until(pilot, lambda: "E42" in table_text(connectors))
        assert "RCD" in table_text(connectors)
        # The frame filter takes any text, any case.
        await pilot.press("slash")
        await pilot.press(*"heartbeat")
        await charger.call("Heartbeat", {})
        async with asyncio.timeout(10):  # last-seen batches come every 5 s
            await until(
                pilot,
                lambda: (
                    frames.row_count > 0
                    and all(
                        "Heartbeat" in str(frames.get_row_at(i))
                        or "currentTime" in str(frames.get_row_at(i))
                        for i in range(frames.row_count)
                    )
                ),
            )
        await pilot.press("enter")  # back to the table
        frames.focus()
        await pilot.press("enter")  # the full frame
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "TextScreen")
        await pilot.press("escape", "escape")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen is app.main)


async def test_transactions_are_live_and_an_interrupted_one_is_closed(
    server: Server, charger: RawCharger
) -> None:
    await server.ctl("tags.add", {"id_tag": "T1"})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("f3")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "TransactionsScreen")
        screen = app.screen
        table = screen.query_one("#transactions", DataTable)
        first = await charger.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": NOW},
        )
        async with asyncio.timeout(5):
            await until(pilot, lambda: str(first["transactionId"]) in table.rows)
        # A new start on the same connector without a stop interrupts the first one.
        second = await charger.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T1", "meterStart": 500, "timestamp": NOW},
        )
        key = str(first["transactionId"])
        async with asyncio.timeout(5):
            await until(pilot, lambda: str(second["transactionId"]) in table.rows)
            await until(pilot, lambda: "interrupted" in str(table.get_row(key)))
        table.move_cursor(row=table.get_row_index(key))
        await pilot.press("c")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "Confirm")
        assert f"Close transaction {key}" in str(app.screen.query_one("#question").render())
        await pilot.press("y")
        async with asyncio.timeout(5):
            await until(pilot, lambda: "closed" in str(table.get_row(key)))
        # Enter opens the session with its details.
        table.move_cursor(row=table.get_row_index(key))
        await pilot.press("enter")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "TextScreen")


async def test_tags_block_and_unblock_only_after_yes(server: Server) -> None:
    await server.ctl("tags.add", {"id_tag": "TAG-1"})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(120, 30)) as pilot:
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale)
        await pilot.press("f4")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "TagScreen")
        tags = app.screen

        def status() -> str:
            return str(tags.query_one("#tags", DataTable).get_cell_at((0, 1)))

        assert status() == "Accepted"
        await pilot.press("b")
        await pilot.press("enter")  # Enter answers No
        await pilot.pause(0.5)
        assert status() == "Accepted"
        assert (await server.ctl("tags.list"))["result"][0]["status"] == "Accepted"
        await pilot.press("b", "y")
        async with asyncio.timeout(5):
            await until(pilot, lambda: status() == "Blocked")
        await pilot.press("u", "y")
        async with asyncio.timeout(5):
            await until(pilot, lambda: status() == "Accepted")
        assert (await server.ctl("tags.list"))["result"][0]["status"] == "Accepted"


async def test_faults_stay_in_alerts_until_acknowledged(
    server: Server, charger: RawCharger
) -> None:
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot, app)
        await charger.status(1, "Faulted", "HighTemperature", vendorErrorCode="E42")
        async with asyncio.timeout(5):
            await until(pilot, lambda: "E42" in str(app.table.get_cell("CP-1", "error")))
        await charger.status(1, "Available")  # the fault clears by itself...
        await pilot.press("f7")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "AlertsScreen")
        alerts = app.screen.query_one("#alerts", DataTable)
        async with asyncio.timeout(5):
            await until(pilot, lambda: "cleared" in table_text(alerts))
        assert "HighTemperature" in table_text(alerts)  # ...but stays until acknowledged
        await pilot.press("a")
        async with asyncio.timeout(5):
            await until(pilot, lambda: alerts.row_count == 0)
        assert not app.site.alerts
