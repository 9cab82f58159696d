"""Issue 23: what an operator sets stays set, and what a command does is what it says.

Every test drives the real server (voltaro.app.run) with the independent raw-frame charger
(tests/support/charger.py) and the real control socket, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from voltaro.domain.model import RegistrationStatus
from voltaro.store import chargers


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
