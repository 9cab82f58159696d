"""Broken today #1: the console froze for ~60 s on every charger added (the link's reader
awaited a resync whose reply only that reader could deliver)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from textual.widgets import DataTable

from console.app import ConsoleApp
from tests.console.support import PROMPT, RawCharger, Server, running_server, until

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("no_age_tick")]


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


async def test_added_charger_shows_promptly(server: Server) -> None:
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one("#chargers", DataTable)
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale)
        for n in range(1, 4):
            assert (await server.ctl("chargers.add", {"charger_id": f"NEW-{n}"}))["ok"]
            async with asyncio.timeout(PROMPT):
                await until(pilot, lambda n=n: table.row_count == n)  # type: ignore[misc]


async def test_unknown_charger_event_and_accept_do_not_freeze(server: Server) -> None:
    """An event for a charger not in the table (a new Pending charger) and F6 accept."""
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one("#chargers", DataTable)
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale)
        charger = await RawCharger.connect(server.port, "UNKNOWN-1")
        try:
            await charger.boot()
            async with asyncio.timeout(PROMPT):
                await until(pilot, lambda: table.row_count == 1)
            # Events after the resync keep flowing: a status change shows promptly.
            await charger.status(1, "Available")
            async with asyncio.timeout(PROMPT):
                await until(pilot, lambda: "Available" in str(table.get_row_at(0)))
            # F6 accepts it (charger.updated used to freeze the console too).
            await pilot.press("f6")
            async with asyncio.timeout(PROMPT):
                await until(pilot, lambda: str(table.get_cell("UNKNOWN-1", "reg")) == "Accepted")
        finally:
            await charger.close()
