"""A firmware campaign across chargers (issue 16): max-parallel, progress per charger
from FirmwareStatusNotification, failures, finish; through the control socket and ctl."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.test_control import online
from tests.e2e.test_ctl import ctl
from tests.e2e.test_file_transfers import add_firmware, control, image
from voltaro.store import commands, firmware


@pytest.fixture
async def campaign_server(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = server_settings(
        database_url, tmp_path, http_enabled=True, http_port=0, campaign_poll=0.05
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            yield server
        finally:
            stop.set()
            server.db.dispose()


async def wait_for(server: RunningServer, campaign_id: int, check: Any) -> Any:
    with trio.fail_after(15):
        while True:
            campaign = server.run(firmware.get_campaign, campaign_id)
            if check(campaign):
                return campaign
            await trio.sleep(0.05)


def states(campaign: Any) -> dict[str, str]:
    return {t.charger_id: t.state.value for t in campaign.targets}


async def test_campaign_runs_max_parallel_and_tracks_progress(
    campaign_server: RunningServer, tmp_path: Path
) -> None:
    server = campaign_server
    a1, a2, a3 = [await online(server, f"ACME-{n}") for n in (1, 2, 3)]
    other = await online(server, "OTHER-1")
    client = await control(server)
    path, _ = image(tmp_path, 4000, "fw-9.bin")
    await add_firmware(client, path)
    created = await client.request(
        "firmware.campaign", {"pattern": "ACME-*", "file": "fw-9.bin", "max_parallel": 2}
    )
    assert created["ok"], created
    campaign_id = created["result"]["id"]
    assert [t["charger_id"] for t in created["result"]["targets"]] == [
        "ACME-1",
        "ACME-2",
        "ACME-3",
    ]
    # Two at a time, in id order: ACME-1 and ACME-2 get UpdateFirmware, ACME-3 waits.
    call1 = await a1.next_call()
    call2 = await a2.next_call()
    assert call1[2] == call2[2] == "UpdateFirmware"
    assert call1[3]["location"] != call2[3]["location"]  # one URL per charger
    await a1.answer(call1, {})
    await a2.answer(call2, {})
    await a3.expect_silence(0.5)
    await other.expect_silence(0.1)
    for status in ("Downloading", "Downloaded", "Installing", "Installed"):
        assert await a1.call("FirmwareStatusNotification", {"status": status}) == {}
    assert await a2.call("FirmwareStatusNotification", {"status": "Downloading"}) == {}
    campaign = await wait_for(server, campaign_id, lambda c: states(c)["ACME-2"] == "Downloading")
    assert states(campaign)["ACME-1"] == "Installed"
    # ACME-1's slot is free: ACME-3 gets its UpdateFirmware and refuses it.
    call3 = await a3.next_call()
    assert call3[2] == "UpdateFirmware"
    await a3.answer_error(call3, "NotSupported", "no firmware profile")
    assert await a2.call("FirmwareStatusNotification", {"status": "DownloadFailed"}) == {}
    campaign = await wait_for(server, campaign_id, lambda c: c.finished_at is not None)
    assert states(campaign) == {
        "ACME-1": "Installed",
        "ACME-2": "DownloadFailed",
        "ACME-3": "send_failed",
    }
    detail = {t.charger_id: t.detail for t in campaign.targets}["ACME-3"]
    assert detail is not None
    assert "call_error" in detail
    audit = server.run(commands.list_commands, "ACME-1")[0]
    assert audit["actor"].startswith(f"campaign#{campaign_id}:")
    shown = await ctl(server, "firmware", "campaigns", str(campaign_id))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert "finished" in text
    assert "DownloadFailed" in text
    listed = await ctl(server, "--json", "firmware", "campaigns")
    (row,) = json.loads(listed.stdout)
    assert row["counts"] == {"Installed": 1, "DownloadFailed": 1, "send_failed": 1}
    for cp in (a1, a2, a3, other):
        await cp.close()
    await client.aclose()


async def test_campaign_refusals(campaign_server: RunningServer) -> None:
    server = campaign_server
    await online(server, "ACME-1")
    client = await control(server)
    cases = [
        ({"pattern": "NOPE-*", "location": "http://x.example/a.bin"}, "no registered charger"),
        ({"pattern": "ACME-*"}, "either a location"),
        ({"pattern": "ACME-*", "file": "missing.bin"}, "no firmware"),
        ({"pattern": "ACME-*", "location": "file:///x"}, "location must be"),
        ({"pattern": "ACME-*", "location": "http://x/a", "max_parallel": 0}, "max-parallel"),
    ]
    for args, reason in cases:
        refused = await client.request("firmware.campaign", args)
        assert refused["error"]["code"] == "bad_arguments", args
        assert reason in refused["error"]["message"], refused
    assert server.run(firmware.list_campaigns) == []
    bad = await ctl(server, "firmware", "update", "--location", "http://x/a")
    assert bad.returncode == 2
    assert b"--chargers" in bad.stderr
    await client.aclose()


async def test_ctl_campaign_with_an_operator_location(campaign_server: RunningServer) -> None:
    server = campaign_server
    cp = await online(server, "SITE-1")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            results.append(
                await ctl(
                    server,
                    "--json",
                    "firmware",
                    "update",
                    "--chargers",
                    "SITE-*",
                    "--location",
                    "ftp://files.example/fw.bin",
                    "--max-parallel",
                    "1",
                )
            )

        nursery.start_soon(run)
        call = await cp.next_call(timeout=20)
        assert call[3]["location"] == "ftp://files.example/fw.bin"
        await cp.answer(call, {})
    assert results[0].returncode == 0, results[0].stderr
    campaign_id = json.loads(results[0].stdout)["id"]
    await wait_for(server, campaign_id, lambda c: states(c)["SITE-1"] == "sent")
    await cp.close()


async def test_ctl_cancel_and_comma_separated_patterns(campaign_server: RunningServer) -> None:
    server = campaign_server
    east = await online(server, "EAST-1")
    await online(server, "WEST-1")
    await online(server, "NORTH-1")
    made = await ctl(
        server,
        "--json",
        "firmware",
        "update",
        "--chargers",
        "EAST-*, WEST-*",
        "--location",
        "http://files.example/fw.bin",
        "--max-parallel",
        "1",
        "--at",
        "2099-01-01T00:00:00Z",  # not before then: nothing is sent meanwhile
    )
    assert made.returncode == 0, made.stderr
    campaign = json.loads(made.stdout)
    assert [t["charger_id"] for t in campaign["targets"]] == ["EAST-1", "WEST-1"]
    await east.expect_silence(0.3)
    cancelled = await ctl(server, "firmware", "cancel", str(campaign["id"]))
    assert cancelled.returncode == 0, cancelled.stderr
    text = cancelled.stdout.decode()
    assert "cancelled" in text
    finished = await wait_for(server, campaign["id"], lambda c: c.finished_at is not None)
    assert states(finished) == {"EAST-1": "cancelled", "WEST-1": "cancelled"}
    again = await ctl(server, "firmware", "cancel", str(campaign["id"]))
    assert again.returncode != 0
    assert b"already finished" in again.stderr
    unknown = await ctl(server, "firmware", "cancel", "999")
    assert b"unknown campaign 999" in unknown.stderr
    await east.close()
