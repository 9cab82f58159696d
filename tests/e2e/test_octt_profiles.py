"""OCTT 1.6 `_CSMS` cases of the Firmware Management and Remote Trigger profiles that
are whole sequences (the single messages are tested in test_firmware_commands.py and
test_firmware_status.py): the operator's command, the charger's answer, then the status
notifications the charger sends, each answered, stored and shown (docs/conformance.md).
Against an independent raw-frame charger."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.test_control import command_answered, control, online
from voltaro.store import chargers, commands, firmware


@pytest.mark.parametrize(
    ("case", "statuses"),
    [
        ("TC_044_1", ["Downloading", "Downloaded", "Installing", "Installed"]),
        ("TC_044_2", ["Downloading", "DownloadFailed"]),
        ("TC_044_3", ["Downloading", "Downloaded", "Installing", "InstallationFailed"]),
    ],
)
async def test_firmware_update_sequences(
    server: RunningServer, case: str, statuses: list[str]
) -> None:
    """TC_044_1 (download and install), TC_044_2 (download failed), TC_044_3
    (installation failed): UpdateFirmware Accepted, then each FirmwareStatusNotification
    answered and kept in order; the last one is the charger's firmware status."""
    cp = await online(server)
    client = await control(server)
    call, response = await command_answered(
        client, cp, "update-firmware", {}, location="https://fw.example.com/acme-2.1.bin"
    )
    assert call[2] == "UpdateFirmware"
    assert response["result"]["status"] == "Accepted", response
    for status in statuses:
        assert await cp.call("FirmwareStatusNotification", {"status": status}) == {}
    if case == "TC_044_1":  # the charger reboots into the new firmware
        booted = await cp.call(
            "BootNotification",
            {"chargePointVendor": "Acme", "chargePointModel": "X1", "firmwareVersion": "2.1"},
        )
        assert booted["status"] == "Accepted"
        identity = server.run(chargers.get_charger, "CP-1").identity
        assert identity is not None
        assert identity.firmware_version == "2.1"
    history = server.run(firmware.transfer_history, "CP-1", limit=20)
    assert [h.status for h in reversed(history)] == statuses
    shown = (await client.request("chargers.show", {"charger_id": "CP-1"}))["result"]
    assert shown["firmware_status"]["status"] == statuses[-1]
    await client.aclose()
    await cp.close()


async def test_tc_045_1_get_diagnostics_then_uploaded(server: RunningServer) -> None:
    """TC_045_1: GetDiagnostics answered with a file name, then Uploading and Uploaded."""
    cp = await online(server)
    client = await control(server)
    call, response = await command_answered(
        client,
        cp,
        "get-diagnostics",
        {"fileName": "diag-CP-1.tgz"},
        location="ftp://logs.example.com/in/",
    )
    assert call[2:] == ["GetDiagnostics", {"location": "ftp://logs.example.com/in/"}]
    assert response["result"]["details"] == {"file_name": "diag-CP-1.tgz"}
    for status in ("Uploading", "Uploaded"):
        assert await cp.call("DiagnosticsStatusNotification", {"status": status}) == {}
    shown = (await client.request("chargers.show", {"charger_id": "CP-1"}))["result"]
    assert shown["diagnostics_status"]["status"] == "Uploaded"
    (audit,) = server.run(commands.list_commands, "CP-1")
    assert (audit["action"], audit["status"]) == ("GetDiagnostics", "Accepted")
    await client.aclose()
    await cp.close()


TRIGGERED: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("Heartbeat", {}, "Heartbeat", {}),
    ("FirmwareStatusNotification", {}, "FirmwareStatusNotification", {"status": "Idle"}),
    ("DiagnosticsStatusNotification", {}, "DiagnosticsStatusNotification", {"status": "Idle"}),
    (
        "StatusNotification",
        {"connector_id": 1},
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    ),
    (
        "MeterValues",
        {"connector_id": 1},
        "MeterValues",
        {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": "2026-01-01T00:00:00Z",
                    "sampledValue": [{"value": "1234", "context": "Trigger"}],
                }
            ],
        },
    ),
]


@pytest.mark.parametrize(("requested", "args", "action", "payload"), TRIGGERED)
async def test_tc_054_trigger_message(
    server: RunningServer, requested: str, args: dict[str, Any], action: str, payload: Any
) -> None:
    """TC_054: TriggerMessage (§5.17), Accepted; the charger then sends that message and
    gets its answer. BootNotification is left out: it is refused to an Accepted charger
    before sending (errata 3.40; test_control.py::test_pending_and_boot_trigger_rules)."""
    cp = await online(server)
    client = await control(server)
    call, response = await command_answered(
        client, cp, "trigger", {"status": "Accepted"}, requested_message=requested, **args
    )
    expected = {"requestedMessage": requested}
    if "connector_id" in args:
        expected["connectorId"] = args["connector_id"]
    assert call[2:] == ["TriggerMessage", expected]
    assert response["result"]["status"] == "Accepted"
    answer = await cp.call(action, payload)
    assert isinstance(answer, dict), answer  # a CALLRESULT, not a CALLERROR frame
    if action == "Heartbeat":
        assert answer["currentTime"].endswith("Z")
    await client.aclose()
    await cp.close()
