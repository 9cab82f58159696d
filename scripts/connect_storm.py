"""Connect storms with chargers that keep answering (issue 14 step 4).

scripts/bench.py's scale phase measures the handshake and the boot; its chargers stop
reading after their boot, so the CALLs the server sends each arriving charger (the local
list sync's GetConfiguration, issue 16) wait for the call timeout and their cost is not
seen. Here every charger keeps reading and answers as one without a local list would
(every GetConfiguration key unknown, anything else NotSupported), and the server's CPU
is read twice: when every charger is connected and booted, and once the server has sent
nothing new for 4 s (the syncs after the storm done).

Storms: first contact (N unknown chargers register, connect and boot), a reconnect storm
of the same chargers (a power cut), and with ``--restart`` one more after a server
restart. ``--py-spy`` records each storm (raw collapsed stacks) next to the database.

    .venv/bin/python scripts/connect_storm.py --chargers 3000
    .venv/bin/python scripts/connect_storm.py --chargers 3000 --code /tmp/before
    .venv/bin/python scripts/connect_storm.py --chargers 10000 --restart \\
        --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # the load generator's charger and helpers

ROOT = Path(__file__).resolve().parent.parent


async def keep_answering(charger: bench.Charger) -> None:
    """A real charger keeps reading: answer the server's CALLs until the socket closes."""
    try:
        while True:
            frame = json.loads(await charger.ws.recv())
            if frame[0] == 2:
                await charger.answer_server_call(frame)
    except Exception:  # closed: this charger is done
        return


def start(code: Path, db_url: str, port: int, tmp: Path) -> subprocess.Popen[bytes]:
    with (tmp / "server.log").open("ab") as log:
        process = bench.server_process(code, port, db_url, tmp / "c.sock", log=log)
    bench.wait_port(port, process)
    return process


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [
            str(spy),
            *("record", "--pid", str(pid), "--format", "raw", "-o", str(out)),
            *("--rate", "200", "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def storm(
    name: str, process: subprocess.Popen[bytes], url: str, ids: list[str], spy: Path | None
) -> dict[str, Any]:
    recorder = py_spy(process.pid, spy / f"{name}.txt") if spy is not None else None
    load0, cpu0 = bench.load(), bench.cpu_seconds(process.pid)
    began = time.monotonic()
    chargers = await bench.connect_all(url, ids, parallel=200)
    seconds = time.monotonic() - began
    cpu_storm = bench.cpu_seconds(process.pid) - cpu0
    readers = [asyncio.create_task(keep_answering(c)) for c in chargers]
    last, quiet, waited = -1, 0, 0
    while quiet < 4 and waited < 600:
        await asyncio.sleep(1)
        waited += 1
        calls = sum(c.server_calls for c in chargers)
        quiet = quiet + 1 if calls == last else 0
        last = calls
    cpu_all = bench.cpu_seconds(process.pid) - cpu0
    if recorder is not None:
        recorder.send_signal(2)
        recorder.wait(30)
    await bench.close_all(chargers)
    await asyncio.gather(*readers)
    await asyncio.sleep(2)
    n = len(ids)
    figure = {
        "storm": name,
        "chargers": n,
        "connect_boot_s": round(seconds, 1),
        "ms_cpu_per_charger_storm": round(cpu_storm / n * 1000, 2),
        "ms_cpu_per_charger_with_calls": round(cpu_all / n * 1000, 2),
        "server_calls": last,
        "settled_after_s": waited,
        "load": (round(load0, 1), round(bench.load(), 1)),
    }
    print(json.dumps(figure), flush=True)
    return figure


async def run(args: argparse.Namespace) -> None:
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="connect-storm-"))
    drop: Any = lambda: None  # noqa: E731
    if args.postgres:
        db_url, drop = bench.fresh_postgres(args.postgres, f"voltaro_storm_{os.getpid()}")
    else:
        db_url = f"sqlite:///{tmp}/storm.db"
    port = bench.free_port()
    url = f"ws://127.0.0.1:{port}/ocpp"
    ids = [f"STORM-{n}" for n in range(args.chargers)]
    spy = tmp if args.py_spy else None
    process = start(args.code, db_url, port, tmp)
    try:
        await storm("first_contact", process, url, ids, spy)
        await storm("reconnect", process, url, ids, spy)
        if args.restart:
            process.terminate()
            process.wait(60)
            process = start(args.code, db_url, port, tmp)
            await storm("after_restart", process, url, ids, spy)
    finally:
        process.terminate()
        process.wait(60)
        drop()
    print(f"kept in {tmp}" if args.keep or args.py_spy else "", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chargers", type=int, default=3000)
    p.add_argument("--code", type=Path, default=ROOT, help="serve Voltaro from this checkout")
    p.add_argument("--postgres", default="", help="a PostgreSQL server URL (default: SQLite)")
    p.add_argument("--restart", action="store_true", help="one more storm after a restart")
    p.add_argument("--py-spy", action="store_true", help="record each storm with py-spy")
    p.add_argument("--keep", help="keep the database, log and profiles in this directory")
    args = p.parse_args()
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
