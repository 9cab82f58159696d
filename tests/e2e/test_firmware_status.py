"""FirmwareStatusNotification and DiagnosticsStatusNotification (OCPP 1.6 §4.4, §4.5):
answered, stored as history per charger, published live, shown by chargers.show and
the HTTP API. OCTT TC_044_x/TC_045_x send these after UpdateFirmware/GetDiagnostics."""

from __future__ import annotations

import httpx

from tests.api.conftest import READ, api, client
from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from voltaro.domain.firmware import DiagnosticsStatus, FirmwareStatus, TransferKind
from voltaro.store import chargers, firmware

__all__ = ["api"]


async def booted(server: RunningServer, charger_id: str = "CP-1") -> RawCharger:
    server.run(chargers.add_charger, charger_id)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    assert (await cp.boot())["status"] == "Accepted"
    return cp


async def test_every_status_is_answered_stored_and_published(server: RunningServer) -> None:
    cp = await booted(server)
    assert server.addresses.control_socket is not None
    control = await ControlClient.connect(server.addresses.control_socket)
    assert (await control.request("subscribe", {"frames": False}))["ok"]
    for status in FirmwareStatus:
        assert await cp.call("FirmwareStatusNotification", {"status": status.value}) == {}
    for status in DiagnosticsStatus:
        assert await cp.call("DiagnosticsStatusNotification", {"status": status.value}) == {}
    history = server.run(firmware.transfer_history, "CP-1", limit=100)
    assert [(h.kind, h.status) for h in reversed(history)] == [
        *((TransferKind.FIRMWARE, s.value) for s in FirmwareStatus),
        *((TransferKind.DIAGNOSTICS, s.value) for s in DiagnosticsStatus),
    ]
    shown = await control.request("chargers.show", {"charger_id": "CP-1"})
    view = shown["result"]
    assert view["firmware_status"]["status"] == "Installed"
    assert view["diagnostics_status"]["status"] == "Uploading"
    assert view["transfer_history"][0] == {
        "kind": "diagnostics",
        "status": "Uploading",
        "at": view["diagnostics_status"]["at"],
    }
    wanted = ("firmware.status", "diagnostics.status")
    # Events that arrived while chargers.show was answered were kept by the client.
    seen = [(e["event"], e["data"]["status"]) for e in control.events if e.get("event") in wanted]
    while len(seen) < len(FirmwareStatus) + len(DiagnosticsStatus):
        frame = await control.read()
        if frame.get("type") == "event" and frame["event"] in wanted:
            seen.append((frame["event"], frame["data"]["status"]))
    assert seen == [
        *(("firmware.status", s.value) for s in FirmwareStatus),
        *(("diagnostics.status", s.value) for s in DiagnosticsStatus),
    ]
    await control.aclose()
    await cp.close()


async def test_unknown_status_is_a_callerror_and_stores_nothing(server: RunningServer) -> None:
    cp = await booted(server)
    answer = await cp.call("FirmwareStatusNotification", {"status": "Exploded"})
    assert answer[0] == 4, answer
    missing = await cp.call("DiagnosticsStatusNotification", {})
    assert missing[0] == 4, missing
    assert server.run(firmware.transfer_history, "CP-1") == []
    # The connection goes on: a valid report after the bad ones is answered.
    assert await cp.call("FirmwareStatusNotification", {"status": "Idle"}) == {}
    await cp.close()


async def test_history_is_per_charger(server: RunningServer) -> None:
    one = await booted(server, "CP-1")
    two = await booted(server, "CP-2")
    assert await one.call("FirmwareStatusNotification", {"status": "Downloading"}) == {}
    assert await two.call("FirmwareStatusNotification", {"status": "DownloadFailed"}) == {}
    latest_one = server.run(firmware.latest_transfer_status, "CP-1")
    latest_two = server.run(firmware.latest_transfer_status, "CP-2")
    assert latest_one[TransferKind.FIRMWARE].status == "Downloading"
    assert latest_two[TransferKind.FIRMWARE].status == "DownloadFailed"
    assert TransferKind.DIAGNOSTICS not in latest_one
    await one.close()
    await two.close()


async def test_http_api_shows_the_reports(api: tuple[RunningServer, str]) -> None:
    server, base = api
    cp = await booted(server)
    assert await cp.call("FirmwareStatusNotification", {"status": "Downloaded"}) == {}
    async with client(base, READ) as reader:
        response: httpx.Response = await reader.get("/charge_points/CP-1/firmware")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["firmware_status"]["status"] == "Downloaded"
        assert body["diagnostics_status"] is None
        assert [h["status"] for h in body["transfer_history"]] == ["Downloaded"]
        assert (await reader.get("/charge_points/NOPE/firmware")).status_code == 404
    await cp.close()
