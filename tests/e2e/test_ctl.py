"""`voltaro ctl` as a subprocess against a running server, both output modes."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import trio

from tests.e2e.conftest import RunningServer
from tests.support.charger import RawCharger
from voltaro.store import chargers


async def ctl(server: RunningServer | None, *args: str, socket: str | None = None) -> Any:
    path = socket or (server.addresses.control_socket if server else "") or ""
    env = {**os.environ, "VOLTARO_CONTROL_SOCKET": path}
    return await trio.run_process(
        [sys.executable, "-m", "voltaro", "ctl", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
    )


async def test_common_paths_human_and_json(server: RunningServer) -> None:
    added = await ctl(server, "chargers", "add", "CP-1", "--password", "s3cret-s3cret-16")
    assert added.returncode == 0, added.stderr
    assert b"CP-1" in added.stdout
    listed = await ctl(server, "--json", "chargers", "list")
    assert listed.returncode == 0
    (charger,) = json.loads(listed.stdout)
    assert charger["has_password"] is True
    human = await ctl(server, "chargers", "list")
    assert human.stdout.splitlines()[0].split()[:3] == [b"ID", b"STATE", b"REGISTRATION"]
    assert (await ctl(server, "tags", "add", "04AB", "--status", "Blocked")).returncode == 0
    tags = json.loads((await ctl(server, "--json", "tags", "list")).stdout)
    assert tags == [
        {
            "id_tag": "04AB",
            "status": "Blocked",
            "expiry_date": None,
            "parent_id_tag": None,
            "groups": [],  # on every charger's local list
        }
    ]
    status = json.loads((await ctl(server, "--json", "status")).stdout)
    assert status["chargers"]["total"] == 1
    assert (await ctl(server, "transactions", "list", "--active")).returncode == 0


async def test_command_rejected_is_still_exit_zero(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    async with trio.open_nursery() as nursery:
        results: list[Any] = []

        async def run() -> None:
            results.append(await ctl(server, "--json", "unlock", "CP-1", "1"))

        nursery.start_soon(run)
        call = await cp.next_call()
        await cp.answer(call, {"status": "UnlockFailed"})
    assert results[0].returncode == 0
    assert json.loads(results[0].stdout) == {"action": "UnlockConnector", "status": "UnlockFailed"}
    async with trio.open_nursery() as nursery:
        results.clear()

        async def run_error() -> None:
            results.append(await ctl(server, "clear-cache", "CP-1"))

        nursery.start_soon(run_error)
        call = await cp.next_call()
        await cp.answer_error(call, "InternalError")
    assert results[0].returncode == 8
    timeout = await ctl(server, "get-config", "CP-1")  # the charger never answers
    assert timeout.returncode == 7
    assert b"timeout" in timeout.stderr
    await cp.close()


async def test_error_exits(server: RunningServer) -> None:
    bad = await ctl(server, "unlock", "CP-1", "one")
    assert bad.returncode == 2
    assert bad.stderr.startswith(b"voltaro ctl: ")
    assert len(bad.stderr.splitlines()) == 1
    server.run(chargers.add_charger, "CP-OFF")
    assert (await ctl(server, "reset", "NOPE")).returncode == 5
    offline = await ctl(server, "reset", "CP-OFF")
    assert offline.returncode == 6
    assert b"not connected" in offline.stderr
    assert (await ctl(server, "chargers", "add", "CP-OFF")).returncode == 9
    assert (await ctl(server, "remote-start", "CP-OFF", "T" * 21)).returncode == 2
    missing = await ctl(None, "status", socket="/nonexistent/voltaro.sock")
    assert missing.returncode == 3
    assert b"server not running" in missing.stderr
