"""F9, firmware campaigns (issue 16): started from the console against a real server,
followed live as independent chargers report FirmwareStatusNotification, cancelled from
the console; what the terminal shows is asserted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from textual.widgets import DataTable, Input

from console.app import ConsoleApp
from console.campaign_screen import CampaignScreen
from tests.console.support import RawCharger, Server, press_for_screen, screen_text, until

pytestmark = pytest.mark.asyncio

LOCATION = "ftp://files.example/fw-2.bin"


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Server, dict[str, RawCharger]]]:
    server = Server(tmp_path)
    server.env["VOLTARO_CAMPAIGN_POLL"] = "0.1"  # a freed slot is used within 0.1 s
    await server.start()
    chargers: dict[str, RawCharger] = {}
    try:
        for name in ("SITE-1", "SITE-2", "SITE-3", "OTHER-1"):
            await server.ctl("chargers.add", {"charger_id": name})
            chargers[name] = await RawCharger.connect(server.port, name, {"UpdateFirmware": {}})
            await chargers[name].boot()
        yield server, chargers
    finally:
        for charger in chargers.values():
            await charger.close()
        await server.stop()


def target_row(app: ConsoleApp, charger_id: str) -> str:
    """The targets table's line for one charger, as the terminal shows it."""
    return next(
        (line for line in screen_text(app).splitlines() if f" {charger_id} " in line + " "), ""
    )


async def shows(pilot: Any, app: ConsoleApp, check: Callable[[str], bool]) -> str:
    async with asyncio.timeout(10):
        await until(pilot, lambda: check(screen_text(app)))
    return screen_text(app)


def update_firmware_calls(charger: RawCharger) -> list[dict[str, Any]]:
    return [c[3] for c in charger.calls if c[2] == "UpdateFirmware"]


async def test_start_follow_and_cancel_a_campaign_from_the_console(
    site: tuple[Server, dict[str, RawCharger]],
) -> None:
    server, cps = site
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale and app.table.row_count == 4)
        screen = await press_for_screen(pilot, app, "f9", CampaignScreen)
        await shows(pilot, app, lambda t: "no firmware campaign yet" in t)
        # n: the form, then a question that counts the chargers it will update.
        await pilot.press("n")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "CommandForm")
        form = app.screen
        form.query_one("#f-pattern", Input).value = "SITE-*"
        form.query_one("#f-location", Input).value = LOCATION
        form.query_one("#f-max_parallel", Input).value = "1"
        await pilot.press("enter")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "Confirm")
        question = str(app.screen.query_one("#question").render())
        assert "3 chargers matching SITE-*" in question
        assert "1 at a time" in question
        await pilot.press("y")
        # One at a time: SITE-1 is sent UpdateFirmware, the other two wait.
        text = await shows(pilot, app, lambda t: "sent" in target_row(app, "SITE-1"))
        assert "waiting" in target_row(app, "SITE-2")
        assert "waiting" in target_row(app, "SITE-3")
        assert "OTHER-1" not in text
        assert "1 at once" in text
        assert "running" in text
        assert update_firmware_calls(cps["SITE-1"])[0]["location"] == LOCATION
        assert update_firmware_calls(cps["SITE-2"]) == []
        # Live, as SITE-1 reports: each state shows on its row, the bar filling.
        expected_bars = {"Downloading": "■■□□□", "Downloaded": "■■■□□", "Installing": "■■■■□"}
        for status, bar in expected_bars.items():
            await cps["SITE-1"].call("FirmwareStatusNotification", {"status": status})
            await shows(pilot, app, lambda t, s=status: s in target_row(app, "SITE-1"))  # type: ignore[misc]
            assert bar in target_row(app, "SITE-1")
        # The counts follow with the re-read, within a second.
        text = await shows(pilot, app, lambda t: "installing 1" in t)
        assert "waiting 2" in text
        # x: cancel. The two waiting are cancelled; SITE-1, installing, goes on.
        await pilot.press("x")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "Confirm")
        question = str(app.screen.query_one("#question").render())
        assert "2 charger(s) not sent it yet never will be; 1 already updating" in question
        await pilot.press("y")
        await shows(pilot, app, lambda t: "cancelled" in target_row(app, "SITE-3"))
        assert "cancelled" in target_row(app, "SITE-2")
        assert "Installing" in target_row(app, "SITE-1")
        await cps["SITE-1"].call("FirmwareStatusNotification", {"status": "InstallationFailed"})
        text = await shows(pilot, app, lambda t: "finished" in t)
        assert "InstallationFailed" in target_row(app, "SITE-1")
        assert "failed 1" in text
        assert "cancelled 2" in text
        assert "0/3 installed, 1 failed" in text
        assert update_firmware_calls(cps["SITE-2"]) == []
        assert update_firmware_calls(cps["SITE-3"]) == []
        # The server agrees with what the screen shows.
        stored = await server.ctl("firmware.campaigns", {"campaign_id": 1})
        assert {t["charger_id"]: t["state"] for t in stored["result"]["targets"]} == {
            "SITE-1": "InstallationFailed",
            "SITE-2": "cancelled",
            "SITE-3": "cancelled",
        }
        # A finished campaign is not cancelled again.
        await pilot.press("x")
        await pilot.pause(0.2)
        assert app.screen is screen
        table = screen.query_one("#campaigns", DataTable)
        assert table.row_count == 1


async def test_a_refused_campaign_is_said_and_nothing_starts(
    site: tuple[Server, dict[str, RawCharger]],
) -> None:
    server, cps = site
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale and app.table.row_count == 4)
        await press_for_screen(pilot, app, "f9", CampaignScreen)
        await pilot.press("n")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "CommandForm")
        form = app.screen
        form.query_one("#f-pattern", Input).value = "SITE-*"
        form.query_one("#f-file", Input).value = "no-such-image.bin"
        await pilot.press("enter")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "Confirm")
        await pilot.press("y")
        async with asyncio.timeout(5):
            await until(
                pilot,
                lambda: any("no firmware" in str(n.message) for n in app._notifications),
            )
        listed = await server.ctl("firmware.campaigns", {})
        assert listed["result"] == []
        assert all(update_firmware_calls(cp) == [] for cp in cps.values())
