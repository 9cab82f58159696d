"""The composite schedule as a step chart (issue 16): opened from the palette and from
the charger detail, asked of an independent charger (GetCompositeSchedule, OCPP 1.6
§5.7) through a real server, drawn at 80x24 and wider, asked again when a profile is
set; what the terminal shows is asserted, line by line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from console.app import ConsoleApp
from console.schedule_screen import ScheduleScreen
from tests.console.support import (
    RawCharger,
    Server,
    press_for_screen,
    running_server,
    screen_text,
    until,
)

pytestmark = pytest.mark.asyncio

CONFIG = {
    "configurationKey": [
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "3"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
        {"key": "ChargingScheduleMaxPeriods", "readonly": True, "value": "5"},
        {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "3"},
    ]
}


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def composite(start: datetime, periods: list[tuple[int, float]], connector: int = 0) -> Any:
    return {
        "status": "Accepted",
        "connectorId": connector,
        "scheduleStart": stamp(start),
        "chargingSchedule": {
            "duration": 3600,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": s, "limit": v} for s, v in periods],
        },
    }


@pytest_asyncio.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Server, RawCharger, datetime]]:
    async with running_server(tmp_path) as server:
        await server.ctl("chargers.add", {"charger_id": "CP-1"})
        # The schedule began 10 minutes ago: 32 A, then 16 A, then 6 A.
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        answers = {
            "GetCompositeSchedule": composite(start, [(0, 32.0), (1200, 16.0), (2400, 6.0)]),
            "GetConfiguration": CONFIG,
            "SetChargingProfile": {"status": "Accepted"},
        }
        charger = await RawCharger.connect(server.port, "CP-1", answers)
        await charger.boot()
        await charger.status(1, "Available")
        try:
            yield server, charger, start
        finally:
            await charger.close()


def asked(charger: RawCharger) -> list[dict[str, Any]]:
    return [c[3] for c in charger.calls if c[2] == "GetCompositeSchedule"]


async def open_from_palette(pilot: Any, app: ConsoleApp) -> ScheduleScreen:
    async with asyncio.timeout(10):
        await until(pilot, lambda: not app.stale and "CP-1" in app.site.chargers)
    await pilot.press("ctrl+p")
    await pilot.press(*"schedule CP-1")
    await pilot.pause(0.3)
    await pilot.press("enter")
    async with asyncio.timeout(5):
        await until(pilot, lambda: app.screen.__class__.__name__ == "CommandForm")
    # Enter: the defaults (connector 0, 3600 s, the charger's unit).
    screen = await press_for_screen(pilot, app, "enter", ScheduleScreen, lambda s: s.asked >= 1)
    await pilot.pause(0.1)
    return screen


async def test_step_chart_at_80x24_follows_a_new_profile(
    site: tuple[Server, RawCharger, datetime],
) -> None:
    server, charger, start = site
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_from_palette(pilot, app)
        assert asked(charger) == [{"connectorId": 0, "duration": 3600}]
        text = screen_text(app)
        lines = text.splitlines()
        assert len(lines) == 24
        assert all(len(line) <= 80 for line in lines)
        # The limits on the axis, the step line between them, the time axis and the
        # current time marked under its column.
        axis = {line.split("┤")[0].strip() for line in lines if "┤" in line}
        assert {"32 A", "16 A", "6 A", "0 A"} <= axis, text
        level = {line.split("┤")[0].strip(): line.split("┤")[1] for line in lines if "┤" in line}
        assert "─" in level["32 A"]  # 32 A, then down
        assert "┐" in level["32 A"]
        assert "└" in level["16 A"]  # 16 A, then down again
        assert "┐" in level["16 A"]
        assert "└" in level["6 A"]
        now_line = next(line for line in lines if "▲now" in line)
        clock = {(datetime.now(UTC) - timedelta(minutes=m)).strftime("%H:%M") for m in (0, 1)}
        assert any(f"▲now {c}" in now_line for c in clock), now_line
        # Now is 10 minutes into the 20 of 32 A: the marker is left of the step's drop.
        row32 = next(line for line in lines if line.split("┤")[0].strip() == "32 A")
        assert 0 < now_line.index("▲") < row32.index("┐")
        assert "UTC" in lines[1]
        assert lines[1].rstrip().endswith("now 32 A")  # the summary fits one line
        # Every period listed with its span and limit, the current one marked, all
        # on the 24 lines of the screen.
        period_rows = [line for line in lines if "→" in line and "A" in line][1:]
        assert len(period_rows) == 3, text
        assert "20m" in period_rows[0]
        assert "32 A" in period_rows[0]
        assert "◀ now" in period_rows[0]
        assert "16 A" in period_rows[1]
        assert "6 A" in period_rows[2]
        assert start.strftime("%H:%M:%S") in period_rows[0]
        # Live: an operator limits the charger (ctl, another client); the charger now
        # reports 10 A for the whole hour and the chart follows without a key.
        charger.answers["GetCompositeSchedule"] = composite(start, [(0, 10.0)])
        limited = await server.ctl(
            "profiles.set", {"charger_id": "CP-1", "connector_id": 0, "limit": 10, "unit": "A"}
        )
        assert limited["ok"], limited
        async with asyncio.timeout(10):
            await until(pilot, lambda: screen.asked >= 2)
        await pilot.pause(0.1)
        text = screen_text(app)
        axis = {line.split("┤")[0].strip() for line in text.splitlines() if "┤" in line}
        assert axis == {"10 A", "0 A"}, text
        assert "now 10 A" in text
        assert len(asked(charger)) == 2


async def test_connector_unit_refusal_and_a_wide_terminal(
    site: tuple[Server, RawCharger, datetime],
) -> None:
    server, charger, start = site
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_from_palette(pilot, app)

        def axis_rows() -> list[str]:
            return [ln for ln in screen_text(app).splitlines() if "└─" in ln and "┬" in ln]

        async with asyncio.timeout(10):  # the chart draws once the first answer is in
            await until(pilot, lambda: bool(axis_rows()))
        axis_row = axis_rows()[0]
        assert len(axis_row.rstrip()) > 150  # the chart uses the width it has
        # c: the next connector the console knows (1), u: ask for W.
        charger.answers["GetCompositeSchedule"] = composite(start, [(0, 11000.0)], 1)
        charger.answers["GetCompositeSchedule"]["chargingSchedule"]["chargingRateUnit"] = "W"
        for key, answers in (("c", 2), ("u", 3), ("u", 4)):  # one answer before each key
            await pilot.press(key)
            async with asyncio.timeout(10):
                await until(pilot, lambda n=answers: screen.asked >= n)  # type: ignore[misc]
        assert asked(charger)[1] == {"connectorId": 1, "duration": 3600}
        assert asked(charger)[-1] == {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"}
        await pilot.pause(0.1)
        text = screen_text(app)
        summary_line = text.splitlines()[1]
        assert summary_line.startswith("connector 1:"), text
        assert summary_line.rstrip().endswith("now 11 kW")
        assert "11 kW ┤" in text, text
        # The charger refuses: said in words, no stale chart left behind.
        charger.answers["GetCompositeSchedule"] = {"status": "Rejected"}
        await pilot.press("r")
        async with asyncio.timeout(10):
            await until(pilot, lambda: screen.asked >= 5)
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "CP-1: the charger answered Rejected" in text
        assert "┤" not in text


async def test_g_in_the_detail_view_charts_the_selected_connector(
    site: tuple[Server, RawCharger, datetime],
) -> None:
    server, charger, _ = site
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale and app.table.row_count == 1)
        await pilot.press("f2")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "DetailScreen")
        await pilot.pause(0.5)
        screen = await press_for_screen(pilot, app, "g", ScheduleScreen, lambda s: s.asked >= 1)
        assert screen.connector_id == 1
        assert asked(charger)[-1] == {"connectorId": 1, "duration": 3600}
        await pilot.pause(0.1)
        assert "32 A ┤" in screen_text(app)
        await pilot.press("escape")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "DetailScreen")
