"""Issue 10 §2.6: on shutdown the server stops reading new frames, finishes the answers
in flight within shutdown_grace, then closes with 1001 (as hypercorn does)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.control_client import ControlClient
from tests.support.charger import HandshakeRefused, RawCharger
from tests.support.outage import Outage
from voltaro.domain.model import TransactionState
from voltaro.store import chargers, tags, transactions


@asynccontextmanager
async def booted_and_watched(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[RunningServer, trio.Event, RawCharger, ControlClient]]:
    """The server (15 s of shutdown grace and of database retries), charger CP-1 booted
    with tag T known, and a control client subscribed to the frames; the event stops the
    server (SIGTERM)."""
    settings = server_settings(database_url, tmp_path, shutdown_grace=15.0, db_retry_seconds=15.0)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        server.run(chargers.add_charger, "CP-1")
        server.run(tags.add_tag, "T")
        cp = await RawCharger.connect(f"{server.url}/CP-1")
        await cp.boot()
        watcher = await ControlClient.connect(server.addresses.control_socket or "")
        assert (await watcher.request("subscribe", {"frames": True}))["ok"]
        yield server, stop, cp, watcher
        await watcher.aclose()


async def test_start_transaction_in_flight_at_shutdown_is_committed_and_answered(
    database_url: str, tmp_path: Path
) -> None:
    async with booted_and_watched(database_url, tmp_path) as (server, stop, cp, watcher):
        outage = Outage(database_url)
        outage.start()  # the StartTransaction's write cannot finish yet
        try:
            start = {
                "connectorId": 1,
                "idTag": "T",
                "meterStart": 5,
                "timestamp": "2025-01-01T10:00:00Z",
            }
            await cp.send_raw('[2,"start-1","StartTransaction",' + _json(start) + "]")
            await _frame_read(watcher, "start-1")  # the server has it
            stop.set()  # SIGTERM
            await _refusing_new_chargers(server.url)  # shutdown has begun
        finally:
            outage.end()  # the write goes through now, during the grace period
        answer = await cp.recv(timeout=15)
        assert answer[0] == 3, answer
        assert answer[1] == "start-1"
        assert isinstance(answer[2]["transactionId"], int)
        assert answer[2]["idTagInfo"]["status"] == "Accepted"
        assert await cp.wait_closed(timeout=15) == 1001
    # Committed: the id the charger was given is the stored transaction.
    (tx,) = server.run(transactions.list_transactions, active=True)
    assert tx.transaction_id == answer[2]["transactionId"]
    assert tx.state is TransactionState.ACTIVE
    server.db.dispose()


async def test_calls_queued_behind_one_in_flight_at_shutdown_are_answered_in_order(
    database_url: str, tmp_path: Path
) -> None:
    """A misbehaving charger sent a second CALL before the first was answered (OCPP-J
    §4.1.1 allows the server to queue it): at shutdown both are answered, in arrival
    order, before the 1001 (the worker task of issue 14 step 5 is drained)."""
    async with booted_and_watched(database_url, tmp_path) as (server, stop, cp, watcher):
        outage = Outage(database_url)
        outage.start()
        try:
            start = {
                "connectorId": 1,
                "idTag": "T",
                "meterStart": 5,
                "timestamp": "2025-01-01T10:00:00Z",
            }
            await cp.send_raw('[2,"start-1","StartTransaction",' + _json(start) + "]")
            await cp.send_raw('[2,"hb-2","Heartbeat",{}]')
            await _frame_read(watcher, "hb-2")  # both read, the first still in flight
            stop.set()
            await _refusing_new_chargers(server.url)
        finally:
            outage.end()
        first = await cp.recv(timeout=15)
        second = await cp.recv(timeout=15)
        assert (first[0], first[1]) == (3, "start-1"), first
        assert (second[0], second[1]) == (3, "hb-2"), second
        assert await cp.wait_closed(timeout=15) == 1001
    server.db.dispose()


def _json(value: Any) -> str:
    return json.dumps(value)


async def _frame_read(watcher: ControlClient, unique_id: str) -> None:
    with trio.fail_after(10):
        while True:
            frame = await watcher.read()
            data = frame.get("data") or {}
            if (
                frame.get("type") == "event"
                and data.get("unique_id") == unique_id
                and data.get("direction") == "in"
            ):
                return


async def _refusing_new_chargers(url: str) -> None:
    with trio.fail_after(10):
        while True:
            try:
                probe = await RawCharger.connect(f"{url}/CP-PROBE", timeout=2)
            except HandshakeRefused as exc:
                # 404 until shutdown begins (the probe's id is unknown), then 503.
                if exc.status == 503:
                    return
                if exc.status != 404:
                    raise
            else:
                await probe.close()
            await trio.sleep(0.02)
