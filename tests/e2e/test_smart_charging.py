"""Smart Charging (OCPP 1.6 §3.13, §5.5, §5.7, §5.11, §5.16; OCTT TC_056, TC_057, TC_059,
TC_066, TC_067) through the control socket, against an independent raw-frame charger:
profiles checked before sending, stored with the charger's answer, cleared, composite
schedules read, remote start with a TxProfile."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from tests.support.scripted import scripted
from tests.support.simulator import one_charger, wait_booted
from voltaro.store import chargers, charging_profiles, tags, transactions
from voltaro.store import commands as audit

CONFIG = {
    "ChargeProfileMaxStackLevel": "3",
    "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
    "ChargingScheduleMaxPeriods": "5",
    "MaxChargingProfilesInstalled": "3",
}


def profile(purpose: str = "TxDefaultProfile", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "chargingProfileId": 1,
        "stackLevel": 1,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16.0},
                {"startPeriod": 1800, "limit": 10.0},
            ],
        },
    }
    data.update(changes)
    return data


def handlers(config: dict[str, str], answers: dict[str, str]) -> dict[str, Any]:
    return {
        "GetConfiguration": lambda payload: {
            "configurationKey": [
                {"key": k, "readonly": True, "value": v}
                for k, v in config.items()
                if k in (payload.get("key") or config)
            ]
        },
        "SetChargingProfile": lambda payload: {"status": answers.get("Set", "Accepted")},
        "ClearChargingProfile": lambda payload: {"status": answers.get("Clear", "Accepted")},
        "GetCompositeSchedule": lambda payload: {
            "status": "Accepted",
            "connectorId": payload["connectorId"],
            "scheduleStart": "2026-01-01T00:00:00Z",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
            },
        },
        "RemoteStartTransaction": lambda payload: {"status": "Accepted"},
    }


async def online(server: RunningServer) -> RawCharger:
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    return cp


@asynccontextmanager
async def control(server: RunningServer) -> AsyncIterator[ControlClient]:
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    try:
        yield client
    finally:
        await client.aclose()


async def set_profile(
    client: ControlClient, connector: int, data: dict[str, Any]
) -> dict[str, Any]:
    return await client.request(
        "profiles.set", {"charger_id": "CP-1", "connector_id": connector, "profile": data}
    )


@pytest.mark.parametrize("answer", ["Accepted", "Rejected", "NotSupported"])
async def test_tx_default_profile_each_answer(server: RunningServer, answer: str) -> None:
    """TC_056: SetChargingProfile TxDefaultProfile; the answer is stored."""
    cp = await online(server)
    async with control(server) as client, scripted(cp, handlers(CONFIG, {"Set": answer})) as s:
        response = await set_profile(client, 1, profile())
    assert response["ok"], response
    assert response["result"]["status"] == answer
    (sent,) = s.payloads("SetChargingProfile")
    assert sent == {"connectorId": 1, "csChargingProfiles": profile()}
    (row,) = server.run(charging_profiles.list_profiles, "CP-1", all_rows=True)
    assert (row["status"], row["purpose"], row["profile_id"]) == (answer, "TxDefaultProfile", 1)
    held = server.run(charging_profiles.list_profiles, "CP-1")
    assert len(held) == (1 if answer == "Accepted" else 0)


async def test_checks_before_sending(server: RunningServer) -> None:
    """Clear errors, nothing sent: TxProfile without a transaction, stack level and unit
    from the charger's configuration, periods out of order, connector 0 rules."""
    cp = await online(server)
    config = dict(CONFIG, ChargingScheduleAllowedChargingRateUnit="Power")
    async with control(server) as client, scripted(cp, handlers(config, {})) as s:
        cases = [
            (1, profile("TxProfile"), "needs a running transaction on connector 1"),
            (1, profile(stackLevel=4), "above the charger's ChargeProfileMaxStackLevel (3)"),
            (1, profile(), "does not take schedules in A"),
            (1, profile("ChargePointMaxProfile"), "connector 0 only"),
        ]
        for connector, data, message in cases:
            response = await set_profile(client, connector, data)
            assert response["error"]["code"] == "bad_arguments", response
            assert message in response["error"]["message"]
        bad = profile()
        bad["chargingSchedule"]["chargingSchedulePeriod"].reverse()
        response = await set_profile(client, 1, bad)
        assert "must start at 0" in response["error"]["message"]
    assert s.payloads("SetChargingProfile") == []
    assert server.run(charging_profiles.list_profiles, "CP-1", all_rows=True) == []


