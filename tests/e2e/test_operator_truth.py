"""Issue 23: what an operator sets stays set, and what a command does is what it says.

Every test drives the real server (voltaro.app.run) with the independent raw-frame charger
(tests/support/charger.py) and the real control socket, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from voltaro.domain.model import AuthorizationStatus, RegistrationStatus
from voltaro.store import chargers, commands, tags


async def control(server: RunningServer) -> ControlClient:
    assert server.addresses.control_socket is not None
    return await ControlClient.connect(server.addresses.control_socket)


async def online(server: RunningServer, charger_id: str = "CP-1") -> RawCharger:
    server.run(chargers.add_charger, charger_id, registration=RegistrationStatus.ACCEPTED)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    await cp.boot()
    return cp


async def command_answered(
    client: ControlClient, cp: RawCharger, action: str, answer: dict[str, Any], **args: Any
) -> tuple[Any, dict[str, Any]]:
    """Send a command through the control socket; the charger answers ``answer``."""
    results: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            results.append(await client.command("CP-1", action, **args))

        nursery.start_soon(send)
        call = await cp.next_call()
        await cp.answer(call, answer)
    return call, results[0]


async def show(client: ControlClient, charger_id: str = "CP-1") -> dict[str, Any]:
    reply = await client.request("chargers.show", {"charger_id": charger_id})
    assert reply["ok"], reply
    return dict(reply["result"])


# --- 23.4 CALLERRORs we send are logged and counted --------------------------------


async def test_callerrors_sent_are_logged_and_counted(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="voltaro.protocol")
    cp = await online(server)
    # A required field missing: the spec's answer is a CALLERROR (OCPP-J 1.6 §4.2.3).
    await cp.send_raw('[2,"bad-1","StartTransaction",{"connectorId":1}]')
    first = await cp.recv()
    assert first[0] == 4
    assert first[1] == "bad-1"
    await cp.send_raw('[2,"bad-2","FlyToTheMoon",{}]')
    error = await cp.recv()
    assert error[:3] == [4, "bad-2", "NotImplemented"]
    lines = [r.getMessage() for r in caplog.records if "CALLERROR sent" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "charger=CP-1" in lines[0]
    assert "message=bad-1" in lines[0]
    assert "action=StartTransaction" in lines[0]
    assert f"code={first[2]}" in lines[0]
    assert "action=FlyToTheMoon" in lines[1]
    assert "code=NotImplemented" in lines[1]
    assert all(r.levelno == logging.WARNING for r in caplog.records if "CALLERROR" in r.message)
    client = await control(server)
    assert (await show(client))["call_errors_sent"] == 2
    await cp.close()
    # Counted per charger across connections: a reconnect keeps the count.
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.send_raw('[2,"bad-3","FlyToTheMoon",{}]')
    await cp.recv()
    assert (await show(client))["call_errors_sent"] == 3
    await client.aclose()
    await cp.close()


# --- 23.1 the heartbeat interval an operator sets survives a reboot -----------------


async def test_operator_heartbeat_interval_survives_reboot(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    first = await cp.boot()
    assert first["interval"] == server.settings.heartbeat_interval  # the global default
    client = await control(server)
    call, reply = await command_answered(
        client,
        cp,
        "set-config",
        {"status": "Accepted"},
        key="HeartbeatInterval",
        value="120",
    )
    assert call[3] == {"key": "HeartbeatInterval", "value": "120"}
    assert reply["result"]["status"] == "Accepted"
    # The charger reboots: a new connection and a new BootNotification.
    await cp.close()
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    rebooted = await cp.boot()
    assert rebooted["status"] == "Accepted"
    assert rebooted["interval"] == 120
    shown = await show(client)
    assert shown["heartbeat_interval"] == {
        "set": 120,
        "reported": 120,
        "default": server.settings.heartbeat_interval,
        "boot_answer": 120,
        "mismatch": False,
    }
    assert shown["attention"] == []
    # The charger's own report after boot replaces what we stored: a firmware that
    # ignored the setting shows up as a mismatch in the detail view.
    _, reply = await command_answered(
        client,
        cp,
        "get-config",
        {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]},
        keys=["HeartbeatInterval"],
    )
    assert reply["ok"], reply
    shown = await show(client)
    assert shown["heartbeat_interval"]["reported"] == 300
    assert shown["heartbeat_interval"]["mismatch"] is True
    assert shown["attention"] == ["HeartbeatInterval set to 120 s but the charger reports 300 s"]
    assert {"key": "HeartbeatInterval", "readonly": False, "value": "300"} in shown["configuration"]
    # Another charger nobody configured gets the global default.
    server.run(chargers.add_charger, "CP-2")
    other = await RawCharger.connect(f"{server.url}/CP-2")
    assert (await other.boot())["interval"] == server.settings.heartbeat_interval
    assert (await show(client, "CP-2"))["heartbeat_interval"]["set"] is None
    await other.close()
    await client.aclose()
    await cp.close()


# --- 23.2 a Scheduled availability change is shown as scheduled ---------------------


async def status(cp: RawCharger, connector: int, value: str) -> None:
    answer = await cp.call(
        "StatusNotification", {"connectorId": connector, "status": value, "errorCode": "NoError"}
    )
    assert answer == {}


async def test_scheduled_availability_is_pending_until_the_status_shows_it(
    server: RunningServer,
) -> None:
    cp = await online(server)
    await status(cp, 1, "Charging")
    client = await control(server)
    _, reply = await command_answered(
        client, cp, "availability", {"status": "Scheduled"}, connector_id=1, type="Inoperative"
    )
    assert reply["result"]["status"] == "Scheduled"
    (connector,) = [c for c in (await show(client))["connectors"] if c["connector_id"] == 1]
    assert connector["status"] == "Charging"
    assert connector["availability"] == "Operative"
    assert connector["scheduled_availability"] == "Inoperative"
    assert connector["availability_note"] == "Inoperative after the session"
    assert (await show(client))["attention"] == ["connector 1: Inoperative after the session"]
    human = await ctl(server, "chargers", "show", "CP-1")
    assert human.stdout.splitlines()[0] == b"! connector 1: Inoperative after the session"
    listed = await ctl(server, "chargers", "list")
    assert b"1:Charging(Inoperative after the session)" in listed.stdout
    await status(cp, 1, "Finishing")
    (connector,) = [c for c in (await show(client))["connectors"] if c["connector_id"] == 1]
    assert connector["availability"] == "Operative"
    assert connector["scheduled_availability"] == "Inoperative"
    await status(cp, 1, "Unavailable")  # the session ended: the charger applied it
    (connector,) = [c for c in (await show(client))["connectors"] if c["connector_id"] == 1]
    assert connector["availability"] == "Inoperative"
    assert connector["scheduled_availability"] is None
    assert connector["availability_note"] is None
    # The same for operative.
    _, reply = await command_answered(
        client, cp, "availability", {"status": "Scheduled"}, connector_id=1, type="Operative"
    )
    (connector,) = [c for c in (await show(client))["connectors"] if c["connector_id"] == 1]
    assert connector["availability"] == "Inoperative"
    assert connector["availability_note"] == "Operative after the session"
    await status(cp, 1, "Available")
    (connector,) = [c for c in (await show(client))["connectors"] if c["connector_id"] == 1]
    assert connector["availability"] == "Operative"
    assert connector["scheduled_availability"] is None
    # Accepted takes effect at once, and clears nothing else.
    _, reply = await command_answered(
        client, cp, "availability", {"status": "Accepted"}, connector_id=1, type="Inoperative"
    )
    (connector,) = [c for c in (await show(client))["connectors"] if c["connector_id"] == 1]
    assert connector["availability"] == "Inoperative"
    assert connector["scheduled_availability"] is None
    await client.aclose()
    await cp.close()


# --- 23.3 remote start checks the tag ----------------------------------------------


async def test_remote_start_refuses_a_tag_that_could_not_charge(server: RunningServer) -> None:
    cp = await online(server)
    server.run(tags.add_tag, "BLOCKED", status=AuthorizationStatus.BLOCKED)
    server.run(tags.add_tag, "OLD", expiry=datetime(2020, 1, 1, tzinfo=UTC))
    server.run(tags.add_tag, "BUSY")
    server.run(tags.add_tag, "GOOD")
    # BUSY is charging on another connected charger (ConcurrentTx is not allowed).
    other = await online(server, "CP-2")
    started = await other.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "BUSY", "meterStart": 0, "timestamp": "2025-01-01T10:00:00Z"},
    )
    client = await control(server)
    refusals = {
        "NOSUCHTAG": "tag NOSUCHTAG is unknown or invalid",
        "BLOCKED": "tag BLOCKED is blocked",
        "OLD": "tag OLD has expired",
        "BUSY": f"tag BUSY is already in transaction {started['transactionId']} on CP-2",
    }
    for tag, reason in refusals.items():
        refused = await client.command("CP-1", "remote-start", id_tag=tag, connector_id=1)
        assert refused["error"]["code"] == "bad_arguments", refused
        message = refused["error"]["message"]
        assert reason in message
        assert "--force" in message
        assert "\n" not in message
        # ctl: one line on stderr, the exit code of bad arguments.
        run = await ctl(server, "remote-start", "CP-1", tag)
        assert run.returncode == 2
        assert len(run.stderr.decode().strip().splitlines()) == 1
        assert reason in run.stderr.decode()
    # Nothing of that reached the charger: the next CALL it sees is this one.
    call, reply = await command_answered(
        client, cp, "remote-start", {"status": "Accepted"}, id_tag="GOOD"
    )
    assert call[2:] == ["RemoteStartTransaction", {"idTag": "GOOD"}]
    assert reply["result"]["status"] == "Accepted"
    # --force sends it anyway, and the audit says it was forced.
    results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def forced() -> None:
            results.append(
                await ctl(server, "--json", "remote-start", "CP-1", "NOSUCHTAG", "--force")
            )

        nursery.start_soon(forced)
        call = await cp.next_call()
        await cp.answer(call, {"status": "Accepted"})
    assert call[2:] == ["RemoteStartTransaction", {"idTag": "NOSUCHTAG"}]
    assert results[0].returncode == 0, results[0].stderr
    audit = server.run(commands.list_commands, "CP-1")
    assert [
        a["request"].get("force") for a in audit if a["action"] == "RemoteStartTransaction"
    ] == [
        True,
        False,
    ]
    await client.aclose()
    await other.close()
    await cp.close()
