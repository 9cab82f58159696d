"""Per-charger health (issue 19) from a scripted charger with known reconnects, clock
drift, command timeouts and CALLERRORs: the figures from the API, `voltaro ctl chargers
health` and `chargers show`, and the hourly rows stored when the server stops.

A real server on loopback (SQLite and PostgreSQL), raw-frame chargers, httpx, ctl.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.api.conftest import OPERATE, READ, client
from tests.e2e.conftest import server_settings, start_server
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from voltaro.settings import ApiScope, ApiToken
from voltaro.store import chargers
from voltaro.store.db import Database
from voltaro.store.schema import ChargerHealthRow

CONNECTIONS = 8
BEHIND_S = 200  # the charger's clock is this far behind


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _while_answering(cp: RawCharger, respond: Any, send: Any) -> Any:
    """Send a command and let the charger deal with its CALL (``respond(call)``)."""
    result: list[Any] = []

    async def run() -> None:
        result.append(await send())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await respond(await cp.next_call(timeout=15))
    return result[0]


def _stored(s: Session, charger_id: str) -> dict[str, Any]:
    row = s.execute(
        select(
            func.sum(ChargerHealthRow.connects),
            func.sum(ChargerHealthRow.command_timeouts),
            func.sum(ChargerHealthRow.call_errors_sent),
            func.sum(ChargerHealthRow.call_errors_received),
            func.sum(ChargerHealthRow.heartbeat_intervals),
            func.sum(ChargerHealthRow.online_s),
            func.min(ChargerHealthRow.min_lag_s),
        ).where(ChargerHealthRow.charger_id == charger_id)
    ).one()
    keys = ("connects", "timeouts", "sent", "received", "intervals", "online_s", "min_lag_s")
    return dict(zip(keys, row, strict=True))


async def test_health_of_a_scripted_charger(database_url: str, tmp_path: Path) -> None:
    settings = server_settings(
        database_url,
        tmp_path,
        http_enabled=True,
        http_port=0,
        # The get-config below times out after it; the charger answers the others within
        # it (~0.01 s, seconds on a loaded machine: one late answer is a second timeout).
        call_timeout=4.0,
        # 8 connections are flagged even if the test runs across an hour (4 + 4).
        health_flapping_connects_per_hour=3,
        health_drift_seconds=60,
        api_tokens=(
            ApiToken(token=READ, scope=ApiScope.READ, name="billing"),
            ApiToken(token=OPERATE, scope=ApiScope.OPERATE, name="ops"),
        ),
    )
    began = datetime.now(UTC)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        assert server.addresses.http is not None
        base = "http://{}:{}".format(*server.addresses.http)
        for charger_id in ("CP-H", "CP-QUIET"):
            server.run(chargers.add_charger, charger_id)
        quiet = await RawCharger.connect(f"{server.url}/CP-QUIET")
        await quiet.call("Heartbeat", {})
        # Seven short connections, each sending one Heartbeat (so the server has seen it:
        # its answer comes after the connection was counted). Intervals across
        # connections are not heartbeat intervals.
        for _ in range(CONNECTIONS - 2):
            cp = await RawCharger.connect(f"{server.url}/CP-H")
            await cp.call("Heartbeat", {})
            await cp.close()
        cp = await RawCharger.connect(f"{server.url}/CP-H")
        await cp.boot(firmwareVersion="FW-8")
        now = datetime.now(UTC)
        # A reading from the charger's offline queue (3 h old) first, then a status sent at
        # once with its clock BEHIND_S behind: the drift is the status's, not the queue's.
        await cp.call(
            "MeterValues",
            {
                "connectorId": 1,
                "meterValue": [
                    {
                        "timestamp": _iso(now - timedelta(hours=3)),
                        "sampledValue": [{"value": "10"}],
                    }
                ],
            },
        )
        await cp.call(
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": "Available",
                "timestamp": _iso(now - timedelta(seconds=BEHIND_S)),
            },
        )
        for _ in range(4):  # three intervals of milliseconds, with 300 s expected
            await cp.call("Heartbeat", {})
        refused = await cp.call("NoSuchAction", {})  # the server answers a CALLERROR
        assert refused[0] == 4
        assert refused[2] == "NotImplemented"

        async def ignore(call: list[Any]) -> None:
            pass

        async def call_error(call: list[Any]) -> None:
            await cp.answer_error(call, "InternalError", "out of memory")

        async def accept(call: list[Any]) -> None:
            await cp.answer(call, {"status": "Accepted"})

        async with client(base, OPERATE) as ops:
            timed_out = await _while_answering(
                cp, ignore, lambda: ops.post("/charge_points/CP-H/commands/get-config", json={})
            )
            assert timed_out.status_code == 504, timed_out.text
            failed = await _while_answering(
                cp, call_error, lambda: ops.post("/charge_points/CP-H/commands/clear-cache")
            )
            assert failed.status_code == 502, failed.text
            reset = await _while_answering(
                cp,
                accept,
                lambda: ops.post("/charge_points/CP-H/commands/reset", json={"type": "Soft"}),
            )
            assert reset.status_code == 200, reset.text
        await cp.close()
        # The reset: the charger comes back and boots.
        cp = await RawCharger.connect(f"{server.url}/CP-H")
        await cp.boot(firmwareVersion="FW-9")

        async with client(base, READ) as reader:
            response = await reader.get("/charge_points/CP-H/health")
            assert response.status_code == 200, response.text
            health = response.json()
            assert (await reader.get("/charge_points/NOPE/health")).status_code == 404
            fleet = (await reader.get("/fleet/health")).json()
            flagged = (await reader.get("/fleet/health", params={"flagged": "true"})).json()
        elapsed = (datetime.now(UTC) - began).total_seconds()
        assert health["connected"] is True
        assert health["connects_24h"] == CONNECTIONS
        assert health["connects_last_hour"] >= CONNECTIONS // 2
        assert 0 < health["online_s_24h"] <= elapsed
        assert health["command_timeouts_24h"] == 1
        assert health["call_errors_received_24h"] == 1
        assert health["call_errors_sent_24h"] == 1
        assert -BEHIND_S - 10 < health["clock_drift_s"] <= -BEHIND_S
        assert health["clock_samples_24h"] == 2
        assert health["heartbeat"]["intervals_24h"] == 3
        assert health["heartbeat"]["expected_s"] == 300
        assert health["heartbeat"]["regularity"] == "irregular"
        assert health["firmware_version"] == "FW-9"
        assert health["last_boot_reason"] == "Reset Soft requested by api:ops"
        assert [f["flag"] for f in health["flags"]] == ["flapping", "drifting"]
        assert "behind the server's" in health["flags"][1]["reason"]
        assert [h["charger_id"] for h in fleet] == ["CP-H", "CP-QUIET"]
        assert fleet[1]["connects_24h"] == 1
        assert fleet[1]["flags"] == []
        assert fleet[1]["clock_drift_s"] is None
        assert fleet[1]["last_boot_reason"] is None  # it never booted
        assert [h["charger_id"] for h in flagged] == ["CP-H"]

        # The same figures from ctl, and in the charger's detail view.
        done = await ctl(server, "--json", "chargers", "health", "CP-H")
        assert done.returncode == 0, done.stderr
        (from_ctl,) = json.loads(done.stdout)
        assert {k: from_ctl[k] for k in ("connects_24h", "command_timeouts_24h", "flags")} == {
            k: health[k] for k in ("connects_24h", "command_timeouts_24h", "flags")
        }
        table = await ctl(server, "chargers", "health", "--flagged")
        lines = table.stdout.decode().splitlines()
        assert lines[0].split()[:3] == ["ID", "ONLINE", "CONN/H"]
        assert len(lines) == 2
        assert lines[1].startswith("CP-H")
        assert "flapping:" in lines[1]
        assert "drifting:" in lines[1]
        missing = await ctl(server, "chargers", "health", "NOPE")
        assert missing.returncode == 5
        shown = json.loads((await ctl(server, "--json", "chargers", "show", "CP-H")).stdout)
        assert shown["health"]["connects_24h"] == CONNECTIONS
        assert any(note.startswith("drifting: clock") for note in shown["attention"])
        await cp.close()
        await quiet.close()
        stop.set()
        server.db.dispose()
    # Shutdown writes what the last batch held: the hourly rows hold every count.
    db = Database(settings.database_url, pool_size=1)
    try:
        stored = db.run_sync(_stored, "CP-H")
    finally:
        db.dispose()
    assert stored["connects"] == CONNECTIONS
    assert (stored["timeouts"], stored["sent"], stored["received"]) == (1, 1, 1)
    assert stored["intervals"] == 3
    # Online time went on after the read; both chargers' connections ended at the stop.
    assert health["online_s_24h"] <= stored["online_s"]
    assert stored["online_s"] <= (datetime.now(UTC) - began).total_seconds()
    assert BEHIND_S <= stored["min_lag_s"] < BEHIND_S + 10
