"""`voltaro ctl` (issue 13): one code for an unknown charger, the event filters, the
command audit, and human output for status and one session. Each runs ctl as a
subprocess against a real server, with an independent charger on the other side."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from tests.support.outage import database_outage
from voltaro.store import chargers, tags


async def _json(server: RunningServer, *args: str) -> Any:
    done = await ctl(server, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ("chargers", "show", "NOPE"),
        ("chargers", "remove", "NOPE"),
        ("chargers", "accept", "NOPE"),
        ("chargers", "frames", "NOPE"),
        ("transactions", "list", "--charger", "NOPE"),
        ("commands", "list", "--charger", "NOPE"),
        ("reset", "NOPE"),
        ("remote-start", "NOPE", "T1"),
        ("availability", "NOPE", "1", "operative"),
        ("get-config", "NOPE"),
        ("trigger", "NOPE", "heartbeat"),
    ],
)
async def test_unknown_charger_is_not_found_with_exit_5_everywhere(
    server: RunningServer, args: tuple[str, ...]
) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "T1")
    done = await ctl(server, "--json", *args)
    assert done.returncode == 5, (args, done.stderr)
    error = json.loads(done.stderr)["error"]
    assert error["code"] == "not_found", args
    assert "NOPE" in error["message"]
    human = await ctl(server, *args)
    assert human.returncode == 5
    assert human.stderr.decode().startswith("voltaro ctl: not_found: ")


class EventReader:
    """`voltaro ctl --json events ...` as a running subprocess, read line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    async def next(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        with trio.fail_after(10):  # a bound, never a hang; callers may cut it shorter
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some()
                assert chunk, "ctl events ended"
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        frame: dict[str, Any] = json.loads(line)
        return frame


async def _start_events(server: RunningServer, *args: str) -> EventReader:
    env = {**os.environ, "VOLTARO_CONTROL_SOCKET": server.addresses.control_socket or ""}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "voltaro", "ctl", "events", "--json", *args],
        stdout=subprocess.PIPE,
        env=env,
    )
    return EventReader(process)


async def _status(cp: RawCharger, connector: int, status: str) -> None:
    await cp.call(
        "StatusNotification", {"connectorId": connector, "errorCode": "NoError", "status": status}
    )


