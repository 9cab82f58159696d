#!/usr/bin/env python3
"""Site load management, shown with a real server and 20 simulated chargers (issue 17).

    .venv/bin/python scripts/load_demo.py [--minutes 10] [--seed 1] [--out load-demo-out]

Starts Voltaro (a subprocess on loopback, SQLite in a temporary directory) with a 63 A
three-phase site and three feeders (32, 32 and 25 A) carrying 20 chargers: most of them
three-phase with their phases rotated from one charger to the next, two single-phase.
The chargers are scripts/simulate.py's (the `ocpp` library's ChargePoint, independent of
the server's code), which obey stacked charging profiles (scripts/charging_schedule.py).
Each session plugs in a car: three-phase 16 A or 32 A, single-phase 16 A or 32 A, or a
three-phase car that takes only 10 A whatever it is offered. A car draws what its
charger offers (the composite limit of its profiles), up to its own maximum and a few
tenths of an ampere below, on its own phases (the charger's L1 for a one-phase car);
below 6 A it pauses (IEC 61851-1). It follows a new limit after a response time (by
default 1-3 s per session: the charger's pilot signal and the car's ramp; IEC 61851-1
gives a car up to 5 s). Sessions start and stop at random (seeded).

Recorded (in --out): every second, per circuit and site phase, the summed drawn current
and the limit, and per connector the limit its charger applies, what the server
allocated and what the car draws (samples.csv, connectors.csv, samples.json); every
TxProfile from the moment the server sent it (its frame, from the control socket's
event stream) to the moment the charger received it and the car drew the new current;
every session start to its first TxProfile. Then it prints and checks:

- per circuit and phase the highest summed drawn current against the limit, the time
  over any limit and the longest single excursion (only while a charger applies a
  change: at most --apply-target seconds);
- the latency of every change, p50/p95/max (target: each applied within
  --apply-target, 5 s), and of every start to its profile;
- sessions, parked sessions and rotations (from the server's load.allocation events).

It writes a PNG plot (load.png: per-phase site load and each feeder's load against
their limits over time) with a pure-Python PNG writer (scripts/png_chart.py). Exit
status 1 when a target is missed, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import png_chart
import simulate
from charging_schedule import parse_time
from ocpp.v16 import call

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from voltaro.control import wire  # noqa: E402 - after the path above
from voltaro.control.ctl import Client  # noqa: E402

VOLTAGE = 230.0
PHASES = ("L1", "L2", "L3")
MIN_AMPS = 6.0  # below it a car pauses (IEC 61851-1: no PWM duty cycle under 6 A)
SETTLE_S = 5.0  # the server's FALLBACK_SETTLE_SECONDS after an offline charger's lease
EPSILON = 0.01  # A: summed currents are compared with the limit to this tolerance
ROTATIONS = (("L1", "L2", "L3"), ("L2", "L3", "L1"), ("L3", "L1", "L2"))
SINGLE_PHASE = {4: ("L2",), 11: ("L3",)}  # charger index -> its one site phase


@dataclass(frozen=True)
class Car:
    name: str
    phases: int
    max_amps: float


# What plugs in, with weights: most cars charge on three phases at 16 A (11 kW); some
# on one phase (many plug-in hybrids, older EVs); some take less than offered.
CARS: tuple[tuple[Car, int], ...] = (
    (Car("3-phase 16 A", 3, 16.0), 5),
    (Car("3-phase 32 A", 3, 32.0), 2),
    (Car("1-phase 16 A", 1, 16.0), 2),
    (Car("1-phase 32 A", 1, 32.0), 1),
    (Car("3-phase, takes 10 A", 3, 10.0), 2),
)


@dataclass(frozen=True)
class Wiring:
    charger_id: str
    feeder: str
    phases: tuple[str, ...]  # the site phase of the charger's L1, L2, L3
    max_amps: float
    fallback_amps: float


def layout(chargers: int, feeders: Sequence[tuple[str, float]], fallback: float) -> list[Wiring]:
    """Chargers round-robin over the feeders; phases rotated from one charger to the next
    on a feeder (L1-L2-L3, L2-L3-L1, L3-L1-L2); the 5th and 12th single-phase (32 A, on
    the site's L2 and L3); every 4th three-phase charger an 11 kW one (16 A)."""
    out = []
    for i in range(chargers):
        feeder = feeders[i % len(feeders)][0]
        if i in SINGLE_PHASE:
            phases, rating = SINGLE_PHASE[i], 32.0
        else:
            phases = ROTATIONS[(i // len(feeders)) % 3]
            rating = 16.0 if i % 4 == 3 else 32.0
        out.append(Wiring(f"DEMO-{i + 1:02d}", feeder, phases, rating, fallback))
    return out


def settings_toml(args: argparse.Namespace, wirings: list[Wiring]) -> str:
    lines = [
        'unknown_chargers = "accept"',
        "http_enabled = false",
        'log_level = "WARNING"',
        f"load_rotation_seconds = {args.rotation}",
        f"load_fallback_lease_seconds = {args.lease}",
        "",
        "[[circuits]]",
        'name = "site"',
        f"limit_amps = {args.site_amps}",
    ]
    for name, amps in args.feeders:
        lines += ["", "[[circuits]]", f'name = "{name}"', 'parent = "site"', f"limit_amps = {amps}"]
        for w in wirings:
            if w.feeder != name:
                continue
            wiring = ",".join(f"L{i + 1}={p}" for i, p in enumerate(w.phases))
            lines += [
                "",
                "[[circuits.chargers]]",
                f'id = "{w.charger_id}"',
                f'phases = "{wiring}"',
                f"max_amps = {w.max_amps}",
                f"fallback_amps = {w.fallback_amps}",
            ]
    return "\n".join(lines) + "\n"


# --- what the chargers and cars do ------------------------------------------------------


@dataclass
class Plug:
    """The car on a connector: what it follows and what it draws."""

    car: Car | None = None
    charging: bool = False
    target: float = 0.0  # A per phase the car follows (its charger's limit, a bit later)
    trim: float = 0.0  # how far below the offered current this car draws
    response: float = 0.0  # seconds from a new limit at the charger to the car's new draw
    seq: int = 0  # changes scheduled
    done: int = 0  # changes followed
    has_profile: bool = False  # its session's TxProfile has arrived
    last_offered: float = 0.0  # the charger's limit when the car was last told
    on_fallback: bool = False  # it follows a limit set before its TxProfile came
    until: float = 0.0  # time.monotonic(): when the driver unplugs this car

    @property
    def settling(self) -> bool:
        """Charging at a limit it has not followed yet, or before its TxProfile."""
        return self.charging and (self.seq > self.done or not self.has_profile)


@dataclass
class Received:
    """A SetChargingProfile as the charger took it."""

    charger_id: str
    connector_id: int
    purpose: str
    profile_id: int
    transaction_id: int | None
    limit: float
    received: float  # time.time()
    applied: float | None = None  # when the car drew the new limit (or received, no car)
    sent: float | None = None  # the server's frame, matched later
    # A leased ChargePointMaxProfile: when its last period (the fallback) begins.
    falls_back: float | None = None


def lease_end(profile: dict[str, Any]) -> float | None:
    """When an Absolute ChargePointMaxProfile reaches its last period (time.time())."""
    schedule = profile["charging_schedule"]
    start = parse_time(schedule.get("start_schedule"))
    if profile["charging_profile_purpose"] != "ChargePointMaxProfile" or start is None:
        return None
    last = max(p["start_period"] for p in schedule["charging_schedule_period"])
    return float(start.timestamp() + last)


@dataclass
class Started:
    charger_id: str
    transaction_id: int
    car: str
    sent: float  # StartTransaction sent (time.time())
    stopped: float | None = None


class DemoCharger(simulate.VirtualCharger):  # type: ignore[misc]
    """simulate.py's charger with one connector, a car model and hooks that record what
    it received and when its car followed."""

    def __init__(self, demo: Demo, wiring: Wiring, args: argparse.Namespace, seed: str) -> None:
        super().__init__(wiring.charger_id, args, demo.stats, random.Random(seed))
        self.demo = demo
        self.wiring = wiring
        self.plug = Plug()
        self.pending: list[Received] = []  # received, the car has not followed yet

    # Limits: the charger's rating instead of the simulator's 7.5 kW default.
    def limit(self, connector: int) -> simulate.Limit:
        session = self.sessions.get(connector)
        return simulate.limit_at(
            self.profiles,
            connector,
            datetime.now(simulate.UTC),
            tx_start=session.started_at if session else None,
            max_watts=self.wiring.max_amps * VOLTAGE * 3,
        )

    def offered(self) -> float:
        """A per phase the charger offers on its connector now (its composite limit)."""
        limit = self.limit(1)
        return round(limit.watts / (VOLTAGE * limit.phases), 3)

    def drawn(self) -> tuple[float, float, float]:
        """A on the charger's own L1, L2, L3."""
        plug = self.plug
        if not plug.charging or plug.car is None or plug.target < MIN_AMPS:
            return (0.0, 0.0, 0.0)
        amps = max(0.0, min(plug.car.max_amps, plug.target, self.wiring.max_amps) - plug.trim)
        phases = min(plug.car.phases, len(self.wiring.phases))
        return tuple(amps if i < phases else 0.0 for i in range(3))  # type: ignore[return-value]

    def change(self) -> None:
        """The charger's limit may have moved: the car follows after its response time."""
        plug = self.plug
        plug.seq += 1
        seq, amps = plug.seq, self.offered()
        plug.last_offered = amps
        followers, self.pending = self.pending, []
        asyncio.get_running_loop().call_later(
            plug.response, self._follow, seq, amps, followers, not plug.has_profile
        )

    def refresh(self) -> None:
        """A limit that moved by the charger's own clock (a schedule's next period, a
        lease running out while offline) reaches the car too."""
        if self.plug.charging and abs(self.offered() - self.plug.last_offered) > 1e-6:
            self.change()

    def _follow(self, seq: int, amps: float, followers: list[Received], fallback: bool) -> None:
        plug = self.plug
        now = time.time()
        if seq > plug.done:
            plug.done, plug.target, plug.on_fallback = seq, amps, fallback
            self.demo.draw_changed(now)
        for record in followers:
            record.applied = now

    def install_profile(self, connector_id: int, profile: dict[str, Any]) -> None:
        super().install_profile(connector_id, profile)
        record = Received(
            charger_id=self.charger_id,
            connector_id=connector_id,
            purpose=profile["charging_profile_purpose"],
            profile_id=int(profile["charging_profile_id"]),
            transaction_id=profile.get("transaction_id"),
            limit=float(profile["charging_schedule"]["charging_schedule_period"][0]["limit"]),
            received=time.time(),
            falls_back=lease_end(profile),
        )
        self.demo.received.append(record)
        if record.purpose == "TxProfile" and connector_id in self.sessions:
            self.plug.has_profile = True
        if self.plug.charging:
            self.pending.append(record)
            self.change()
        else:
            record.applied = record.received  # no car draws yet: in force at once

    async def status(self, connector: int, status: str, error: str = "NoError") -> None:
        if connector == 1 and status == "Charging" and not self.plug.charging:
            self.plug.charging = True
            self.plug.target = 0.0
            self.change()
        elif connector == 1 and status in ("Finishing", "Available") and self.plug.charging:
            self.car_leaves()
        await super().status(connector, status, error)

    def car_leaves(self) -> None:
        self.plug.charging = False
        self.plug.target = 0.0
        self.plug.done = self.plug.seq  # nothing left to follow
        for record in self.pending:
            record.applied = time.time()
        self.pending = []
        self.demo.draw_changed(time.time())

    async def send(self, payload: Any, *, transactional: bool = False) -> Any:
        sent = time.time()
        result = await super().send(payload, transactional=transactional)
        if isinstance(payload, call.StartTransaction) and result is not None:
            car = self.plug.car.name if self.plug.car else "-"
            self.demo.starts.append(Started(self.charger_id, int(result.transaction_id), car, sent))
        return result

    def sampled(self, session: simulate.Session) -> list[dict[str, Any]]:
        """MeterValues with what the car draws on each of the charger's phases."""
        drawn = self.drawn()
        phases = PHASES[: len(self.wiring.phases)]
        values: list[dict[str, Any]] = [
            {
                "value": f"{session.meter_wh:.1f}",
                "measurand": "Energy.Active.Import.Register",
                "unit": "Wh",
            },
            {
                "value": f"{sum(drawn) * VOLTAGE:.0f}",
                "measurand": "Power.Active.Import",
                "unit": "W",
            },
        ]
        for i, phase in enumerate(phases):
            values.append(
                {
                    "value": f"{drawn[i]:.1f}",
                    "measurand": "Current.Import",
                    "phase": phase,
                    "unit": "A",
                }
            )
        return values

    def limit_w(self, connector: int) -> float:
        """What the meter counts as energy: the car's power."""
        return sum(self.drawn()) * VOLTAGE


# --- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """The summed draw per circuit and phase from ``t`` (time.time()) on."""

    t: float
    loads: dict[str, list[float]]
    settling: bool  # some car is still to follow a new limit, or has no TxProfile yet
    starting: bool = False  # some car draws what its charger allowed before its TxProfile


@dataclass
class Demo:
    args: argparse.Namespace
    wirings: list[Wiring]
    stats: simulate.Stats = field(default_factory=simulate.Stats)
    chargers: list[DemoCharger] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    starts: list[Started] = field(default_factory=list)
    sent_frames: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    allocations: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    timeline: list[Point] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    resyncs: int = 0
    t0: float = 0.0
    offline: dict[str, Any] | None = None  # the offline episode

    @property
    def limits(self) -> dict[str, float]:
        return {"site": self.args.site_amps, **dict(self.args.feeders)}

    def loads(self) -> dict[str, list[float]]:
        """Summed drawn current per circuit and site phase, from every car's draw."""
        sums = {name: [0.0, 0.0, 0.0] for name in self.limits}
        for charger in self.chargers:
            for i, amps in enumerate(charger.drawn()[: len(charger.wiring.phases)]):
                phase = PHASES.index(charger.wiring.phases[i])
                sums[charger.wiring.feeder][phase] += amps
                sums["site"][phase] += amps
        return sums

    def draw_changed(self, now: float) -> None:
        settling = any(c.plug.settling for c in self.chargers)
        starting = any(
            c.plug.charging and (c.plug.on_fallback or not c.plug.has_profile) and any(c.drawn())
            for c in self.chargers
        )
        self.timeline.append(Point(now, self.loads(), settling, starting))

    def latest_allocation(self) -> dict[str, Any] | None:
        return self.allocations[-1][1] if self.allocations else None


async def read_events(demo: Demo, path: str, ready: asyncio.Event) -> None:
    """Follow the server's event stream (the control socket, as `voltaro ctl events`):
    the SetChargingProfile frames it sends and its load.allocation rounds."""
    reader, writer = await asyncio.open_unix_connection(path, limit=16 * 1024 * 1024)
    try:
        hello = wire.decode(await reader.readline())
        if hello.get("type") != "hello":
            raise RuntimeError(f"unexpected first frame {hello}")
        request = {"frames": True, "kinds": ["frame", "load.allocation"]}
        writer.write(wire.encode(wire.request(1, "subscribe", request)))
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return
            frame = wire.decode(line)
            now = time.time()
            if frame.get("type") == "response":
                if not frame.get("ok"):
                    raise RuntimeError(f"subscribe refused: {frame}")
                ready.set()
            elif frame.get("type") == "resync":
                demo.resyncs += 1
            elif frame.get("type") == "event":
                data = frame["data"]
                if frame["event"] == "load.allocation":
                    demo.allocations.append((now, data))
                elif data.get("direction") == "out" and data.get("action") == "SetChargingProfile":
                    message = json.loads(data["payload"])
                    at = datetime.fromisoformat(data["at"].replace("Z", "+00:00")).timestamp()
                    demo.sent_frames.append((at, data["charger_id"], message[3]))
    finally:
        writer.close()


def pick_car(rng: random.Random) -> Car:
    cars, weights = zip(*CARS, strict=True)
    car: Car = rng.choices(cars, weights=weights)[0]
    return car


async def drive(demo: Demo, charger: DemoCharger, rng: random.Random, end: float) -> None:
    """Plug cars in and out at random until ``end`` (time.monotonic())."""
    args = demo.args
    tag = f"TAG-{charger.charger_id}"
    await asyncio.sleep(rng.uniform(0, args.first_start))
    while time.monotonic() < end:
        await charger.online.wait()
        plug = charger.plug
        plug.car = pick_car(rng)
        plug.trim = rng.uniform(0.1, 0.4)
        plug.response = rng.uniform(*args.response)
        plug.has_profile = False
        simulate.TAGS_IN_USE.add(tag)
        charger.spawn(charger.run_session(1, tag))
        length = min(rng.uniform(*args.session_seconds), max(0.0, end - time.monotonic()))
        plug.until = time.monotonic() + length
        await asyncio.sleep(length)
        while not charger.online.is_set() and time.monotonic() < end:  # noqa: ASYNC110
            await asyncio.sleep(0.5)  # the car stays plugged in while its charger is offline
        session = charger.sessions.get(1)
        if session is not None:
            session.reason = "EVDisconnected"
            session.stop.set()
            charger.car_leaves()
        while charger.sessions:  # noqa: ASYNC110 - the session ends on its own
            await asyncio.sleep(0.1)
        await asyncio.sleep(min(rng.uniform(*args.idle_seconds), max(0.0, end - time.monotonic())))


async def sample(demo: Demo, end: float) -> None:
    """Every second: circuit loads, limits, and each connector's limit and draw."""
    start = time.monotonic()
    tick = 0
    while time.monotonic() < end:
        tick += 1
        await asyncio.sleep(max(0.0, start + tick - time.monotonic()))
        allocation = demo.latest_allocation() or {}
        granted = {(s["charger_id"], s["connector_id"]): s for s in allocation.get("sessions", [])}
        reserved = {r["charger_id"]: r for r in allocation.get("reserved", [])}
        connectors = []
        for charger in demo.chargers:
            charger.refresh()
            grant = granted.get((charger.charger_id, 1))
            counted = reserved.get(charger.charger_id)
            session = charger.sessions.get(1)
            connectors.append(
                {
                    "charger_id": charger.charger_id,
                    "transaction_id": session.transaction_id if session else None,
                    "car": charger.plug.car.name if session and charger.plug.car else None,
                    "online": charger.online.is_set(),
                    "offered_a": charger.offered() if session else None,
                    "allocated_a": grant["amps"] if grant else None,
                    "parked": grant["parked"] if grant else None,
                    # What the allocator counts a charger at that does not follow it
                    # (offline, refusing profiles), and why.
                    "counted_a": counted["amps"] if counted else None,
                    "counted_as": counted["reason"] if counted else None,
                    "drawn_a": list(charger.drawn()),
                }
            )
        demo.samples.append(
            {
                "t": round(time.time() - demo.t0, 3),
                "loads": {k: [round(a, 3) for a in v] for k, v in demo.loads().items()},
                "limits": demo.limits,
                "connectors": connectors,
            }
        )


def simulator_args(args: argparse.Namespace, url: str, tag: str) -> argparse.Namespace:
    return simulate.parse_args(
        [
            url,
            "--chargers",
            "1",
            "--connectors",
            "1",
            "--tag",
            tag,
            # Sessions are started here (drive), not by the simulator's own timer.
            "--session-every",
            "1e9",
            "--session-length",
            "1e9",
            "--meter-interval",
            str(args.meter_interval),
        ]
    )


async def run(demo: Demo, url: str, control_socket: str) -> None:
    args = demo.args
    ready = asyncio.Event()
    events = asyncio.ensure_future(read_events(demo, control_socket, ready))
    await asyncio.wait_for(ready.wait(), 30)
    far = time.monotonic() + 10 * 86400
    for w in demo.wirings:
        charger = DemoCharger(
            demo, w, simulator_args(args, url, f"TAG-{w.charger_id}"), f"{args.seed}-{w.charger_id}"
        )
        demo.chargers.append(charger)
    serving = [asyncio.ensure_future(c.serve(far)) for c in demo.chargers]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(c.online.wait() for c in demo.chargers)), args.setup_timeout
        )
        demo.t0 = time.time()
        end = time.monotonic() + args.minutes * 60
        print(
            f"load_demo: {len(demo.chargers)} chargers connected; running for "
            f"{args.minutes:g} min (seed {args.seed})",
            flush=True,
        )
        rng = random.Random(args.seed)
        drivers = [
            asyncio.ensure_future(drive(demo, c, random.Random(rng.random()), end))
            for c in demo.chargers
        ]
        progress = asyncio.ensure_future(report_progress(demo, end))
        episode = asyncio.ensure_future(offline_episode(demo, random.Random(rng.random())))
        await sample(demo, end)
        await asyncio.gather(*drivers)
        progress.cancel()
        episode.cancel()
        # Let the last StopTransactions and profiles go through.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(c.sessions_done() for c in demo.chargers)), 15)
        await asyncio.sleep(1.0)
    finally:
        for task in serving:
            task.cancel()
        for charger in demo.chargers:
            for task in list(charger.tasks):
                task.cancel()
        events.cancel()
        await asyncio.gather(*serving, events, return_exceptions=True)


async def offline_episode(demo: Demo, rng: random.Random) -> None:
    """At --offline-at, a charging charger (one drawing well above its fallback, whose
    car stays longest) loses its connection for --offline seconds; its car keeps
    charging by the profiles it holds."""
    args = demo.args
    if args.offline <= 0:
        return
    await asyncio.sleep(max(0.0, demo.t0 + args.offline_at - time.time()))
    while True:
        charging = [c for c in demo.chargers if c.plug.charging and c.plug.has_profile]
        charging = [c for c in charging if c.plug.target >= MIN_AMPS] or charging
        if charging:
            break
        await asyncio.sleep(1.0)
    rng.shuffle(charging)
    # One whose car draws well above its fallback shows the fall; then the longest stay.
    charger = max(
        charging,
        key=lambda c: (max(c.drawn()) >= c.wiring.fallback_amps + 3.0, c.plug.until),
    )
    demo.offline = {
        "charger_id": charger.charger_id,
        "start": round(time.time() - demo.t0, 3),
        "seconds": args.offline,
        "fallback_a": charger.wiring.fallback_amps,
    }
    charger.go_offline(args.offline)
    while not charger.online.is_set() or charger.offline_until:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    demo.offline["back"] = round(time.time() - demo.t0, 3)


async def report_progress(demo: Demo, end: float) -> None:
    while True:
        await asyncio.sleep(60)
        active = sum(1 for c in demo.chargers if c.sessions)
        site = demo.loads()["site"]
        print(
            f"load_demo: {max(0.0, end - time.monotonic()) / 60:4.1f} min left, "
            f"{active} sessions, site {site[0]:.1f}/{site[1]:.1f}/{site[2]:.1f} A, "
            f"{len(demo.received)} profiles received",
            flush=True,
        )


# --- the figures ------------------------------------------------------------------------


@dataclass
class Excursion:
    start: float  # seconds from the run's start
    seconds: float
    circuit: str
    phase: str
    amps: float
    limit: float
    # Of those seconds, how long every car was at its charger's limit and every session
    # had its TxProfile: the limits in force themselves added up above a circuit's.
    settled_seconds: float = 0.0
    # Some session drew before its TxProfile arrived (at its charger's fallback):
    # otherwise the excursion is cars following a change at different speeds.
    at_start: bool = False


def excursions(demo: Demo, end: float, only: str | None = None) -> list[Excursion]:
    """Intervals during which some circuit's summed draw is above its limit on some
    phase, from every change of any car's draw (exact, not sampled); ``only``: that
    circuit's."""
    out: list[Excursion] = []
    current: Excursion | None = None
    if not demo.timeline:
        return out
    timeline = [*demo.timeline, Point(end, demo.timeline[-1].loads, False)]
    for point, following in itertools.pairwise(timeline):
        t, t_next = point.t, following.t
        worst: tuple[float, str, str, float, float] | None = None
        for circuit, amps in point.loads.items():
            if only is not None and circuit != only:
                continue
            limit = demo.limits[circuit]
            for i, a in enumerate(amps):
                if a > limit + EPSILON and (worst is None or a - limit > worst[0]):
                    worst = (a - limit, circuit, PHASES[i], a, limit)
        if worst is None:
            if current is not None:
                out.append(current)
                current = None
            continue
        if current is None:
            current = Excursion(t - demo.t0, 0.0, worst[1], worst[2], worst[3], worst[4])
        current.seconds = t_next - demo.t0 - current.start
        current.at_start = current.at_start or point.starting
        if not point.settling:
            current.settled_seconds += t_next - t
        if worst[3] - worst[4] > current.amps - current.limit:
            current.circuit, current.phase, current.amps, current.limit = worst[1:]
    if current is not None:
        out.append(current)
    return out


def match_frames(demo: Demo) -> int:
    """Give each received TxProfile the time its frame left the server; the number of
    frames that reached no charger (a session that had ended: the charger refused)."""
    queues: dict[tuple[Any, ...], deque[float]] = defaultdict(deque)
    for at, charger_id, payload in sorted(demo.sent_frames, key=lambda f: f[0]):
        profile = payload["csChargingProfiles"]
        key = (
            charger_id,
            payload["connectorId"],
            profile["chargingProfileId"],
            profile.get("transactionId"),
            float(profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]),
        )
        queues[key].append(at)
    for record in sorted(demo.received, key=lambda r: r.received):
        key = (
            record.charger_id,
            record.connector_id,
            record.profile_id,
            record.transaction_id,
            record.limit,
        )
        if queues[key]:
            record.sent = queues[key].popleft()
    return sum(len(q) for q in queues.values())


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p95": round(pct(0.95), 3),
        "max": round(ordered[-1], 3),
    }


