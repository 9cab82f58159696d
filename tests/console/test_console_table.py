"""The chargers table redraws only what changed (console/table.py, the performance work of
issue 12): what is drawn on screen must still follow every change, for rows on screen
and for rows that were off screen when they changed. Real server, raw-frame chargers;
the assertions read the lines the table renders, not its data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from console.app import ConsoleApp
from tests.console.support import PROMPT, RawCharger, Server, running_server, until

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("no_age_tick")]


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


def drawn(app: ConsoleApp, charger_id: str) -> str:
    """The text the chargers table renders for this charger's row now ('' off screen)."""
    table = app.table
    if charger_id not in table.rows:
        return ""
    index = table.get_row_index(charger_id)
    y = index - int(table.scroll_y) + table.header_height
    if not 0 < y < table.size.height:
        return ""
    return table.render_line(y).text


async def online(server: Server, charger_id: str) -> RawCharger:
    await server.ctl("chargers.add", {"charger_id": charger_id})
    charger = await RawCharger.connect(server.port, charger_id)
    await charger.boot()
    await charger.status(1, "Available")
    return charger


async def test_a_row_on_screen_is_redrawn_cell_by_cell(server: Server) -> None:
    first = await online(server, "CP-1")
    second = await online(server, "CP-2")
    app = ConsoleApp(server.socket)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            async with asyncio.timeout(10):
                await until(pilot, lambda: "1 Available" in drawn(app, "CP-2"))
            assert "1 Available" in drawn(app, "CP-1")
            # Each change re-renders its own row: the other row's cells come from the
            # cache, and must not be served for the row that changed, nor go stale.
            # SuspendedEV is wider than the column sized for "1 Available": the column
            # widens (DataTable.update_cell cropped it to "Suspended", issue 12 #6).
            for status in ("Preparing", "SuspendedEV", "Finishing", "Available"):
                await second.status(1, status)
                async with asyncio.timeout(5):
                    await until(pilot, lambda s=status: f"1 {s}" in drawn(app, "CP-2"))
                assert "1 Available" in drawn(app, "CP-1")
            await first.status(1, "Preparing")
            async with asyncio.timeout(5):
                await until(pilot, lambda: "1 Preparing" in drawn(app, "CP-1"))
            assert "1 Available" in drawn(app, "CP-2")
    finally:
        await first.close()
        await second.close()


async def test_a_row_that_changed_off_screen_is_current_when_scrolled_to(
    server: Server,
) -> None:
    # 30 offline chargers sort first (attention first); the online one is last, far
    # below an 80x24 screen.
    for n in range(30):
        await server.ctl("chargers.add", {"charger_id": f"AAA-{n:02d}"})
    last = await online(server, "ZZZ-1")
    app = ConsoleApp(server.socket)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            async with asyncio.timeout(10):
                await until(pilot, lambda: app.table.row_count == 31 and not app.stale)
            assert app.table.get_row_index("ZZZ-1") == 30
            assert drawn(app, "ZZZ-1") == ""  # off screen
            # The server's last-seen flush (every 5 s) announces ZZZ-1 once more after
            # its status: that event marks its row for redrawing too, so the scroll is
            # made after it, when nothing but the scroll can redraw the row (the age
            # tick is off: no_age_tick).
            seen_events: list[str] = []
            apply = app.site.apply

            def recording(name: str, data: dict[str, Any], *rest: Any) -> bool:
                if name == "chargers.seen" and "ZZZ-1" in (data.get("chargers") or {}):
                    seen_events.append(name)
                return apply(name, data, *rest)

            app.site.apply = recording  # type: ignore[method-assign]
            await last.status(1, "Preparing")  # same place in the order, new cells
            async with asyncio.timeout(15):
                await until(
                    pilot,
                    lambda: "Preparing" in str(app.site.chargers["ZZZ-1"].connectors[1].status)
                    and bool(seen_events),
                )
            await pilot.pause(0.5)  # a redraw or two while it is off screen
            await pilot.press("ctrl+end")
            async with asyncio.timeout(PROMPT):
                await until(pilot, lambda: "1 Preparing" in drawn(app, "ZZZ-1"))
    finally:
        await last.close()
