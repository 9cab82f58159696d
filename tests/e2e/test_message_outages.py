"""Each charger message arriving while the database is down (PostgreSQL: connections
refused and terminated) or write-locked (SQLite: another connection holds BEGIN
EXCLUSIVE), issue 10 §3 and the answer rule (docs/operations.md "The answer rule").

For every message the test asserts what the charger gets (a CALLERROR InternalError it
will retry, never a CALLRESULT for something not stored), what is stored meanwhile
(nothing, not half of it), and what the charger's retries store once the database is
back (the same transaction id, nothing counted twice). StatusNotification is in
tests/e2e/test_acknowledged_is_stored.py, a StopTransaction retried after an outage
also in tests/e2e/test_core_messages.py.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from tests.e2e.conftest import RunningServer
from tests.support.charger import RawCharger
from tests.support.outage import database_outage
from voltaro.domain.model import TransactionState
from voltaro.store import chargers, tags, transactions
from voltaro.store.schema import DataTransferRow, MeterValueRow, TransactionRow


async def booted(server: RunningServer, **identity: Any) -> RawCharger:
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "DRIVER")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await cp.boot(**identity))["status"] == "Accepted"
    return cp


async def refused_during_outage(
    server: RunningServer, cp: RawCharger, action: str, payload: dict[str, Any]
) -> None:
    """Send ``action`` while the database is unavailable: a CALLERROR InternalError (the
    charger keeps the message and retries, OCPP 1.6 §4.10), and the server still answers
    other messages meanwhile."""
    with database_outage(server.settings.database_url):
        answer = await cp.call(action, payload, timeout=20)
        assert "currentTime" in await cp.call("Heartbeat", {})
    assert isinstance(answer, list), f"{action} acknowledged during an outage: {answer!r}"
    assert answer[0] == 4, answer
    assert answer[2] == "InternalError", answer


def count(server: RunningServer, row: type) -> int:
    return int(server.run(lambda s: s.scalar(select(func.count()).select_from(row))))


async def test_boot_notification_during_an_outage(server: RunningServer) -> None:
    cp = await booted(server, firmwareVersion="1.0")
    await refused_during_outage(
        server,
        cp,
        "BootNotification",
        {"chargePointVendor": "Acme", "chargePointModel": "X2", "firmwareVersion": "2.0"},
    )
    identity = server.run(chargers.get_charger, "CP-1").identity
    assert (identity.model, identity.firmware_version) == ("X1", "1.0")  # nothing half-done
    again = await cp.boot(model="X2", firmwareVersion="2.0")  # the charger's retry
    assert again["status"] == "Accepted"
    assert again["interval"] > 0
    identity = server.run(chargers.get_charger, "CP-1").identity
    assert (identity.model, identity.firmware_version) == ("X2", "2.0")
    await cp.close()


async def test_authorize_during_an_outage(server: RunningServer) -> None:
    """Authorize stores nothing; it only reads the tag. PostgreSQL down: the read fails,
    the charger gets InternalError and retries (or uses its local list, §3.5). SQLite
    write-locked: reads go on, so it is answered from the database as usual."""
    cp = await booted(server)
    with database_outage(server.settings.database_url) as outage:
        answer = await cp.call("Authorize", {"idTag": "DRIVER"}, timeout=20)
        unknown = await cp.call("Authorize", {"idTag": "STRANGER"}, timeout=20)
    if outage.is_sqlite:
        assert answer == {"idTagInfo": {"status": "Accepted"}}
        assert unknown == {"idTagInfo": {"status": "Invalid"}}
    else:
        # Never "Invalid" for a tag we could not look up: that would refuse a driver.
        for refused in (answer, unknown):
            assert (refused[0], refused[2]) == (4, "InternalError"), refused
    assert (await cp.call("Authorize", {"idTag": "DRIVER"}))["idTagInfo"]["status"] == ("Accepted")
    await cp.close()


async def test_start_transaction_during_an_outage_keeps_one_id(server: RunningServer) -> None:
    """A start whose answer the charger never got (stored before the outage) and a new
    start, both sent during the outage: CALLERRORs, nothing stored (on write-locked
    SQLite the first is found without a write and answered with its id); the retries
    after it get the first start's id again and one new id, each exactly once."""
    cp = await booted(server)
    server.run(tags.add_tag, "RIDER")
    first = {
        "connectorId": 1,
        "idTag": "DRIVER",
        "meterStart": 100,
        "timestamp": "2026-01-01T10:00:00Z",
    }
    second = {
        "connectorId": 2,
        "idTag": "RIDER",
        "meterStart": 500,
        "timestamp": "2026-01-01T10:01:00Z",
    }
    x = (await cp.call("StartTransaction", first))["transactionId"]
    if server.settings.database_url.startswith("sqlite"):
        # Write-locked SQLite: the retry of a start already stored needs no write (it
        # is found, not stored again), so it is answered with its id: a true promise.
        with database_outage(server.settings.database_url):
            assert (await cp.call("StartTransaction", first, timeout=20))["transactionId"] == x
    else:
        await refused_during_outage(server, cp, "StartTransaction", first)
    await refused_during_outage(server, cp, "StartTransaction", second)
    assert count(server, TransactionRow) == 1  # nothing stored during the outage
    again = await cp.call("StartTransaction", first)  # the retry, database back
    assert again["transactionId"] == x
    y = (await cp.call("StartTransaction", second))["transactionId"]
    assert y != x
    assert (await cp.call("StartTransaction", second))["transactionId"] == y  # answer lost
    assert count(server, TransactionRow) == 2
    for tx, meter in ((x, 1100), (y, 2500)):
        stop = {"transactionId": tx, "meterStop": meter, "timestamp": "2026-01-01T11:00:00Z"}
        assert await cp.call("StopTransaction", stop) == {}
    done = {t.transaction_id: t for t in server.run(transactions.list_transactions, active=False)}
    assert {tx: (t.state, t.energy_wh) for tx, t in done.items()} == {
        x: (TransactionState.COMPLETED, 1000),
        y: (TransactionState.COMPLETED, 2000),
    }
    await cp.close()


