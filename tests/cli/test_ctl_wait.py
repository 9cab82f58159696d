"""`voltaro ctl --wait`: a script can run ctl right after starting the server."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import trio

from tests.e2e.conftest import server_settings, start_server


async def test_wait_connects_once_the_server_is_up(tmp_path: Path) -> None:
    socket_path = tmp_path / "ctl.sock"
    env = {**os.environ, "VOLTARO_CONTROL_SOCKET": str(socket_path)}
    results: list[Any] = []
    ctl_started = trio.Event()

    async def ctl() -> None:
        ctl_started.set()
        results.append(
            await trio.run_process(
                [sys.executable, "-m", "voltaro", "ctl", "--wait", "60", "status"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=env,
            )
        )

    settings = server_settings(f"sqlite:///{tmp_path / 'v.db'}", tmp_path)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ctl)
        await ctl_started.wait()
        _, stop = await start_server(nursery, settings)
        with trio.fail_after(60):
            while not results:  # noqa: ASYNC110 - the subprocess ends on its own
                await trio.sleep(0.05)
        stop.set()
    (done,) = results
    assert done.returncode == 0, done.stderr
    assert b"version" in done.stdout


async def test_without_wait_a_missing_server_is_exit_3(tmp_path: Path) -> None:
    env = {**os.environ, "VOLTARO_CONTROL_SOCKET": str(tmp_path / "none.sock")}
    done = await trio.run_process(
        [sys.executable, "-m", "voltaro", "ctl", "status"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
    )
    assert done.returncode == 3
    assert done.stderr.decode().startswith("voltaro ctl: server not running")
