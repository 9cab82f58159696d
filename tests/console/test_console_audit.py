"""The audit screen (F10, issue 19) of the real console against a real `voltaro serve`:
the command audit filtered on the server by charger, user and action, and the
quarantine."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from textual.widgets import DataTable, Static

from console.app import ConsoleApp
from tests.console.support import RawCharger, Server, running_server, until

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


def rows(table: DataTable[Any]) -> list[str]:
    return [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


async def test_audit_screen_filters_on_the_server(server: Server) -> None:
    answers = {"Reset": {"status": "Accepted"}, "ClearCache": {"status": "Rejected"}}
    chargers = []
    for charger_id in ("CP-1", "CP-2"):
        await server.ctl("chargers.add", {"charger_id": charger_id})
        cp = await RawCharger.connect(server.port, charger_id, answers)
        await cp.boot()
        chargers.append(cp)
    for charger_id, action, args in (
        ("CP-1", "Reset", {"type": "Soft"}),
        ("CP-2", "ClearCache", {}),
        ("CP-2", "Reset", {"type": "Soft"}),
    ):
        reply = await server.ctl(
            "command", {"charger_id": charger_id, "action": action, "args": args}
        )
        assert reply["ok"], reply
    me = getpass.getuser()
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(140, 40)) as pilot:
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale)
        await pilot.press("f10")
        async with asyncio.timeout(5):
            await until(pilot, lambda: app.screen.__class__.__name__ == "AuditScreen")
        table = app.screen.query_one("#audit", DataTable)

        def mine() -> list[str]:
            # The server also sends commands of its own (the local list sync at boot).
            return [r for r in rows(table) if me in r.split()]

        async with asyncio.timeout(10):
            await until(pilot, lambda: len(mine()) == 3)
        assert [r.split()[2:4] for r in mine()] == [
            ["CP-2", "Reset"],
            ["CP-2", "ClearCache"],
            ["CP-1", "Reset"],
        ]

        async def filtered(text: str, count: int) -> list[str]:
            await pilot.press("slash")
            box = app.screen.query_one("#audit-filter")
            box.value = ""  # type: ignore[attr-defined]
            await pilot.press(*text, "enter")
            async with asyncio.timeout(10):
                await until(
                    pilot,
                    lambda: (
                        (f"filter: {text}" if text else "newest first")
                        in str(status.render()).rsplit(",", 1)[-1]
                    ),
                )
                await until(pilot, lambda: table.row_count == count)
            return rows(table)

        status = app.screen.query_one("#audit-kind", Static)
        (only,) = await filtered("CP-2 action:clearcache", 1)
        assert "Rejected" in only
        both = await filtered("action:Reset", 2)
        assert {r.split()[2] for r in both} == {"CP-1", "CP-2"}
        assert await filtered(f"by:{me} CP-1", 1)
        assert await filtered("by:somebody-else", 0) == []
        listed = await server.ctl("commands.list", {"limit": 500})
        await filtered("", len(listed["result"]))  # the whole audit again
        await pilot.press("k")  # the quarantine: nothing was refused
        async with asyncio.timeout(10):
            await until(pilot, lambda: "quarantine" in str(status.render()))
            await until(pilot, lambda: table.row_count == 0)
    for cp in chargers:
        await cp.close()
