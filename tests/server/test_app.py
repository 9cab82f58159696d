"""The composition root and the `voltaro serve` process, end to end over loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import trio
from listener_support import close_code, open_charger

from voltaro import app
from voltaro.settings import Settings, UnknownChargers

LISTENING = re.compile(r"listening for OCPP 1\.6J chargers on ws://127\.0\.0\.1:(\d+)/ocpp/")


def _serve_command(tmp_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "voltaro",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--http-port",
        "0",
        "--database-url",
        f"sqlite:///{tmp_path / 'voltaro.db'}",
        "--control-socket",
        str(tmp_path / "control.sock"),
    ]


async def _read_until_listening(stderr: trio.abc.ReceiveStream, seen: list[str]) -> int:
    buffer = b""
    while True:
        chunk = await stderr.receive_some(4096)
        assert chunk, "server exited before listening:\n" + buffer.decode(errors="replace")
        buffer += chunk
        text = buffer.decode(errors="replace")
        seen[:] = [text]
        match = LISTENING.search(text)
        if match:
            return int(match.group(1))


async def test_serve_process_stops_on_sigterm_closing_chargers_with_1001(tmp_path: Path) -> None:
    # A long grace: a shutdown that waited it out instead of for the closes would take 30 s.
    env = {**os.environ, "VOLTARO_UNKNOWN_CHARGERS": "accept", "VOLTARO_SHUTDOWN_GRACE": "30"}
    process = await trio.lowlevel.open_process(
        _serve_command(tmp_path), stderr=subprocess.PIPE, env=env
    )
    seen: list[str] = []
    try:
        assert process.stderr is not None
        with trio.fail_after(30):
            port = await _read_until_listening(process.stderr, seen)
        base = f"ws://127.0.0.1:{port}/ocpp/"
        async with await open_charger(base + "SIGTERM-1") as charger:
            assert charger.client is not None
            process.send_signal(signal.SIGTERM)
            started = trio.current_time()
            assert await close_code(charger.client, timeout=15) == 1001
            with trio.fail_after(15):
                code = await process.wait()
            assert code == 0, seen
            took = trio.current_time() - started
            # Closed and exited in ~0.5 s; waiting out the grace would take 30 s.
            assert took < 15, took
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_process_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = await trio.lowlevel.open_process(_serve_command(tmp_path), stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        with trio.fail_after(30):
            await _read_until_listening(process.stderr, [])
        process.send_signal(signal.SIGINT)
        with trio.fail_after(5):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_app_run_reports_bound_port_and_serves_chargers(tmp_path: Path) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        http_port=0,
        unknown_chargers=UnknownChargers.ACCEPT,
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        control_socket=str(tmp_path / "control.sock"),
        shutdown_grace=2,
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        bound: app.BoundAddresses = await nursery.start(
            lambda **kw: app.run(settings, stop=stop, **kw)
        )
        assert bound.ocpp_port > 0
        async with await open_charger(f"ws://127.0.0.1:{bound.ocpp_port}/ocpp/APP-1") as charger:
            assert charger.client is not None
            assert charger.client.subprotocol == "ocpp1.6"
            stop.set()
            assert await close_code(charger.client) == 1001
