"""Values real chargers send that the database must hold, or quarantine (issue 10 §2.3).

Before: PostgreSQL refused long units/measurands/phases/contexts/idTags and NULs with a
DataError, the error was retried and the charger told "InternalError" on every retry,
its queue blocked for good. Now every charger-supplied string is stored as sent (NUL and
lone surrogates escaped), and what the database still refuses (integers beyond its
range) is kept whole in quarantine while the charger is answered and moves on.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from tests.e2e.conftest import RunningServer
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from voltaro.store import chargers, quarantine, tags, transactions
from voltaro.store.schema import MeterValueRow, StatusHistoryRow

LONG_MEASURAND = "Energy.Active.Import.Register.Vendor.Specific.Extension." + "X" * 20
LONG_PHASE = "L1-L2-L3-N"
LONG_CONTEXT = "Sample.Periodic.Vendor.Specific.Context.Name"
LONG_TAG = "T" * 70


async def booted(server: RunningServer, charger_id: str = "CP-1") -> RawCharger:
    server.run(chargers.add_charger, charger_id)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    assert (await cp.boot())["status"] == "Accepted"
    return cp


def samples(server: RunningServer) -> list[tuple[str, str, str, str, str]]:
    def load(s: Any) -> list[tuple[str, str, str, str, str]]:
        return [
            (r.value, r.unit, r.measurand, r.phase, r.context)
            for r in s.scalars(select(MeterValueRow).order_by(MeterValueRow.id))
        ]

    return list(server.run(load))


async def test_long_strings_are_stored_as_sent(server: RunningServer) -> None:
    cp = await booted(server)
    started = await cp.call(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": LONG_TAG,
            "meterStart": 100,
            "timestamp": "2026-01-01T10:00:00Z",
        },
    )
    assert started["transactionId"] > 0
    tx = started["transactionId"]
    stopped = await cp.call(
        "StopTransaction",
        {
            "transactionId": tx,
            "meterStop": 5100,
            "timestamp": "2026-01-01T11:00:00Z",
            "idTag": LONG_TAG,
            "transactionData": [
                {
                    "timestamp": "2026-01-01T11:00:00Z",
                    "sampledValue": [
                        {"value": "5.1", "unit": "kWh-Import-Register-Total"},
                        {
                            "value": "16",
                            "measurand": LONG_MEASURAND,
                            "phase": LONG_PHASE,
                            "context": LONG_CONTEXT,
                            "unit": "A",
                        },
                    ],
                }
            ],
        },
    )
    assert isinstance(stopped, dict), stopped  # a CALLRESULT, not a CALLERROR
    done = server.run(transactions.get_transaction, tx)
    assert done.state.value != "active"
    assert done.energy_wh == 5000
    assert done.id_tag == LONG_TAG
    stored = samples(server)
    assert any(v[0] == "5.1" and v[1] == "kWh-Import-Register-Total" for v in stored)
    assert any(
        s[2] == LONG_MEASURAND and s[3] == LONG_PHASE and s[4] == LONG_CONTEXT for s in stored
    )
    assert server.run(quarantine.count) == 0
    await cp.close()


async def test_nul_and_lone_surrogates_are_stored_losslessly(server: RunningServer) -> None:
    """NUL (PostgreSQL text cannot hold it) and lone surrogates (no UTF-8 encoder can)
    are stored repaired, as U+FFFD, so every reader (API, console, terminal) gets valid
    text, and nothing is lost: the raw frame, which holds the original as JSON escapes,
    is kept durably (quarantine, kind ``repaired``) before the charger is answered.
    json.loads of that frame gives back exactly the strings the charger sent."""
    server.run(tags.add_tag, "TAG")
    cp = await booted(server)
    # Written as JSON escapes on the wire: "\u0000" and a lone "\ud800".
    status_frame = (
        '[2,"n1","StatusNotification",{"connectorId":1,"errorCode":"OtherError",'
        '"status":"Faulted","info":"relay\\u0000stuck","vendorErrorCode":"E\\ud800",'
        '"timestamp":"2026-01-01T10:00:00Z"}]'
    )
    await cp.send_raw(status_frame)
    assert await cp.recv() == [3, "n1", {}]
    await cp.send_raw(status_frame)  # the same frame again (say its answer was lost)
    assert await cp.recv() == [3, "n1", {}]
    start_frame = json.dumps(
        [
            2,
            "n2",
            "StartTransaction",
            {
                "connectorId": 2,
                "idTag": "TAG\x00",
                "meterStart": 0,
                "timestamp": "2026-01-01T10:05:00Z",
            },
        ]
    )
    await cp.send_raw(start_frame)
    started = await cp.recv()
    assert started[0] == 3, started
    tx = started[2]["transactionId"]

    def load(s: Any) -> list[tuple[str | None, str | None]]:
        return [(r.info, r.vendor_error_code) for r in s.scalars(select(StatusHistoryRow))]

    # Stored repaired (display-safe) ...
    assert set(server.run(load)) == {("relay\ufffdstuck", "E\ufffd")}
    assert server.run(chargers.get_charger, "CP-1").connectors[0].status.value == "Faulted"
    assert server.run(transactions.get_transaction, tx).id_tag == "TAG\ufffd"
    # ... and the original kept, once per message, marked as repaired.
    kept = {e.unique_id: e for e in server.run(quarantine.list_entries)}
    assert set(kept) == {"n1", "n2"}
    assert {e.kind for e in kept.values()} == {"repaired"}
    assert kept["n1"].frame == status_frame
    assert "payload/info" in kept["n1"].error
    assert "payload/vendorErrorCode" in kept["n1"].error
    original = json.loads(kept["n1"].frame)[3]
    assert original["info"] == "relay\x00stuck"
    assert original["vendorErrorCode"] == "E\ud800"
    assert json.loads(kept["n2"].frame)[3]["idTag"] == "TAG\x00"
    # Operators find them with ctl (kind shown), raw frames in --json.
    listed = await ctl(server, "--json", "quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    assert {(r["unique_id"], r["kind"]) for r in json.loads(listed.stdout)} == {
        ("n1", "repaired"),
        ("n2", "repaired"),
    }
    await cp.close()


async def test_integers_beyond_the_columns_are_quarantined_and_answered(
    server: RunningServer,
) -> None:
    """connectorId 2**40 fits JSON and 64 bits (the edge lets it through) but not an int4
    column: PostgreSQL refuses it for good. The raw frames are kept in quarantine, every
    message is answered so the charger's queue moves on, and operators see them in
    `voltaro ctl quarantine list`. SQLite holds 64-bit integers: there they are stored."""
    cp = await booted(server)
    big = 2**40
    start_frame = json.dumps(
        [
            2,
            "s1",
            "StartTransaction",
            {
                "connectorId": big,
                "idTag": "TAG",
                "meterStart": 100,
                "timestamp": "2026-01-01T10:00:00Z",
            },
        ]
    )
    await cp.send_raw(start_frame)
    answer = await cp.recv()
    assert answer[0] == 3, answer  # answered, so the charger's queue moves on
    tx = answer[2]["transactionId"]
    assert 0 < tx < 2**31
    meter_frame = json.dumps(
        [
            2,
            "s2",
            "MeterValues",
            {
                "connectorId": big,
                "transactionId": tx,
                "meterValue": [
                    {"timestamp": "2026-01-01T10:30:00Z", "sampledValue": [{"value": "600"}]}
                ],
            },
        ]
    )
    await cp.send_raw(meter_frame)
    assert await cp.recv() == [3, "s2", {}]
    status = await cp.call(
        "StatusNotification", {"connectorId": big, "errorCode": "NoError", "status": "Available"}
    )
    assert status == {}
    # The server stays up and the charger goes on normally.
    assert "currentTime" in await cp.call("Heartbeat", {})
    entries = {e.unique_id: e for e in server.run(quarantine.list_entries)}
    listed = await ctl(server, "--json", "quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {r["unique_id"]: r for r in json.loads(listed.stdout)}
    if not server.settings.database_url.startswith("postgresql"):
        assert entries == {}
        assert rows == {}
        assert server.run(transactions.get_transaction, tx).connector_id == big
        await cp.close()
        return
    assert set(entries) == {"s1", "s2", "m-2"}
    assert entries["s1"].action == "StartTransaction"
    assert entries["s1"].frame == start_frame  # the raw frame, exactly as received
    assert entries["s1"].transaction_id == tx  # the id the charger was given
    assert "NumericValueOutOfRange" in entries["s1"].error or "out of range" in entries["s1"].error
    assert entries["s2"].frame == meter_frame
    assert entries["m-2"].action == "StatusNotification"
    assert server.run(transactions.get_transaction, tx) is None  # nothing half-stored
    assert rows["s1"]["frame"] == start_frame
    assert rows["s1"]["transaction_id"] == tx
    human = await ctl(server, "quarantine", "list", "--charger", "CP-1")
    assert human.returncode == 0
    header = human.stdout.splitlines()[0].split()
    assert header[:6] == [b"ID", b"AT", b"KIND", b"CHARGER", b"MESSAGE", b"ACTION"]
    assert {r["kind"] for r in rows.values()} == {"refused"}
    await cp.close()
