"""The database down (PostgreSQL) or locked (SQLite) at each step outside the message
answers: the handshake, a hang-up, the liveness flush, the outage log and start-up
(issue 10 §2.4 and §3, issue 21 items 3 and 5). Each test makes the failure happen and
asserts what the charger or operator gets, that the server stays up, and what is stored.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import update

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.support.charger import HandshakeRefused, RawCharger
from tests.support.outage import Outage, database_outage
from voltaro.service.ingest import Liveness
from voltaro.store import chargers
from voltaro.store.db import Database
from voltaro.store.schema import ChargePointRow


async def eventually(check: Any, *, within: float = 15.0, what: str = "condition") -> None:
    """Poll ``check()`` (sync) until it is true, within a deadline (no fixed sleeps)."""
    with trio.move_on_after(within):
        while not check():  # noqa: ASYNC110 - polling state another process changes
            await trio.sleep(0.05)
        return
    raise AssertionError(f"timed out waiting for {what}")


def flag(server: RunningServer, charger_id: str) -> bool:
    charger = server.run(chargers.get_charger, charger_id)
    return bool(charger.connected)


async def test_handshake_during_outage_is_503_with_retry_after(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    with database_outage(server.settings.database_url), pytest.raises(HandshakeRefused) as refused:
        await RawCharger.connect(f"{server.url}/CP-1", timeout=15)
    assert refused.value.status == 503
    assert int(refused.value.headers["retry-after"]) > 0
    assert not flag(server, "CP-1")
    # The server stayed up: once the database is back the charger connects and is shown.
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await cp.boot())["status"] == "Accepted"
    await eventually(lambda: flag(server, "CP-1"), what="connected flag")
    await cp.close()


async def test_hang_up_during_outage_is_written_when_the_database_returns(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 21 item 3: the disconnect write is retried until stored, never dropped."""
    caplog.set_level(logging.INFO)
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    assert (await cp.boot())["status"] == "Accepted"
    await eventually(lambda: flag(server, "CP-1"), what="connected flag")
    outage = Outage(server.settings.database_url)
    outage.start()
    try:
        await cp.close()
        await eventually(
            lambda: "charge point 'CP-1' disconnected" in caplog.text, what="the hang-up"
        )
        # The write of the flag failed at least once while the database was away.
        await eventually(lambda: "database unavailable" in caplog.text, what="a failed write")
    finally:
        outage.end()
    assert flag(server, "CP-1")  # not yet written...
    await eventually(lambda: not flag(server, "CP-1"), within=30, what="flag cleared")


async def test_stale_connected_flags_are_reconciled(database_url: str, tmp_path: Path) -> None:
    """A flag left set (crash, another writer) is cleared by the periodic reconcile."""
    settings = server_settings(database_url, tmp_path, connection_reconcile_interval=0.5)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            server.run(chargers.add_charger, "GHOST")

            def set_flag(s: Any) -> None:
                s.execute(update(ChargePointRow).values(connected=True))

            server.run(set_flag)
            assert flag(server, "GHOST")
            await eventually(lambda: not flag(server, "GHOST"), what="reconcile")
        finally:
            stop.set()
            server.db.dispose()


async def test_outage_is_logged_once_then_summarised_then_recovery(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 21 item 5: the first failure with its cause, one summary line per interval
    (messages waiting, chargers), the recovery with its duration; no line per retry."""
    caplog.set_level(logging.INFO)
    settings = server_settings(
        database_url, tmp_path, db_retry_seconds=4.0, db_outage_log_interval=0.5
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            cps = []
            for n in range(3):
                server.run(chargers.add_charger, f"CP-{n}")
                cp = await RawCharger.connect(f"{server.url}/CP-{n}")
                assert (await cp.boot())["status"] == "Accepted"
                cps.append(cp)
            payload = {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
            outage = Outage(database_url)
            outage.start()
            try:
                async with trio.open_nursery() as senders:
                    for cp in cps:
                        senders.start_soon(cp.call, "StatusNotification", payload, 20)
                    await eventually(
                        lambda: "database still unavailable" in caplog.text, what="summary"
                    )
            finally:
                outage.end()
            await eventually(lambda: "database available again" in caplog.text, what="recovery")
            for cp in cps:
                assert await cp.call("StatusNotification", payload, timeout=20) == {}
                await cp.close()
        finally:
            stop.set()
            server.db.dispose()
    health = [r for r in caplog.records if r.name == "voltaro.store.health"]
    first = [r for r in health if r.getMessage().startswith("database unavailable")]
    assert len(first) == 1, [r.getMessage() for r in first]
    assert first[0].levelno == logging.ERROR
    summaries = [r.getMessage() for r in health if "still unavailable" in r.getMessage()]
    assert summaries
    assert any("messages from 3 chargers" in line for line in summaries), summaries
    recovered = [r.getMessage() for r in health if "available again after" in r.getMessage()]
    assert len(recovered) == 1
    # No line per retry of every charger (the old "database error, retrying" flood).
    assert "retrying" not in caplog.text
    per_message = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "charger=" in r.getMessage()
    ]
    assert len(per_message) <= 3, [r.getMessage() for r in per_message]


async def test_last_seen_is_each_chargers_own_time(db: Database) -> None:
    """Issue 10 §2.11; and a flush during an outage keeps the times for the next one."""
    for charger_id in ("A", "B"):
        db.run_sync(chargers.add_charger, charger_id)
    liveness = Liveness(db)
    early = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    late = datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    liveness.seen("A", early)
    liveness.seen("B", late)
    with database_outage(db.url):
        await liveness.flush()
    assert liveness.pending == 2  # kept, not dropped
    await liveness.flush()
    assert liveness.pending == 0
    assert db.run_sync(chargers.get_charger, "A").last_seen == early
    assert db.run_sync(chargers.get_charger, "B").last_seen == late


async def test_start_with_the_database_down_exits_with_one_line(
    database_url: str, tmp_path: Path
) -> None:
    """Start-up does not hang or print a traceback: one line, exit status 1, so that a
    supervisor restarts it (docs/operations.md)."""
    outage = Outage(database_url)
    if outage.is_sqlite:
        # A write-locked SQLite file: the start-up write times out.
        Database(database_url).upgrade()
    outage.start()
    try:
        env = {
            **os.environ,
            "VOLTARO_DATABASE_URL": database_url,
            "VOLTARO_PORT": "0",
            "VOLTARO_HOST": "127.0.0.1",
            "VOLTARO_HTTP_ENABLED": "false",
            "VOLTARO_DB_RETRY_SECONDS": "1",
            "VOLTARO_CONTROL_SOCKET": str(tmp_path / "ctl.sock"),
        }
        with trio.fail_after(60):
            result = await trio.run_process(
                [sys.executable, "-m", "voltaro", "serve"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=env,
            )
    finally:
        outage.end()
    assert result.returncode == 1, result.stderr.decode()
    lines = [line for line in result.stderr.decode().splitlines() if line.startswith("voltaro:")]
    assert len(lines) == 1, result.stderr.decode()
    assert "cannot use the database" in lines[0]
    assert "Traceback" not in result.stderr.decode()
