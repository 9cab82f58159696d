#!/usr/bin/env python3
"""Abuse a local Voltaro server and print what it costs a healthy charger (issue 11).

    python scripts/abuse.py                   # every scenario, SQLite, bounded (~1-2 min)
    python scripts/abuse.py --only flood big  # some scenarios
    python scripts/abuse.py --database-url postgresql+psycopg://postgres@127.0.0.1/x

Starts ``voltaro serve`` on loopback (port chosen by the OS, unknown chargers accepted,
a fresh SQLite file unless told otherwise) and runs each scenario while one healthy
charger sends a Heartbeat every 20 ms. For each scenario it prints the healthy
charger's p50/p99 before and during, the server's RSS, open file descriptors and the
database's disk use (SQLite file + WAL) before and after, and what the attack saw,
then the `!` lines of `voltaro ctl status` (the server's counters since it started).

Scenarios (all bounded in count and time, loopback only):
  flood   one charger sends 5,000 malformed frames and unknown-action CALLs
  big     one charger sends 1,000 frames of 60 KB (echoed back in the CALLERROR)
  idle    600 sockets from 127.0.0.2 that never send the HTTP upgrade
  brute   300 upgrade attempts with wrong passwords, 50 at a time
  body    4 unauthenticated 50 MB POSTs to the HTTP API

Figures are only as good as the machine: report the load average printed at the top.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def disk_mib(db_file: Path | None) -> float:
    if db_file is None:
        return 0.0
    total = 0
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(db_file) + suffix)
        if path.exists():
            total += path.stat().st_size
    return total / 2**20


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


class Server:
    def __init__(self, database_url: str | None, workdir: Path) -> None:
        self.port = free_port()
        self.http_port = free_port()
        self.db_file = None if database_url else workdir / "abuse.db"
        url = database_url or f"sqlite:///{self.db_file}"
        env = {
            **os.environ,
            "VOLTARO_UNKNOWN_CHARGERS": "accept",
            "VOLTARO_LOG_LEVEL": "WARNING",
            "VOLTARO_API_TOKENS": "read:abuse-script-token-0001",
        }
        self.log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.control = workdir / "c.sock"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voltaro",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--http-host",
                "127.0.0.1",
                "--http-port",
                str(self.http_port),
                "--database-url",
                url,
                "--control-socket",
                str(self.control),
            ],
            env=env,
            stdout=self.log,
            stderr=self.log,
            cwd=ROOT,
        )
        wait_port(self.port)
        self.url = f"ws://127.0.0.1:{self.port}/ocpp"

    def protection(self) -> list[str]:
        """What `voltaro ctl status` says was refused, shed or failed so far."""
        done = subprocess.run(
            [sys.executable, "-m", "voltaro", "ctl", "--socket", str(self.control), "status"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        return [line for line in done.stdout.splitlines() if line.startswith("!")]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def snapshot(self) -> dict[str, float]:
        pid = self.process.pid
        return {"rss": rss_mib(pid), "fds": open_fds(pid), "disk": disk_mib(self.db_file)}


async def healthy_latencies(url: str, stop: asyncio.Event, out: list[float]) -> None:
    async with websockets.connect(f"{url}/HEALTHY", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            await ws.send(f'[2,"h{n}","Heartbeat",{{}}]')
            answer = await ws.recv()
            assert json.loads(answer)[1] == f"h{n}"
            out.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# --- scenarios ---------------------------------------------------------------------------


async def flood(server: Server) -> str:
    answered = 0
    close_code = None
    try:
        async with websockets.connect(f"{server.url}/FLOOD", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            for i in range(5000):
                await ws.send("not json" if i % 2 else f'[2,"u{i}","NoSuchAction",{{}}]')
                await ws.recv()
                answered += 1
    except websockets.ConnectionClosed as exc:
        close_code = exc.rcvd.code if exc.rcvd else None
    return f"{answered} errors answered, then closed with {close_code}"


async def big(server: Server) -> str:
    sent = 0
    action = "A" * 60_000
    try:
        async with websockets.connect(
            f"{server.url}/BIG", subprotocols=["ocpp1.6"], max_size=None
        ) as ws:  # type: ignore[list-item]
            for i in range(1000):
                await ws.send(json.dumps([2, f"b{i}", action, {}]))
                await ws.recv()
                sent += 1
    except websockets.ConnectionClosed as exc:
        return f"{sent} big frames answered, then closed with {exc.rcvd.code if exc.rcvd else None}"
    return f"{sent} big frames answered"


async def idle(server: Server) -> str:
    sockets: list[socket.socket] = []
    for _ in range(600):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))  # the attacker's own address (the healthy charger's differs)
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", server.port))
        sockets.append(s)
    await asyncio.sleep(3)
    closed = 0
    for s in sockets:
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in sockets:
        s.close()
    return f"600 idle sockets from one address: {closed} closed by the server at once"


async def brute(server: Server) -> str:
    statuses: dict[int, int] = {}
    # The charger is created with a password through `voltaro ctl`.
    subprocess.run(  # noqa: ASYNC221 - once, before the attack starts
        [
            sys.executable,
            "-m",
            "voltaro",
            "ctl",
            "--socket",
            str(Path(server.log.name).parent / "c.sock"),
            "chargers",
            "add",
            "BRUTE",
            "--password",
            "correct horse battery",
        ],
        check=False,
        capture_output=True,
        cwd=ROOT,
    )

    async def attempt(i: int) -> None:
        token = base64.b64encode(f"BRUTE:guess-{i}".encode()).decode()
        try:
            async with websockets.connect(
                f"{server.url}/BRUTE",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers={"Authorization": f"Basic {token}"},
            ):
                statuses[101] = statuses.get(101, 0) + 1
        except websockets.InvalidStatus as exc:
            code = exc.response.status_code
            statuses[code] = statuses.get(code, 0) + 1
        except (TimeoutError, OSError, websockets.WebSocketException):
            statuses[0] = statuses.get(0, 0) + 1

    for start in range(0, 300, 50):
        await asyncio.gather(*(attempt(i) for i in range(start, start + 50)))
    return "300 wrong passwords: " + ", ".join(
        f"HTTP {k}: {v}" for k, v in sorted(statuses.items())
    )


async def body(server: Server) -> str:
    results = []

    async def post() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        size = 50 * 2**20
        writer.write(
            f"POST /chargers HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n"
            "Content-Type: application/json\r\n\r\n".encode()
        )
        chunk = b" " * 2**20
        try:
            for _ in range(50):
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 5)
            status = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
        except (TimeoutError, OSError) as exc:
            status = f"connection ended: {type(exc).__name__}"
        results.append(status or "closed")
        writer.close()

    await asyncio.gather(*(post() for _ in range(4)))
    return "4 x 50 MB unauthenticated POST: " + "; ".join(results)


SCENARIOS: dict[str, Callable[[Server], Awaitable[str]]] = {
    "flood": flood,
    "big": big,
    "idle": idle,
    "brute": brute,
    "body": body,
}


async def run(args: argparse.Namespace) -> None:
    print(f"load average: {os.getloadavg()}; cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(args.database_url, Path(tmp))
        try:
            for name in args.only or list(SCENARIOS):
                await scenario(server, name)
            log = Path(tmp, "server.log").read_text(errors="replace")  # noqa: ASYNC240
            print(f"tracebacks in the server log: {log.count('Traceback')}")
        finally:
            server.stop()


async def scenario(server: Server, name: str) -> None:
    stop = asyncio.Event()
    baseline: list[float] = []
    during: list[float] = []
    task = asyncio.create_task(healthy_latencies(server.url, stop, baseline))
    await asyncio.sleep(2)
    stop.set()
    await task
    before = server.snapshot()
    stop = asyncio.Event()
    task = asyncio.create_task(healthy_latencies(server.url, stop, during))
    started = time.monotonic()
    try:
        outcome = await asyncio.wait_for(SCENARIOS[name](server), 120)
    except TimeoutError:
        outcome = "did not finish within 120 s"
    elapsed = time.monotonic() - started
    await asyncio.sleep(2)  # let the frame log flush
    stop.set()
    await task
    after = server.snapshot()
    print(
        f"[{name}] {outcome} ({elapsed:.1f} s)\n"
        f"   healthy Heartbeat p50/p99 ms: before {percentile(baseline, 0.5):.1f}/"
        f"{percentile(baseline, 0.99):.1f}, during {percentile(during, 0.5):.1f}/"
        f"{percentile(during, 0.99):.1f} ({len(during)} answered)\n"
        f"   RSS MiB {before['rss']:.0f} -> {after['rss']:.0f}; fds {before['fds']:.0f} -> "
        f"{after['fds']:.0f}; disk MiB {before['disk']:.1f} -> {after['disk']:.1f}"
    )
    # The server's own counters (cumulative since it started), as an operator reads them.
    for line in await asyncio.to_thread(server.protection):
        print(f"   ctl status: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS))
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
