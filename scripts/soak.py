#!/usr/bin/env python3
"""Soak a running Voltaro with N chargers and prove that nothing acknowledged is lost.

    python scripts/soak.py ws://127.0.0.1:9000/ocpp --chargers 1000 --duration 120 \
        --socket /run/voltaro/control.sock

Each simulated charger (raw OCPP-J frames over `websockets`, never Voltaro's classes)
boots, reports status on two connectors, charges sessions with meter values, sends
heartbeats, sometimes hangs up and reconnects, and sometimes starts with a blocked tag
(a refused start). It keeps a ledger of every CALLRESULT it received: a CALLRESULT is
the server's promise that the message is stored, so the charger forgets it. A CALLERROR
or a lost answer is retried, as a charger's queue would (OCPP 1.6 §4.10).

At the end every charger hangs up and the ledger is compared with what the server
reports through its control socket (the ops behind `voltaro ctl --json`):
acknowledged / stored / lost / doubled per kind of message, connector states equal to
the last acknowledged status, no charger shown connected, energy per session equal to
meterStop - meterStart, and the answer latency (p50/p99). Exit status 1 when anything
acknowledged was lost or doubled, or a check failed; 2 on a usage or setup error.

Chargers and tags are registered through the control socket under a per-run prefix, so
runs never mix with other data. Bounded: every charger stops at --duration, the whole
run at --duration + --grace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from voltaro.control.ctl import Client, CtlError
from voltaro.settings import default_control_socket

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


class RunOver(Exception):
    """The soak's duration is over: stop what this charger is doing."""


@dataclass
class Ledger:
    """What the chargers were promised (every CALLRESULT) and what it cost."""

    statuses: list[tuple[str, int, str, str]] = field(default_factory=list)  # id, conn, st, ts
    starts: dict[int, tuple[str, int, int, str]] = field(default_factory=dict)  # tx -> ...
    refused_starts: list[int] = field(default_factory=list)
    stops: dict[int, int] = field(default_factory=dict)  # tx -> meterStop
    meter_values: Counter[int] = field(default_factory=Counter)  # tx -> acknowledged
    acknowledged: Counter[str] = field(default_factory=Counter)  # action -> count
    call_errors: Counter[str] = field(default_factory=Counter)
    lost_answers: int = 0
    reconnects: int = 0
    latencies: list[float] = field(default_factory=list)
    booted: set[str] = field(default_factory=set)  # chargers whose boot was answered
    unanswered_statuses: set[tuple[str, int, str, str]] = field(default_factory=set)


