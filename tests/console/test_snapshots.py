"""Snapshots of the console's screens at 80x24 and 160x45 (pytest-textual-snapshot;
baselines in __snapshots__/, refresh with `pytest --snapshot-update` after reviewing the
report). docs/console.md shows these very files, and test_docs_show_every_snapshot
keeps it that way, so the documentation cannot go stale.

The screens are drawn from a fixed site (faulted, pending, offline and charging
chargers) served by a scripted link at a fixed time: a snapshot must not depend on the
clock. Behaviour against the real server is tested in the other console tests.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.app import ConsoleApp
from console.feed import describe

NOW = datetime(2026, 12, 4, 18, 30, 0, tzinfo=UTC)
SNAPSHOTS = Path(__file__).parent / "__snapshots__" / "test_snapshots"
DOCS = Path(__file__).parents[2] / "docs" / "console.md"


def _connector(cid: int, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "connector_id": cid,
        "status": status,
        "error_code": extra.pop("error_code", "NoError"),
        "info": extra.pop("info", None),
        "vendor_error_code": extra.pop("vendor_error_code", None),
        "availability": "Operative",
        "status_at": extra.pop("status_at", "2026-12-04T18:20:00.000Z"),
    }


def _tx(tx: int, cid: int, tag: str, start: int, now_wh: int, power_w: float) -> dict[str, Any]:
    return {
        "transaction_id": tx,
        "connector_id": cid,
        "id_tag": tag,
        "state": "active",
        "meter_start": start,
        "last_meter_wh": now_wh,
        "last_power_w": power_w,
        "start_time": "2026-12-04T17:45:00.000Z",
    }


CHARGERS: list[dict[str, Any]] = [
    {
        "charger_id": "SIM-1",
        "registration": "Accepted",
        "connected": True,
        "vendor": "Acme",
        "model": "Duo 22",
        "last_seen": "2026-12-04T18:29:55.000Z",
        "connectors": [_connector(1, "Charging"), _connector(2, "Charging")],
        "active_transactions": [
            _tx(101, 1, "TAG-ALICE", 120_000, 127_400, 7400.0),
            _tx(102, 2, "TAG-BOB", 50_000, 51_250, 11000.0),
        ],
    },
    {
        "charger_id": "SIM-2",
        "registration": "Accepted",
        "connected": True,
        "vendor": "Acme",
        "model": "Duo 22",
        "last_seen": "2026-12-04T18:29:40.000Z",
        "connectors": [
            _connector(
                1,
                "Faulted",
                error_code="HighTemperature",
                vendor_error_code="E42",
                info="RCD tripped",
            ),
            _connector(2, "Available"),
        ],
    },
    {
        "charger_id": "SITE-NORTH-CARPARK-LEVEL2-BAY-017",
        "registration": "Accepted",
        "connected": False,
        "vendor": "Volt",
        "model": "Wallbox 11",
        "last_seen": "2026-12-04T16:02:00.000Z",
        "connectors": [_connector(1, "Unavailable")],
    },
    {
        "charger_id": "NEW-7",
        "registration": "Pending",
        "connected": True,
        "vendor": "Volt",
        "model": "Wallbox 11",
        "last_seen": "2026-12-04T18:29:58.000Z",
        "connectors": [_connector(1, "Available")],
    },
    {
        "charger_id": "SIM-3",
        "registration": "Accepted",
        "connected": True,
        "vendor": "Acme",
        "model": "Duo 22",
        "last_seen": "2026-12-04T18:29:50.000Z",
        "connectors": [_connector(1, "SuspendedEV"), _connector(2, "Available")],
        "active_transactions": [_tx(103, 1, "TAG-CAROL", 9_000, 9_000, 0.0)],
    },
]

STATUS = {
    "version": "0.1.0",
    "uptime_s": 7260.0,
    "database": {"ok": True, "backend": "postgresql"},
    "connected_chargers": 4,
    "heartbeat_interval": 300,
}

EVENTS: list[tuple[str, dict[str, Any], str]] = [
    (
        "transaction.orphan_stop",
        {
            "charger_id": "SIM-3",
            "transaction_id": 4242,
            "kind": "unknown",
            "meter_stop": 17_000,
            "stop_time": "2026-12-04T18:05:00Z",
            "reason": "PowerLoss",
            "id_tag": "TAG-CAROL",
        },
        "2026-12-04T18:05:01.000Z",
    ),
    (
        "charger.connected",
        {"charger_id": "NEW-7", "remote": "10.0.0.7"},
        "2026-12-04T18:27:02.000Z",
    ),
    (
        "charger.boot",
        {"charger_id": "NEW-7", "status": "Pending", "vendor": "Volt", "model": "Wallbox 11"},
        "2026-12-04T18:27:03.000Z",
    ),
    (
        "transaction.started",
        {"charger_id": "SIM-1", "connector_id": 2, "transaction_id": 102, "id_tag": "TAG-BOB"},
        "2026-12-04T18:28:10.000Z",
    ),
    (
        "connector.status",
        {
            "charger_id": "SIM-2",
            "connector_id": 1,
            "status": "Faulted",
            "error_code": "HighTemperature",
            "vendor_error_code": "E42",
            "info": "RCD tripped",
            "at": "2026-12-04T18:29:01.000Z",
        },
        "2026-12-04T18:29:01.000Z",
    ),
    (
        "command.result",
        {"charger_id": "SIM-3", "action": "Reset", "ok": True, "status": "Accepted", "user": "ops"},
        "2026-12-04T18:29:30.000Z",
    ),
]

DETAIL = {
    **CHARGERS[1],
    "serial_number": None,
    "charge_box_serial_number": "ACME-0002",
    "firmware_version": "2.4.1",
    "last_boot": "2026-12-04T08:00:00.000Z",
    "has_password": True,
    "status_history": [
        {
            "connector_id": 1,
            "status": "Faulted",
            "error_code": "HighTemperature",
            "info": "RCD tripped",
            "at": "2026-12-04T18:29:01.000Z",
        },
        {
            "connector_id": 1,
            "status": "Available",
            "error_code": "NoError",
            "info": None,
            "at": "2026-12-04T08:00:05.000Z",
        },
    ],
    "configuration": [
        {"key": "AuthorizationKey", "readonly": False, "value": "•••• (hidden)"},
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
    ],
    "commands": [
        {
            "action": "GetConfiguration",
            "actor": "ops",
            "requested_at": "2026-12-04T18:10:00.000Z",
            "status": "Accepted",
            "error": None,
        }
    ],
}
# Issue 19: SIM-2's health over 24 h, flagged as drifting.
HEALTH = {
    "charger_id": "SIM-2",
    "connected": True,
    "window_start": "2026-12-03T19:00:00Z",
    "connects_last_hour": 1,
    "connects_24h": 3,
    "max_connects_per_hour": 1,
    "online_s_24h": 82_800.0,
    "online_share_24h": 0.97,
    "command_timeouts_24h": 1,
    "call_errors_sent_24h": 0,
    "call_errors_received_24h": 2,
    "clock_drift_s": -184.2,
    "clock_measured_hour": "2026-12-04T18:00:00Z",
    "clock_samples_24h": 412,
    "heartbeat": {
        "expected_s": 300,
        "intervals_24h": 270,
        "mean_s": 301.2,
        "spread_s": 4.1,
        "regularity": "regular",
    },
    "last_boot": "2026-12-04T08:00:00.000Z",
    "last_boot_reason": "Reset Soft requested by ops",
    "firmware_version": "2.4.1",
    "vendor": "Acme",
    "model": "Duo 22",
    "flags": [{"flag": "drifting", "reason": "clock 184 s behind the server's (over 120 s)"}],
}
DETAIL["health"] = HEALTH
DETAIL["attention"] = ["drifting: clock 184 s behind the server's (over 120 s)"]

FRAMES = [
    {
        "direction": "in",
        "at": "2026-12-04T18:29:01.000Z",
        "action": "StatusNotification",
        "payload": '[2,"m41","StatusNotification",{"connectorId":1,"errorCode":'
        '"HighTemperature","status":"Faulted","vendorErrorCode":"E42","info":"RCD tripped"}]',
    },
    {
        "direction": "out",
        "at": "2026-12-04T18:29:01.000Z",
        "action": "StatusNotification",
        "payload": '[3,"m41",{}]',
    },
    {
        "direction": "in",
        "at": "2026-12-04T18:28:00.000Z",
        "action": "Heartbeat",
        "payload": '[2,"m40","Heartbeat",{}]',
    },
]
TRANSACTIONS = [
    {
        **_tx(103, 1, "TAG-CAROL", 9_000, 9_000, 0.0),
        "charger_id": "SIM-3",
        "energy_wh": None,
        "stop_time": None,
        "stop_reason": None,
    },
    {
        **_tx(102, 2, "TAG-BOB", 50_000, 51_250, 11000.0),
        "charger_id": "SIM-1",
        "energy_wh": None,
        "stop_time": None,
        "stop_reason": None,
    },
    {
        **_tx(99, 1, "TAG-DAVE", 0, 0, 0.0),
        "charger_id": "SIM-2",
        "state": "interrupted",
        "energy_wh": 0,
        "stop_time": "2026-12-04T12:00:00.000Z",
        "stop_reason": "PowerLoss",
    },
    {
        **_tx(98, 1, "TAG-ALICE", 0, 0, 0.0),
        "charger_id": "SIM-1",
        "state": "completed",
        "energy_wh": 21_300,
        "stop_time": "2026-12-04T11:00:00.000Z",
        "stop_reason": "Local",
    },
]

STOPS = [
    {
        "charger_id": "SIM-3",
        "transaction_id": 4242,
        "kind": "unknown",
        "meter_stop": 17_000,
        "stop_time": "2026-12-04T18:05:00Z",
        "reason": "PowerLoss",
        "id_tag": "TAG-CAROL",
        "received_at": "2026-12-04T18:05:01Z",
    }
]


# Issue 17: a 63 A site with two feeders, as circuits.list returns it.
def _wiring(charger_id: str, circuit: str, phases: str = "L1=L1,L2=L2,L3=L3", **extra: Any) -> Any:
    return {
        "charger_id": charger_id,
        "circuit": circuit,
        "phases": phases,
        "max_amps": extra.get("max_amps", 32.0),
        "fallback_amps": 6.0,
        "priority": 0,
    }


def _load(name: str, amps: list[float], limit: float, kw_limit: float | None = None) -> Any:
    return {
        "circuit": name,
        "amps": amps,
        "limit_amps": limit,
        "limit_kw": kw_limit,
        "kw": round(sum(amps) * 0.23, 3),
        "headroom_amps": round(limit - max(amps), 3),
    }


def _grant(charger_id: str, amps: float, **extra: Any) -> Any:
    return {
        "charger_id": charger_id,
        "connector_id": extra.get("connector_id", 1),
        "transaction_id": extra.get("transaction_id", 100),
        "amps": amps,
        "cap_amps": extra.get("cap_amps", 32.0),
        "draw_amps": extra.get("draw_amps"),
        "accepted_amps": extra.get("accepted_amps", amps),
        "phases": ["L1", "L2", "L3"],
        "parked": extra.get("parked"),
        "detail": extra.get("detail", ""),
        "since": "2026-12-04T18:20:00.000Z",
    }


CIRCUITS = [
    {
        "name": "site",
        "parent": None,
        "limit_amps": 63.0,
        "limit_kw": None,
        "chargers": [_wiring("SIM-4", "site", max_amps=16.0)],
    },
    {
        "name": "feeder-a",
        "parent": "site",
        "limit_amps": 32.0,
        "limit_kw": 22.0,
        "chargers": [_wiring("SIM-1", "feeder-a"), _wiring("SIM-2", "feeder-a")],
    },
    {
        "name": "feeder-b",
        "parent": "site",
        "limit_amps": 25.0,
        "limit_kw": None,
        "chargers": [
            _wiring("SIM-3", "feeder-b", "L1=L2,L2=L3,L3=L1"),
            _wiring("SIM-5", "feeder-b"),
        ],
    },
]


def _live(at: str, site: list[float], a: list[float], b: list[float]) -> Any:
    return {
        "computed_at": at,
        "policy": "equal",
        "loads": [
            _load("site", site, 63.0),
            _load("feeder-a", a, 32.0, 22.0),
            _load("feeder-b", b, 25.0),
        ],
        "sessions": [
            _grant("SIM-1", 16.0, draw_amps=15.6, transaction_id=101),
            _grant("SIM-1", 16.0, connector_id=2, draw_amps=15.9, transaction_id=102),
            _grant(
                "SIM-2",
                0.0,
                parked="no-capacity",
                transaction_id=104,
                detail="circuit feeder-a L1 (32 A) is full",
            ),
            _grant("SIM-3", 12.0, cap_amps=12.0, draw_amps=10.0, transaction_id=103),
        ],
        "reserved": [
            {
                "charger_id": "SIM-4",
                "amps": 16.0,
                "reason": "rejects-profiles",
                "phases": ["L1", "L2", "L3"],
            },
            {"charger_id": "SIM-5", "amps": 6.0, "reason": "offline", "phases": ["L1", "L2", "L3"]},
        ],
        "chargers": {
            "SIM-1": "accepted",
            "SIM-2": "accepted",
            "SIM-3": "accepted",
            "SIM-4": "refused",
            "SIM-5": "accepted",
        },
        "overloaded": [],
        "unmanaged": [{"charger_id": "SIM-7", "connector_id": 1}],
    }


LIVE = _live("2026-12-04T18:29:58.000Z", [50.0, 62.0, 50.0], [32.0, 31.6, 32.0], [18.0, 24.0, 18.0])
# The rounds the console saw over the two minutes before: the site filling up.
ROUNDS = [
    _live(f"2026-12-04T18:{28 + (s // 60)}:{s % 60:02d}.000Z", [n, n, n], [n / 2] * 3, [n / 3] * 3)
    for s, n in zip(range(0, 120, 10), (6, 12, 12, 22, 28, 28, 34, 40, 46, 52, 58, 60), strict=True)
]
# The building's other load on the site, pushed by its meter (the external limit):
# the chargers share 63 A less it, per phase.
LIVE["loads"][0].update(
    {
        "effective_limit_amps": [55.0, 63.0, 58.0],
        "limit_source": "configured+external",
        "schedule_amps": None,
        "external_load": {"state": "live", "amps": [8.0, 0.0, 5.0]},
    }
)


class ScriptedLink:
    """Answers the console's requests from the fixed site above."""

    connected = True
    hello = {"type": "hello", "user": "ops", "role": "operator"}

    async def request(self, op: str, args: dict[str, Any] | None = None) -> Any:
        return {
            "status": STATUS,
            "chargers.list": CHARGERS,
            "chargers.show": DETAIL,
            "chargers.frames": FRAMES,
            "transactions.list": TRANSACTIONS,
            "transactions.stops": STOPS,
            "tags.list": [],
            "chargers.health": [HEALTH],
            "circuits.list": {"circuits": CIRCUITS, "live": LIVE},
        }[op]


