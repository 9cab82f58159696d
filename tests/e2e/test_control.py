"""Operator commands through the real control socket against an independent charger."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from voltaro.control import wire
from voltaro.control.ops import ControlOps
from voltaro.control.peers import Peer, role_of
from voltaro.control.server import ControlServer
from voltaro.domain.model import RegistrationStatus
from voltaro.net.registry import Registry
from voltaro.service.commands import CommandService
from voltaro.service.hub import RESYNC, EventHub
from voltaro.store import chargers, commands, tags


async def control(server: RunningServer) -> ControlClient:
    assert server.addresses.control_socket is not None
    return await ControlClient.connect(server.addresses.control_socket)


async def online(
    server: RunningServer,
    charger_id: str = "CP-1",
    registration: RegistrationStatus = RegistrationStatus.ACCEPTED,
) -> RawCharger:
    server.run(chargers.add_charger, charger_id, registration=registration)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    await cp.boot()
    return cp


async def command_answered(
    client: ControlClient, cp: RawCharger, action: str, answer: dict[str, Any] | None, **args: Any
) -> tuple[Any, Any]:
    """Send a command; the charger answers ``answer`` (None: it stays silent)."""
    results: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            results.append(await client.command("CP-1", action, **args))

        nursery.start_soon(send)
        call = await cp.next_call()
        if answer is not None:
            await cp.answer(call, answer)
    return call, results[0]


async def test_each_command_and_its_answer(server: RunningServer) -> None:
    cp = await online(server)
    server.run(tags.add_tag, "TAG")  # remote start checks the tag (issue 23.3)
    client = await control(server)
    assert client.hello["role"] == "admin"  # root / the server's own user
    cases = [
        (
            "remote-start",
            {"status": "Accepted"},
            {"id_tag": "TAG", "connector_id": 1},
            ["RemoteStartTransaction", {"idTag": "TAG", "connectorId": 1}],
        ),
        (
            "remote-stop",
            {"status": "Rejected"},
            {"transaction_id": 7},
            ["RemoteStopTransaction", {"transactionId": 7}],
        ),
        ("reset", {"status": "Accepted"}, {"type": "Hard"}, ["Reset", {"type": "Hard"}]),
        (
            "unlock",
            {"status": "UnlockFailed"},
            {"connector_id": 1},
            ["UnlockConnector", {"connectorId": 1}],
        ),
        (
            "availability",
            {"status": "Scheduled"},
            {"connector_id": 0, "type": "Inoperative"},
            ["ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}],
        ),
        (
            "set-config",
            {"status": "RebootRequired"},
            {"key": "HeartbeatInterval", "value": "60"},
            ["ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}],
        ),
        ("clear-cache", {"status": "Rejected"}, {}, ["ClearCache", {}]),
        (
            "data-transfer",
            {"status": "UnknownVendorId"},
            {"vendor_id": "com.x"},
            ["DataTransfer", {"vendorId": "com.x"}],
        ),
        (
            "trigger",
            {"status": "Accepted"},
            {"requested_message": "StatusNotification", "connector_id": 1},
            ["TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}],
        ),
    ]
    for action, answer, args, sent in cases:
        call, response = await command_answered(client, cp, action, answer, **args)
        assert call[2:] == sent
        assert response["ok"], response
        assert response["result"]["status"] == answer["status"]
    stored = server.run(chargers.get_charger, "CP-1")
    # Scheduled (issue 23.2): pending until the charger's status shows it, not done.
    assert stored.connectors
    assert all(
        c.availability == "Operative" and c.scheduled_availability == "Inoperative"
        for c in stored.connectors
    )
    config = {e.key: e.value for e in server.run(commands.get_configuration, "CP-1")}
    assert config["HeartbeatInterval"] == "60"
    audit = server.run(commands.list_commands, "CP-1")
    assert len(audit) == len(cases)
    assert {a["actor"] for a in audit} == {client.hello["user"]}
    await client.aclose()
    await cp.close()


async def test_get_configuration_is_stored(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    _, response = await command_answered(
        client,
        cp,
        "get-config",
        {
            "configurationKey": [{"key": "NumberOfConnectors", "readonly": True, "value": "2"}],
            "unknownKey": ["Bogus"],
        },
        keys=[],
    )
    assert response["result"]["configuration"][0]["key"] == "NumberOfConnectors"
    shown = await client.request("chargers.show", {"charger_id": "CP-1"})
    assert shown["result"]["configuration"] == [
        {"key": "NumberOfConnectors", "readonly": True, "value": "2"}
    ]
    await client.aclose()
    await cp.close()


async def test_errors_timeout_callerror_disconnect_offline(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    _, timed_out = await command_answered(client, cp, "clear-cache", None)
    assert timed_out["error"]["code"] == "timeout"
    results: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            results.append(await client.command("CP-1", "clear-cache"))

        nursery.start_soon(send)
        call = await cp.next_call()
        await cp.answer_error(call, "NotSupported", "no cache")
    assert results[0]["error"]["code"] == "call_error"
    results.clear()
    async with trio.open_nursery() as nursery:

        async def send_again() -> None:
            results.append(await client.command("CP-1", "reset"))

        nursery.start_soon(send_again)
        await cp.next_call()
        await cp.close()
    assert results[0]["error"]["code"] == "disconnected"
    with trio.fail_after(5):
        # Polling the database: there is no event for "the listener cleaned up".
        while server.run(chargers.get_charger, "CP-1").connected:  # noqa: ASYNC110
            await trio.sleep(0.05)
    offline = await client.command("CP-1", "reset")
    assert offline["error"]["code"] == "offline"
    unknown = await client.command("NOPE", "reset")
    assert unknown["error"]["code"] == "not_found"
    bad = await client.command("CP-1", "remote-start", id_tag="X" * 21)
    assert bad["error"]["code"] == "bad_arguments"
    await client.aclose()


async def test_pending_and_boot_trigger_rules(server: RunningServer) -> None:
    pending = await online(server, "CP-1", RegistrationStatus.PENDING)
    client = await control(server)
    refused = await client.command("CP-1", "remote-start", id_tag="T")
    assert refused["error"]["code"] == "not_allowed"
    assert "Pending" in refused["error"]["message"]
    # Configuration is fine while Pending (OCPP 1.6 §4.2).
    _, allowed = await command_answered(client, pending, "get-config", {"configurationKey": []})
    assert allowed["ok"]
    server.run(chargers.set_registration, "CP-1", RegistrationStatus.ACCEPTED)
    trigger = await client.command("CP-1", "trigger", requested_message="BootNotification")
    assert trigger["error"]["code"] == "not_allowed"
    await client.aclose()
    await pending.close()


async def test_socket_permissions(server: RunningServer) -> None:
    info = await trio.Path(server.addresses.control_socket or "").stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660


async def test_abrupt_disconnect_and_bad_frames(server: RunningServer) -> None:
    client = await control(server)
    await client.request("subscribe")
    await client._stream.send_all(b"{not json\n")
    error = await client.read()
    assert error["ok"] is False
    assert error["error"]["code"] == "bad_request"
    await client.aclose()  # abruptly, while subscribed
    other = await control(server)
    status = await other.request("status")
    assert status["ok"]
    assert status["result"]["database"]["ok"]
    await other.aclose()


async def test_roles_are_checked_per_request(server: RunningServer, tmp_path: Path) -> None:
    """Two other users through the peer seam the production path uses (peer_lookup)."""
    users = {
        "viewer": Peer(pid=1, uid=60001, gid=60001, user="vera", groups=()),
        "operator": Peer(pid=2, uid=60002, gid=60002, user="otto", groups=("voltaro-ops",)),
    }
    settings = server.settings
    assert role_of(users["viewer"], settings) is wire.Role.VIEWER
    assert role_of(users["operator"], settings) is wire.Role.OPERATOR
    cp = await online(server)
    registry = Registry()
    hub = EventHub(64)
    ops = ControlOps(
        server.db, registry, CommandService(server.db, registry, hub, settings=settings), hub
    )
    for name, peer in users.items():
        path = str(tmp_path / f"{name}.sock")
        local = settings.__class__(
            **{
                **{f: getattr(settings, f) for f in settings.__dataclass_fields__},
                "control_socket": path,
            }
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(
                ControlServer(local, ops, hub, peer_lookup=lambda sock, p=peer: p).run
            )
            client = await ControlClient.connect(path)
            assert client.hello["role"] == name
            listed = await client.request("chargers.list")
            assert listed["ok"]
            added = await client.request("chargers.add", {"charger_id": "NEW"})
            assert added["error"]["code"] == "forbidden"
            hard = await client.command("CP-1", "reset", type="Hard")
            assert hard["error"]["code"] == "forbidden"
            soft = await client.command("CP-1", "reset")
            expected = "forbidden" if name == "viewer" else "offline"  # not in this registry
            assert soft["error"]["code"] == expected
            await client.aclose()
            nursery.cancel_scope.cancel()
    await cp.close()


async def test_slow_subscriber_gets_resync_and_never_blocks_publish() -> None:
    hub = EventHub(16)
    async with hub.subscribe() as sub:
        for n in range(1000):  # publish is sync: it cannot block on a slow subscriber
            hub.publish("meter.values", {"n": n})
        assert await sub.receive() == RESYNC
        hub.publish("meter.values", {"n": "fresh"})
        fresh = await sub.receive()
        assert not isinstance(fresh, str)
        assert fresh.data == {"n": "fresh"}
    assert hub.statistics().dropped > 0


@pytest.fixture
def ctl_env(server: RunningServer) -> dict[str, str]:
    return {**os.environ, "VOLTARO_CONTROL_SOCKET": server.addresses.control_socket or ""}