class SimCharger:
    def __init__(self, args: argparse.Namespace, charger_id: str, tag: str, run: Run) -> None:
        self.args = args
        self.id = charger_id
        self.tag = tag
        self.run = run
        self.ws: Any = None
        self.clock = 0  # the charger's own clock: strictly increasing timestamps
        self.ids = 0
        self.meter = 0
        self.rng = random.Random(f"{args.seed}-{charger_id}")

    def now(self) -> str:
        self.clock += 1
        return (BASE_TIME + timedelta(seconds=self.clock)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def check_time(self) -> None:
        if time.monotonic() >= self.run.deadline:
            raise RunOver

    async def connect(self) -> None:
        delay = 0.5
        while True:
            self.check_time()
            try:
                async with self.run.connect_gate:
                    self.ws = await websockets.connect(
                        f"{self.args.url}/{self.id}",
                        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                        open_timeout=30,
                        ping_interval=None,
                        max_size=None,
                    )
                return
            except (OSError, websockets.InvalidStatus, websockets.InvalidHandshake, TimeoutError):
                # 503 during overload or an outage: come back later, like a charger.
                await asyncio.sleep(delay + self.rng.random())
                delay = min(delay * 2, 10.0)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send until acknowledged (CALLRESULT); retry CALLERRORs and lost answers."""
        attempt = 0
        while True:
            self.check_time()
            attempt += 1
            self.ids += 1
            uid = f"{self.ids}"
            started = time.monotonic()
            try:
                await self.ws.send(json.dumps([2, uid, action, payload]))
                while True:
                    frame = json.loads(
                        await asyncio.wait_for(self.ws.recv(), self.args.answer_timeout)
                    )
                    if frame[0] == 2:  # a command from the server: not part of the soak
                        await self.ws.send(json.dumps([4, frame[1], "NotSupported", "", {}]))
                        continue
                    if frame[1] == uid:
                        break
            except (TimeoutError, websockets.ConnectionClosed, OSError):
                # A network blip, not a reboot: reconnect and send the message again.
                self.run.ledger.lost_answers += 1
                await self.reconnect(boot=False)
                continue
            self.run.ledger.latencies.append(time.monotonic() - started)
            if frame[0] == 3:
                self.run.ledger.acknowledged[action] += 1
                return dict(frame[2])
            self.run.ledger.call_errors[f"{action}:{frame[2]}"] += 1
            await asyncio.sleep(min(0.2 * attempt, 3.0) + self.rng.random() * 0.3)

    async def reconnect(self, *, boot: bool) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.run.ledger.reconnects += 1
        await self.connect()
        if boot:
            await self.boot()

    async def boot(self) -> None:
        await self.call("BootNotification", {"chargePointVendor": "Soak", "chargePointModel": "S1"})
        self.run.ledger.booted.add(self.id)

    async def status(self, connector: int, status: str) -> None:
        at = self.now()
        payload = {
            "connectorId": connector,
            "errorCode": "NoError",
            "status": status,
            "timestamp": at,
        }
        # Sent, not yet acknowledged: if the charger never gets its answer (lost, or the
        # run ends first) the server may still have stored it, which is allowed (a
        # charger sends an unanswered message again; storing is idempotent).
        self.run.ledger.unanswered_statuses.add((self.id, connector, status, at))
        await self.call("StatusNotification", payload)
        self.run.ledger.unanswered_statuses.discard((self.id, connector, status, at))
        self.run.ledger.statuses.append((self.id, connector, status, at))

    async def session(self, connector: int) -> None:
        blocked = self.rng.random() < self.args.refused_share
        tag = self.run.blocked_tag if blocked else self.tag
        await self.status(connector, "Preparing")
        start = self.meter
        started = await self.call(
            "StartTransaction",
            {"connectorId": connector, "idTag": tag, "meterStart": start, "timestamp": self.now()},
        )
        tx = int(started["transactionId"])
        if started["idTagInfo"]["status"] != "Accepted":
            self.run.ledger.refused_starts.append(tx)
            # Many chargers send nothing more after a refused start (issue 21 item 2).
            await self.status(connector, "Available")
            return
        self.run.ledger.starts[tx] = (self.id, connector, start, tag)
        await self.status(connector, "Charging")
        for _ in range(self.rng.randint(1, 4)):
            await self.think()
            self.meter += self.rng.randint(50, 900)
            await self.call(
                "MeterValues",
                {
                    "connectorId": connector,
                    "transactionId": tx,
                    "meterValue": [
                        {
                            "timestamp": self.now(),
                            "sampledValue": [
                                {"value": str(self.meter), "unit": "Wh"},
                                {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
                            ],
                        }
                    ],
                },
            )
            self.run.ledger.meter_values[tx] += 1
        self.meter += self.rng.randint(0, 300)
        await self.call(
            "StopTransaction",
            {
                "transactionId": tx,
                "meterStop": self.meter,
                "timestamp": self.now(),
                "reason": "Local",
            },
        )
        self.run.ledger.stops[tx] = self.meter
        await self.status(connector, "Finishing")
        await self.status(connector, "Available")

    async def think(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.args.think))
        self.check_time()

    async def live(self) -> None:
        try:
            await asyncio.sleep(self.rng.random() * self.args.ramp)
            await self.connect()
            await self.boot()
            for connector in (1, 2):
                await self.status(connector, "Available")
            while True:
                await self.think()
                roll = self.rng.random()
                if roll < 0.35:
                    await self.session(self.rng.choice((1, 2)))
                elif roll < 0.65:
                    await self.call("Heartbeat", {})
                elif roll < 0.92:
                    connector = self.rng.choice((1, 2))
                    await self.status(connector, "Unavailable")
                    await self.status(connector, "Available")
                else:
                    # A hang-up and a reconnect (between sessions), sometimes a reboot.
                    await self.reconnect(boot=self.rng.random() < 0.3)
        except RunOver:
            pass
        finally:
            if self.ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.ws.close(), 10)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ledger = Ledger()
        self.deadline = time.monotonic() + args.duration
        self.connect_gate = asyncio.Semaphore(args.connect_concurrency)
        self.prefix = args.prefix or f"SOAK{os.getpid()}-{int(time.time()) % 100000}"
        self.blocked_tag = f"{self.prefix}-BLOCKED"[:20]


def setup(client: Client, run: Run, n: int) -> list[tuple[str, str]]:
    """Register the chargers and their tags (and one blocked tag) under the run prefix."""
    pairs = []
    client.request("tags.add", {"id_tag": run.blocked_tag, "status": "Blocked"})
    for i in range(n):
        charger_id = f"{run.prefix}-{i:05d}"
        tag = f"T{run.prefix[-8:]}{i:05d}"[:20]
        for op, op_args in (
            ("chargers.add", {"charger_id": charger_id}),
            ("tags.add", {"id_tag": tag}),
        ):
            try:
                client.request(op, op_args)
            except CtlError as exc:
                if "conflict" not in exc.message:
                    raise
        pairs.append((charger_id, tag))
    return pairs


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def verify(client: Client, run: Run, ids: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Compare the ledger with what the server reports; returns figures and failures."""
    ledger, failures = run.ledger, []
    mine = set(ids)
    # Connections: every charger hung up, so none may be shown connected.
    listed = [c for c in client.request("chargers.list") if c["charger_id"] in mine]
    still_connected = [c["charger_id"] for c in listed if c["connected"]]
    # Connector states: the last acknowledged status of each connector (timestamps rise).
    last: dict[tuple[str, int], tuple[str, str]] = {}
    for charger_id, connector, status, at in ledger.statuses:
        if (charger_id, connector) not in last or at > last[(charger_id, connector)][0]:
            last[(charger_id, connector)] = (at, status)
    shown = {
        (c["charger_id"], k["connector_id"]): k["status"] for c in listed for k in c["connectors"]
    }
    # A newer status the charger sent but never got an answer for (lost answer, or the
    # run ended while it waited) may be what is stored: not wrong, and counted.
    unanswered = {
        (cid, connector, status): at for cid, connector, status, at in ledger.unanswered_statuses
    }
    wrong_state = {}
    stored_unanswered = 0
    for k, v in last.items():
        now_shown = shown.get(k)
        if now_shown == v[1]:
            continue
        later = unanswered.get((k[0], k[1], now_shown or ""))
        if later is not None and later > v[0]:
            stored_unanswered += 1
            continue
        wrong_state[k] = (v[1], now_shown)
    # Status history: every acknowledged status stored once (the newest 50 per charger).
    by_charger: dict[str, list[tuple[int, str, str]]] = {}
    for charger_id, connector, status, at in ledger.statuses:
        by_charger.setdefault(charger_id, []).append((connector, status, at))
    status_lost = status_doubled = status_checked = 0
    for charger_id, acked in by_charger.items():
        history = client.request("chargers.show", {"charger_id": charger_id})["status_history"]
        stored = Counter((h["connector_id"], h["status"], h["at"]) for h in history)
        oldest = min((h["at"] for h in history), default="")
        window = acked if len(history) < 50 else [a for a in acked if a[2] >= oldest]
        for entry in window:
            status_checked += 1
            if stored[entry] == 0:
                status_lost += 1
            elif stored[entry] > 1:
                status_doubled += 1
    # Transactions: every acknowledged start stored once, every stop with its energy.
    txs = [
        t
        for charger_id in ids
        for t in client.request("transactions.list", {"charger_id": charger_id, "limit": 1000})
    ]
    stored_tx = Counter(t["transaction_id"] for t in txs)
    by_id = {t["transaction_id"]: t for t in txs}
    starts_lost = [tx for tx in ledger.starts if stored_tx[tx] == 0]
    keys = Counter(
        (t["charger_id"], t["connector_id"], t["start_time"], t["meter_start"]) for t in txs
    )
    starts_doubled = sum(n - 1 for n in keys.values() if n > 1)
    stops_lost, energy_wrong = [], []
    for tx, meter_stop in ledger.stops.items():
        row = by_id.get(tx)
        if row is None or row["meter_stop"] != meter_stop:
            stops_lost.append(tx)
        elif row["energy_wh"] != meter_stop - ledger.starts[tx][2]:
            energy_wrong.append((tx, row["energy_wh"], meter_stop - ledger.starts[tx][2]))
    refused_live = [
        tx for tx in ledger.refused_starts if by_id.get(tx, {}).get("state") == "active"
    ]
    # Meter values: every acknowledged sample is in its transaction (sampled per session).
    mv_lost = 0
    for tx, acked in ledger.meter_values.items():
        shown_tx = client.request("transactions.show", {"transaction_id": tx})
        energy = [
            mv
            for mv in shown_tx.get("meter_values", [])
            for sv in mv.get("sampled_values", [])
            if sv.get("measurand", "").startswith("Energy")
        ]
        mv_lost += max(0, acked - len(energy))
    lost = status_lost + len(starts_lost) + len(stops_lost) + mv_lost
    doubled = status_doubled + starts_doubled
    figures = {
        "acknowledged": dict(ledger.acknowledged),
        "acknowledged_total": sum(ledger.acknowledged.values()),
        "chargers_booted": len(ledger.booted),
        "call_errors": dict(ledger.call_errors),
        "lost_answers_retried": ledger.lost_answers,
        "reconnects": ledger.reconnects,
        "statuses_checked": status_checked,
        "sessions": len(ledger.stops),
        "refused_starts": len(ledger.refused_starts),
        "lost": lost,
        "lost_detail": {
            "status": status_lost,
            "start": len(starts_lost),
            "stop": len(stops_lost),
            "meter_values": mv_lost,
        },
        "doubled": doubled,
        "connector_states_wrong": len(wrong_state),
        "states_from_unanswered_messages": stored_unanswered,
        "connected_after_hang_up": len(still_connected),
        "energy_wrong": len(energy_wrong),
        "refused_starts_left_active": len(refused_live),
        "latency_p50_ms": round(percentile(ledger.latencies, 0.50) * 1000, 1),
        "latency_p99_ms": round(percentile(ledger.latencies, 0.99) * 1000, 1),
        "latency_mean_ms": round(statistics.fmean(ledger.latencies) * 1000, 1)
        if ledger.latencies
        else None,
        "load_average": os.getloadavg(),
    }
    if lost:
        failures.append(f"{lost} acknowledged messages lost")
    if doubled:
        failures.append(f"{doubled} messages stored twice")
    if wrong_state:
        failures.append(
            f"{len(wrong_state)} connectors differ from the last acknowledged status: "
            f"{list(wrong_state.items())[:3]}"
        )
    if still_connected:
        failures.append(f"{len(still_connected)} chargers shown connected after hanging up")
    if energy_wrong:
        failures.append(f"{len(energy_wrong)} sessions with wrong energy: {energy_wrong[:3]}")
    if refused_live:
        failures.append(f"{len(refused_live)} refused starts left active")
    if not ledger.acknowledged:
        failures.append("nothing was acknowledged at all")
    if run.args.require_all_booted and len(ledger.booted) < len(ids):
        failures.append(f"only {len(ledger.booted)} of {len(ids)} chargers booted")
    return figures, failures


async def soak(args: argparse.Namespace, run: Run, pairs: list[tuple[str, str]]) -> None:
    chargers = [SimCharger(args, cid, tag, run) for cid, tag in pairs]
    tasks = [asyncio.create_task(c.live()) for c in chargers]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), args.duration + args.grace)
    except TimeoutError:
        print("[soak] some chargers did not finish within the grace period", file=sys.stderr)


