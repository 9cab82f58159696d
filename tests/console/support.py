"""Helpers for console tests: a real `voltaro serve` subprocess, an independent raw-frame
charger (websockets, asyncio) and polling under a deadline set by the caller."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import websockets
from rich.console import Console

from voltaro.control import wire

S = TypeVar("S")

# How long a console may take to show a change it was told of. The defects these tests
# catch took 60 s (a frozen link reader) or forever (a row never redrawn); the console
# shows a change in ~0.1 s even with both cores busy, but once, in CI on a loaded
# machine, one step took over 1 s (stop-CI of session 8, test_added_charger_shows_...).
# 5 s separates "prompt" from those defects without failing on a machine's stall.
# Tests bounded by PROMPT turn the console's age tick off (conftest ``no_age_tick``): every
# AGES_EVERY (5 s) it marks every row for redrawing, which would hide a row that a
# change failed to redraw (found by review: the off-screen row test passed with its
# redraw removed).
PROMPT = 5.0



class Server:
    """`python -m voltaro serve` on loopback with its own control socket."""

    def __init__(self, tmp: Path, database_url: str | None = None) -> None:
        self.tmp = tmp
        self.socket = str(tmp / "c.sock")
        self.database_url = database_url or f"sqlite:///{tmp / 'v.db'}"
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self._drain: asyncio.Future[None] | None = None
        # New chargers show up as Pending for the operator to accept (docs/operations.md).
        self.env = {"VOLTARO_LOG_LEVEL": "INFO", "VOLTARO_UNKNOWN_CHARGERS": "pending"}

    async def start(self) -> None:
        env = {**os.environ, **self.env}
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
            self.database_url,
            "--control-socket",
            self.socket,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        stderr = self.process.stderr
        assert stderr is not None
        async with asyncio.timeout(30):
            while True:
                line = (await stderr.readline()).decode()
                assert line, "server exited"
                if "listening for OCPP" in line:
                    self.port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
                if "control socket at" in line:
                    break

        async def drain() -> None:  # keep reading so the server never blocks on its log
            while await stderr.readline():
                pass

        self._drain = asyncio.ensure_future(drain())

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain

    async def ctl(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """One request on a fresh control connection; the response frame."""
        reader, writer = await asyncio.open_unix_connection(self.socket)
        try:
            await reader.readline()
            writer.write(wire.encode(wire.request(1, op, args)))
            await writer.drain()
            while True:
                frame = json.loads(await reader.readline())
                if frame.get("type") == "response":
                    return frame
        finally:
            writer.close()
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def running_server(tmp: Path, database_url: str | None = None) -> AsyncIterator[Server]:
    server = Server(tmp, database_url)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def screen_text(app: Any) -> str:
    """What the terminal shows now, as plain text, one line per row: the composited
    screen, rendered as Textual's own screenshot does (App.export_screenshot)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text(styles=False)


async def until(pilot: Any, predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` between Textual refreshes; the caller bounds it with a deadline
    (``async with asyncio.timeout(...)``)."""
    while not predicate():
        await pilot.pause(0.02)


async def press_for_screen(
    pilot: Any,
    app: Any,
    key: str,
    kind: type[S],
    ready: Callable[[S], bool] | None = None,
) -> S:
    """Press ``key`` and wait (5 s) for a ``kind`` screen on top; then, if given, for
    ``ready`` of it (10 s: its first answer from the server). The screen."""
    await pilot.press(key)
    async with asyncio.timeout(5):
        await until(pilot, lambda: isinstance(app.screen, kind))
    screen = app.screen
    assert isinstance(screen, kind)
    if ready is not None:
        async with asyncio.timeout(10):
            await until(pilot, lambda: ready(screen))
    return screen


class RawCharger:
    """An independent charger speaking raw OCPP-J frames; answers the server's CALLs."""

    def __init__(self, ws: Any, answers: dict[str, dict[str, Any]]) -> None:
        self.ws = ws
        self.answers = answers
        self.calls: list[list[Any]] = []
        self._replies: dict[str, asyncio.Future[Any]] = {}
        self._n = 0
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(
        cls, port: int, charger_id: str, answers: dict[str, dict[str, Any]] | None = None
    ) -> RawCharger:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ocpp/{charger_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        )
        return cls(ws, answers or {})

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in self.ws:
                frame = json.loads(text)
                if frame[0] == 2:
                    self.calls.append(frame)
                    await self.ws.send(json.dumps([3, frame[1], self.answers.get(frame[2], {})]))
                else:
                    future = self._replies.pop(frame[1], None)
                    if future is not None and not future.done():
                        future.set_result(frame)

    async def call(self, action: str, payload: dict[str, Any]) -> Any:
        self._n += 1
        uid = f"c{self._n}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[uid] = future
        await self.ws.send(json.dumps([2, uid, action, payload]))
        async with asyncio.timeout(10):
            frame = await future
        return frame[2] if frame[0] == 3 else frame

    async def boot(self, vendor: str = "Acme", model: str = "X1") -> Any:
        return await self.call(
            "BootNotification", {"chargePointVendor": vendor, "chargePointModel": model}
        )

    async def status(
        self, connector: int, status: str, error: str = "NoError", **extra: Any
    ) -> Any:
        return await self.call(
            "StatusNotification",
            {"connectorId": connector, "errorCode": error, "status": status, **extra},
        )

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
