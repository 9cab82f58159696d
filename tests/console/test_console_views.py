"""Broken today #7-#9 and the operator's views, against a real server and independent
chargers: live F2 and F3, frames one line each with a filter and the full frame on
Enter, AuthorizationKey never shown, tags blocked/unblocked only after a 'y', alerts kept
until acknowledged, an interrupted transaction closed from F3."""

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
            "args": {"key": "AuthorizationKey", "value": "s3cret-key-123456"},
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
        # The payload column shows the message's payload, not the OCPP-J array around
        # it (its message id filled the column): the boot's payload names the vendor.
        payloads = [str(frames.get_row_at(i)[3]) for i in range(frames.row_count)]
        assert not any(p.startswith("[") for p in payloads), payloads
        assert any(p.startswith('{"chargePointVendor"') for p in payloads), payloads
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
            await until(pilot, lambda: f"tx:{first['transactionId']}" in table.rows)
        # A new start on the same connector without a stop interrupts the first one.
        second = await charger.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "T1", "meterStart": 500, "timestamp": NOW},
        )
        key = f"tx:{first['transactionId']}"
        async with asyncio.timeout(5):
            await until(pilot, lambda: f"tx:{second['transactionId']}" in table.rows)
            await until(pilot, lambda: "interrupted" in str(table.get_row(key)))
        table.move_cursor(row=table.get_row_index(key))
        await pilot.press("c")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "Confirm")
        question = str(app.screen.query_one("#question").render())
        assert f"Close transaction {first['transactionId']}" in question
        await pilot.press("y")
        async with asyncio.timeout(5):
            await until(pilot, lambda: "closed" in str(table.get_row(key)))
        # Enter opens the session with its details.
        table.move_cursor(row=table.get_row_index(key))
        await pilot.press("enter")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "TextScreen")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_transactions_by_period_and_orphan_stops(server: Server, charger: RawCharger) -> None:
    """F3's period (p: all, today, 24 h, 7 d; f: from-to) asks the server for the
    transactions started then; stops that closed nothing are listed live, with what to
    do on Enter."""
    await server.ctl("tags.add", {"id_tag": "T1"})
    now = datetime.now(UTC)
    old_start = now - timedelta(days=10)
    old = await charger.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": iso(old_start)},
    )
    await charger.call(
        "StopTransaction",
        {
            "transactionId": old["transactionId"],
            "meterStop": 9000,
            "timestamp": iso(old_start + timedelta(hours=1)),
        },
    )
    new = await charger.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T1", "meterStart": 9000, "timestamp": iso(now)},
    )
    old_key, new_key = f"tx:{old['transactionId']}", f"tx:{new['transactionId']}"
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(140, 40)) as pilot:
        await ready(pilot, app)
        await pilot.press("f3")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "TransactionsScreen")
        screen = app.screen
        table = screen.query_one("#transactions", DataTable)
        state = screen.query_one("#tx-state", Static)

        async def shows(*keys: str, period: str) -> None:
            async with asyncio.timeout(5):
                await until(
                    pilot,
                    lambda: set(table.rows) == set(keys) and period in str(state.render()),
                )

        await shows(old_key, new_key, period="started: all")
        for period in ("today", "24 h", "7 d"):
            await pilot.press("p")
            await shows(new_key, period=f"started: {period}")
        await pilot.press("p")
        await shows(old_key, new_key, period="started: all")
        # From-to: the day of the old session, in local time.
        await pilot.press("f")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "PeriodForm")
        day = old_start.astimezone().strftime("%Y-%m-%d")
        app.screen.query_one("#from").value = day  # type: ignore[attr-defined]
        app.screen.query_one("#to").value = day  # type: ignore[attr-defined]
        await pilot.press("enter")  # in "from": on to "to"
        await pilot.press("enter")
        await shows(old_key, period="→")
        await pilot.press("p")  # back to the presets: today
        await shows(new_key, period="started: today")
        await pilot.press("p", "p", "p")
        await shows(old_key, new_key, period="started: all")

        # A stop for a transaction the server does not know shows up live.
        await charger.call(
            "StopTransaction", {"transactionId": 4242, "meterStop": 1700, "timestamp": iso(now)}
        )
        await shows(old_key, new_key, "stop:0", period="started: all")
        row = " ".join(str(c) for c in table.get_row("stop:0"))
        assert "4242" in row
        assert "orphan unknown" in row
        assert "1700" in row
        while "state: orphan" not in str(state.render()):
            await pilot.press("t")
        await shows("stop:0", period="started: all")
        await pilot.press("c")  # nothing to close: said, no question asked
        await pilot.pause(0.3)
        assert app.screen is screen
        await pilot.press("enter")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "TextScreen")
        body = str(app.screen.query(Static).last().render())
        assert "closed nothing" in body
        assert "find the session by charger" in body
        # ...and it needs attention until acknowledged (F7).
        assert any(a.is_billing and a.active for a in app.site.alerts.values())


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