class ScriptedConsole(ConsoleApp):
    def __init__(self) -> None:
        super().__init__("/nonexistent/voltaro/control.sock", clock=lambda: NOW)
        self.link = ScriptedLink()  # type: ignore[assignment]

    def follow_server(self) -> None:  # type: ignore[override]
        from voltaro.control import wire

        self.role = wire.Role.OPERATOR
        self.link_reason = ""
        interrupted = [t for t in TRANSACTIONS if t["state"] == "interrupted"]
        self.site.load(STATUS, CHARGERS, interrupted, NOW)
        self.site.set_charger_flags([HEALTH], "2026-12-04T18:29:45.000Z")
        for name, data, at in EVENTS:
            self.site.apply(name, data, at)
            line = describe(name, data, at)
            if line is not None:
                self.log_feed(line)
        self.power_history.extend([4000, 9000, 12000, 15000, 18400, 18400])
        for live in ROUNDS:
            self.load_history.add(live, NOW)
        self.stale = False
        self._dirty.update(self.site.chargers)
        self._order = []
        self._show_banner()
        self._redraw()


async def _settle(pilot: Any) -> None:
    await pilot.pause(0.3)


def _keys(*keys: str) -> Any:
    async def run_before(pilot: Any) -> None:
        await _settle(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.3)
        await pilot.pause(1.2)  # live views read their data once a second

    return run_before


