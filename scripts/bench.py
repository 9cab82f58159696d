#!/usr/bin/env python3
"""Benchmark Voltaro against the `ocpp` library's asyncio reference central system.

    python scripts/bench.py                 # full run (SQLite and PostgreSQL)
    python scripts/bench.py --quick         # a small smoke run (< 1 minute)

Runs: throughput (closed loop MeterValues, every message persisted), latency at a fixed
offered load, and scale (N chargers connect and boot as a reconnect storm, then RSS per
idle connection). The load generator sends raw JSON frames over `websockets` (cheaper
per message than the server) and runs pinned to a different core from the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import websockets

ROOT = Path(__file__).resolve().parents[1]
METER = json.dumps(
    {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": "2025-01-01T00:00:00Z",
                "sampledValue": [
                    {"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
                    {"value": "31.3", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                ],
            }
        ],
    }
)
BOOT = json.dumps({"chargePointVendor": "Bench", "chargePointModel": "B1"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def pinned(core: int | None) -> list[str]:
    if core is None or not shutil_which("taskset") or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)]


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def start_voltaro(database_url: str, workdir: Path) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "VOLTARO_UNKNOWN_CHARGERS": "accept",
        "VOLTARO_FRAME_LOG": "false",
        "VOLTARO_HTTP_ENABLED": "false",
        "VOLTARO_MAX_CONNECTIONS": "50000",
        "VOLTARO_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [
            *pinned(0),
            sys.executable,
            "-m",
            "voltaro",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            database_url,
            "--control-socket",
            str(workdir / "c.sock"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    wait_port(port)
    return Server("voltaro", process, f"ws://127.0.0.1:{port}/ocpp")


def start_reference() -> Server:
    port = free_port()
    process = subprocess.Popen(
        [
            *pinned(0),
            sys.executable,
            str(ROOT / "scripts" / "reference_central_system.py"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return Server("reference", process, f"ws://127.0.0.1:{port}/ocpp")


class Charger:
    def __init__(self, ws: Any, cid: str) -> None:
        self.ws = ws
        self.cid = cid
        self.n = 0

    async def call(self, action: str, payload: str) -> float:
        self.n += 1
        started = time.perf_counter()
        await self.ws.send(f'[2,"{self.n}","{action}",{payload}]')
        answer = await self.ws.recv()
        if not answer.startswith("[3"):
            raise RuntimeError(f"{self.cid}: {answer[:200]}")
        return time.perf_counter() - started


async def connect_all(url: str, count: int, prefix: str, parallel: int = 100) -> list[Charger]:
    gate = asyncio.Semaphore(parallel)
    out: list[Charger] = []

    async def one(n: int) -> None:
        async with gate:
            cid = f"{prefix}{n}"
            ws = await websockets.connect(
                f"{url}/{cid}",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                compression=None,
                open_timeout=60,
                ping_interval=None,
                max_queue=4,
            )
            charger = Charger(ws, cid)
            await charger.call("BootNotification", BOOT)
            out.append(charger)

    await asyncio.gather(*(one(n) for n in range(count)))
    return out


async def close_all(chargers: list[Charger]) -> None:
    await asyncio.gather(*(c.ws.close() for c in chargers), return_exceptions=True)


async def throughput(
    url: str, chargers_n: int, seconds: float, prefix: str, pid: int
) -> dict[str, float]:
    chargers = await connect_all(url, chargers_n, prefix)
    stop = time.monotonic() + seconds
    count = 0
    cpu0 = cpu_seconds(pid)

    async def loop(c: Charger) -> None:
        nonlocal count
        while time.monotonic() < stop:
            await c.call("MeterValues", METER)
            count += 1

    began = time.monotonic()
    await asyncio.gather(*(loop(c) for c in chargers))
    elapsed = time.monotonic() - began
    cpu = cpu_seconds(pid) - cpu0
    await close_all(chargers)
    return {"msg_s": count / elapsed, "server_us_per_msg": cpu / max(count, 1) * 1e6}


async def latency(
    url: str, chargers_n: int, rate: float, seconds: float, prefix: str
) -> dict[str, float]:
    chargers = await connect_all(url, chargers_n, prefix)
    per_charger = chargers_n / rate  # seconds between messages of one charger
    samples: list[float] = []
    stop = time.monotonic() + seconds

    async def paced(c: Charger, offset: float) -> None:
        await asyncio.sleep(offset)
        next_at = time.monotonic()
        while time.monotonic() < stop:
            samples.append(await c.call("MeterValues", METER))
            next_at += per_charger
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    await asyncio.gather(*(paced(c, i * per_charger / chargers_n) for i, c in enumerate(chargers)))
    await close_all(chargers)
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1000  # noqa: E731
    return {
        "msgs": len(samples),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": samples[-1] * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }


async def scale(url: str, chargers_n: int, prefix: str, pid: int) -> dict[str, float]:
    before = rss_kib(pid)
    began = time.monotonic()
    chargers = await connect_all(url, chargers_n, prefix, parallel=200)
    boot_s = time.monotonic() - began
    await asyncio.gather(*(c.call("Heartbeat", "{}") for c in chargers))
    await asyncio.sleep(1)
    after = rss_kib(pid)
    await close_all(chargers)
    return {
        "chargers": chargers_n,
        "connect_boot_s": boot_s,
        "kib_per_connection": (after - before) / chargers_n,
    }


def machine() -> str:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{p} {metadata.version(p)}"
        for p in ("trio", "trio-websocket", "ocpp", "sqlalchemy", "websockets")
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; {versions}"
    )


async def run(args: argparse.Namespace) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if shutil_which("taskset") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})  # the load generator on the other core
    rows: list[tuple[str, str, str]] = []
    print(f"machine: {machine()}", flush=True)
    print(
        f"settings: throughput {args.tp_chargers} chargers x {args.seconds}s closed loop; "
        f"latency {args.lat_chargers} chargers at {args.rate} msg/s for {args.seconds}s; "
        f"scale {args.scale} chargers",
        flush=True,
    )
    reference_tp: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        ref = start_reference()
        try:
            tp = await throughput(ref.url, args.tp_chargers, args.seconds, "R", ref.process.pid)
            reference_tp = tp["msg_s"]
            rows.append(
                (
                    "reference (no DB)",
                    "throughput",
                    f"{tp['msg_s']:.0f} msg/s, {tp['server_us_per_msg']:.0f} us/msg",
                )
            )
            lat = await latency(ref.url, args.lat_chargers, args.rate, args.seconds, "RL")
            rows.append(
                (
                    "reference (no DB)",
                    f"latency @{args.rate:g}/s",
                    f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, "
                    f"max {lat['max_ms']:.1f} ms",
                )
            )
        finally:
            ref.stop()
        for label, url in args.databases:
            db_url = url.replace("{tmp}", tmp)
            server = start_voltaro(db_url, Path(tmp))
            try:
                tp = await throughput(
                    server.url, args.tp_chargers, args.seconds, "T", server.process.pid
                )
                ratio = tp["msg_s"] / reference_tp if reference_tp else float("nan")
                rows.append(
                    (
                        f"voltaro {label}",
                        "throughput",
                        f"{tp['msg_s']:.0f} msg/s persisted, "
                        f"{tp['server_us_per_msg']:.0f} us/msg, {ratio:.2f}x reference",
                    )
                )
                lat = await latency(server.url, args.lat_chargers, args.rate, args.seconds, "L")
                rows.append(
                    (
                        f"voltaro {label}",
                        f"latency @{args.rate:g}/s",
                        f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, "
                        f"max {lat['max_ms']:.1f} ms",
                    )
                )
                if args.scale and label == args.databases[0][0]:
                    sc = await scale(server.url, args.scale, "S", server.process.pid)
                    rows.append(
                        (
                            f"voltaro {label}",
                            f"scale {args.scale}",
                            f"connect+boot {sc['connect_boot_s']:.1f} s, "
                            f"{sc['kib_per_connection']:.1f} KiB/connection",
                        )
                    )
            finally:
                server.stop()
    width = max(len(r[0]) for r in rows)
    print("\n| server | run | result |\n|---|---|---|")
    for name, kind, result in rows:
        print(f"| {name.ljust(width)} | {kind} | {result} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small and short (smoke test)")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--tp-chargers", type=int, default=100)
    p.add_argument("--lat-chargers", type=int, default=1000)
    p.add_argument("--rate", type=float, default=500)
    p.add_argument("--scale", type=int, default=10000)
    p.add_argument("--sqlite", default="sqlite:///{tmp}/bench.db")
    p.add_argument(
        "--postgres",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="PostgreSQL URL ('' to skip); the bench writes to it",
    )
    args = p.parse_args()
    if args.quick:
        args.seconds, args.tp_chargers, args.lat_chargers, args.rate, args.scale = (
            2,
            20,
            50,
            50,
            200,
        )
    args.databases = [("sqlite", args.sqlite)]
    if args.postgres:
        args.databases.append(("postgresql", args.postgres))
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
