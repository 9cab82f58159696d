"""Every charger-initiated Core message through a real WebSocket and the real database."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.support.charger import HandshakeRefused, RawCharger
from voltaro.domain.model import AuthorizationStatus, RegistrationStatus, TransactionState
from voltaro.store import chargers, tags, transactions


async def booted(server: RunningServer, charger_id: str = "CP-1") -> RawCharger:
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    answer = await cp.boot(chargeBoxSerialNumber="B" * 34, firmwareVersion="1.2")
    assert answer["status"] == "Accepted"
    return cp


async def test_full_session_boot_to_stop(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "04A1B2")
    cp = await booted(server)
    for connector in (0, 1):
        assert (
            await cp.call(
                "StatusNotification",
                {"connectorId": connector, "errorCode": "NoError", "status": "Available"},
            )
            == {}
        )
    assert (await cp.call("Authorize", {"idTag": "04a1b2"}))["idTagInfo"]["status"] == "Accepted"
    started = await cp.call(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "04A1B2",
            "meterStart": 1000,
            "timestamp": "2025-05-01T10:00:00Z",
        },
    )
    tx = started["transactionId"]
    assert started["idTagInfo"] == {"status": "Accepted"}
    for minute, wh in ((1, "1500"), (2, "2100.5")):
        assert (
            await cp.call(
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": tx,
                    "meterValue": [
                        {
                            "timestamp": f"2025-05-01T10:0{minute}:00Z",
                            "sampledValue": [
                                {"value": wh},
                                {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                                {
                                    "value": "31.9",
                                    "measurand": "Current.Import",
                                    "phase": "L1",
                                    "unit": "A",
                                },
                            ],
                        }
                    ],
                },
            )
            == {}
        )
    stopped = await cp.call(
        "StopTransaction",
        {
            "transactionId": tx,
            "meterStop": 2500,
            "timestamp": "2025-05-01T10:03:00Z",
            "idTag": "04A1B2",
            "reason": "EVDisconnected",
            "transactionData": [
                {
                    "timestamp": "2025-05-01T10:03:00Z",
                    "sampledValue": [{"value": "2500", "context": "Transaction.End"}],
                }
            ],
        },
    )
    assert stopped == {"idTagInfo": {"status": "Accepted"}}
    record = server.run(transactions.get_transaction, tx)
    assert (record.state, record.energy_wh, record.stop_reason) == (
        TransactionState.COMPLETED,
        1500,
        "EVDisconnected",
    )
    values = server.run(transactions.transaction_meter_values, tx)
    assert len(values) == 3
    assert sum(len(v.sampled_values) for v in values) == 7
    stored = server.run(chargers.get_charger, "CP-1")
    assert stored.identity.charge_box_serial_number == "B" * 34
    assert stored.connected
    assert {c.connector_id for c in stored.connectors} == {0, 1}
    await cp.close()


async def test_retries_and_orphans(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(chargers.add_charger, "CP-2")
    cp = await booted(server)
    start = {
        "connectorId": 1,
        "idTag": "UNKNOWN",
        "meterStart": 5,
        "timestamp": "2024-12-31T23:00:00+01:00",
    }  # an old, offline-queued start
    first = await cp.call("StartTransaction", start)
    again = await cp.call("StartTransaction", start)
    assert first["transactionId"] == again["transactionId"] > 0
    assert first["idTagInfo"]["status"] == "Invalid"  # recorded anyway (R55)
    assert len(server.run(transactions.list_transactions)) == 1
    for unknown in (-1, 0, 777):
        assert (
            await cp.call(
                "StopTransaction",
                {"transactionId": unknown, "meterStop": 10, "timestamp": "2025-01-01T00:00:00Z"},
            )
            == {}
        )
    # Another charger cannot stop or meter CP-1's transaction, and gets no CALLERROR.
    other = await booted(server, "CP-2")
    assert (
        await other.call(
            "StopTransaction",
            {
                "transactionId": first["transactionId"],
                "meterStop": 99,
                "timestamp": "2025-01-01T00:00:00Z",
            },
        )
        == {}
    )
    assert (
        await other.call(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": first["transactionId"],
                "meterValue": [
                    {"timestamp": "2025-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]}
                ],
            },
        )
        == {}
    )
    record = server.run(transactions.get_transaction, first["transactionId"])
    # Refused (Invalid tag): kept for the record, closed at once (issue 21 item 2); the
    # foreign stop did not touch it.
    assert record.state is TransactionState.REFUSED
    assert record.meter_stop is None
    assert server.run(transactions.transaction_meter_values, first["transactionId"]) == []
    orphans = server.run(transactions.orphan_stops)
    assert sorted(o["kind"] for o in orphans) == ["foreign", "unknown", "unknown", "unknown"]
    stop = {
        "transactionId": first["transactionId"],
        "meterStop": 905,
        "timestamp": "2025-01-01T01:00:00Z",
    }
    assert await cp.call("StopTransaction", stop) == {}
    assert await cp.call("StopTransaction", stop) == {}  # a retry: no double counting
    assert server.run(transactions.get_transaction, first["transactionId"]).energy_wh == 900
    await cp.close()
    await other.close()


async def test_tag_statuses(server: RunningServer) -> None:
    from datetime import UTC, datetime, timedelta

    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "GROUP")
    server.run(tags.add_tag, "MEMBER", parent="GROUP")
    server.run(tags.add_tag, "GONE", expiry=datetime.now(UTC) - timedelta(days=1))
    server.run(tags.add_tag, "STOLEN", status=AuthorizationStatus.BLOCKED)
    cp = await booted(server)

    async def status(tag: str) -> dict[str, str]:
        return (await cp.call("Authorize", {"idTag": tag}))["idTagInfo"]

    assert await status("member") == {"status": "Accepted", "parentIdTag": "GROUP"}
    assert (await status("GONE"))["status"] == "Expired"
    assert (await status("STOLEN"))["status"] == "Blocked"
    assert await status("NOBODY") == {"status": "Invalid"}
    await cp.close()


async def test_quirks_are_answered_and_kept(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-Q")
    cp = await booted(server, "CP-Q")
    assert (
        await cp.call(
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "Error",
                "status": "Faulted",
                "info": "User didn't disconnect vehicle within "
                "00:10:00 after the end of the session",
            },
        )
        == {}
    )
    connector = server.run(chargers.get_charger, "CP-Q").connectors[0]
    assert connector.error_code == "Error"
    assert connector.info is not None
    assert len(connector.info) > 50
    started = await cp.call(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "X",
            "meterStart": 100.7,
            "timestamp": "2025-01-01T10:00:00.123+02",
        },
    )
    assert (
        await cp.call(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": started["transactionId"],
                "meterValue": [
                    {
                        "timestamp": "2025-01-01T10:00:00",
                        "sampledValue": [
                            {"value": 22.5, "measurand": "Temperature", "unit": "Celcius"},
                            {"value": "21", "measurand": "Temperature", "unit": "Celsius"},
                        ],
                    }
                ],
            },
        )
        == {}
    )
    record = server.run(transactions.get_transaction, started["transactionId"])
    assert record.meter_start == 101
    assert record.start_time.isoformat() == "2025-01-01T08:00:00.123000+00:00"
    heartbeat = await cp.call("Heartbeat", {})
    assert heartbeat["currentTime"].endswith("Z")
    await cp.close()


async def test_data_transfer_vendor_table(database_url: str, tmp_path) -> None:
    from tests.e2e.conftest import server_settings, start_server

    settings = server_settings(
        database_url, tmp_path, data_transfer_vendors={"com.acme": ("Ping",)}
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        server.run(chargers.add_charger, "CP-D")
        cp = await booted(server, "CP-D")
        assert (await cp.call("DataTransfer", {"vendorId": "other"}))["status"] == (
            "UnknownVendorId"
        )
        assert (await cp.call("DataTransfer", {"vendorId": "com.acme", "messageId": "X"}))[
            "status"
        ] == "UnknownMessageId"
        assert (
            await cp.call(
                "DataTransfer", {"vendorId": "com.acme", "messageId": "Ping", "data": "hi"}
            )
        )["status"] == "Accepted"
        await cp.close()
        stop.set()
        server.db.dispose()


async def test_pending_registration_and_unknown_ids(server: RunningServer) -> None:
    with pytest.raises(HandshakeRefused) as refused:
        await RawCharger.connect(f"{server.url}/NOBODY")
    assert refused.value.status == 404
    server.run(chargers.add_charger, "CP-P", registration=RegistrationStatus.PENDING)
    cp = await RawCharger.connect(f"{server.url}/CP-P")
    answer = await cp.boot()
    assert answer["status"] == "Pending"
    assert answer["interval"] == server.settings.boot_retry_interval
    server.run(chargers.set_registration, "CP-P", RegistrationStatus.ACCEPTED)
    assert (await cp.boot())["status"] == "Accepted"
    await cp.close()


def _lock_sqlite(url: str) -> sqlite3.Connection:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


async def test_database_outage_during_stop_then_retry(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    cp = await booted(server)
    started = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2025-01-01T10:00:00Z"},
    )
    stop = {
        "transactionId": started["transactionId"],
        "meterStop": 4200,
        "timestamp": "2025-01-01T11:00:00Z",
        "reason": "Local",
    }
    url = server.settings.database_url
    if url.startswith("sqlite"):
        lock = _lock_sqlite(url)
        try:
            error = await cp.call("StopTransaction", stop, timeout=15)
            # Other messages keep being answered while the database is away.
            assert "currentTime" in await cp.call("Heartbeat", {})
        finally:
            lock.execute("ROLLBACK")
            lock.close()
    else:
        name = url.rsplit("/", 1)[-1]
        admin = psycopg.connect(
            url.rsplit("/", 1)[0].replace("+psycopg", "") + "/test", autocommit=True
        )
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            error = await cp.call("StopTransaction", stop, timeout=15)
            assert "currentTime" in await cp.call("Heartbeat", {})
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.close()
    assert error[0] == 4
    assert error[2] == "InternalError"
    assert await cp.call("StopTransaction", stop, timeout=15) == {}  # the charger's retry
    done = server.run(transactions.list_transactions, active=False)
    assert len(done) == 1
    assert done[0].energy_wh == 4200
    await cp.close()
