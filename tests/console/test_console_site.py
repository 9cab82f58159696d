"""The site at a glance, against a real server and raw-frame chargers: attention first,
sort by any column (s, r, a click on a header), the `/` filter, the charger id frozen
when scrolling right at 80 columns, and a feed without meter noise that F8 can show by
kind (issue 12, "What an operator should get")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from textual import events
from textual.widgets import Input, RichLog

from console.app import ConsoleApp
from tests.console.support import RawCharger, Server, running_server, until

pytestmark = pytest.mark.asyncio
NOW = "2026-01-01T10:00:00Z"


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


def order(app: ConsoleApp) -> list[str]:
    return [str(key.value) for key in app.table.rows]


def log_text(log: RichLog) -> str:
    return "\n".join(strip.text for strip in log.lines)


async def meter(charger: RawCharger, tx: int, watts: int, wh: int) -> None:
    values = [
        {"value": str(watts), "measurand": "Power.Active.Import", "unit": "W"},
        {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
    ]
    await charger.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [{"timestamp": NOW, "sampledValue": values}],
        },
    )


async def test_attention_sort_filter_frozen_id_and_feed(server: Server) -> None:
    await server.ctl("tags.add", {"id_tag": "FLEET-7"})
    chargers: list[RawCharger] = []
    for name in ("CP-A", "CP-B", "CP-C", "LONG-CHARGER-ID-AT-THE-NORTH-GATE-01"):
        await server.ctl("chargers.add", {"charger_id": name})
    try:
        for name in ("CP-A", "CP-B", "CP-C"):
            charger = await RawCharger.connect(server.port, name)
            await charger.boot("Acme" if name != "CP-C" else "Volt", "X1")
            await charger.status(1, "Available")
            chargers.append(charger)
        _, b, c = chargers
        app = ConsoleApp(server.socket)
        async with app.run_test(size=(80, 24)) as pilot:
            async with asyncio.timeout(10):
                await until(pilot, lambda: not app.stale and len(order(app)) == 4)
            # Attention first: the offline one, then the rest by id.
            assert order(app) == ["LONG-CHARGER-ID-AT-THE-NORTH-GATE-01", "CP-A", "CP-B", "CP-C"]
            await c.status(1, "Faulted", "GroundFailure")
            async with asyncio.timeout(5):
                await until(pilot, lambda: order(app)[0] == "CP-C")

            # A session on CP-B with meter values: kW in the table, no meter line in the feed.
            await b.status(1, "Charging")
            started = await b.call(
                "StartTransaction",
                {"connectorId": 1, "idTag": "FLEET-7", "meterStart": 0, "timestamp": NOW},
            )
            await meter(b, started["transactionId"], 11000, 1500)
            async with asyncio.timeout(5):
                await until(pilot, lambda: str(app.table.get_cell("CP-B", "kw")) == "11.0")
            feed = app.query_one("#feed", RichLog)
            assert "GroundFailure" in log_text(feed)
            assert "session" in log_text(feed)
            assert "11.0 kW" not in log_text(feed)  # meter noise is off by default

            # Sort by kW: the one charging first; r reverses; a click on a header sorts
            # by that column.
            while app.sort != "kw":
                await pilot.press("s")
            await pilot.pause(0.3)
            assert order(app)[0] == "CP-B"
            await pilot.press("r")
            await pilot.pause(0.3)
            assert order(app)[-1] == "CP-B"
            await pilot.click("#chargers", offset=(3, 0))  # the "Charger" header
            await pilot.pause(0.3)
            assert app.sort == "id"
            assert order(app) == sorted(order(app))

            # `/` filters by id, vendor/model, status or a session's tag; Escape clears.
            for text, shown in (
                ("fleet-7", ["CP-B"]),
                ("volt", ["CP-C"]),
                ("groundfailure", ["CP-C"]),
                ("cp-a", ["CP-A"]),
            ):
                await pilot.press("slash")
                box: Any = app.query_one("#filter")
                box.value = text
                await pilot.press("enter")
                await pilot.pause(0.3)
                assert order(app) == shown, text
                await pilot.press("escape")
                await pilot.pause(0.3)
                assert len(order(app)) == 4

            # At 80 columns, scrolled right as far as it goes, each row still starts
            # with its whole charger id (the id column is frozen).
            app.table.scroll_to(x=app.table.max_scroll_x, animate=False)
            await pilot.pause(0.3)
            assert app.table.max_scroll_x > 0
            for index, charger_id in enumerate(order(app)):
                line = app.table.render_line(index + 1).text
                assert line.strip().startswith(charger_id), line

            # F8: the whole feed by kind; meter values are there under "meter" only.
            await pilot.press("f8")
            async with asyncio.timeout(5):
                await until(pilot, lambda: bool(app.screen.query("#events")))
            events = app.screen.query_one("#events", RichLog)
            assert "11.0 kW" not in log_text(events)
            while "showing meter" not in str(app.screen.query_one("#events-kind").render()):
                await pilot.press("k")
            async with asyncio.timeout(5):
                await until(pilot, lambda: "11.0 kW" in log_text(events))
            assert "GroundFailure" not in log_text(events)
            while "showing faults" not in str(app.screen.query_one("#events-kind").render()):
                await pilot.press("k")
            async with asyncio.timeout(5):
                await until(pilot, lambda: "GroundFailure" in log_text(events))
            assert "11.0 kW" not in log_text(events)
    finally:
        for charger in chargers:
            await charger.close()


async def test_offline_at_start_is_an_alert_only_while_it_lasts(server: Server) -> None:
    """A charger never seen is listed as offline when the console starts; once it
    connects that entry goes (nobody missed an event); a charger going offline while
    the console watches stays listed, cleared, until acknowledged."""
    await server.ctl("chargers.add", {"charger_id": "CP-1"})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(120, 30)) as pilot:
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale and "CP-1" in app.table.rows)
        assert app.site.alerts["CP-1:offline"].text == "never seen"
        assert "1 need attention" in str(app.sitebar.render())
        charger = await RawCharger.connect(server.port, "CP-1")
        try:
            await charger.boot()
            async with asyncio.timeout(5):
                await until(pilot, lambda: "CP-1:offline" not in app.site.alerts)
                await until(pilot, lambda: "alert" not in str(app.sitebar.render()))
        finally:
            await charger.close()
        async with asyncio.timeout(5):
            await until(pilot, lambda: "CP-1:offline" in app.site.alerts)
        assert app.site.alerts["CP-1:offline"].text.startswith("went offline")
        charger = await RawCharger.connect(server.port, "CP-1")
        try:
            await charger.boot()
            async with asyncio.timeout(5):
                await until(pilot, lambda: not app.site.alerts["CP-1:offline"].active)
                await until(pilot, lambda: "1 alert (F7)" in str(app.sitebar.render()))
            assert "need attention" not in str(app.sitebar.render())
        finally:
            await charger.close()


async def burst(app: ConsoleApp, text: str) -> None:
    """Type ``text`` as a paste or `tmux send-keys` does: every key queued before the
    console handles the first one (pilot.press waits between keys and hides this)."""
    driver = app._driver
    assert driver is not None
    for char in text:
        key = "slash" if char == "/" else ("minus" if char == "-" else char)
        event = events.Key(key, char)
        event.set_sender(app)
        driver.send_message(event)


async def test_keys_typed_in_one_burst_with_slash_reach_the_filter(server: Server) -> None:
    """`/sim-rs` typed in one burst lands whole in the filter box on the main screen, F3
    and F8: no key reaches the table behind it (an `s` there would sort, an `r`
    reverse), and no character is lost."""
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale)
        sort, reverse = app.sort, app.reverse
        await burst(app, "/sim-rs")
        await pilot.pause(0.3)
        assert app.query_one("#filter", Input).value == "sim-rs"
        assert (app.sort, app.reverse) == (sort, reverse)
        # Inside the box `/` is a character like any other.
        await burst(app, "/x")
        await pilot.pause(0.3)
        assert app.query_one("#filter", Input).value == "sim-rs/x"
        await pilot.press("escape")
        for screen_key, box_id in (("f3", "#tx-filter"), ("f8", "#events-filter")):
            await pilot.press(screen_key)
            await pilot.pause(0.3)
            await burst(app, "/sim-1")
            await pilot.pause(0.3)
            assert app.screen.query_one(box_id, Input).value == "sim-1", screen_key
            await pilot.press("escape")
            await pilot.pause(0.2)