def parking(demo: Demo) -> dict[str, int]:
    """From the server's rounds: sessions parked at some point, rotations (a running
    session parked to give another its turn, or a parked one getting its turn)."""
    state: dict[int, bool] = {}
    ever: set[int] = set()
    parked_out = turns = 0
    for _, allocation in demo.allocations:
        for s in allocation.get("sessions", []):
            tx = s.get("transaction_id")
            if tx is None:
                continue
            parked = s.get("parked") is not None
            before = state.get(tx)
            if parked:
                ever.add(tx)
            if before is not None and before != parked:
                if parked:
                    parked_out += 1
                else:
                    turns += 1
            state[tx] = parked
    return {"parked_sessions": len(ever), "parked_while_charging": parked_out, "turns": turns}


def offline_figures(demo: Demo) -> dict[str, Any] | None:
    """The offline episode from the samples: what the charger's car drew while its
    charger could not be reached, against what the allocator counted it at."""
    episode = demo.offline
    if episode is None:
        return None
    charger_id, start = episode["charger_id"], episode["start"]
    back = episode.get("back", start + episode["seconds"])
    rows = [
        (s["t"], c)
        for s in demo.samples
        if start <= s["t"] <= back
        for c in s["connectors"]
        if c["charger_id"] == charger_id
    ]
    counted = [c["counted_a"] for _, c in rows if c["counted_as"] is not None]
    longest = run = 0.0
    previous: float | None = None
    for t, c in rows:
        above = c["counted_as"] is not None and max(c["drawn_a"]) > c["counted_a"] + EPSILON
        run = run + (t - previous if previous is not None else 1.0) if above else 0.0
        longest = max(longest, run)
        previous = t
    tail = [max(c["drawn_a"]) for t, c in rows if t >= back - 10]
    # From when on (seconds after the drop) the car stayed within the fallback, and what
    # it was counted at last before the charger came back.
    fallback_after: float | None = None
    for t, c in reversed(rows):
        if max(c["drawn_a"]) > episode["fallback_a"] + EPSILON:
            break
        fallback_after = round(t - start, 3)
    last_counted = next((c["counted_a"] for _, c in reversed(rows) if c["counted_as"]), None)
    held = [r for r in demo.received if r.charger_id == charger_id and r.received - demo.t0 < start]
    leases = [r.falls_back for r in held if r.falls_back is not None]
    # The lease it held when it dropped runs out by its own clock: from then (plus the
    # car's response time and a sample) its car draws at most the fallback.
    lease_ends = round(leases[-1] - demo.t0, 3) if leases else None
    settled = None if lease_ends is None else lease_ends + demo.args.response[1] + 1.0
    after_lease = [max(c["drawn_a"]) for t, c in rows if settled is not None and t >= settled]
    return {
        **episode,
        "back": back,
        "samples": len(rows),
        "samples_counted_offline": len(counted),
        "counted_a": [min(counted), max(counted)] if counted else None,
        "max_drawn_a": round(max((max(c["drawn_a"]) for _, c in rows), default=0.0), 2),
        "drawn_last_10s_a": round(max(tail, default=0.0), 2),
        "longest_above_counted_s": round(longest, 3),
        "within_fallback_after_s": fallback_after,
        "last_counted_a": last_counted,
        # A leased ChargePointMaxProfile held when it dropped: it must come down to its
        # fallback on its own when the lease runs out; without one it keeps its TxProfile.
        "had_charge_point_max": any(r.purpose == "ChargePointMaxProfile" for r in held),
        "lease_ends": lease_ends,
        # The server counts it at its fallback 5 s after the lease's end (its car's
        # response time, IEC 61851-1): if that was before it came back, the last count.
        "counted_at_fallback_by": None
        if lease_ends is None or lease_ends + SETTLE_S + 1.0 >= back
        else lease_ends + SETTLE_S,
        "drawn_after_lease_a": round(max(after_lease), 2) if after_lease else None,
    }


