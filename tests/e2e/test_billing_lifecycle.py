"""Billing data over a real WebSocket and a real database (issue 10 §2.1-§2.2, issue 21
item 2): what real chargers do every day must neither lose nor block a session."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from voltaro.domain.model import TransactionState
from voltaro.store import chargers, tags, transactions

FIXED = "2020-01-01T00:00:00Z"  # a charger without a clock


async def booted(server: RunningServer, charger_id: str) -> RawCharger:
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    assert (await cp.boot())["status"] == "Accepted"
    return cp


async def status(cp: RawCharger, connector: int, value: str) -> None:
    payload = {"connectorId": connector, "errorCode": "NoError", "status": value}
    assert await cp.call("StatusNotification", payload) == {}


async def start(
    cp: RawCharger, tag: str, meter: int = 0, connector: int = 1, at: str = FIXED
) -> dict[str, Any]:
    payload = {"connectorId": connector, "idTag": tag, "meterStart": meter, "timestamp": at}
    answer: dict[str, Any] = await cp.call("StartTransaction", payload)
    return answer


async def stop(cp: RawCharger, tx: int, meter: int, at: str = FIXED) -> None:
    payload = {"transactionId": tx, "meterStop": meter, "timestamp": at}
    assert await cp.call("StopTransaction", payload) == {}


def setup(server: RunningServer, *charger_ids: str) -> None:
    for charger_id in charger_ids:
        server.run(chargers.add_charger, charger_id)
    server.run(tags.add_tag, "DRIVER")


async def test_charger_without_clock_or_meter_bills_every_session(server: RunningServer) -> None:
    """Identical starts (fixed timestamp, meterStart 0) after the first session closed are
    a new session: its 300 Wh are billed, not dropped as a duplicate stop."""
    setup(server, "CP-1")
    cp = await booted(server, "CP-1")
    first = await start(cp, "DRIVER")
    retry = await start(cp, "DRIVER")  # the answer was lost: a real retry
    assert retry["transactionId"] == first["transactionId"]
    await stop(cp, first["transactionId"], 300)
    second = await start(cp, "DRIVER")
    assert second["transactionId"] != first["transactionId"]
    assert second["idTagInfo"]["status"] == "Accepted"
    await stop(cp, second["transactionId"], 300)
    rows = server.run(transactions.list_transactions)
    assert sorted((t.state, t.energy_wh) for t in rows) == [
        (TransactionState.COMPLETED, 300),
        (TransactionState.COMPLETED, 300),
    ]
    await cp.close()


async def test_conflicting_second_stop_is_kept_for_reconciliation(server: RunningServer) -> None:
    setup(server, "CP-1")
    cp = await booted(server, "CP-1")
    tx = (await start(cp, "DRIVER", meter=1000))["transactionId"]
    await stop(cp, tx, 1900)
    await stop(cp, tx, 1900)  # a retry: nothing new
    await stop(cp, tx, 2500)  # a different meterStop: kept, not billed twice
    assert server.run(transactions.get_transaction, tx).energy_wh == 900
    kept = server.run(transactions.orphan_stops)
    assert [(o["kind"], o["transaction_id"], o["meter_stop"]) for o in kept] == [
        ("conflict", tx, 2500)
    ]
    await cp.close()


async def test_lost_stop_is_superseded_by_the_next_start(server: RunningServer) -> None:
    """A lost StopTransaction must not block the driver: the next start on the same
    connector supersedes the old transaction (kept as interrupted, best-known energy)."""
    setup(server, "CP-1")
    cp = await booted(server, "CP-1")
    old = (await start(cp, "DRIVER", meter=1000, at="2025-01-01T10:00:00Z"))["transactionId"]
    mv = {
        "connectorId": 1,
        "transactionId": old,
        "meterValue": [{"timestamp": "2025-01-01T10:30:00Z", "sampledValue": [{"value": "1600"}]}],
    }
    assert await cp.call("MeterValues", mv) == {}
    # ... its StopTransaction is lost; the driver comes back.
    new = await start(cp, "DRIVER", meter=1800, at="2025-01-01T12:00:00Z")
    assert new["idTagInfo"]["status"] == "Accepted"
    stale = server.run(transactions.get_transaction, old)
    assert stale.state is TransactionState.INTERRUPTED
    assert (stale.energy_wh, stale.energy_flag) == (600, "estimated")
    assert "superseded" in stale.end_reason
    listed = server.run(transactions.list_transactions, state=TransactionState.INTERRUPTED)
    assert [t.transaction_id for t in listed] == [old]
    await cp.close()


async def test_available_after_reboot_interrupts_and_frees_the_tag(server: RunningServer) -> None:
    setup(server, "CP-1", "CP-2")
    cp = await booted(server, "CP-1")
    old = (await start(cp, "DRIVER", meter=50, at="2025-01-01T10:00:00Z"))["transactionId"]
    await status(cp, 1, "Charging")
    await cp.close()
    cp = await booted(server, "CP-1")  # rebooted: the session and its stop are gone
    await status(cp, 1, "Available")
    stale = server.run(transactions.get_transaction, old)
    assert stale.state is TransactionState.INTERRUPTED
    assert "rebooted" in stale.end_reason
    other = await booted(server, "CP-2")
    assert (await start(other, "DRIVER", connector=1))["idTagInfo"]["status"] == "Accepted"
    await cp.close()
    await other.close()


async def test_refused_start_never_holds_the_tag(server: RunningServer) -> None:
    """Issue 21 item 2: accepted on A, ConcurrentTx on B (which then sends nothing),
    A stops, the next start with the tag on C is Accepted."""
    setup(server, "A", "B", "C")
    a, b, c = [await booted(server, name) for name in ("A", "B", "C")]
    on_a = await start(a, "DRIVER", at="2025-01-01T10:00:00Z")
    assert on_a["idTagInfo"]["status"] == "Accepted"
    on_b = await start(b, "DRIVER", at="2025-01-01T10:05:00Z")
    assert on_b["idTagInfo"]["status"] == "ConcurrentTx"
    refused = server.run(transactions.get_transaction, on_b["transactionId"])
    assert refused.state is TransactionState.REFUSED
    assert refused.end_reason == "start refused: ConcurrentTx"
    await stop(a, on_a["transactionId"], 700, at="2025-01-01T11:00:00Z")
    on_c = await start(c, "DRIVER", at="2025-01-01T11:10:00Z")
    assert on_c["idTagInfo"]["status"] == "Accepted"
    assert [t.transaction_id for t in server.run(transactions.list_transactions, active=True)] == [
        on_c["transactionId"]
    ]
    for cp in (a, b, c):
        await cp.close()


async def test_per_phase_figures_and_negative_energy(server: RunningServer) -> None:
    """Issue 10 §2.8: latest timestamp only, L1-L3 summed, N excluded; a negative
    energy register never becomes the session's reading."""
    setup(server, "CP-1")
    cp = await booted(server, "CP-1")
    tx = (await start(cp, "DRIVER", meter=1000, at="2025-01-01T10:00:00Z"))["transactionId"]

    def phases(at: str, l1: str, l2: str, l3: str, n: str) -> dict[str, Any]:
        power = "Power.Active.Import"
        return {
            "timestamp": at,
            "sampledValue": [
                {"value": v, "measurand": power, "phase": p, "unit": "W"}
                for v, p in ((l1, "L1"), (l2, "L2"), (l3, "L3"), (n, "N"))
            ]
            + [{"value": "-50" if at.endswith("30:00Z") else "1400"}],
        }

    values = {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [
            phases("2025-01-01T10:10:00Z", "3000", "3000", "3000", "90"),
            phases("2025-01-01T10:20:00Z", "3680", "0", "0", "90"),
            phases("2025-01-01T10:30:00Z", "3700", "10", "20", "90"),
        ],
    }
    assert await cp.call("MeterValues", values) == {}
    live = server.run(transactions.get_transaction, tx)
    assert live.last_power_w == 3730  # the 10:30 phases, without N
    assert live.last_meter_wh == 1400  # the negative register at 10:30 is ignored
    await cp.close()