def test_main_80x24(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_settle, terminal_size=(80, 24))


def test_main_160x45(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_settle, terminal_size=(160, 45))


def test_detail_80x24(snap_compare: Any) -> None:
    # SIM-2 (faulted) is on top: attention first.
    assert snap_compare(ScriptedConsole(), run_before=_keys("f2"), terminal_size=(80, 24))


def test_detail_160x45(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_keys("f2"), terminal_size=(160, 45))


def test_transactions_80x24(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_keys("f3"), terminal_size=(80, 24))


def test_transactions_160x45(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_keys("f3"), terminal_size=(160, 45))


def test_alerts_160x45(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_keys("f7"), terminal_size=(160, 45))


def test_alerts_80x24(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_keys("f7"), terminal_size=(80, 24))


def test_help_80x24(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_keys("f1"), terminal_size=(80, 24))


def test_load_80x24(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_keys("l"), terminal_size=(80, 24))


def test_load_160x45(snap_compare: Any) -> None:
    assert snap_compare(ScriptedConsole(), run_before=_keys("l"), terminal_size=(160, 45))


def _missing() -> ConsoleApp:
    # A fixed path that does not exist: the banner names it, so it must not vary per run.
    return ConsoleApp("/nonexistent/voltaro/control.sock", clock=lambda: NOW)


async def _until_disconnected(pilot: Any) -> None:
    # Wait for the banner to be laid out in full (its text wraps to two lines at 80
    # columns), not only for the title: the snapshot must not race the layout.
    async with asyncio.timeout(5):
        while "disconnected" not in (pilot.app.sub_title or "") or pilot.app.banner.size.height < 2:
            await pilot.pause(0.01)
    await pilot.pause()


def test_disconnected_screen(snap_compare: Any) -> None:
    assert snap_compare(_missing(), run_before=_until_disconnected, terminal_size=(80, 24))


def test_docs_show_every_snapshot() -> None:
    """docs/console.md embeds each baseline, and only baselines that exist."""
    text = DOCS.read_text()
    shown = set(re.findall(r"__snapshots__/test_snapshots/([\w.-]+\.svg)", text))
    baselines = {p.name for p in SNAPSHOTS.glob("*.svg")}
    assert baselines, "no snapshot baselines"
    assert shown == baselines