async def test_tx_profile_clear_and_composite(server: RunningServer) -> None:
    """TC_057 (TxProfile on a running transaction), TC_067 (ClearChargingProfile),
    TC_066 (GetCompositeSchedule), and MaxChargingProfilesInstalled."""
    server.run(tags.add_tag, "T1")
    cp = await online(server)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = await cp.call(
        "StartTransaction", {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": now}
    )
    tx = started["transactionId"]
    config = dict(CONFIG, MaxChargingProfilesInstalled="2")
    async with control(server) as client, scripted(cp, handlers(config, {})) as s:
        ok = await set_profile(
            client, 1, profile("TxProfile", chargingProfileId=5, transactionId=tx)
        )
        assert ok["result"]["status"] == "Accepted", ok
        ok = await set_profile(client, 1, profile(chargingProfileId=6))
        assert ok["result"]["status"] == "Accepted"
        full = await set_profile(client, 1, profile(chargingProfileId=7))
        assert "holds 2 profiles already" in full["error"]["message"]
        again = await set_profile(client, 1, profile(chargingProfileId=6, stackLevel=2))
        assert again["result"]["status"] == "Accepted"  # same id: replaces, not a third
        assert [p["profile_id"] for p in server.run(charging_profiles.list_profiles, "CP-1")] == [
            6,
            5,
        ]
        cleared = await client.request(
            "profiles.clear", {"charger_id": "CP-1", "purpose": "TxProfile"}
        )
        assert (cleared["result"]["status"], cleared["result"]["cleared"]) == ("Accepted", 1)
        assert s.payloads("ClearChargingProfile") == [{"chargingProfilePurpose": "TxProfile"}]
        assert [p["profile_id"] for p in server.run(charging_profiles.list_profiles, "CP-1")] == [6]
        composite = await client.request(
            "profiles.composite",
            {"charger_id": "CP-1", "connector_id": 1, "duration": 3600, "unit": "A"},
        )
        details = composite["result"]["details"]
        assert composite["result"]["status"] == "Accepted"
        assert details["charging_schedule"]["charging_schedule_period"] == [
            {"start_period": 0, "limit": 16.0}
        ]
        assert s.payloads("GetCompositeSchedule") == [
            {"connectorId": 1, "duration": 3600, "chargingRateUnit": "A"}
        ]
    actions = [c["action"] for c in server.run(audit.list_commands, "CP-1")]
    assert actions.count("SetChargingProfile") == 3  # the refused one was never sent


async def test_remote_start_with_a_tx_profile(server: RunningServer) -> None:
    """TC_059: RemoteStartTransaction carrying a TxProfile."""
    server.run(tags.add_tag, "T1")
    cp = await online(server)
    async with control(server) as client, scripted(cp, handlers(CONFIG, {})) as s:
        response = await client.command(
            "CP-1",
            "remote-start",
            id_tag="T1",
            connector_id=1,
            charging_profile=profile("TxProfile"),
        )
        assert response["result"]["status"] == "Accepted", response
        wrong = await client.command(
            "CP-1", "remote-start", id_tag="T1", connector_id=1, charging_profile=profile()
        )
        assert "must be a TxProfile" in wrong["error"]["message"]
    (sent,) = s.payloads("RemoteStartTransaction")
    assert sent["chargingProfile"] == profile("TxProfile")


async def test_ctl_limit_a_charger(server: RunningServer) -> None:
    """The operator workflow "limit a charger": one command, a ChargePointMaxProfile."""
    cp = await online(server)
    async with scripted(cp, handlers(CONFIG, {})) as s:
        result = await ctl(server, "--json", "profiles", "limit", "CP-1", "32", "--unit", "A")
        assert result.returncode == 0, result.stderr
        assert json_status(result.stdout) == "Accepted"
        listed = await ctl(server, "profiles", "list", "CP-1")
    assert b"ChargePointMaxProfile" in listed.stdout
    (sent,) = s.payloads("SetChargingProfile")
    assert sent["connectorId"] == 0
    assert sent["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 32.0}
    ]


def json_status(stdout: bytes) -> str:
    return str(json.loads(stdout)["status"])


async def test_simulator_obeys_a_charger_limit(server: RunningServer) -> None:
    """The simulator (the `ocpp` library's ChargePoint) follows a ChargePointMaxProfile:
    its reported power stays under the limit, and its composite schedule says so."""
    server.run(chargers.add_charger, "SIM-1")
    server.run(tags.add_tag, "T1")
    async with trio.open_nursery() as nursery:

        async def run_simulator() -> None:
            await trio.run_process(
                one_charger(server.url, session_length="60", meter_interval="0.2", duration="120"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

        nursery.start_soon(run_simulator)
        await wait_booted(server, "SIM-1", 10)
        limited = await ctl(server, "--json", "profiles", "limit", "SIM-1", "2000", "--unit", "W")
        assert limited.returncode == 0, limited.stderr
        assert json.loads(limited.stdout)["status"] == "Accepted"
        composite = await ctl(server, "--json", "profiles", "composite", "SIM-1", "1", "600")
        schedule = json.loads(composite.stdout)["details"]["charging_schedule"]
        assert schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 2000.0}]
        started = await ctl(server, "--json", "remote-start", "SIM-1", "T1", "--connector", "1")
        assert json.loads(started.stdout)["status"] == "Accepted"
        powers: list[float] = []
        with trio.fail_after(15):
            while len(powers) < 3:
                active = server.run(transactions.list_transactions, active=True)
                powers = [
                    float(sv.value)
                    for tx in active
                    for mv in server.run(transactions.transaction_meter_values, tx.transaction_id)
                    for sv in mv.sampled_values
                    if sv.measurand == "Power.Active.Import"
                ]
                await trio.sleep(0.2)
        assert max(powers) <= 2000
        nursery.cancel_scope.cancel()
