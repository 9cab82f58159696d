"""The real Textual console against a real `voltaro serve` and an independent charger."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import websockets
from textual.widgets import DataTable, RichLog, Static

from console.app import ConsoleApp
from console.commands import BY_ACTION
from console.link import ControlLink
from voltaro.control import wire

pytestmark = pytest.mark.asyncio


class Server:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.socket = str(tmp / "c.sock")
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        env = {**os.environ, "VOLTARO_LOG_LEVEL": "INFO"}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voltaro",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            "0",
            "--database-url",
            f"sqlite:///{self.tmp / 'v.db'}",
            "--control-socket",
            self.socket,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert self.process.stderr is not None
        async with asyncio.timeout(30):
            while True:
                line = (await self.process.stderr.readline()).decode()
                assert line, "server exited"
                if "listening for OCPP" in line:
                    self.port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
                if "control socket at" in line:
                    break

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    async def ctl(self, op: str, args: dict[str, Any]) -> Any:
        reader, writer = await asyncio.open_unix_connection(self.socket)
        await reader.readline()
        writer.write(wire.encode(wire.request(1, op, args)))
        await writer.drain()
        frame = json.loads(await reader.readline())
        writer.close()
        await writer.wait_closed()
        return frame


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    running = Server(tmp_path)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def wait_for(pilot: Any, predicate: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await pilot.pause(0.05)


async def charger(port: int, answers: dict[str, dict[str, Any]]) -> Any:
    """An independent charger (raw frames) that answers the server's CALLs."""
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ocpp/CP-1", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    await ws.send(
        json.dumps(
            [2, "b1", "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "X1"}]
        )
    )
    await ws.recv()
    await ws.send(
        json.dumps(
            [
                2,
                "s1",
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Charging"},
            ]
        )
    )
    await ws.recv()

    async def answer() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in ws:
                frame = json.loads(text)
                if frame[0] == 2:
                    await ws.send(json.dumps([3, frame[1], answers.get(frame[2], {})]))

    return ws, asyncio.ensure_future(answer())


def cell(app: ConsoleApp, row: str, column: str) -> str:
    return str(app.query_one("#chargers", DataTable).get_cell(row, column))


async def test_table_live_updates_command_and_reconnect(server: Server) -> None:
    await server.ctl("chargers.add", {"charger_id": "CP-1"})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one("#chargers", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert "offline" in cell(app, "CP-1", "link")
        ws, answering = await charger(server.port, {"Reset": {"status": "Accepted"}})
        await wait_for(pilot, lambda: "online" in cell(app, "CP-1", "link"))
        await wait_for(pilot, lambda: "Charging" in cell(app, "CP-1", "conn"))
        # A command through the menu and its form: soft reset (not destructive).
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandMenu")
        await pilot.press("down", "down", "enter")  # Remote start, Remote stop, Soft reset
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CommandForm")
        await pilot.press("enter")
        feed = app.query_one("#feed", RichLog)
        await wait_for(
            pilot, lambda: any("Soft reset on CP-1: Accepted" in str(line) for line in feed.lines)
        )
        # The server goes away: banner; it comes back: reconnect and resync.
        await ws.close()
        answering.cancel()
        await server.stop()
        banner = app.query_one("#banner", Static)
        await wait_for(pilot, lambda: banner.has_class("shown"))
        await server.start()
        await wait_for(pilot, lambda: not banner.has_class("shown"), timeout=20)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert app.role is wire.Role.ADMIN


async def test_refusal_is_shown(server: Server) -> None:
    await server.ctl("chargers.add", {"charger_id": "CP-1"})
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one("#chargers", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        app.send_command("CP-1", BY_ACTION["clear-cache"], {})
        feed = app.query_one("#feed", RichLog)
        await wait_for(pilot, lambda: any("not connected" in str(line) for line in feed.lines))


async def test_link_requests_and_errors(server: Server) -> None:
    link = ControlLink(server.socket)
    connected = asyncio.Event()

    def on_state(state: str, hello: dict[str, Any] | None) -> None:
        if hello is not None:
            connected.set()

    task = asyncio.ensure_future(link.run(lambda frame: None, on_state))
    try:
        async with asyncio.timeout(10):
            await connected.wait()
        status = await link.request("status")
        assert status["database"]["ok"] is True
        with pytest.raises(Exception, match="unknown_charger"):
            await link.request("command", {"charger_id": "NOPE", "action": "Reset", "args": {}})
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
