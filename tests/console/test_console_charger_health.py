"""Per-charger health in the real console (issue 19), against a real `voltaro serve` and
an independent charger: a charger that reconnects too often and whose clock is behind
is flagged in the alerts (F7) with the reason, and its figures are in the detail view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from textual.widgets import DataTable, Static

from console.app import ConsoleApp
from tests.console.support import RawCharger, Server, until

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    flagging = Server(tmp_path)
    # Thresholds are settings: two connections in an hour flap, 30 s off drifts.
    flagging.env.update(
        {"VOLTARO_HEALTH_FLAPPING_CONNECTS_PER_HOUR": "2", "VOLTARO_HEALTH_DRIFT_SECONDS": "30"}
    )
    await flagging.start()
    try:
        yield flagging
    finally:
        await flagging.stop()


def rows(table: DataTable[Any]) -> str:
    return "\n".join(" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count))


async def test_flapping_and_drifting_charger_is_flagged(server: Server) -> None:
    await server.ctl("chargers.add", {"charger_id": "CP-1"})
    await server.ctl("chargers.add", {"charger_id": "CP-CALM"})
    calm = await RawCharger.connect(server.port, "CP-CALM")
    await calm.boot()
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(140, 40)) as pilot:
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale and "CP-1" in app.table.rows)
        assert not [k for k in app.site.alerts if k.endswith((":flapping", ":drifting"))]
        # Three connections, the last one with a clock 100 s behind.
        for _ in range(2):
            cp = await RawCharger.connect(server.port, "CP-1")
            await cp.call("Heartbeat", {})
            await cp.close()
        cp = await RawCharger.connect(server.port, "CP-1")
        await cp.boot()
        behind = datetime.now(UTC) - timedelta(seconds=100)
        await cp.status(1, "Available", timestamp=behind.isoformat().replace("+00:00", "Z"))
        await pilot.press("f5")  # re-read now (the flags are also re-read every minute)
        async with asyncio.timeout(10):
            await until(pilot, lambda: "CP-1:drifting" in app.site.alerts)
        await pilot.press("f7")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "AlertsScreen")
        table = app.screen.query_one("#alerts", DataTable)
        async with asyncio.timeout(5):
            await until(pilot, lambda: "drifting" in rows(table))
        shown = rows(table)
        assert "flapping: 3 connections in an hour (over 2)" in shown
        assert "drifting: clock 100 s behind the server's (over 30 s)" in shown
        assert "CP-CALM" not in shown
        await pilot.press("escape")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen is app.main)
        app.table.move_cursor(row=app.table.get_row_index("CP-1"))
        await pilot.press("f2")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "DetailScreen")
        health = app.screen.query_one("#health", Static)
        async with asyncio.timeout(10):
            await until(pilot, lambda: "connections" in str(health.render()))
        text = str(health.render())
        assert "connections 3" in text
        assert "-100 s vs the server" in text
        assert "command timeouts 0" in text
        meta = str(app.screen.query_one("#meta", Static).render())
        assert "flapping: 3 connections" in meta  # among the attention notes
        await cp.close()
    await calm.close()