async def test_events_filtered_by_charger_and_kind(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(chargers.add_charger, "CP-2")
    server.run(tags.add_tag, "T1")
    one = await RawCharger.connect(f"{server.url}/CP-1")
    two = await RawCharger.connect(f"{server.url}/CP-2")
    await one.boot()
    await two.boot()
    reader = await _start_events(server, "--charger", "CP-1", "--kind", "CONNECTOR.status")
    try:
        # The subscription starts when ctl has connected: send until CP-1's first status
        # arrives (no sleep), then everything after it must pass the filter.
        first: dict[str, Any] | None = None
        with trio.fail_after(20):
            while first is None:
                await _status(one, 1, "Available")
                with trio.move_on_after(0.5):
                    first = await reader.next()
        assert first["event"] == "connector.status"
        assert first["data"]["charger_id"] == "CP-1"
        # Other chargers' events and other kinds (boot, transactions) are not sent...
        await _status(two, 1, "Preparing")
        await two.boot()
        await one.call(
            "StartTransaction",
            {"connectorId": 2, "idTag": "T1", "meterStart": 0, "timestamp": "2025-01-01T10:00Z"},
        )
        await one.call("Heartbeat", {})
        # ...and the sentinel, CP-1's next status, is the next line.
        await _status(one, 1, "Faulted")
        seen = []
        while True:
            frame = await reader.next()
            if frame["type"] == "resync":
                continue
            seen.append(frame)
            if frame["data"].get("status") == "Faulted":
                break
        assert {(f["event"], f["data"]["charger_id"]) for f in seen} == {
            ("connector.status", "CP-1")
        }
    finally:
        reader.process.kill()
        await reader.process.wait()
        await one.close()
        await two.close()


async def test_events_filter_by_kind_group_and_refusals(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "T1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    reader = await _start_events(server, "--kind", "transaction")
    try:
        seen: list[dict[str, Any]] = []
        tx_id = 0
        with trio.fail_after(20):
            while not any(
                f["event"] == "transaction.started" and f["data"]["transaction_id"] == tx_id
                for f in seen
            ):
                if tx_id:  # the subscription began too late for it: end it, try again
                    await cp.call(
                        "StopTransaction",
                        {"transactionId": tx_id, "meterStop": 10, "timestamp": "2025-01-01T11:00Z"},
                    )
                await _status(cp, 1, "Available")  # not a transaction event: filtered out
                answer = await cp.call(
                    "StartTransaction",
                    {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": "2025-01-01"},
                )
                tx_id = answer["transactionId"]
                with trio.move_on_after(0.5):
                    while True:
                        seen.append(await reader.next())
        await _status(cp, 1, "Finishing")
        await cp.call(
            "StopTransaction",
            {"transactionId": tx_id, "meterStop": 1500, "timestamp": "2025-01-01T11:00Z"},
        )
        while seen[-1]["event"] != "transaction.stopped" or seen[-1]["data"]["meter_stop"] != 1500:
            seen.append(await reader.next())
        assert {f["event"] for f in seen} <= {"transaction.started", "transaction.stopped"}
        assert seen[-1]["data"]["transaction_id"] == tx_id
    finally:
        reader.process.kill()
        await reader.process.wait()
        await cp.close()
    bad = await ctl(server, "events", "--kind", "teleport")
    assert bad.returncode == 2
    assert b"teleport" in bad.stderr
    assert b"connector.status" in bad.stderr  # says what is valid


async def _answered(
    server: RunningServer, cp: RawCharger, answer: dict[str, Any], *args: str
) -> list[Any]:
    """Run a charger command through ctl while the charger answers it."""
    result: list[Any] = []

    async def run() -> None:
        result.append(await ctl(server, *args))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        call = await cp.next_call(timeout=15)
        await cp.answer(call, answer)
    assert result[0].returncode == 0, result[0].stderr
    return call


async def test_commands_list_is_the_audit(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(chargers.add_charger, "CP-2")
    one = await RawCharger.connect(f"{server.url}/CP-1")
    two = await RawCharger.connect(f"{server.url}/CP-2")
    await one.boot()
    await two.boot()
    await _answered(server, one, {"status": "Accepted"}, "reset", "CP-1")
    await _answered(server, two, {"status": "UnlockFailed"}, "unlock", "CP-2", "1")
    await _answered(
        server,
        one,
        {"configurationKey": [], "unknownKey": ["Nope"]},
        "get-config",
        "CP-1",
        "Nope",
    )
    failed: list[Any] = []

    async def clear_cache() -> None:
        failed.append(await ctl(server, "clear-cache", "CP-2"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(clear_cache)
        await two.answer_error(await two.next_call(timeout=15), "InternalError", "flash full")
    assert failed[0].returncode == 8
    everything = await _json(server, "commands", "list")
    assert [(c["charger_id"], c["action"], c["status"]) for c in everything] == [
        ("CP-2", "ClearCache", None),
        ("CP-1", "GetConfiguration", "Accepted"),
        ("CP-2", "UnlockConnector", "UnlockFailed"),
        ("CP-1", "Reset", "Accepted"),
    ]
    reset = everything[-1]
    assert reset["request"] == {"type": "Soft"}
    assert reset["actor"]  # who: the Unix user that ran ctl
    assert reset["requested_at"].endswith("Z")
    assert reset["finished_at"] is not None
    assert reset["error"] is None
    only_one = await _json(server, "commands", "list", "--charger", "CP-1")
    assert [c["action"] for c in only_one] == ["GetConfiguration", "Reset"]
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert await _json(server, "commands", "list", "--since", later) == []
    recent = await _json(server, "commands", "list", "--since", "10m", "--limit", "2")
    assert len(recent) == 2
    human = await ctl(server, "commands", "list")
    assert human.returncode == 0
    lines = human.stdout.decode().splitlines()
    assert lines[0].split() == ["WHEN", "CHARGER", "ACTION", "ARGUMENTS", "BY", "OUTCOME"]
    assert "Reset" in lines[-1]
    assert "type=Soft" in lines[-1]
    assert lines[-1].rstrip().endswith("Accepted")
    assert "UnlockFailed" in lines[-2]
    assert "error:" in lines[1]
    assert "flash full" in lines[1]
    assert everything[0]["error"]
    assert "flash full" in everything[0]["error"]
    bad = await ctl(server, "commands", "list", "--since", "yesterday-ish")
    assert bad.returncode == 2
    await one.close()
    await two.close()


async def _ctl_in(server: RunningServer, zone: str, *args: str) -> Any:
    """ctl in a given local time zone (TZ), human output."""
    env = {
        **os.environ,
        "VOLTARO_CONTROL_SOCKET": server.addresses.control_socket or "",
        "TZ": zone,
    }
    return await trio.run_process(
        [sys.executable, "-m", "voltaro", "ctl", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
    )


def _fields(text: str) -> dict[str, str]:
    """The `label  value` lines of a detail view (labels may hold one space)."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            break
        label, _, value = line.strip().partition("  ")
        out[label.strip()] = value.strip()
    return out


async def test_status_human_output(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(chargers.add_charger, "CP-2")
    server.run(tags.add_tag, "T1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    await _status(cp, 1, "Charging")
    await _status(cp, 2, "Available")
    await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": "2025-01-01T10:00Z"},
    )
    done = await _ctl_in(server, "Europe/Berlin", "status")
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    shown = _fields(text)
    assert shown["database"].startswith("ok (")
    assert shown["chargers"] == "2 registered, 1 connected"
    assert shown["by registration"] == "Accepted 2"
    assert shown["connectors"] == "Available 1, Charging 1"
    assert shown["active sessions"] == "1"
    assert shown["heartbeat interval"] == "300 s"
    assert shown["uptime"][-1] in "smhd"  # a duration, not seconds as a float
    for raw in ("uptime_s", "True", "None", "{"):
        assert raw not in text, raw
    as_json = await _json(server, "status")
    assert isinstance(as_json["uptime_s"], float)  # --json unchanged
    assert as_json["chargers"]["total"] == 2
    await cp.close()


async def test_transaction_show_human_output(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    server.run(tags.add_tag, "T1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    started = await cp.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": "2025-01-01T10:00:00Z"},
    )
    tx = started["transactionId"]
    phases = [
        {"value": value, "measurand": measurand, "phase": phase, "unit": unit}
        for measurand, unit, value in (("Current.Import", "A", "16.1"), ("Voltage", "V", "230"))
        for phase in ("L1", "L2", "L3")
    ]
    await cp.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [
                {
                    "timestamp": "2025-01-01T10:30:00Z",
                    "sampledValue": [
                        {"value": "2500", "unit": "Wh"},
                        {"value": "7400", "measurand": "Power.Active.Import", "unit": "W"},
                        {"value": "55", "measurand": "SoC", "unit": "Percent"},
                        *phases,
                    ],
                }
            ],
        },
    )
    running = await _ctl_in(server, "Europe/Berlin", "transactions", "show", str(tx))
    assert running.returncode == 0, running.stderr
    live = _fields(running.stdout.decode())
    assert live["energy"] == "1.500 kWh so far"
    assert live["duration"].endswith("so far")
    assert live["power"] == "7.40 kW"
    assert live["stopped"] == "-"
    listed = await _ctl_in(server, "Europe/Berlin", "transactions", "list", "--active")
    (row,) = listed.stdout.decode().splitlines()[1:]
    assert "1.500 kWh so far" in row  # the energy of an active session, in the list too
    assert "2025-01-01 11:00:00+0100" in row
    await cp.call(
        "StopTransaction",
        {"transactionId": tx, "meterStop": 3250, "timestamp": "2025-01-01T11:15:00Z"},
    )
    done = await _ctl_in(server, "Europe/Berlin", "transactions", "show", str(tx))
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    shown = _fields(text)
    assert shown["session"] == str(tx)
    assert shown["charger"] == "CP-1, connector 1"
    assert shown["tag"] == "T1 (Accepted)"
    assert shown["state"] == "completed"
    # Local time with its zone, then UTC (Berlin is UTC+1 in January).
    assert shown["started"] == "2025-01-01 11:00:00 CET (10:00:00 UTC)"
    assert shown["stopped"] == "2025-01-01 12:15:00 CET (11:15:00 UTC)"
    assert shown["duration"] == "1h15m"
    assert shown["energy"] == "2.250 kWh"
    assert shown["meter"] == "1.000 kWh at start, 3.250 kWh at stop"
    assert shown["stop reason"] == "Local"
    table = text.split("meter values (1):\n", 1)[1].splitlines()
    assert table[0].split() == [
        "TIME",
        "ENERGY",
        "POWER",
        "CURRENT",
        "VOLTAGE",
        "SOC",
        "CONTEXT",
        "OTHER",
    ]
    row = table[1]
    assert row.startswith("2025-01-01 11:30:00+0100")
    for cell in ("2.500 kWh", "7.40 kW", "16.1/16.1/16.1 A", "230/230/230 V", "55 %"):
        assert cell in row, cell
    for raw in ("None", "timestamp=", "stop_time"):
        assert raw not in text, raw
    utc = await _ctl_in(server, "UTC", "transactions", "show", str(tx))
    assert _fields(utc.stdout.decode())["started"] == "2025-01-01 10:00:00 UTC"
    as_json = await _json(server, "transactions", "show", str(tx))
    assert as_json["start_time"] == "2025-01-01T10:00:00Z"  # --json unchanged
    assert as_json["energy_wh"] == 2250
    await cp.close()


async def test_charger_show_human_output(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot(vendor="Acme", model="Fast")
    await _status(cp, 1, "Charging")
    await _answered(server, cp, {"status": "Accepted"}, "reset", "CP-1")
    done = await _ctl_in(server, "Europe/Berlin", "chargers", "show", "CP-1")
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    shown = _fields(text)
    assert shown["charger_id"] == "CP-1"
    assert shown["connected"] == "yes"
    assert shown["vendor"] == "Acme"
    assert shown["iccid"] == "-"
    assert shown["heartbeat_interval.default"] == "300"
    assert shown["last_boot"].endswith(" UTC)")  # local time with zone, then UTC
    assert " CET " in shown["last_boot"]
    connectors = text.split("connectors (", 1)[1].splitlines()
    assert connectors[1].split()[:4] == ["CONN", "STATUS", "ERROR", "AVAILABILITY"]
    assert any(line.split()[:2] == ["1", "Charging"] for line in connectors[2:5])
    commands = text.split("recent commands (1):\n", 1)[1].splitlines()
    assert commands[0].split() == ["WHEN", "ACTION", "ARGUMENTS", "BY", "OUTCOME"]
    assert "type=Soft" in commands[1]
    assert commands[1].rstrip().endswith("Accepted")
    for raw in ("None", "True", "False", "connector_id="):
        assert raw not in text, raw
    assert not re.search(r"\d\dT\d\d:\d\d", text)  # no raw ISO times
    await cp.close()


def test_help_names_every_exit_code() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "voltaro", "ctl", "--help"], capture_output=True, text=True
    )
    epilog = " ".join(top.stdout.split("exit status:", 1)[1].split())
    for code in range(12):
        assert f" {code} " in f" {epilog}", code
    assert "(not_found)" in epilog


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_status_human_output_during_a_database_outage(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    with database_outage(server.settings.database_url):
        done = await ctl(server, "status")
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    shown = _fields(text)
    assert shown["database"].startswith("UNREACHABLE (postgresql")
    assert shown["chargers"] == "0 connected"
    for raw in ("True", "False", "None", "{"):
        assert raw not in text, raw


async def test_orphan_stops_table_in_local_time_and_kwh(server: RunningServer) -> None:
    server.run(chargers.add_charger, "CP-1")
    cp = await RawCharger.connect(f"{server.url}/CP-1")
    await cp.boot()
    await cp.call(
        "StopTransaction",
        {"transactionId": 999, "meterStop": 12345, "timestamp": "2025-01-01T10:00:00Z"},
    )
    done = await _ctl_in(server, "Europe/Berlin", "transactions", "stops")
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.decode().splitlines()[:2]
    assert header.split() == ["KIND", "CHARGER", "TX", "METER", "STOPPED", "REASON", "RECEIVED"]
    assert "12.345 kWh" in row
    assert "2025-01-01 11:00:00+0100" in row
    assert not re.search(r"\d\dT\d\d:\d\d", row)
    await cp.close()