def figures(demo: Demo, end: float) -> dict[str, Any]:
    args = demo.args
    unmatched = match_frames(demo)
    tx = [r for r in demo.received if r.purpose == "TxProfile"]
    matched = [r for r in tx if r.sent is not None]
    to_charger = [r.received - r.sent for r in matched if r.sent is not None]
    applied = [r.applied - r.sent for r in matched if r.sent is not None and r.applied is not None]
    first: dict[int, Received] = {}
    for r in sorted(tx, key=lambda r: r.received):
        if r.transaction_id is not None:
            first.setdefault(int(r.transaction_id), r)
    start_to_profile = [
        first[s.transaction_id].received - s.sent for s in demo.starts if s.transaction_id in first
    ]
    start_to_applied = [
        (first[s.transaction_id].applied or first[s.transaction_id].received) - s.sent
        for s in demo.starts
        if s.transaction_id in first
    ]
    peaks = {
        name: [max((s["loads"][name][i] for s in demo.samples), default=0.0) for i in range(3)]
        for name in demo.limits
    }
    exact = {name: [0.0, 0.0, 0.0] for name in demo.limits}
    for point in demo.timeline:
        for name, amps in point.loads.items():
            exact[name] = [max(a, b) for a, b in zip(exact[name], amps, strict=True)]
    over = excursions(demo, end)
    parks = parking(demo)
    return {
        "minutes": args.minutes,
        "seed": args.seed,
        "chargers": len(demo.chargers),
        "site_amps": args.site_amps,
        "feeders": dict(args.feeders),
        "load_average": os.getloadavg(),
        "sessions": len(demo.starts),
        "sessions_without_profile": sum(1 for s in demo.starts if s.transaction_id not in first),
        **parks,
        "peak_amps": {k: [round(a, 2) for a in v] for k, v in exact.items()},
        "peak_amps_sampled": {k: [round(a, 2) for a in v] for k, v in peaks.items()},
        "limits": demo.limits,
        "seconds_over_limit": round(sum(e.seconds for e in over), 3),
        "seconds_over_limit_settled": round(sum(e.settled_seconds for e in over), 3),
        "excursions": len(over),
        "excursions_at_a_start": sum(1 for e in over if e.at_start),
        "mean_amps": {
            name: [
                round(statistics.fmean(s["loads"][name][i] for s in demo.samples), 2)
                if demo.samples
                else 0.0
                for i in range(3)
            ]
            for name in demo.limits
        },
        "longest_excursion": asdict(max(over, key=lambda e: e.seconds)) if over else None,
        "largest_excursion": asdict(max(over, key=lambda e: e.amps - e.limit)) if over else None,
        "tx_profiles_sent": sum(
            1
            for _, _, p in demo.sent_frames
            if p["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile"
        ),
        "tx_profiles_received": len(tx),
        "tx_profiles_unmatched": len(tx) - len(matched),
        "frames_not_received": unmatched,
        "event_resyncs": demo.resyncs,
        "sent_to_received_s": percentiles(to_charger),
        "sent_to_applied_s": percentiles(applied),
        "start_to_profile_s": percentiles(start_to_profile),
        "start_to_applied_s": percentiles(start_to_applied),
        "allocation_rounds": len(demo.allocations),
        "offline": offline_figures(demo),
    }


def check(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The targets of issue 17; each miss as one line."""
    misses = []
    target = args.apply_target
    longest = result["longest_excursion"]
    if longest is not None and longest["seconds"] > target:
        misses.append(
            f"an excursion over a limit lasted {longest['seconds']:.2f} s (> {target:g} s): "
            f"{longest['circuit']} {longest['phase']} {longest['amps']:.1f} A of "
            f"{longest['limit']:g} A at t={longest['start']:.1f} s"
        )
    if result["seconds_over_limit_settled"] > 0:
        misses.append(
            f"{result['seconds_over_limit_settled']:.2f} s over a limit while every car drew "
            "within its charger's limit and every session had its TxProfile: the limits in "
            "force added up above a circuit's"
        )
    for name in ("sent_to_applied_s", "start_to_applied_s"):
        worst = result[name]["max"]
        if worst is not None and worst > target:
            misses.append(f"{name}: a change took {worst:.2f} s (> {target:g} s)")
    offline = result["offline"]
    if offline is not None:
        if not offline["samples_counted_offline"]:
            misses.append(f"the allocator never counted {offline['charger_id']} as offline")
        if offline["longest_above_counted_s"] > target:
            misses.append(
                f"offline {offline['charger_id']} drew more than it was counted at for "
                f"{offline['longest_above_counted_s']:.1f} s"
            )
        # Once the lease it held has run out (by its own clock) and its car has had the
        # time to follow, before it came back: it draws and is counted at its fallback.
        after = offline["drawn_after_lease_a"]
        if after is not None and offline["within_fallback_after_s"] is None:
            misses.append(
                f"offline {offline['charger_id']} still drew {offline['drawn_last_10s_a']} A "
                f"at the end, above its {offline['fallback_a']:g} A fallback"
            )
        if after is not None and after > offline["fallback_a"] + EPSILON:
            misses.append(
                f"offline {offline['charger_id']} still drew {after} A after its lease ran "
                f"out, above its {offline['fallback_a']:g} A fallback"
            )
        last = offline["last_counted_a"]
        if offline["counted_at_fallback_by"] is not None and (
            last is None or last > offline["fallback_a"] + EPSILON
        ):
            misses.append(
                f"offline {offline['charger_id']} was last counted at {last} A, not at its "
                f"{offline['fallback_a']:g} A fallback"
            )
    if result["sessions"] == 0 or result["sent_to_applied_s"]["n"] == 0:
        misses.append("no session or no TxProfile: nothing was shown")
    if result["sessions_without_profile"]:
        misses.append(f"{result['sessions_without_profile']} sessions never got a TxProfile")
    if result["tx_profiles_unmatched"]:
        misses.append(
            f"{result['tx_profiles_unmatched']} TxProfiles received without the server's frame "
            "(the event stream lost some: latencies incomplete)"
        )
    return misses


def print_figures(result: dict[str, Any], misses: list[str]) -> None:
    load = result["load_average"]
    print(
        f"\nload_demo: {result['chargers']} chargers, {result['minutes']:g} min, seed "
        f"{result['seed']}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{'CIRCUIT':<10} {'LIMIT A':>7}  {'PEAK DRAWN L1/L2/L3 A':<22} MEAN DRAWN L1/L2/L3 A")
    for name, limit in result["limits"].items():
        peak = "/".join(f"{a:.1f}" for a in result["peak_amps"][name])
        mean = "/".join(f"{a:.1f}" for a in result["mean_amps"][name])
        print(f"{name:<10} {limit:>7g}  {peak:<22} {mean}")
    longest = result["longest_excursion"]
    print(
        f"time over a limit: {result['seconds_over_limit']:.2f} s in "
        f"{result['excursions']} excursions ({result['seconds_over_limit_settled']:.2f} s "
        "of it with every car settled at its limit; "
        f"{result['excursions_at_a_start']} with a new session at its fallback); longest "
        + (
            f"{longest['seconds']:.2f} s ({longest['circuit']} {longest['phase']} "
            f"{longest['amps']:.1f} A of {longest['limit']:g} A)"
            if longest
            else "-"
        )
    )

    def line(label: str, p: dict[str, Any]) -> str:
        if not p["n"]:
            return f"{label}: none"
        return f"{label}: n={p['n']} p50={p['p50']:.2f} s p95={p['p95']:.2f} s max={p['max']:.2f} s"

    print(line("TxProfile sent -> received by the charger", result["sent_to_received_s"]))
    print(line("TxProfile sent -> the car draws the new limit", result["sent_to_applied_s"]))
    print(line("StartTransaction -> its TxProfile received", result["start_to_profile_s"]))
    print(line("StartTransaction -> the car draws that limit", result["start_to_applied_s"]))
    print(
        f"sessions {result['sessions']}, parked at some point {result['parked_sessions']}, "
        f"rotations: {result['parked_while_charging']} parked while charging, "
        f"{result['turns']} parked sessions got their turn; "
        f"{result['tx_profiles_sent']} TxProfiles sent, "
        f"{result['frames_not_received']} refused (session already over)"
    )
    offline = result["offline"]
    if offline is not None:
        counted = offline["counted_a"]
        print(
            f"offline: {offline['charger_id']} lost its connection at t={offline['start']:.0f} s "
            f"for {offline['seconds']:g} s (back at t={offline['back']:.0f} s): its car drew "
            f"at most {offline['max_drawn_a']:.1f} A, {offline['drawn_last_10s_a']:.1f} A in "
            f"the last 10 s (fallback {offline['fallback_a']:g} A"
            + (
                f", within it from {offline['within_fallback_after_s']:g} s after the drop"
                if offline["within_fallback_after_s"] is not None
                else ""
            )
            + "); the allocator counted it "
            + (f"at {counted[0]:g}-{counted[1]:g} A" if counted else "never")
            + (
                ""
                if offline["had_charge_point_max"]
                else " (no ChargePointMaxProfile held: it keeps its TxProfile offline)"
            )
            + (
                ""
                if offline["lease_ends"] is None
                else f"; its lease ran out at t={offline['lease_ends']:.0f} s"
                + (
                    ""
                    if offline["drawn_after_lease_a"] is None
                    else f", then it drew at most {offline['drawn_after_lease_a']:.1f} A"
                )
            )
        )
    if misses:
        print("TARGETS MISSED:")
        for miss in misses:
            print(f"  - {miss}")
    else:
        print(f"all targets met (changes applied within {result['apply_target']:g} s)")


# --- the files --------------------------------------------------------------------------


def write_files(demo: Demo, result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "samples.csv").open("w", newline="") as f:
        w = csv.writer(f)
        names = list(demo.limits)
        w.writerow(
            ["t"] + [f"{n}_{p}_a" for n in names for p in PHASES] + [f"{n}_limit_a" for n in names]
        )
        for s in demo.samples:
            w.writerow(
                [s["t"]]
                + [s["loads"][n][i] for n in names for i in range(3)]
                + [s["limits"][n] for n in names]
            )
    with (out / "connectors.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "t",
                "charger",
                "transaction",
                "car",
                "online",
                "offered_a",
                "allocated_a",
                "parked",
                "drawn_l1_a",
                "drawn_l2_a",
                "drawn_l3_a",
            ]
        )
        for s in demo.samples:
            for c in s["connectors"]:
                w.writerow(
                    [
                        s["t"],
                        c["charger_id"],
                        c["transaction_id"],
                        c["car"],
                        c["online"],
                        c["offered_a"],
                        c["allocated_a"],
                        c["parked"],
                        *c["drawn_a"],
                    ]
                )
    data = {
        "figures": result,
        "wiring": [asdict(w) for w in demo.wirings],
        "samples": demo.samples,
        "profiles": [{**asdict(r), "t": round(r.received - demo.t0, 3)} for r in demo.received],
        "starts": [asdict(s) for s in demo.starts],
        "timeline": [
            {
                "t": round(p.t - demo.t0, 4),
                "loads": {k: [round(a, 3) for a in v] for k, v in p.loads.items()},
                "settling": p.settling,
            }
            for p in demo.timeline
        ],
    }
    (out / "samples.json").write_text(json.dumps(data, indent=None, separators=(",", ":")))
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "load.png").write_bytes(plot(demo, result))


PALETTE = [
    (255, 255, 255),  # 0 background
    (30, 30, 30),  # 1 ink
    (222, 222, 222),  # 2 grid
    (200, 55, 40),  # 3 L1
    (40, 110, 200),  # 4 L2
    (40, 150, 60),  # 5 L3
    (0, 0, 0),  # 6 limit
    (250, 200, 200),  # 7 over a limit
    (215, 225, 240),  # 8 a charger offline
]


def plot(demo: Demo, result: dict[str, Any]) -> bytes:
    names = list(demo.limits)
    width, panel = 1000, 230
    canvas = png_chart.Canvas(width, 44 + panel * len(names), PALETTE)
    minutes = result["minutes"]
    load = result["load_average"][0]
    canvas.text(
        10,
        8,
        f"Voltaro load demo: {result['chargers']} chargers, {minutes:g} min, seed "
        f"{result['seed']}, load avg {load:.1f}",
        1,
        scale=2,
    )
    canvas.text(
        10,
        28,
        "summed drawn current per site phase (A) against the limit; red bands: over a limit; "
        "blue band: a charger offline",
        1,
    )
    x_max = max(1.0, minutes * 60)
    end = demo.t0 + x_max
    for n, name in enumerate(names):
        box = png_chart.Box(10, 44 + n * panel, width - 20, panel - 10)
        limit = demo.limits[name]
        # Steps at every change of a car's draw (exact, not the 1 s samples). Wider lines
        # underneath: equal phases show as a striped line.
        series = [
            png_chart.Series(
                p,
                3 + i,
                [(0.0, 0.0)]
                + [(pt.t - demo.t0, pt.loads[name][i]) for pt in demo.timeline]
                + [(x_max, demo.timeline[-1].loads[name][i] if demo.timeline else 0.0)],
                width=5 - 2 * i,
                step=True,
            )
            for i, p in enumerate(PHASES)
        ]
        series.append(png_chart.Series("limit", 6, [(0.0, limit), (x_max, limit)], width=2, dash=6))
        plot_top, plot_bottom = box.top + 22, box.top + box.height - 24
        episode = demo.offline
        feeder = next(
            (w.feeder for w in demo.wirings if episode and w.charger_id == episode["charger_id"]),
            None,
        )
        if episode is not None and name in ("site", feeder):
            left = box.left + 40 + (box.width - 50) * episode["start"] / x_max
            back = episode.get("back", episode["start"] + episode["seconds"])
            right = box.left + 40 + (box.width - 50) * min(back, x_max) / x_max
            canvas.rect(round(left), plot_top, round(right), plot_bottom, 8)
            canvas.text(round(left) + 3, plot_top + 3, f"{episode['charger_id']} offline", 1)
        for e in excursions(demo, end, only=name):
            left = box.left + 40 + (box.width - 50) * e.start / x_max
            right = left + max(1.0, (box.width - 50) * e.seconds / x_max)
            canvas.rect(round(left), plot_top, round(right), plot_bottom, 7)
        peak = result["peak_amps"][name]
        png_chart.chart(
            canvas,
            box,
            f"{name}: limit {limit:g} A, peak {max(peak):.1f} A",
            series,
            x_max=x_max,
            y_max=max(limit * 1.25, max(peak) * 1.05),
            x_label="seconds",
            y_label="",
            ink=1,
            grid=2,
        )
    return canvas.png()


# --- setup ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


@contextlib.contextmanager
def server(args: argparse.Namespace, wirings: list[Wiring], tmp: Path) -> Iterator[tuple[str, str]]:
    """A real Voltaro on loopback with the demo's circuits: (OCPP URL, control socket)."""
    config = tmp / "voltaro.toml"
    config.write_text(settings_toml(args, wirings))
    port = free_port()
    control = str(tmp / "control.sock")
    log_path = args.out / "server.log"
    args.out.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voltaro",
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database-url",
                f"sqlite:///{tmp}/voltaro.db",
                "--control-socket",
                control,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,  # `python -m voltaro`: this checkout's code
        )
    try:
        wait_port(port, process, args.setup_timeout)
        client = Client(control, wait=args.setup_timeout)
        try:
            for w in wirings:
                client.request("tags.add", {"id_tag": f"TAG-{w.charger_id}"})
            circuits = client.request("circuits.list")
        finally:
            client.close()
        names = {c.get("name") or c.get("circuit_id") for c in circuits.get("circuits", [])}
        if not {"site", *dict(args.feeders)} <= names:
            raise RuntimeError(f"the server does not show the demo's circuits: {circuits}")
        yield f"ws://127.0.0.1:{port}/ocpp", control
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def amps_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    values = (float(low), float(high or low))
    if values[0] < 0 or values[1] < values[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: want LOW-HIGH with 0 <= LOW <= HIGH")
    return values


def feeder_list(text: str) -> list[tuple[str, float]]:
    amps = [float(a) for a in text.split(",") if a.strip()]
    if not amps or any(a <= 0 for a in amps):
        raise argparse.ArgumentTypeError("want positive limits in A, e.g. 32,32,25")
    return [(f"feeder-{chr(ord('a') + i)}", a) for i, a in enumerate(amps)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long sessions come and go")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("load-demo-out"), help="output directory")
    p.add_argument("--chargers", type=int, default=20)
    p.add_argument("--site-amps", type=float, default=63.0, help="the site's limit per phase")
    p.add_argument(
        "--feeders",
        type=feeder_list,
        default=feeder_list("32,32,25"),
        help="the feeders' limits per phase, comma-separated (default 32,32,25)",
    )
    p.add_argument("--fallback", type=float, default=6.0, help="each charger's fallback (A)")
    p.add_argument("--rotation", type=float, default=120.0, help="load_rotation_seconds")
    p.add_argument("--meter-interval", type=float, default=10.0, help="MeterValues every S s")
    p.add_argument(
        "--session-seconds",
        type=amps_range,
        default=(60.0, 240.0),
        help="a session lasts LOW-HIGH seconds (uniform)",
    )
    p.add_argument(
        "--idle-seconds",
        type=amps_range,
        default=(60.0, 400.0),
        help="a charger stays free LOW-HIGH seconds between sessions",
    )
    p.add_argument(
        "--first-start",
        type=float,
        default=60.0,
        help="the first sessions start within this many seconds",
    )
    p.add_argument(
        "--response",
        type=amps_range,
        default=(1.0, 3.0),
        help="seconds from a new limit at the charger to the car's new draw (per session)",
    )
    p.add_argument(
        "--apply-target",
        type=float,
        default=5.0,
        help="each change applied within this many seconds; no excursion over a limit longer",
    )
    p.add_argument(
        "--offline",
        type=float,
        default=60.0,
        help="a charging charger loses its connection for this many seconds (0: never)",
    )
    p.add_argument(
        "--offline-at",
        type=float,
        help="... this many seconds into the run (default: at 40%% of it)",
    )
    p.add_argument(
        "--lease",
        type=int,
        default=30,
        help="load_fallback_lease_seconds: an offline charger falls to its fallback this "
        "long after its last renewal (the server's default is 120 s)",
    )
    p.add_argument("--setup-timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.chargers < 1 or args.minutes <= 0:
        p.error("--chargers must be at least 1 and --minutes positive")
    if args.offline_at is None:
        args.offline_at = 0.4 * args.minutes * 60
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wirings = layout(args.chargers, args.feeders, args.fallback)
    demo = Demo(args, wirings)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="voltaro-load-demo-") as tmp,
            server(args, wirings, Path(tmp)) as (url, control),
        ):
            asyncio.run(run(demo, url, control))
    except (RuntimeError, OSError, TimeoutError) as exc:
        print(f"load_demo: setup failed: {exc} (server log: {args.out / 'server.log'})")
        return 2
    end = demo.t0 + args.minutes * 60
    result = figures(demo, end)
    result["apply_target"] = args.apply_target
    misses = check(result, args)
    result["targets_missed"] = misses
    write_files(demo, result, args.out)
    print_figures(result, misses)
    print(f"load_demo: samples, figures and load.png in {args.out}/")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
