"""A CALLRESULT is a promise: every acknowledged message is stored (issue 21 item 1).

Raw-frame chargers on loopback (trio-websocket's client, plain JSON: never the server's
own classes) against the real server and database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import select
from trio_websocket import HandshakeError, open_websocket_url

from tests.e2e.conftest import server_settings, start_server
from tests.support.charger import RawCharger
from tests.support.outage import database_outage
from voltaro.settings import UnknownChargers
from voltaro.store import chargers
from voltaro.store.schema import ConnectorRow, StatusHistoryRow

STATUSES = ("Available", "Preparing", "Charging", "SuspendedEV", "Finishing")
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Ledger:
    acknowledged: list[tuple[str, int, str, datetime]] = field(default_factory=list)
    refused: int = 0  # CALLERRORs (the charger retried)
    handshake_refusals: int = 0


async def status_charger(url: str, charger_id: str, ledger: Ledger, count: int) -> None:
    """Boot, then ``count`` StatusNotifications on connectors 1 and 2 with increasing
    timestamps; a CALLERROR is retried up to three times, as chargers do (§4.10)."""
    for _ in range(20):  # refused at the handshake (503, 408 under load): come back
        try:
            await talk(url, charger_id, ledger, count)
            return
        except HandshakeError:
            ledger.handshake_refusals += 1
            await trio.sleep(0.5)
    raise AssertionError(f"{charger_id} could not connect")


async def talk(url: str, charger_id: str, ledger: Ledger, count: int) -> None:
    async with open_websocket_url(f"{url}/{charger_id}", subprotocols=["ocpp1.6"]) as ws:

        async def call(uid: str, action: str, payload: dict[str, Any]) -> Any:
            await ws.send_message(json.dumps([2, uid, action, payload]))
            return json.loads(await ws.get_message())

        for attempt in range(10):  # a refused boot is repeated (OCPP 1.6 §4.2)
            boot = await call(
                f"b{attempt}",
                "BootNotification",
                {"chargePointVendor": "L", "chargePointModel": "M"},
            )
            if boot[0] == 3:
                break
        for i in range(count):
            connector = 1 + i % 2
            status = STATUSES[i % len(STATUSES)]
            at = BASE + timedelta(seconds=i)
            payload = {
                "connectorId": connector,
                "errorCode": "NoError",
                "status": status,
                "timestamp": stamp(at),
            }
            for attempt in range(3):
                frame = await call(f"s{i}-{attempt}", "StatusNotification", payload)
                assert frame[1] == f"s{i}-{attempt}"
                if frame[0] == 3:
                    ledger.acknowledged.append((charger_id, connector, status, at))
                    break
                assert frame[0] == 4, frame
                assert frame[2] == "InternalError", frame
                ledger.refused += 1


def assert_acknowledged_stored(server_db: Any, ledger: Ledger) -> None:
    """Every acknowledged status is in the history, and every connector's state is the
    last status acknowledged for it (the timestamps increase)."""

    def load(s: Any) -> tuple[set[tuple[str, int, str, datetime]], dict[tuple[str, int], str]]:
        history = {
            (r.charger_id, r.connector_id, r.status, r.at)
            for r in s.scalars(select(StatusHistoryRow))
        }
        state = {(r.charger_id, r.connector_id): r.status for r in s.scalars(select(ConnectorRow))}
        return history, state

    history, state = server_db.run_sync(load)
    lost = [entry for entry in ledger.acknowledged if entry not in history]
    assert not lost, f"{len(lost)} acknowledged statuses not stored, e.g. {lost[:3]}"
    last: dict[tuple[str, int], tuple[datetime, str]] = {}
    for charger_id, connector, status, at in ledger.acknowledged:
        key = (charger_id, connector)
        if key not in last or at > last[key][0]:
            last[key] = (at, status)
    wrong = {k: (v[1], state.get(k)) for k, v in last.items() if state.get(k) != v[1]}
    assert not wrong, f"{len(wrong)} connectors differ from the last acknowledged: {wrong}"


# The charger side here is trio-websocket's client, which never closes its socket when
# the server rejects the handshake (trio-websocket 0.12.2; reproduced standalone: 5 of 5
# rejected handshakes leak). Under this load the server answers some handshakes with 503
# (by design, docs/operations.md), and the garbage collector's ResourceWarning then
# surfaces in whatever code runs next. It is the test client's socket (its local port is
# ephemeral, the remote one the server's), not the server's; what this test checks is
# what was stored.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in.*socket.socket:pytest.PytestUnraisableExceptionWarning"
)
async def test_every_acknowledged_status_is_stored_under_load(
    database_url: str, tmp_path: Path
) -> None:
    """200 chargers x 10 StatusNotifications at once, with a short write budget: the
    server may refuse (CALLERROR) but never acknowledge what it did not store."""
    chargers_count, per_charger = 200, 10
    settings = server_settings(
        database_url,
        tmp_path,
        db_retry_seconds=0.3,
        unknown_chargers=UnknownChargers.ACCEPT,
        # All chargers come from 127.0.0.1 here; the per-address handshake cap (issue 11)
        # is not what this test is about.
        max_pending_per_ip=1000,
    )
    ledger = Ledger()
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            with trio.fail_after(240):
                async with trio.open_nursery() as load:
                    for n in range(chargers_count):
                        load.start_soon(
                            status_charger, server.url, f"L{n:04d}", ledger, per_charger
                        )
        finally:
            stop.set()
    try:
        assert ledger.acknowledged, "nothing was acknowledged at all"
        assert_acknowledged_stored(server.db, ledger)
    finally:
        server.db.dispose()


async def test_status_during_outage_is_refused_and_not_half_stored(server: Any) -> None:
    """The database down (PostgreSQL) or write-locked (SQLite) during a
    StatusNotification: a CALLERROR InternalError, nothing stored; the retry after the
    outage is acknowledged and stored."""
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await cp.boot())["status"] == "Accepted"
    first = {
        "connectorId": 1,
        "errorCode": "NoError",
        "status": "Available",
        "timestamp": "2026-01-01T10:00:00Z",
    }
    assert await cp.call("StatusNotification", first) == {}
    second = {
        "connectorId": 1,
        "errorCode": "NoError",
        "status": "Charging",
        "timestamp": "2026-01-01T10:05:00Z",
    }
    with database_outage(server.settings.database_url):
        answer = await cp.call("StatusNotification", second, timeout=20)
    assert answer[0] == 4, answer
    assert answer[2] == "InternalError", answer
    history = server.run(chargers.status_history, "CP-1")
    assert [e.status for e in history] == ["Available"]
    assert server.run(chargers.get_charger, "CP-1").connectors[0].status.value == "Available"
    # The charger's retry once the database is back: acknowledged, then stored.
    assert await cp.call("StatusNotification", second, timeout=20) == {}
    history = server.run(chargers.status_history, "CP-1")
    assert [e.status for e in history] == ["Charging", "Available"]
    assert server.run(chargers.get_charger, "CP-1").connectors[0].status.value == "Charging"
    await cp.close()