async def test_meter_values_during_an_outage_are_stored_once(server: RunningServer) -> None:
    cp = await booted(server)
    start = {
        "connectorId": 1,
        "idTag": "DRIVER",
        "meterStart": 1000,
        "timestamp": "2026-01-01T10:00:00Z",
    }
    tx = (await cp.call("StartTransaction", start))["transactionId"]

    def values(at: str, wh: int) -> dict[str, Any]:
        reading = {
            "timestamp": at,
            "sampledValue": [
                {"value": str(wh)},
                {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
            ],
        }
        return {"connectorId": 1, "transactionId": tx, "meterValue": [reading]}

    assert await cp.call("MeterValues", values("2026-01-01T10:10:00Z", 1500)) == {}
    late = values("2026-01-01T10:20:00Z", 2000)
    await refused_during_outage(server, cp, "MeterValues", late)
    assert count(server, MeterValueRow) == 2  # the first reading's two samples only
    assert server.run(transactions.get_transaction, tx).last_meter_wh == 1500
    assert await cp.call("MeterValues", late) == {}  # the retry
    assert await cp.call("MeterValues", late) == {}  # and again (its answer lost)
    assert count(server, MeterValueRow) == 4  # each sample once
    assert server.run(transactions.get_transaction, tx).last_meter_wh == 2000
    stop = {"transactionId": tx, "meterStop": 2600, "timestamp": "2026-01-01T10:30:00Z"}
    assert await cp.call("StopTransaction", stop) == {}
    assert server.run(transactions.get_transaction, tx).energy_wh == 1600
    assert len(server.run(transactions.transaction_meter_values, tx)) == 2  # two readings
    await cp.close()


async def test_stop_transaction_during_an_outage_is_billed_once(server: RunningServer) -> None:
    cp = await booted(server)
    start = {
        "connectorId": 1,
        "idTag": "DRIVER",
        "meterStart": 0,
        "timestamp": "2026-01-01T10:00:00Z",
    }
    tx = (await cp.call("StartTransaction", start))["transactionId"]
    stop = {
        "transactionId": tx,
        "meterStop": 4200,
        "timestamp": "2026-01-01T11:00:00Z",
        "reason": "EVDisconnected",
        "transactionData": [
            {"timestamp": "2026-01-01T10:30:00Z", "sampledValue": [{"value": "2100"}]},
            {"timestamp": "2026-01-01T11:00:00Z", "sampledValue": [{"value": "4200"}]},
        ],
    }
    await refused_during_outage(server, cp, "StopTransaction", stop)
    live = server.run(transactions.get_transaction, tx)
    assert (live.state, live.meter_stop) == (TransactionState.ACTIVE, None)
    assert count(server, MeterValueRow) == 0
    assert await cp.call("StopTransaction", stop) == {}  # the retry
    assert await cp.call("StopTransaction", stop) == {}  # again: a duplicate, answered
    done = server.run(transactions.get_transaction, tx)
    assert (done.state, done.energy_wh) == (TransactionState.COMPLETED, 4200)
    assert count(server, MeterValueRow) == 2  # transactionData once
    assert server.run(transactions.orphan_stops) == []  # no conflict, no orphan
    await cp.close()


async def test_data_transfer_during_an_outage(server: RunningServer) -> None:
    cp = await booted(server)
    payload = {"vendorId": "com.acme", "messageId": "Diag", "data": "relay ok"}
    await refused_during_outage(server, cp, "DataTransfer", payload)
    assert count(server, DataTransferRow) == 0
    answer = await cp.call("DataTransfer", payload)  # the retry
    assert answer["status"] == "UnknownVendorId"  # no vendor table configured
    assert count(server, DataTransferRow) == 1
    await cp.close()
