"""Reservations (OCPP 1.6 §5.13 ReserveNow, §5.1 CancelReservation, §4.8; OCTT TC_046 to
TC_052): stored, answered, cancelled, used by StartTransaction and expired, against an
independent raw-frame charger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from tests.support.scripted import NO_ANSWER, scripted
from voltaro.domain.commands import ConfigurationEntry
from voltaro.domain.reservations import ReservationState
from voltaro.store import chargers, reservations, tags
from voltaro.store import commands as audit


async def online(server: RunningServer, charger_id: str = "CP-1") -> RawCharger:
    server.run(chargers.add_charger, charger_id)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
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


def answering(status: str) -> dict[str, Any]:
    return {
        "ReserveNow": lambda payload: {"status": status},
        "CancelReservation": lambda payload: {"status": "Accepted"},
    }


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        ("Accepted", "accepted"),
        ("Faulted", "refused"),
        ("Occupied", "refused"),
        ("Rejected", "refused"),
        ("Unavailable", "refused"),
    ],
)
async def test_reserve_now_each_answer(server: RunningServer, answer: str, state: str) -> None:
    """TC_046 (Accepted), TC_048_1..4 (Faulted, Occupied, Unavailable, Rejected)."""
    server.run(tags.add_tag, "FLEET")
    server.run(tags.add_tag, "DRIVER", parent="FLEET")
    cp = await online(server)
    expiry = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    async with control(server) as client, scripted(cp, answering(answer)) as script:
        response = await client.request(
            "reservations.add",
            {
                "charger_id": "CP-1",
                "id_tag": "driver",
                "connector_id": 1,
                "expiry": expiry.isoformat(),
            },
        )
    assert response["ok"], response
    view = response["result"]
    assert (view["state"], view["answer"]) == (state, answer)
    (sent,) = script.payloads("ReserveNow")
    assert sent == {
        "connectorId": 1,
        "expiryDate": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "idTag": "DRIVER",  # as registered
        "reservationId": view["reservation_id"],
        "parentIdTag": "FLEET",  # the tag's parent goes with it (§5.13)
    }
    stored = server.run(reservations.get, view["reservation_id"])
    assert stored.state is ReservationState(state)
    assert stored.answer == answer
    (row,) = server.run(audit.list_commands, "CP-1")
    assert (row["action"], row["status"]) == ("ReserveNow", answer)


async def test_cancel_accepted_and_rejected(server: RunningServer) -> None:
    """TC_051 (CancelReservation Accepted) and TC_052 (Rejected: the charger does not
    know the reservation; it stays as it was, the answer recorded)."""
    server.run(tags.add_tag, "T1")
    cp = await online(server)
    handlers = answering("Accepted")
    async with control(server) as client, scripted(cp, handlers) as script:
        added = (
            await client.request(
                "reservations.add", {"charger_id": "CP-1", "id_tag": "T1", "minutes": 30}
            )
        )["result"]
        rid = added["reservation_id"]
        assert added["connector_id"] == 0  # any connector by default
        handlers["CancelReservation"] = lambda payload: {"status": "Rejected"}
        rejected = await client.request("reservations.cancel", {"reservation_id": rid})
        assert rejected["ok"]
        assert (rejected["result"]["state"], rejected["result"]["answer"]) == (
            "accepted",
            "Rejected",
        )
        handlers["CancelReservation"] = lambda payload: {"status": "Accepted"}
        cancelled = await client.request("reservations.cancel", {"reservation_id": rid})
        assert cancelled["result"]["state"] == "cancelled"
        assert script.payloads("CancelReservation") == [{"reservationId": rid}] * 2
        again = await client.request("reservations.cancel", {"reservation_id": rid})
        assert again["error"]["code"] == "not_allowed"
        assert "cancelled" in again["error"]["message"]
        assert len(script.payloads("CancelReservation")) == 2  # nothing sent
        unknown = await client.request("reservations.cancel", {"reservation_id": 999})
        assert unknown["error"]["code"] == "not_found"
        listed = (await client.request("reservations.list", {"charger_id": "CP-1"}))["result"]
        assert [r["state"] for r in listed] == ["cancelled"]
        assert (await client.request("reservations.list", {"open": True}))["result"] == []


async def test_start_transaction_with_reservation_id_ends_it(server: RunningServer) -> None:
    """TC_046 / §4.8: the StartTransaction carrying the id ends the reservation; a tag that
    is neither the reserved one nor one with its parent is noted (never refused, R97)."""
    server.run(tags.add_tag, "FLEET")
    server.run(tags.add_tag, "DRIVER", parent="FLEET")
    server.run(tags.add_tag, "COLLEAGUE", parent="FLEET")
    server.run(tags.add_tag, "STRANGER")
    cp = await online(server)
    async with control(server) as client, scripted(cp, answering("Accepted")):
        ids = []
        for connector in (1, 2):
            response = await client.request(
                "reservations.add",
                {
                    "charger_id": "CP-1",
                    "id_tag": "DRIVER",
                    "connector_id": connector,
                    "minutes": 30,
                },
            )
            ids.append(response["result"]["reservation_id"])
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = await cp.call(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "COLLEAGUE",
            "meterStart": 0,
            "timestamp": now,
            "reservationId": ids[0],
        },
    )
    assert started["idTagInfo"]["status"] == "Accepted"
    used = server.run(reservations.get, ids[0])
    assert used.state is ReservationState.USED
    assert used.transaction_id == started["transactionId"]
    assert used.error is None  # same parent: allowed
    other = await cp.call(
        "StartTransaction",
        {
            "connectorId": 2,
            "idTag": "STRANGER",
            "meterStart": 0,
            "timestamp": now,
            "reservationId": ids[1],
        },
    )
    assert other["idTagInfo"]["status"] == "Accepted"
    mismatch = server.run(reservations.get, ids[1])
    assert mismatch.state is ReservationState.USED
    assert "neither the reserved tag" in (mismatch.error or "")
    # An unknown reservation id changes nothing and is still answered.
    third = await cp.call(
        "StartTransaction",
        {
            "connectorId": 3,
            "idTag": "DRIVER",
            "meterStart": 0,
            "timestamp": now,
            "reservationId": 4242,
        },
    )
    assert "transactionId" in third


async def next_event(client: ControlClient, name: str) -> dict[str, Any]:
    """The next event called ``name`` the (subscribed) client receives."""
    with trio.fail_after(15):
        while True:
            while client.events:
                frame = client.events.pop(0)
                if frame.get("event") == name:
                    data: dict[str, Any] = frame["data"]
                    return data
            client.events.append(await client.read())


async def test_tc_049_reserve_the_charger_then_start(server: RunningServer) -> None:
    """TC_049: ReserveNow for connector 0 (the charger, any connector), Accepted; the
    StartTransaction with its reservationId closes it, and a subscribed console sees the
    ``reservation.updated`` event with the transaction at once (§4.8, §5.13)."""
    server.run(tags.add_tag, "DRIVER")
    cp = await online(server)
    server.run(
        audit.store_configuration,
        "CP-1",
        [ConfigurationEntry(key="ReserveConnectorZeroSupported", readonly=True, value="true")],
    )
    async with control(server) as client, control(server) as watcher:
        subscribed = await watcher.request("subscribe", {"kinds": ["reservation"]})
        assert subscribed["ok"], subscribed
        async with scripted(cp, answering("Accepted")) as script:
            added = await client.request(
                "reservations.add",
                {"charger_id": "CP-1", "id_tag": "DRIVER", "connector_id": 0, "minutes": 30},
            )
        assert added["ok"], added
        rid = added["result"]["reservation_id"]
        assert script.payloads("ReserveNow")[0]["connectorId"] == 0
        accepted = await next_event(watcher, "reservation.updated")
        assert (accepted["reservation_id"], accepted["state"]) == (rid, "accepted")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        started = await cp.call(
            "StartTransaction",
            {
                "connectorId": 2,
                "idTag": "DRIVER",
                "meterStart": 0,
                "timestamp": now,
                "reservationId": rid,
            },
        )
        assert started["idTagInfo"]["status"] == "Accepted"
        used = await next_event(watcher, "reservation.updated")
        assert (used["reservation_id"], used["state"], used["transaction_id"]) == (
            rid,
            "used",
            started["transactionId"],
        )
        assert used["error"] is None
        # The retried StartTransaction (same message again) changes and announces nothing.
        again = await cp.call(
            "StartTransaction",
            {
                "connectorId": 2,
                "idTag": "DRIVER",
                "meterStart": 0,
                "timestamp": now,
                "reservationId": rid,
            },
        )
        assert again["transactionId"] == started["transactionId"]
        listed = (await client.request("reservations.list", {"open": True}))["result"]
        assert listed == []
        assert not [e for e in watcher.events if e.get("event") == "reservation.updated"]


async def test_reservation_expires(server: RunningServer) -> None:
    """TC_047: a reservation nobody uses expires at its expiry date; the change is
    published (consoles and `ctl events` see it) and it can no longer be cancelled."""
    server.run(tags.add_tag, "T1")
    cp = await online(server)
    expiry = datetime.now(UTC) + timedelta(seconds=1.5)
    async with (
        control(server) as client,
        control(server) as watcher,
        scripted(cp, answering("Accepted")),
    ):
        assert (await watcher.request("subscribe", {"kinds": ["reservation"]}))["ok"]
        response = await client.request(
            "reservations.add",
            {"charger_id": "CP-1", "id_tag": "T1", "connector_id": 1, "expiry": expiry.isoformat()},
        )
        rid = response["result"]["reservation_id"]
        assert response["result"]["state"] == "accepted"
        assert (await next_event(watcher, "reservation.updated"))["state"] == "accepted"
        expired = await next_event(watcher, "reservation.updated")
        assert (expired["reservation_id"], expired["state"]) == (rid, "expired")
        assert server.run(reservations.get, rid).state is ReservationState.EXPIRED
        listed = (await client.request("reservations.list", {}))["result"]
        assert listed[0]["state"] == "expired"
        refused = await client.request("reservations.cancel", {"reservation_id": rid})
        assert refused["error"]["code"] == "not_allowed"


async def test_failures_before_and_after_sending(server: RunningServer) -> None:
    """Offline or refused before sending: nothing stored. No answer: kept as failed."""
    server.run(tags.add_tag, "T1")
    server.run(chargers.add_charger, "CP-OFF")
    async with control(server) as client:
        offline = await client.request(
            "reservations.add", {"charger_id": "CP-OFF", "id_tag": "T1", "minutes": 5}
        )
        assert offline["error"]["code"] == "offline"
        past = await client.request(
            "reservations.add",
            {"charger_id": "CP-OFF", "id_tag": "T1", "expiry": "2020-01-01T00:00:00Z"},
        )
        assert past["error"]["code"] == "bad_arguments"
        assert server.run(reservations.list_reservations) == []

        cp = await online(server)
        # The charger said it cannot reserve connector 0 (key absent: R94).
        server.run(
            audit.store_configuration,
            "CP-1",
            [ConfigurationEntry(key="HeartbeatInterval", readonly=False, value="300")],
        )
        zero = await client.request(
            "reservations.add", {"charger_id": "CP-1", "id_tag": "T1", "minutes": 5}
        )
        assert zero["error"]["code"] == "bad_arguments"
        assert "ReserveConnectorZeroSupported" in zero["error"]["message"]

        silent = {"ReserveNow": lambda payload: NO_ANSWER}
        async with scripted(cp, silent) as script:
            timed_out = await client.request(
                "reservations.add",
                {"charger_id": "CP-1", "id_tag": "T1", "connector_id": 1, "minutes": 5},
            )
        assert timed_out["error"]["code"] == "timeout"
        assert len(script.payloads("ReserveNow")) == 1
        (kept,) = server.run(reservations.list_reservations)
        assert kept.state is ReservationState.FAILED
        assert (kept.error or "").startswith("timeout")
