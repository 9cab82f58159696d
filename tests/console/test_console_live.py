"""The real Textual console against a real `voltaro serve` and an independent charger."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from textual.css.query import NoMatches
from textual.widgets import DataTable, Static

from console.app import ConsoleApp
from console.commands import BY_ACTION
from console.link import ControlLink, LinkState
from tests.console.support import RawCharger, Server, running_server, until
from voltaro.control import wire

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


def cell(app: ConsoleApp, row: str, column: str) -> str:
    return str(app.query_one("#chargers", DataTable).get_cell(row, column))


def feed_text(app: ConsoleApp) -> str:
    return "\n".join(line.text for line in app.feed_lines)


async def test_table_live_updates_command_and_reconnect(server: Server) -> None:
    await server.ctl("chargers.add", {"charger_id": "CP-1"})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one("#chargers", DataTable)
        async with asyncio.timeout(10):
            await until(pilot, lambda: table.row_count == 1)
        assert "offline" in cell(app, "CP-1", "link")
        charger = await RawCharger.connect(server.port, "CP-1", {"Reset": {"status": "Accepted"}})
        await charger.boot()
        await charger.status(1, "Charging")
        async with asyncio.timeout(10):
            await until(pilot, lambda: "online" in cell(app, "CP-1", "link"))
            await until(pilot, lambda: "Charging" in cell(app, "CP-1", "conn"))
        # A command through the menu and its form: soft reset.
        await pilot.press("ctrl+o")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "CommandMenu")
        await pilot.press("down", "down", "enter")  # Remote start, Remote stop, Soft reset
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "Confirm")
        assert "Soft reset CP-1" in str(app.screen.query_one("#question").render())
        await pilot.press("enter")  # Enter alone answers No
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen is app.main)
        assert "Soft reset on CP-1" not in feed_text(app)
        await pilot.press("ctrl+o")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "CommandMenu")
        await pilot.press("down", "down", "enter")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "Confirm")
        await pilot.press("y")
        async with asyncio.timeout(10):
            await until(pilot, lambda: "Soft reset on CP-1: Accepted" in feed_text(app))
        # The server goes away: banner in words; it comes back: reconnect and resync.
        await charger.close()
        await server.stop()
        banner = app.query_one("#banner", Static)
        async with asyncio.timeout(10):
            await until(pilot, lambda: banner.has_class("shown"))
        assert app.stale
        await server.start()
        async with asyncio.timeout(20):
            await until(pilot, lambda: not banner.has_class("shown"))
            await until(pilot, lambda: table.row_count == 1)
        assert app.role is wire.Role.ADMIN


async def test_refusal_is_shown(server: Server) -> None:
    await server.ctl("chargers.add", {"charger_id": "CP-1"})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one("#chargers", DataTable)
        async with asyncio.timeout(10):
            await until(pilot, lambda: table.row_count == 1)
        app.send_command("CP-1", BY_ACTION["clear-cache"], {})
        async with asyncio.timeout(10):
            await until(pilot, lambda: "not connected" in feed_text(app))


async def test_link_requests_and_errors(server: Server) -> None:
    link = ControlLink(server.socket)
    connected = asyncio.Event()

    def on_state(state: LinkState) -> None:
        if state.connected:
            connected.set()

    def on_frame(frame: dict[str, Any]) -> None:
        pass

    task = asyncio.ensure_future(link.run(on_frame, on_state))
    try:
        async with asyncio.timeout(10):
            await connected.wait()
        status = await link.request("status")
        assert status["database"]["ok"] is True
        with pytest.raises(Exception, match="not_found"):
            await link.request("command", {"charger_id": "NOPE", "action": "Reset", "args": {}})
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_reserve_sync_and_limit_from_the_palette(server: Server) -> None:
    """Issue 16: the palette's Reserve and Sync local list reach the charger, and the
    detail view shows the open reservation and the list version."""
    await server.ctl("chargers.add", {"charger_id": "CP-1"})
    await server.ctl("tags.add", {"id_tag": "T1"})
    charger = await RawCharger.connect(
        server.port,
        "CP-1",
        {
            "ReserveNow": {"status": "Accepted"},
            "GetConfiguration": {"configurationKey": []},
            "GetLocalListVersion": {"listVersion": 0},
            "SendLocalList": {"status": "Accepted"},
            "SetChargingProfile": {"status": "Accepted"},
        },
    )
    try:
        await charger.boot()
        app = ConsoleApp(server.socket)
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.query_one("#chargers", DataTable)
            async with asyncio.timeout(10):
                await until(pilot, lambda: table.row_count == 1)
            app.send_command(
                "CP-1", BY_ACTION["reserve"], {"id_tag": "T1", "connector_id": 1, "minutes": 30}
            )
            async with asyncio.timeout(10):
                await until(pilot, lambda: "Reserve on CP-1: Accepted" in feed_text(app))
            app.send_command("CP-1", BY_ACTION["local-list-sync"], {})
            async with asyncio.timeout(10):
                await until(pilot, lambda: "Sync local list on CP-1: Accepted" in feed_text(app))
            app.send_command(
                "CP-1", BY_ACTION["limit"], {"limit": 16, "unit": "A", "connector_id": 0}
            )
            async with asyncio.timeout(10):
                await until(pilot, lambda: "Limit charger on CP-1: Accepted" in feed_text(app))
            limit = next(c for c in charger.calls if c[2] == "SetChargingProfile")
            assert limit[3]["connectorId"] == 0
            assert (
                limit[3]["csChargingProfiles"]["chargingProfilePurpose"] == "ChargePointMaxProfile"
            )
            reserve = next(c for c in charger.calls if c[2] == "ReserveNow")
            assert reserve[3]["idTag"] == "T1"
            sent = next(c for c in charger.calls if c[2] == "SendLocalList")
            assert sent[3]["localAuthorizationList"] == [
                {"idTag": "T1", "idTagInfo": {"status": "Accepted"}}
            ]
            app.action_details()

            def meta() -> str:
                try:
                    return str(app.screen.query_one("#meta", Static).render())
                except NoMatches:  # the detail screen is still mounting
                    return ""

            async with asyncio.timeout(10):
                await until(pilot, lambda: "connector 1 for T1" in meta())
            assert "version 1, 1 tags, last sync Accepted" in meta()
    finally:
        await charger.close()
