"""Firmware campaigns over the HTTP API (issue 16): create (pattern or list, file or
location), list, show with each charger's progress, cancel; the scopes; with an HTTP
client against a running server and independent chargers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.api.conftest import ADMIN, OPERATE, READ, client, running_api
from tests.e2e.conftest import RunningServer
from tests.e2e.test_control import online
from tests.e2e.test_file_transfers import add_firmware, control, image
from voltaro.store import commands, firmware


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[RunningServer, str]]:
    async with running_api(database_url, tmp_path, campaign_poll=0.05) as running:
        yield running


async def shown(base: str, campaign_id: int, check: Any) -> dict[str, Any]:
    """GET the campaign until ``check`` holds (the runner works in the background)."""
    async with client(base, READ) as http:
        with trio.fail_after(15):
            while True:
                response = await http.get(f"/firmware/campaigns/{campaign_id}")
                assert response.status_code == 200, response.text
                body: dict[str, Any] = response.json()
                if check(body):
                    return body
                await trio.sleep(0.05)


def states(body: dict[str, Any]) -> dict[str, str]:
    return {t["charger_id"]: t["state"] for t in body["targets"]}


async def test_campaign_created_followed_and_cancelled_over_http(
    api: tuple[RunningServer, str], tmp_path: Path
) -> None:
    server, base = api
    s1, s2, s3 = [await online(server, f"SITE-{n}") for n in (1, 2, 3)]
    ctl_client = await control(server)
    path, _ = image(tmp_path, 3000, "site-fw-3.bin")
    await add_firmware(ctl_client, path)
    body = {"charge_point_pattern": "SITE-*", "file": "site-fw-3.bin", "max_parallel": 1}
    async with client(base, READ) as reader, client(base, OPERATE) as ops:
        assert (await reader.post("/firmware/campaigns", json=body)).status_code == 403
        refused = await ops.post("/firmware/campaigns", json=body)
        assert refused.status_code == 403  # UpdateFirmware, so campaigns, need admin
        assert "admin" in refused.json()["error"]["message"]
    assert server.run(firmware.list_campaigns) == []
    async with client(base, ADMIN) as admin:
        created = await admin.post("/firmware/campaigns", json=body)
    assert created.status_code == 201, created.text
    campaign = created.json()
    campaign_id = campaign["id"]
    assert campaign["pattern"] == "SITE-*"
    assert campaign["chargers"] == 3
    assert states(campaign) == {"SITE-1": "waiting", "SITE-2": "waiting", "SITE-3": "waiting"}
    # One at a time: SITE-1 first, and its progress shows over HTTP as it reports.
    call = await s1.next_call()
    assert call[2] == "UpdateFirmware"
    assert "/files/firmware/" in call[3]["location"]
    await s1.answer(call, {})
    await s2.expect_silence(0.3)
    assert await s1.call("FirmwareStatusNotification", {"status": "Downloading"}) == {}
    body_now = await shown(base, campaign_id, lambda b: states(b)["SITE-1"] == "Downloading")
    assert body_now["finished_at"] is None
    async with client(base, READ) as reader:
        listed = await reader.get("/firmware/campaigns")
        assert listed.status_code == 200
        (row,) = listed.json()
        assert row["id"] == campaign_id
        assert row["counts"] == {"Downloading": 1, "waiting": 2}
        assert "targets" not in row  # the list has counts only
        # Reading is allowed, cancelling is not.
        refused = await reader.post(f"/firmware/campaigns/{campaign_id}/cancel")
        assert refused.status_code == 403
    # An operator stops the rollout: SITE-2 and SITE-3 are never sent it; SITE-1, which
    # is downloading already, goes on and is followed to the end.
    async with client(base, OPERATE) as ops:
        cancelled = await ops.post(f"/firmware/campaigns/{campaign_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    after = cancelled.json()
    assert states(after) == {"SITE-1": "Downloading", "SITE-2": "cancelled", "SITE-3": "cancelled"}
    details = {t["charger_id"]: t.get("detail") for t in after["targets"]}
    assert details["SITE-2"] == "cancelled by api:ops"
    assert after["finished_at"] is None
    await s2.expect_silence(0.3)
    await s3.expect_silence(0.1)
    for status in ("Downloaded", "Installing", "Installed"):
        assert await s1.call("FirmwareStatusNotification", {"status": status}) == {}
    done = await shown(base, campaign_id, lambda b: b["finished_at"] is not None)
    assert states(done)["SITE-1"] == "Installed"
    assert server.run(commands.list_commands, "SITE-2") == []  # nothing was ever sent
    async with client(base, OPERATE) as ops:
        again = await ops.post(f"/firmware/campaigns/{campaign_id}/cancel")
        assert again.status_code == 409
        assert "already finished" in again.json()["error"]["message"]
        missing = await ops.post("/firmware/campaigns/9999/cancel")
        assert missing.status_code == 404
    async with client(base, READ) as reader:
        assert (await reader.get("/firmware/campaigns/9999")).status_code == 404
    for cp in (s1, s2, s3):
        await cp.close()
    await ctl_client.aclose()


async def test_campaign_over_a_list_with_an_operator_location(
    api: tuple[RunningServer, str],
) -> None:
    server, base = api
    a = await online(server, "LOT-A")
    await online(server, "LOT-B")
    async with client(base, ADMIN) as admin:
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"charge_point_ids": ["LOT-A", "NOPE"], "location": "ftp://f/x.bin"}, 422, "NOPE"),
            (
                {"charge_point_pattern": "LOT-*", "charge_point_ids": ["LOT-A"], "file": "x"},
                422,
                "either a charger pattern",
            ),
            ({"charge_point_pattern": "NONE-*", "location": "ftp://f/x.bin"}, 422, "matches"),
            ({"charge_point_ids": ["LOT-A"], "file": "missing.bin"}, 422, "no firmware"),
            ({"charge_point_ids": ["LOT-A"], "location": "file:///x"}, 422, "location"),
            ({"charge_point_ids": ["LOT-A"], "location": "ftp://f", "max_parallel": 0}, 422, ""),
            ({"charge_point_ids": ["LOT-A"], "location": "ftp://f", "colour": 1}, 422, "colour"),
        ]
        for body, status, reason in cases:
            refused = await admin.post("/firmware/campaigns", json=body)
            assert refused.status_code == status, (body, refused.text)
            assert reason in refused.json()["error"]["message"], refused.text
        assert server.run(firmware.list_campaigns) == []
        created = await admin.post(
            "/firmware/campaigns",
            json={
                "charge_point_ids": ["LOT-A"],
                "location": "ftp://user:pw@files.example/fw-7.bin",
                "retries": 2,
            },
        )
    assert created.status_code == 201, created.text
    assert created.json()["pattern"] == "LOT-A"
    assert created.json()["firmware"] == "ftp://user:pw@files.example/fw-7.bin"
    call = await a.next_call()
    assert call[3]["location"] == "ftp://user:pw@files.example/fw-7.bin"
    assert call[3]["retries"] == 2
    await a.answer(call, {})
    await shown(base, created.json()["id"], lambda b: states(b) == {"LOT-A": "sent"})
    await a.close()


async def test_campaign_routes_are_documented(api: tuple[RunningServer, str]) -> None:
    _, base = api
    async with client(base, None) as anonymous:
        document = (await anonymous.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/firmware/campaigns"]) == {"get", "post"}
    assert "get" in paths["/firmware/campaigns/{campaign_id}"]
    assert "post" in paths["/firmware/campaigns/{campaign_id}/cancel"]
    create = paths["/firmware/campaigns"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CampaignCreate"
    )
    assert {"201", "403", "422"} <= set(create["responses"])
