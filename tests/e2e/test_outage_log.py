"""A database outage is summarised in the log, whatever the number of chargers (issue 21
item 5): the first failure with its cause, one summary line per interval, the recovery
with its duration and counts. No component logs one line per event meanwhile: not the
CALLERRORs sent to each charger, not the frame log's deferred batches, not the health
probe, not the connected flags of chargers that come and go."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import trio

from tests.e2e.conftest import server_settings, start_server
from tests.support.charger import HandshakeRefused, RawCharger
from tests.support.outage import Outage
from voltaro.settings import UnknownChargers

CHARGERS = 20
ROUNDS = 3  # messages each charger sends (and retries) during the outage
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "X1"}


async def eventually(check: object, what: str, within: float = 30) -> None:
    with trio.move_on_after(within):
        while not check():  # type: ignore[operator]  # noqa: ASYNC110
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def test_outage_with_many_chargers_is_summarised_not_logged_per_event(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = server_settings(
        database_url,
        tmp_path,
        db_retry_seconds=0.5,
        db_outage_log_interval=1.0,
        unknown_chargers=UnknownChargers.ACCEPT,
        max_pending_per_ip=1000,
    )
    refused: list[int] = []
    handshakes: list[int] = []  # HTTP status of each reconnection during the outage
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            cps = []
            for n in range(CHARGERS):
                # Generous bounds: the machine running the suite may be loaded.
                cp = await RawCharger.connect(f"{server.url}/CP-{n}", timeout=60)
                assert (await cp.call("BootNotification", BOOT, timeout=60))["status"] == (
                    "Accepted"
                )
                cps.append(cp)
            outage = Outage(database_url)
            outage.start()
            begin = len(caplog.records)
            try:

                async def busy(cp: RawCharger, n: int) -> None:
                    for i in range(ROUNDS):
                        payload = {
                            "connectorId": 1 + i % 2,
                            "errorCode": "NoError",
                            "status": "Charging",
                        }
                        answer = await cp.call("StatusNotification", payload, timeout=30)
                        refused.append(int(isinstance(answer, list)))
                    if n % 4 == 0:  # some hang up and try to come back meanwhile
                        await cp.close()
                        try:
                            back = await RawCharger.connect(f"{server.url}/CP-{n}", timeout=30)
                        except HandshakeRefused as exc:
                            handshakes.append(exc.status)
                        else:
                            handshakes.append(101)
                            await back.close()

                async with trio.open_nursery() as senders:
                    for n, cp in enumerate(cps):
                        senders.start_soon(busy, cp, n)
                # A few summary intervals, with the health probe and the frame log due.
                await eventually(
                    lambda: sum("still unavailable" in r.getMessage() for r in caplog.records) >= 3,
                    "three summaries",
                )
            finally:
                outage.end()
            await eventually(
                lambda: any("available again" in r.getMessage() for r in caplog.records),
                "the recovery line",
            )
            end = len(caplog.records)
            await trio.sleep(0)  # noqa: ASYNC115 - let the last lines be written
            for n, cp in enumerate(cps):
                if n % 4:
                    payload = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
                    assert await cp.call("StatusNotification", payload, timeout=20) == {}
                    await cp.close()
        finally:
            stop.set()
            server.db.dispose()
    assert sum(refused) >= CHARGERS  # the chargers did get (and retry) CALLERRORs
    assert handshakes == [503] * (CHARGERS // 4), handshakes
    # Nothing per handshake either, even at INFO: the 503s are counted in the summary.
    refusals = [r for r in caplog.records[begin:end] if "HTTP 503" in r.getMessage()]
    assert refusals == [], [r.getMessage() for r in refusals]
    # Voltaro's own lines (the driver may add one of its own when a connection it was
    # using is terminated, e.g. psycopg's "error ignored terminating Pipeline").
    during = [
        r
        for r in caplog.records[begin:end]
        if r.levelno >= logging.WARNING and r.name.startswith("voltaro")
    ]
    messages = [f"{r.name}: {r.getMessage()}" for r in during]
    summaries = [m for m in messages if "still unavailable" in m]
    first = [m for m in messages if m.startswith("voltaro.store.health: database unavailable:")]
    recovered = [m for m in messages if "available again" in m]
    # Bounded: the outage's own lines and nothing per charger, per message or per batch.
    # (The connected flags of the chargers that hung up are put right once, in one
    # line, when the database is back.)
    reconciled = [m for m in messages if "connected flags reconciled" in m]
    assert len(reconciled) <= 1, reconciled
    others = [m for m in messages if m not in summaries + first + recovered + reconciled]
    assert others == [], sorted({re.sub(r"CP-\d+|m-\d+", "#", m)[:120] for m in others})
    assert len(first) == 1, messages
    assert len(recovered) == 1, messages
    # The summaries and the recovery say what was held back.
    assert any(f"to {CHARGERS} chargers" in m for m in summaries), summaries
    assert "CALLERROR" in recovered[0], recovered
