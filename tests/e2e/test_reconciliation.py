"""Operator reconciliation (issue 10 §2.2): closing a transaction whose stop never came,
through the control socket, `voltaro ctl` and the HTTP API, audited with who did it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio

from tests.api.conftest import OPERATE, READ, api, client
from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from voltaro.domain.model import TransactionState
from voltaro.store import chargers, commands, tags, transactions

__all__ = ["api"]


async def session_with_lost_stop(server: RunningServer) -> tuple[RawCharger, int]:
    """A transaction on CP-1 with one meter reading (1000 -> 1500 Wh), never stopped."""
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "DRIVER")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    started = await cp.call(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "DRIVER",
            "meterStart": 1000,
            "timestamp": "2025-01-01T10:00:00Z",
        },
    )
    tx: int = started["transactionId"]
    reading = {"timestamp": "2025-01-01T10:20:00Z", "sampledValue": [{"value": "1500"}]}
    values = {"connectorId": 1, "transactionId": tx, "meterValue": [reading]}
    assert await cp.call("MeterValues", values) == {}
    return cp, tx


async def test_close_over_the_control_socket_is_audited(server: RunningServer) -> None:
    cp, tx = await session_with_lost_stop(server)
    assert server.addresses.control_socket is not None
    control = await ControlClient.connect(server.addresses.control_socket)
    user = control.hello["user"]
    await control.request("subscribe", {"frames": False})
    closed = await control.request(
        "transactions.close", {"transaction_id": tx, "meter_stop": None, "reason": "stop lost"}
    )
    assert closed["ok"], closed
    view = closed["result"]
    assert (view["state"], view["meter_stop"], view["energy_wh"], view["energy_flag"]) == (
        "closed",
        1500,
        500,
        "estimated",
    )
    assert (view["closed_by"], view["end_reason"]) == (user, "stop lost")
    with trio.fail_after(5):
        while not any(e.get("event") == "transaction.ended" for e in control.events):
            control.events.append(await control.read())
    ended = next(e for e in control.events if e.get("event") == "transaction.ended")
    assert ended["data"]["transaction_id"] == tx
    assert ended["data"]["state"] == "closed"
    again = await control.request("transactions.close", {"transaction_id": tx})
    assert (again["ok"], again["error"]["code"]) == (False, "conflict")
    unknown = await control.request("transactions.close", {"transaction_id": 12345})
    assert unknown["error"]["code"] == "not_found"
    bad = await control.request("transactions.close", {"transaction_id": tx, "meter_stop": "x"})
    assert bad["error"]["code"] == "bad_arguments"
    audit = server.run(commands.list_commands, "CP-1")
    closes = [a for a in audit if a["action"] == "transactions.close"]
    assert sorted((a["actor"], a["status"]) for a in closes) == [
        (user, "already_closed"),
        (user, "closed"),
    ]
    # The charger's stop arriving after all is kept as a conflict, not billed again.
    stop = {"transactionId": tx, "meterStop": 1700, "timestamp": "2025-01-01T11:00:00Z"}
    assert await cp.call("StopTransaction", stop) == {}
    assert server.run(transactions.get_transaction, tx).energy_wh == 500
    kept = await control.request("transactions.stops", {})
    assert [(k["kind"], k["transaction_id"], k["meter_stop"]) for k in kept["result"]] == [
        ("conflict", tx, 1700)
    ]
    await control.aclose()
    await cp.close()


async def test_close_with_ctl(server: RunningServer) -> None:
    cp, tx = await session_with_lost_stop(server)
    done = await ctl(
        server,
        "--json",
        "transactions",
        "close",
        str(tx),
        "--meter-stop",
        "2100",
        "--reason",
        "meter photo",
    )
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    assert (view["state"], view["energy_wh"], view["energy_flag"]) == ("closed", 1100, None)
    listed = await ctl(server, "--json", "transactions", "list", "--state", "closed")
    assert [t["transaction_id"] for t in json.loads(listed.stdout)] == [tx]
    again = await ctl(server, "transactions", "close", str(tx))
    assert again.returncode != 0
    assert b"conflict" in again.stderr
    stored = server.run(transactions.get_transaction, tx)
    assert (stored.state, stored.meter_stop) == (TransactionState.CLOSED, 2100)
    await cp.close()


async def test_close_over_the_http_api(api: tuple[RunningServer, str]) -> None:
    server, base = api
    cp, tx = await session_with_lost_stop(server)
    async with client(base, READ) as reader:
        refused = await reader.post(f"/sessions/{tx}/close", json={})
        assert refused.status_code == 403
    async with client(base, OPERATE) as operator:
        response: httpx.Response = await operator.post(
            f"/sessions/{tx}/close", json={"meter_stop": 1800, "reason": "lost stop"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["state"], body["energy_wh"], body["closed_by"]) == ("closed", 800, "api:ops")
        assert (await operator.post(f"/sessions/{tx}/close", json={})).status_code == 409
        assert (await operator.post("/sessions/4242/close", json={})).status_code == 404
        low = await operator.post(f"/sessions/{tx}/close", json={"meter_stop": -1})
        assert low.status_code == 422
    audit = server.run(commands.list_commands, "CP-1")
    assert [(a["action"], a["actor"]) for a in audit if a["action"] == "transactions.close"][
        -1
    ] == ("transactions.close", "api:ops")
    await cp.close()


async def test_transactions_list_by_start_time(server: RunningServer) -> None:
    """The console's F3 period filter (issue 12): `since`/`until` select transactions by
    their start time (UTC, ISO 8601); a malformed time is refused, not ignored."""
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "DRIVER")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    started = {}
    for connector, day in ((1, "2025-01-01"), (2, "2025-01-03")):
        answer = await cp.call(
            "StartTransaction",
            {
                "connectorId": connector,
                "idTag": "DRIVER",
                "meterStart": 0,
                "timestamp": f"{day}T10:00:00Z",
            },
        )
        started[day] = answer["transactionId"]
    assert server.addresses.control_socket is not None
    control = await ControlClient.connect(server.addresses.control_socket)
    try:
        await check_listing(control, started)
    finally:
        await control.aclose()
        await cp.close()


async def check_listing(control: ControlClient, started: dict[str, int]) -> None:
    async def listed(**args: Any) -> Any:
        reply = await control.request("transactions.list", args)
        assert reply["ok"], reply
        return [t["transaction_id"] for t in reply["result"]]

    assert await listed() == [started["2025-01-03"], started["2025-01-01"]]
    assert await listed(since="2025-01-02T00:00:00Z") == [started["2025-01-03"]]
    assert await listed(until="2025-01-02T00:00:00Z") == [started["2025-01-01"]]
    assert await listed(since="2025-01-01T10:00:00Z", until="2025-01-01T10:00:01Z") == [
        started["2025-01-01"]
    ]
    assert await listed(since="2025-01-04T00:00:00+01:00") == []
    bad = await control.request("transactions.list", {"since": "yesterday"})
    assert (bad["ok"], bad["error"]["code"]) == (False, "bad_arguments")
    assert "since" in bad["error"]["message"]


async def test_a_stop_that_closed_nothing_is_published(server: RunningServer) -> None:
    """Consoles learn of an orphan stop when it arrives (issue 12: shown in F3 and in
    the attention count), with what `transactions.stops` keeps."""
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    assert server.addresses.control_socket is not None
    control = await ControlClient.connect(server.addresses.control_socket)
    try:
        await control.request("subscribe", {"frames": False})
        stop = {"transactionId": 4242, "meterStop": 1700, "timestamp": "2025-01-01T11:00:00Z"}
        await cp.call("StopTransaction", {**stop, "idTag": "DRIVER"})
        with trio.fail_after(5):
            while not any(e.get("event") == "transaction.orphan_stop" for e in control.events):
                control.events.append(await control.read())
        event = next(e for e in control.events if e.get("event") == "transaction.orphan_stop")
        assert event["data"] == {
            "charger_id": "CP-1",
            "transaction_id": 4242,
            "kind": "unknown",
            "meter_stop": 1700,
            "stop_time": "2025-01-01T11:00:00Z",
            "reason": "Local",
            "id_tag": "DRIVER",
        }
        kept = await control.request("transactions.stops", {})
        assert [(k["kind"], k["transaction_id"]) for k in kept["result"]] == [("unknown", 4242)]
    finally:
        await control.aclose()
        await cp.close()