def wait_hung_up(client: Client, ids: set[str], timeout: float) -> None:
    """The server notices hang-ups asynchronously: give it a bounded moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = client.request("chargers.list")
        if not any(c["connected"] for c in listed if c["charger_id"] in ids):
            return
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the charger URL without the id, e.g. ws://HOST:9000/ocpp")
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--grace", type=float, default=60.0, help="extra seconds to finish")
    parser.add_argument("--ramp", type=float, default=10.0, help="spread the connects (s)")
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN", "MAX"))
    parser.add_argument("--refused-share", type=float, default=0.1)
    parser.add_argument("--answer-timeout", type=float, default=30.0)
    parser.add_argument("--connect-concurrency", type=int, default=50)
    parser.add_argument(
        "--socket", default=os.environ.get("VOLTARO_CONTROL_SOCKET") or default_control_socket()
    )
    parser.add_argument("--prefix", help="charger id prefix (default: unique per run)")
    parser.add_argument("--seed", default="soak")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--require-all-booted",
        action="store_true",
        help="fail unless every charger's BootNotification was answered",
    )
    args = parser.parse_args(argv)
    if args.chargers < 1 or args.duration <= 0:
        parser.error("--chargers and --duration must be positive")
    run = Run(args)
    try:
        client = Client(args.socket, timeout=600)
        pairs = setup(client, run, args.chargers)
    except CtlError as exc:
        print(f"soak: control socket {args.socket}: {exc.message}", file=sys.stderr)
        return 2
    started = time.monotonic()
    print(f"[soak] {args.chargers} chargers ({run.prefix}-*), {args.duration:g} s, {args.url}")
    asyncio.run(soak(args, run, pairs))
    elapsed = time.monotonic() - started
    ids = {cid for cid, _ in pairs}
    wait_hung_up(client, ids, 30)
    figures, failures = verify(client, run, sorted(ids))
    figures["elapsed_s"] = round(elapsed, 1)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"[soak] {key}: {value}")
    for failure in failures:
        print(f"[soak] FAIL: {failure}")
    print("[soak] " + ("FAILED" if failures else "OK: nothing acknowledged was lost or doubled"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
