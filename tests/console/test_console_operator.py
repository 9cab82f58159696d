"""Broken today #3, #4, #5 and #10, each against a real server and independent chargers:
selection kept by charger id, stale rows while disconnected, every session shown,
last seen moving on heartbeats, pending chargers highlighted and accepted for real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from textual.widgets import DataTable, Label, Static

from console.app import ConsoleApp
from console.model import parse_time
from tests.console.support import RawCharger, Server, running_server, until

pytestmark = pytest.mark.asyncio

NOW = "2026-01-01T10:00:00Z"


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


def cell(app: ConsoleApp, row: str, column: str) -> str:
    return str(app.query_one("#chargers", DataTable).get_cell(row, column))


async def connected_app(pilot: object, app: ConsoleApp) -> None:
    async with asyncio.timeout(10):
        await until(pilot, lambda: not app.stale)


async def test_selection_follows_the_charger_across_resyncs(server: Server) -> None:
    for name in ("CP-A", "CP-B", "CP-C"):
        await server.ctl("chargers.add", {"charger_id": name})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one("#chargers", DataTable)
        await connected_app(pilot, app)
        async with asyncio.timeout(5):
            await until(pilot, lambda: table.row_count == 3)
        await pilot.press("down", "down")
        assert app.selected() == "CP-C"
        # A new charger sorts first and forces a resync and a redraw in a new order.
        await server.ctl("chargers.add", {"charger_id": "AAA-0"})
        async with asyncio.timeout(5):
            await until(pilot, lambda: table.row_count == 4)
        await pilot.press("f5")  # and an explicit full reload
        await pilot.pause(0.3)
        assert app.selected() == "CP-C"
        assert table.cursor_row == 3
        await pilot.press("ctrl+o")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "CommandMenu")
        assert "CP-C" in str(app.screen.query_one(Label).render())


async def test_rows_go_stale_and_the_banner_says_why_in_words(server: Server) -> None:
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(160, 30)) as pilot:
        await connected_app(pilot, app)
        charger = await RawCharger.connect(server.port, "CP-1")
        await charger.boot()
        await server.ctl("chargers.accept", {"charger_id": "CP-1"})
        await charger.boot()
        await charger.status(1, "Charging")
        async with asyncio.timeout(5):
            await until(pilot, lambda: "online" in cell(app, "CP-1", "link"))
            await until(pilot, lambda: "Charging" in cell(app, "CP-1", "conn"))
        await charger.close()
        await server.stop()
        banner = app.query_one("#banner", Static)
        async with asyncio.timeout(10):
            await until(pilot, lambda: "not running" in str(banner.render()))
            await until(pilot, lambda: cell(app, "CP-1", "link") == "stale")
        text = str(banner.render())
        assert "Errno" not in text
        assert "No such file" not in text
        assert cell(app, "CP-1", "kw") == ""


async def test_every_active_session_is_shown_with_total_power(server: Server) -> None:
    await server.ctl("chargers.add", {"charger_id": "TWIN"})
    await server.ctl("tags.add", {"id_tag": "T1"})
    await server.ctl("tags.add", {"id_tag": "T2"})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(160, 30)) as pilot:
        await connected_app(pilot, app)
        charger = await RawCharger.connect(server.port, "TWIN")
        try:
            await charger.boot()
            txs = []
            for connector, tag in ((1, "T1"), (2, "T2")):
                await charger.status(connector, "Charging")
                started = await charger.call(
                    "StartTransaction",
                    {"connectorId": connector, "idTag": tag, "meterStart": 1000, "timestamp": NOW},
                )
                txs.append(started["transactionId"])
                await charger.call(
                    "MeterValues",
                    {
                        "connectorId": connector,
                        "transactionId": started["transactionId"],
                        "meterValue": [
                            {
                                "timestamp": NOW,
                                "sampledValue": [
                                    {
                                        "value": "3500",
                                        "measurand": "Power.Active.Import",
                                        "unit": "W",
                                    },
                                    {
                                        "value": "2000",
                                        "measurand": "Energy.Active.Import.Register",
                                        "unit": "Wh",
                                    },
                                ],
                            }
                        ],
                    },
                )
            async with asyncio.timeout(5):
                await until(pilot, lambda: cell(app, "TWIN", "kw") == "7.0")
            sessions = cell(app, "TWIN", "tx")
            assert f"tx {txs[0]}" in sessions
            assert f"tx {txs[1]}" in sessions
            assert cell(app, "TWIN", "kwh") == "2.00"  # 1 kWh on each connector
        finally:
            await charger.close()


async def test_last_seen_moves_on_heartbeats(server: Server) -> None:
    await server.ctl("chargers.add", {"charger_id": "HB"})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(160, 30)) as pilot:
        await connected_app(pilot, app)
        charger = await RawCharger.connect(server.port, "HB")
        try:
            await charger.boot()
            async with asyncio.timeout(5):
                await until(pilot, lambda: app.site.chargers["HB"].last_seen is not None)
            sent = datetime.now(UTC)
            sent = sent.replace(microsecond=sent.microsecond // 1000 * 1000)  # ms precision
            await charger.call("Heartbeat", {})

            def seen_after_heartbeat() -> bool:
                seen = parse_time(app.site.chargers["HB"].last_seen)
                return seen is not None and seen >= sent

            # Liveness publishes its batch every 5 s.
            async with asyncio.timeout(10):
                await until(pilot, seen_after_heartbeat)
        finally:
            await charger.close()


async def test_pending_chargers_stand_out_and_accept_triggers_a_boot(server: Server) -> None:
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(160, 30)) as pilot:
        await connected_app(pilot, app)
        sitebar = app.query_one("#sitebar", Static)
        charger = await RawCharger.connect(
            server.port, "NEWBIE", {"TriggerMessage": {"status": "Accepted"}}
        )
        try:
            assert (await charger.boot())["status"] == "Pending"
            async with asyncio.timeout(5):
                await until(
                    pilot, lambda: "1 charger waiting for acceptance" in str(sitebar.render())
                )
                await until(pilot, lambda: "NEWBIE" in app.table.rows)
            assert cell(app, "NEWBIE", "link") == "pending"
            # It counts as needing attention, and the count opens the list naming it.
            assert "1 need attention" in str(sitebar.render())
            await pilot.click("#sitebar")
            async with asyncio.timeout(5):
                await until(pilot, lambda: bool(app.screen.query("#alerts")))
            alerts = app.screen.query_one("#alerts", DataTable)
            assert app.screen.__class__.__name__ == "AlertsScreen"
            row = " ".join(str(c) for c in alerts.get_row("NEWBIE:pending"))
            assert "waiting for acceptance" in row
            assert "open" in row
            await pilot.press("enter")  # Enter: back to the table, on that charger
            async with asyncio.timeout(5):
                await until(pilot, lambda: app.screen is app.main)
            assert app.selected() == "NEWBIE"
            await pilot.press("f6")
            async with asyncio.timeout(10):
                await until(pilot, lambda: any(c[2] == "TriggerMessage" for c in charger.calls))
            trigger = next(c for c in charger.calls if c[2] == "TriggerMessage")
            assert trigger[3] == {"requestedMessage": "BootNotification"}
            # The charger boots again as triggered and is now Accepted.
            assert (await charger.boot())["status"] == "Accepted"
            async with asyncio.timeout(5):
                await until(pilot, lambda: cell(app, "NEWBIE", "reg") == "Accepted")
                await until(pilot, lambda: "waiting for acceptance" not in str(sitebar.render()))
                await until(pilot, lambda: "need attention" not in str(sitebar.render()))
            assert not app.site.alerts["NEWBIE:pending"].active
            assert any("asked it to boot again: Accepted" in line.text for line in app.feed_lines)
        finally:
            await charger.close()
