"""Where the memory of one idle charger connection goes (issue 14 step 5).

Starts `voltaro serve` (SQLite, in a temporary directory) under tracemalloc, connects N
chargers with a raw `websockets` client (BootNotification, one Heartbeat, then idle),
and prints per connection: RSS growth, traced bytes grouped by source line and by
file, and the growth of gc-tracked objects by type. The server takes a snapshot on
SIGUSR1 (once before the chargers connect, once with all of them idle).

    .venv/bin/python scripts/conn_memory.py --chargers 2000
    .venv/bin/python scripts/conn_memory.py --chargers 2000 --no-trace   # RSS only

tracemalloc itself adds memory per traced block, so the RSS figure is only meaningful
with --no-trace; the traced bytes are the Python allocations the server made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # the server's command line and the /proc helpers

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the server process: snapshots on SIGUSR1, written next to the database.
SERVER = r"""
import gc, json, signal, sys, tracemalloc, collections
out, frames, trace = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
taken = []
def snap(signum, frame):
    # Tracing starts at the first snapshot: start-up is not traced (it is slow traced),
    # and what the second snapshot holds is what was allocated since and still lives.
    n = len(taken)
    gc.collect()
    if trace:
        if n == 0:
            tracemalloc.start(frames)
        tracemalloc.take_snapshot().dump(f"{out}/snap{n}.bin")
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    try:  # the trio tasks by name, walked from the root task
        import trio
        todo = [trio.lowlevel.current_root_task()]
        while todo:
            task = todo.pop()
            counts["task " + task.name] += 1
            todo.extend(t for n in task.child_nurseries for t in n.child_tasks)
    except RuntimeError:
        pass
    with open(f"{out}/types{n}.json", "w") as f:
        json.dump(counts, f)
    with open(f"{out}/done{n}", "w") as f:
        f.write("ok")
    taken.append(n)
signal.signal(signal.SIGUSR1, snap)
from voltaro.cli import main
sys.exit(main(sys.argv[4:]))
"""

BOOT = '{"chargePointVendor":"Bench","chargePointModel":"Idle"}'


async def snapshot(pid: int, out: Path, n: int) -> None:
    os.kill(pid, signal.SIGUSR1)
    while not (out / f"done{n}").exists():  # noqa: ASYNC110 - another process writes it
        await asyncio.sleep(0.2)


async def charger(url: str, cid: str, gate: asyncio.Semaphore, keep: list[object]) -> None:
    async with gate:
        for attempt in range(60):
            try:
                ws = await websockets.connect(
                    f"{url}/{cid}",
                    subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                    compression=None,
                    ping_interval=None,
                    open_timeout=120,
                )
                break
            except (websockets.InvalidStatus, websockets.InvalidMessage, OSError, TimeoutError):
                if attempt == 59:
                    raise
                await asyncio.sleep(1)
        n = 0
        for action, payload in (("BootNotification", BOOT), ("Heartbeat", "{}")):
            n += 1
            await ws.send(f'[2,"{n}","{action}",{payload}]')
            while True:
                frame = json.loads(await ws.recv())
                if frame[0] == 2:  # the server's own CALL (local list GetConfiguration)
                    key = frame[3].get("key", []) if frame[2] == "GetConfiguration" else []
                    await ws.send(json.dumps([3, frame[1], {"unknownKey": key}]))
                    continue
                if frame[1] == str(n):
                    break
    keep.append(ws)


def start(args: argparse.Namespace, tmp: Path, port: int) -> subprocess.Popen[bytes]:
    return bench.server_process(
        args.code,
        port,
        f"sqlite:///{tmp}/memory.db",
        tmp / "c.sock",
        env={"VOLTARO_HANDSHAKE_TIMEOUT": "120"},  # traced, the server is several times slower
        python=("-c", SERVER, str(tmp), str(args.frames), "0" if args.no_trace else "1"),
        core=None,
    )


async def measure(
    args: argparse.Namespace, tmp: Path, port: int, server: subprocess.Popen[bytes]
) -> None:
    url = f"ws://127.0.0.1:{port}/ocpp"
    # Warm up (first-use caches, validators) with a few chargers, then measure.
    keep: list[object] = []
    gate = asyncio.Semaphore(args.parallel)
    await asyncio.gather(*(charger(url, f"WARM{i}", gate, keep) for i in range(50)))
    await asyncio.sleep(1)
    await snapshot(server.pid, tmp, 0)
    rss0 = bench.rss_kib(server.pid)
    await asyncio.gather(*(charger(url, f"IDLE{i}", gate, keep) for i in range(args.chargers)))
    await asyncio.sleep(2)
    await snapshot(server.pid, tmp, 1)
    rss1 = bench.rss_kib(server.pid)
    n = args.chargers
    print(f"chargers: {n}; RSS {rss0} -> {rss1} KiB: {(rss1 - rss0) / n:.1f} KiB per connection")
    t0 = json.loads((tmp / "types0.json").read_text())
    t1 = json.loads((tmp / "types1.json").read_text())
    grown = sorted(((t1[k] - t0.get(k, 0)) / n, k) for k in t1)
    print(f"\ngc-tracked objects per connection: {sum(g for g, _ in grown):.1f}")
    for per, name in reversed(grown[-args.top :]):
        if per >= 0.05:
            print(f"  {per:6.2f}  {name}")
    if not args.no_trace:
        s0 = tracemalloc.Snapshot.load(str(tmp / "snap0.bin"))
        s1 = tracemalloc.Snapshot.load(str(tmp / "snap1.bin"))
        total = sum(st.size_diff for st in s1.compare_to(s0, "filename"))
        print(f"\ntraced bytes per connection: {total / n / 1024:.2f} KiB; by file:")
        for st in s1.compare_to(s0, "filename")[: args.top]:
            name = st.traceback[0].filename.replace(str(ROOT) + "/", "")
            name = name.split("site-packages/")[-1]
            print(f"  {st.size_diff / n:8.0f} B  {st.count_diff / n:6.2f} blocks  {name}")
        print("\nby source line:")
        for st in s1.compare_to(s0, "lineno")[: args.top]:
            frame = st.traceback[0]
            name = frame.filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
            print(f"  {st.size_diff / n:8.0f} B  {st.count_diff / n:6.2f}  {name}:{frame.lineno}")
        if args.tracebacks:
            print("\nby traceback (innermost project frame first):")
            for st in s1.compare_to(s0, "traceback")[: args.tracebacks]:
                print(f"  {st.size_diff / n:8.0f} B  {st.count_diff / n:6.2f} blocks")
                for line in st.traceback.format(limit=args.frames)[-16:]:
                    print("     ", line.strip()[:150])
    for ws in keep:
        await ws.close()  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="conn-memory-"))
    port = bench.free_port()
    server = start(args, tmp, port)
    try:
        bench.wait_port(port, server, timeout=300)
        asyncio.run(measure(args, tmp, port, server))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chargers", type=int, default=2000)
    p.add_argument("--frames", type=int, default=12, help="tracemalloc traceback depth")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--tracebacks", type=int, default=0, help="also list the N biggest tracebacks")
    p.add_argument("--parallel", type=int, default=20, help="handshakes in flight")
    p.add_argument("--no-trace", action="store_true")
    p.add_argument("--code", default=str(ROOT), help="the checkout to serve")
    run(p.parse_args())


if __name__ == "__main__":
    main()
