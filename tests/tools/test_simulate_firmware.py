"""The simulator's Firmware Management against the real server (issue 16): it downloads
the firmware from the URL it is given and reports the status sequence (or a failure on
request), reboots with the new version, and uploads a diagnostics file."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.control_client import ControlClient
from tests.tools.test_simulate import SIMULATE
from voltaro.domain.firmware import TransferKind
from voltaro.store import chargers, files, firmware


@pytest.fixture
async def http_server(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = server_settings(database_url, tmp_path, http_enabled=True, http_port=0)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            yield server
        finally:
            stop.set()
            server.db.dispose()


def statuses(server: RunningServer, charger_id: str, kind: TransferKind) -> list[str]:
    history = server.run(firmware.transfer_history, charger_id, kind=kind, limit=50)
    return [h.status for h in reversed(history)]


async def until(check: Any, what: str) -> None:
    with trio.fail_after(20):
        while not check():  # noqa: ASYNC110 - the state is in another process
            await trio.sleep(0.1)


async def drive(server: RunningServer, tmp_path: Path, extra: list[str], body: Any) -> None:
    server.run(chargers.add_charger, "SIM-1")
    async with trio.open_nursery() as nursery:

        async def simulate() -> None:
            await trio.run_process(
                [
                    sys.executable,
                    str(SIMULATE),
                    server.url,
                    "--session-every",
                    "0",
                    "--install-seconds",
                    "0.2",
                    "--duration",
                    "15",
                    *extra,
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

        nursery.start_soon(simulate)
        client = await ControlClient.connect(server.addresses.control_socket or "")
        await until(lambda: server.run(chargers.get_charger, "SIM-1").connectors, "boot")
        image = tmp_path / "sim-fw-2.5.bin"
        image.write_bytes(b"\x7fFIRMWARE" * 5000)
        added = await client.request("firmware.add", {"path": str(image)})
        assert added["ok"], added
        await body(client)
        await client.aclose()
        nursery.cancel_scope.cancel()


async def test_simulator_updates_firmware_and_uploads_diagnostics(
    http_server: RunningServer, tmp_path: Path
) -> None:
    server = http_server

    async def body(client: ControlClient) -> None:
        sent = await client.request(
            "firmware.update", {"charger_id": "SIM-1", "file": "sim-fw-2.5.bin"}
        )
        assert sent["result"]["status"] == "Accepted", sent
        await until(
            lambda: statuses(server, "SIM-1", TransferKind.FIRMWARE)[-1:] == ["Installed"],
            "Installed",
        )
        assert statuses(server, "SIM-1", TransferKind.FIRMWARE) == [
            "Downloading",
            "Downloaded",
            "Installing",
            "Installed",
        ]
        # It rebooted into the new image: the next boot reports the version.
        await until(
            lambda: server.run(chargers.get_charger, "SIM-1").identity.firmware_version == "2.5",
            "reboot",
        )
        asked = await client.request("diagnostics.get", {"charger_id": "SIM-1"})
        assert asked["ok"], asked
        name = asked["result"]["details"]["file_name"]
        await until(
            lambda: statuses(server, "SIM-1", TransferKind.DIAGNOSTICS)[-1:] == ["Uploaded"],
            "Uploaded",
        )
        (stored,) = server.run(files.list_files, "diagnostics")
        assert (stored.name, stored.charger_id) == (name, "SIM-1")
        assert stored.size > 0

    await drive(server, tmp_path, [], body)


async def test_simulator_failure_modes(http_server: RunningServer, tmp_path: Path) -> None:
    server = http_server

    async def body(client: ControlClient) -> None:
        sent = await client.request(
            "firmware.update", {"charger_id": "SIM-1", "file": "sim-fw-2.5.bin"}
        )
        assert sent["ok"], sent
        await until(
            lambda: statuses(server, "SIM-1", TransferKind.FIRMWARE)[-1:] == ["DownloadFailed"],
            "DownloadFailed",
        )
        await client.request("diagnostics.get", {"charger_id": "SIM-1"})
        await until(
            lambda: statuses(server, "SIM-1", TransferKind.DIAGNOSTICS)[-1:] == ["UploadFailed"],
            "UploadFailed",
        )
        assert server.run(files.list_files, "diagnostics") == []

    await drive(server, tmp_path, ["--firmware-fail", "download", "--diagnostics-fail"], body)
