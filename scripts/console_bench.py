"""Console benchmark: CPU and key latency of the real console under a busy site.

A scripted control server (a separate process, so its CPU is not counted) speaks the
real wire format: it serves N chargers and streams meter values at R per second plus
one status change a second. The console (the real ConsoleApp, headless, 160x45) runs in
this process; we measure its CPU time over the window and the time from a key press
(Down) to the cursor having moved and the connectors panel showing the new charger,
while the stream runs. Before printing, it checks that the console handled every event
that was sent and holds the last value sent (a figure is only as good as its check).
Bounded: --seconds (default 20) and loopback Unix socket only.

    .venv/bin/python scripts/console_bench.py [--chargers 1000] [--rate 500] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual import events

from console.app import ConsoleApp


def _charger(n: int) -> dict[str, Any]:
    return {
        "charger_id": f"BENCH-{n:04d}",
        "registration": "Accepted",
        "connected": True,
        "vendor": "Acme",
        "model": "Duo 22",
        "last_seen": "2026-12-04T18:00:00.000Z",
        "connectors": [
            {"connector_id": 1, "status": "Charging", "error_code": "NoError"},
            {"connector_id": 2, "status": "Available", "error_code": "NoError"},
        ],
        "active_transactions": [
            {
                "transaction_id": n + 1,
                "connector_id": 1,
                "id_tag": "TAG",
                "meter_start": 0,
                "last_meter_wh": 0,
                "last_power_w": 7000.0,
                "start_time": "2026-12-04T17:00:00.000Z",
            }
        ],
    }


def serve(path: str, chargers: int, rate: int, seconds: float, ready: Any) -> None:
    """The scripted server (runs in its own process)."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(frame: dict[str, Any]) -> None:
            writer.write(json.dumps(frame, separators=(",", ":")).encode() + b"\n")

        send({"type": "hello", "protocol": 1, "user": "bench", "role": "operator"})
        listed = [_charger(n) for n in range(chargers)]
        streaming = None
        seq = 0

        async def stream() -> None:
            nonlocal seq
            tick = 0.02
            per_tick = rate * tick
            owed = 0.0
            start = time.monotonic()
            sent = 0
            while time.monotonic() - start < seconds:
                owed += per_tick
                while owed >= 1:
                    owed -= 1
                    n = sent % chargers
                    seq += 1
                    send(
                        {
                            "type": "event",
                            "seq": seq,
                            "event": "meter.values",
                            "at": "2026-12-04T18:00:00.000Z",
                            "data": {
                                "charger_id": f"BENCH-{n:04d}",
                                "connector_id": 1,
                                "transaction_id": n + 1,
                                "energy_wh": 100.0 + sent,
                                "power_w": 7000.0 + sent % 500,
                                "at": "2026-12-04T18:00:00.000Z",
                            },
                        }
                    )
                    sent += 1
                    if sent % rate == 0:  # one status change a second, too
                        seq += 1
                        send(
                            {
                                "type": "event",
                                "seq": seq,
                                "event": "connector.status",
                                "at": "2026-12-04T18:00:00.000Z",
                                "data": {
                                    "charger_id": f"BENCH-{n:04d}",
                                    "connector_id": 2,
                                    "status": "Preparing",
                                    "error_code": "NoError",
                                },
                            }
                        )
                await writer.drain()
                await asyncio.sleep(tick)
            last = sent - 1  # the last value sent, and to which charger
            send(
                {
                    "type": "event",
                    "seq": seq + 1,
                    "event": "bench.done",
                    "at": "",
                    "data": {
                        "sent": sent,
                        "last_charger": f"BENCH-{last % chargers:04d}",
                        "last_energy_wh": 100.0 + last,
                    },
                }
            )
            await writer.drain()

        while line := await reader.readline():
            request = json.loads(line)
            op, rid = request["op"], request["id"]
            result: Any = {"subscribed": True}
            if op == "status":
                result = {"uptime_s": 1, "database": {"ok": True}, "heartbeat_interval": 300}
            elif op == "chargers.list":
                result = listed
            elif op == "transactions.list":  # the interrupted ones, read at every re-read
                result = []
            send({"type": "response", "id": rid, "ok": True, "result": result})
            await writer.drain()
            if op == "chargers.list" and streaming is None:
                streaming = asyncio.ensure_future(stream())

    async def main() -> None:
        server = await asyncio.start_unix_server(session, path, limit=1 << 24)
        ready.set()
        async with server:
            await asyncio.sleep(seconds + 120)

    asyncio.run(main())