async def test_interruption_by_status_is_published_and_logged(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A transaction ended by a StatusNotification (Available after a reboot, issue 10
    §2.2) is announced like any other end: a ``transaction.ended`` event on the hub (so
    consoles and ``ctl events`` see it) and one structured log line. Faulted while a
    session runs ends nothing: the charger still sends its StopTransaction (§4.10)."""
    caplog.set_level(logging.INFO)
    setup(server, "CP-1")
    assert server.addresses.control_socket is not None
    control = await ControlClient.connect(server.addresses.control_socket)
    assert (await control.request("subscribe", {"frames": False}))["ok"]
    cp = await booted(server, "CP-1")
    tx = (await start(cp, "DRIVER", meter=50, at="2025-01-01T10:00:00Z"))["transactionId"]
    reading = {"timestamp": "2025-01-01T10:20:00Z", "sampledValue": [{"value": "1250"}]}
    assert (
        await cp.call(
            "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [reading]}
        )
        == {}
    )
    faulted = {"connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted"}
    assert await cp.call("StatusNotification", faulted) == {}
    assert server.run(transactions.get_transaction, tx).state is TransactionState.ACTIVE
    await cp.close()
    cp = await booted(server, "CP-1")  # rebooted: the session and its stop are gone
    await status(cp, 1, "Available")
    with trio.fail_after(10):
        while not any(e.get("event") == "transaction.ended" for e in control.events):
            control.events.append(await control.read())
    ended = [e["data"] for e in control.events if e.get("event") == "transaction.ended"]
    assert len(ended) == 1, ended
    assert ended[0]["transaction_id"] == tx
    assert ended[0]["charger_id"] == "CP-1"
    assert ended[0]["connector_id"] == 1
    assert ended[0]["state"] == "interrupted"
    assert "rebooted" in ended[0]["reason"]
    assert ended[0]["energy_wh"] == 1200  # best known: the last reading
    lines = [r.getMessage() for r in caplog.records if f"transaction={tx}" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "charger=CP-1" in lines[0]
    assert "connector=1" in lines[0]
    assert "interrupted" in lines[0]
    assert "rebooted" in lines[0]
    await control.aclose()
    await cp.close()


async def test_stop_then_hang_up_at_once_is_billed_once(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10 §2.5 with a real database: a charger sends StopTransaction and closes at
    once (seen with a conformance kit). Whether or not the stop got stored before the
    hang-up, the charger sends it again after reconnecting (it never got the answer,
    OCPP 1.6 §4.10): the session is billed exactly once, the disconnect is not a crash."""
    caplog.set_level(logging.INFO)
    setup(server, "CP-1")
    cp = await booted(server, "CP-1")
    tx = (await start(cp, "DRIVER", meter=100, at="2026-01-01T10:00:00Z"))["transactionId"]
    payload = {"transactionId": tx, "meterStop": 3100, "timestamp": "2026-01-01T11:00:00Z"}
    await cp.send_raw(json.dumps([2, "stop-1", "StopTransaction", payload]))
    await cp.close()  # without reading the answer
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert await cp.call("StopTransaction", payload) == {}  # its queued message, again
    done = server.run(transactions.get_transaction, tx)
    assert (done.state, done.energy_wh) == (TransactionState.COMPLETED, 3000)
    assert server.run(transactions.orphan_stops) == []  # no conflict recorded either
    assert len(server.run(transactions.list_transactions, active=False)) == 1
    await cp.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
