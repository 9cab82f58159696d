"""Issue 11: what the server refused, shed or failed is in the console's site bar, live
(through the ``server.health`` event of the wire format), and in ``voltaro ctl status``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import websockets
from textual.widgets import Static

from console.app import ConsoleApp
from tests.console.support import running_server, until

pytestmark = pytest.mark.asyncio


async def refused_handshake(port: int, path: str) -> int:
    """Try an upgrade the server must refuse; the HTTP status it answered."""
    try:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ocpp/{path}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        )
    except websockets.InvalidStatus as exc:
        return int(exc.response.status_code)
    await ws.close()
    raise AssertionError(f"{path} was accepted")


async def test_refused_handshakes_show_in_the_site_bar_and_ctl_status(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        app = ConsoleApp(server.socket)
        async with app.run_test(size=(100, 30)) as pilot:
            bar = app.query_one("#sitebar", Static)
            async with asyncio.timeout(10):
                await until(pilot, lambda: not app.stale and "db ok" in app.sub_title)
            assert "protection" not in str(bar.render())  # nothing refused yet: no line
            # A look-alike identity (trailing space) and a wrong subprotocol.
            assert await refused_handshake(server.port, "CP-1%20") == 400
            assert await refused_handshake(server.port, "CP%0A1") == 400
            async with asyncio.timeout(10):
                await until(pilot, lambda: "protection: 2 handshakes refused" in str(bar.render()))
        ctl = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voltaro",
            "ctl",
            "--socket",
            server.socket,
            "status",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await ctl.communicate()
        assert ctl.returncode == 0
        lines = out.decode().splitlines()
        assert lines[0] == "! 2 charger handshakes refused (bad_identity 2)", lines
        at = lines.index("protection (counts since the server started):")
        counters = [line.split() for line in lines[at + 1 :]]
        assert ["handshakes_refused.bad_identity", "2"] in counters
        assert ["frame_log.dropped_rate", "0"] in counters