async def measure(path: str, chargers: int, seconds: float) -> dict[str, Any]:
    app = ConsoleApp(path)
    done: dict[str, Any] = {}
    applied = 0
    original = app._on_frame

    def counting(frame: dict[str, Any]) -> None:
        # Counted where the console handles each frame once (a re-read at start replays
        # events it saw meanwhile, so counting model updates would count some twice).
        nonlocal applied
        if frame.get("event") == "bench.done":
            done.update(frame["data"])
        elif frame.get("event") == "meter.values":
            applied += 1
        original(frame)

    app._on_frame = counting  # type: ignore[method-assign]
    latencies: list[float] = []
    async with app.run_test(size=(160, 45)) as pilot:
        async with asyncio.timeout(60):
            while app.table.row_count < chargers:  # noqa: ASYNC110 - app state, deadline
                await asyncio.sleep(0.05)
        cpu0, wall0 = time.process_time(), time.monotonic()
        while not done and time.monotonic() - wall0 < seconds + 30:
            before = app.table.cursor_row
            pressed = time.monotonic()
            app.post_message(events.Key("down", None))
            async with asyncio.timeout(10):
                # Answered: the cursor moved and the connectors panel shows the charger
                # now selected (what the operator sees change).
                while (  # noqa: ASYNC110 - app state
                    app.table.cursor_row == before
                    or app.connectors.border_title != f"{app.selected()} connectors"
                ):
                    await asyncio.sleep(0.001)
            latencies.append(time.monotonic() - pressed)
            await asyncio.sleep(0.5)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        await pilot.pause(0.5)
        shown = None
        charger = app.site.chargers.get(str(done.get("last_charger")))
        if charger is not None and charger.sessions:
            shown = next(iter(charger.sessions.values())).last_meter_wh
    return {
        "cpu": cpu,
        "wall": wall,
        "latencies": latencies,
        "applied": applied,
        "shown_energy_wh": shown,
        **done,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=500, help="meter values per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.sock")
        ready = multiprocessing.get_context("spawn").Event()
        server = multiprocessing.get_context("spawn").Process(
            target=serve, args=(path, args.chargers, args.rate, args.seconds, ready)
        )
        server.start()
        try:
            if not ready.wait(30):
                print("the scripted server did not start", file=sys.stderr)
                return 1
            result = asyncio.run(measure(path, args.chargers, args.seconds))
        finally:
            server.terminate()
            server.join(5)
    sent = result.get("sent")
    if sent is None or result["applied"] != sent:
        print(
            f"FAILED CHECK: sent {sent} meter values, the console applied {result['applied']}",
            file=sys.stderr,
        )
        return 1
    if result["shown_energy_wh"] != result["last_energy_wh"]:
        print(
            f"FAILED CHECK: {result['last_charger']} was last sent "
            f"{result['last_energy_wh']} Wh, the console holds {result['shown_energy_wh']}",
            file=sys.stderr,
        )
        return 1
    lat = sorted(result["latencies"])
    p95 = lat[max(0, int(len(lat) * 0.95) - 1)]
    print(
        f"chargers {args.chargers}, meter values {args.rate}/s for {result['wall']:.1f} s "
        f"({sent} sent, {result['applied']} applied by the console)"
    )
    print(f"console CPU: {result['cpu'] / result['wall'] * 100:.1f}% of one core")
    print(
        f"key latency (Down until the cursor and the connectors panel moved), {len(lat)} presses: "
        f"median {statistics.median(lat) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
        f"max {lat[-1] * 1000:.1f} ms"
    )
    print(
        f"machine load average before: {load_before[0]:.2f} "
        f"after: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (shared machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
