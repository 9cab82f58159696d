"""The simulator's 1.6 security extension transfers against the real server (issue 15):
ExtendedTriggerMessage, GetLog (it uploads a generated log, or fails as asked) and
SignedUpdateFirmware (it downloads, checks the signature with the signing certificate,
reports the SignedFirmwareStatusNotification sequence, InvalidSignature on a bad one)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.control_client import ControlClient
from tests.support.signing import make_signer, sign
from tests.tools.test_simulate_firmware import drive, http_server, statuses, until
from voltaro.domain.firmware import TransferKind
from voltaro.service.firmware import LOG_KINDS
from voltaro.store import chargers, files, firmware

__all__ = ["http_server"]

UPLOAD_LIMIT = 32 * 1024


@pytest.fixture
async def small_uploads(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = server_settings(
        database_url, tmp_path, http_enabled=True, http_port=0, upload_max_bytes=UPLOAD_LIMIT
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            yield server
        finally:
            stop.set()
            server.db.dispose()


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A plain HTTP server for firmware Voltaro does not serve (and cannot check)."""
    root = tmp_path / "elsewhere"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def logs(server: RunningServer) -> list[files.StoredFile]:
    return server.run(files.list_files_of_kinds, LOG_KINDS)


async def test_simulator_extended_trigger_get_log_and_signed_update(
    http_server: RunningServer, tmp_path: Path, elsewhere: tuple[Path, str]
) -> None:
    server = http_server
    signer = make_signer(tmp_path / "signing", "ec")
    root, base = elsewhere

    async def body(client: ControlClient) -> None:
        trigger = await client.command("SIM-1", "trigger-ext", requested_message="Heartbeat")
        assert trigger["result"]["status"] == "Accepted", trigger
        asked = await client.request("logs.get", {"charger_id": "SIM-1"})
        assert asked["result"]["status"] == "Accepted", asked
        request_id = asked["result"]["details"]["request_id"]
        await until(
            lambda: statuses(server, "SIM-1", TransferKind.LOG)[-1:] == ["Uploaded"], "Uploaded"
        )
        history = server.run(firmware_history, "SIM-1", TransferKind.LOG)
        assert history == [("Uploading", request_id), ("Uploaded", request_id)]
        (stored,) = logs(server)
        assert (stored.kind, stored.name) == ("securitylog", asked["result"]["details"]["filename"])
        content = (Path(server.settings.data_dir) / stored.path).read_text()
        assert "StartupOfTheDevice" in content
        # ExtendedTriggerMessage LogStatusNotification: the charger reports its state again.
        again = await client.command(
            "SIM-1", "trigger-ext", requested_message="LogStatusNotification"
        )
        assert again["result"]["status"] == "Accepted"
        await until(lambda: len(statuses(server, "SIM-1", TransferKind.LOG)) == 3, "trigger")
        # A bad signature of an image elsewhere: downloaded, then InvalidSignature.
        image = b"\x7fSIGNED" * 4000
        (root / "sim-fw-3.0.bin").write_bytes(image)
        bad = await client.request(
            "firmware.update_signed",
            {
                "charger_id": "SIM-1",
                "location": f"{base}/sim-fw-3.0.bin",
                "signing_certificate": signer.cert_pem,
                "signature": sign(image + b"tampered", signer.key_pem),
            },
        )
        assert bad["result"]["status"] == "Accepted", bad
        await until(
            lambda: (
                statuses(server, "SIM-1", TransferKind.SIGNED_FIRMWARE)[-1:] == ["InvalidSignature"]
            ),
            "InvalidSignature",
        )
        assert statuses(server, "SIM-1", TransferKind.SIGNED_FIRMWARE) == [
            "Downloading",
            "Downloaded",
            "InvalidSignature",
        ]
        # A served image signed by Voltaro: verified, installed, rebooted into it.
        good = await client.request(
            "firmware.update_signed",
            {
                "charger_id": "SIM-1",
                "file": "sim-fw-2.5.bin",
                "signing_certificate": signer.cert_pem,
                "private_key": signer.key_pem,
            },
        )
        assert good["result"]["status"] == "Accepted", good
        good_id = good["result"]["details"]["request_id"]
        await until(
            lambda: statuses(server, "SIM-1", TransferKind.SIGNED_FIRMWARE)[-1:] == ["Installed"],
            "Installed",
        )
        assert server.run(firmware_history, "SIM-1", TransferKind.SIGNED_FIRMWARE)[3:] == [
            (status, good_id)
            for status in (
                "Downloading",
                "Downloaded",
                "SignatureVerified",
                "Installing",
                "InstallRebooting",
                "Installed",
            )
        ]
        await until(
            lambda: server.run(chargers.get_charger, "SIM-1").identity.firmware_version == "2.5",
            "reboot",
        )

    await drive(server, tmp_path, [], body)


async def test_simulator_log_too_big_fails_the_upload(
    small_uploads: RunningServer, tmp_path: Path
) -> None:
    server = small_uploads

    async def body(client: ControlClient) -> None:
        asked = await client.request(
            "logs.get", {"charger_id": "SIM-1", "log_type": "DiagnosticsLog"}
        )
        assert asked["result"]["status"] == "Accepted", asked
        await until(
            lambda: statuses(server, "SIM-1", TransferKind.LOG)[-1:] == ["UploadFailure"],
            "UploadFailure",
        )
        assert statuses(server, "SIM-1", TransferKind.LOG) == ["Uploading", "UploadFailure"]
        assert logs(server) == []

    await drive(server, tmp_path, ["--log-bytes", str(UPLOAD_LIMIT * 2)], body)


async def test_simulator_log_failure_modes(http_server: RunningServer, tmp_path: Path) -> None:
    server = http_server

    async def body(client: ControlClient) -> None:
        asked = await client.request("logs.get", {"charger_id": "SIM-1"})
        assert asked["result"]["status"] == "Accepted", asked
        await until(
            lambda: statuses(server, "SIM-1", TransferKind.LOG)[-1:] == ["PermissionDenied"],
            "PermissionDenied",
        )
        assert logs(server) == []

    await drive(server, tmp_path, ["--log-fail", "permission"], body)


def firmware_history(s: Any, charger_id: str, kind: TransferKind) -> list[tuple[str, int | None]]:
    rows = firmware.transfer_history(s, charger_id, kind=kind, limit=50)
    return [(r.status, r.request_id) for r in reversed(rows)]
