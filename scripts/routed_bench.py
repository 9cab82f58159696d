#!/usr/bin/env python3
"""What a command routed between two nodes costs (issue 18): latency and CPU per command.

    .venv/bin/python scripts/routed_bench.py                   # 2 nodes, 20 chargers on n2
    .venv/bin/python scripts/routed_bench.py --commands 300 --in-flight 8
    .venv/bin/python scripts/routed_bench.py --py-spy /tmp/prof   # flame graphs of n1 and n2

From the repository checkout (it uses the test harness in tests/support, so it needs the
test tools and a PostgreSQL server, as scripts/cluster_demo.py): a throwaway database,
two real ``voltaro serve --cluster`` processes, ``--chargers`` independent chargers
(raw OCPP-J over ``websockets``) all connected to n2. Then, through n1's HTTP API
(one kept-alive connection per request in flight), RemoteStartTransaction to those
chargers, each with its own Idempotency-Key:

- one at a time (``--commands``): p50 / p90 / max from the HTTP request to its answer;
- ``--in-flight`` at a time (``--commands``): commands per second;
- the same through n2 itself (unrouted, no request id) one at a time, for comparison.

For each batch it prints the CPU time the two node processes used (utime + stime from
/proc/<pid>/stat) divided by the number of commands, the CPU of this driver process
(the HTTP client and the simulated chargers), and the machine's load (``uptime``). Every
command is checked: HTTP 200 Accepted and the charger received that idTag exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.support.cluster import (  # noqa: E402
    API_TOKEN,
    Cluster,
    cpu_seconds,
    migrate,
    own_cpu_seconds,
    scratch_database,
)
from tests.support.cluster_charger import Charger, running  # noqa: E402


def load() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return out.strip().split("load average:")[-1].strip()


def start_py_spy(args: argparse.Namespace, cluster: Cluster) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` of every node, without pausing them (--nonblocking)."""
    out = Path(args.py_spy)
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for node in cluster.nodes:
        command = [
            args.py_spy_bin,
            "record",
            "--pid",
            str(node.pid),
            "--rate",
            "250",
            "--format",
            args.py_spy_format,
            "--output",
            str(out / f"{node.node_id}.{args.py_spy_format}"),
            "--nonblocking",
            *args.py_spy_extra.split(),
        ]
        spies.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    return spies


class Bench:
    def __init__(self, cluster: Cluster, chargers: list[Charger]) -> None:
        self.cluster = cluster
        self.chargers = chargers
        self.tags = 0
        self.client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.failures: list[str] = []

    async def one(self, charger: Charger, via: int, *, key: bool) -> float:
        self.tags += 1
        tag = f"B{self.tags:07d}"
        headers = {"Idempotency-Key": f"bench-{tag}"} if key else {}
        started = time.perf_counter()
        response = await self.client.post(
            f"{self.cluster[via].http}/charge_points/{charger.charger_id}/commands/remote-start",
            json={"id_tag": tag, "force": True, "connector_id": 1},
            headers=headers,
        )
        took = time.perf_counter() - started
        body = response.json()
        received = charger.log.of("RemoteStartTransaction", idTag=tag)
        if response.status_code != 200 or body.get("status") != "Accepted":
            self.failures.append(f"{charger.charger_id}: {response.status_code} {body}")
        elif len(received) != 1:
            self.failures.append(f"{charger.charger_id}: received {len(received)} CALLs")
        return took

    async def idle(self, seconds: float) -> None:
        """The nodes' CPU with no command (lease renewals, owner map, reaper): what the
        per-command figures of a slow batch include besides the commands."""
        pids = [node.pid for node in self.cluster.nodes if node.pid is not None]
        before = [cpu_seconds(p) for p in pids]
        await asyncio.sleep(seconds)
        after = [cpu_seconds(p) for p in pids]
        print(
            "idle: "
            + ", ".join(
                f"{node.node_id} {(a - b) / seconds * 1000:.1f} ms/s"
                for node, a, b in zip(self.cluster.nodes, after, before, strict=True)
            )
        )

    async def batch(self, label: str, n: int, via: int, *, in_flight: int, key: bool) -> None:
        pids = [node.pid for node in self.cluster.nodes]
        assert all(p is not None for p in pids)
        before = [cpu_seconds(p) for p in pids if p is not None]
        mine = own_cpu_seconds()
        load_before = load()
        took: list[float] = []
        queue = list(range(n))
        started = time.perf_counter()

        async def worker() -> None:
            while queue:
                i = queue.pop()
                took.append(await self.one(self.chargers[i % len(self.chargers)], via, key=key))

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        wall = time.perf_counter() - started
        after = [cpu_seconds(p) for p in pids if p is not None]
        driver = own_cpu_seconds() - mine
        took.sort()
        cpu = ", ".join(
            f"{node.node_id} {(a - b) / n * 1000:.2f} ms"
            for node, a, b in zip(self.cluster.nodes, after, before, strict=True)
        )
        print(
            f"{label}: {n} commands, {in_flight} in flight, {wall:.2f} s ({n / wall:.0f}/s); "
            f"latency p50 {statistics.median(took) * 1000:.1f} ms, "
            f"p90 {took[int(len(took) * 0.9)] * 1000:.1f} ms, max {took[-1] * 1000:.1f} ms; "
            f"CPU per command: {cpu}, driver {driver / n * 1000:.2f} ms; "
            f"load {load_before} -> {load()}"
        )


async def bench(args: argparse.Namespace) -> int:
    with scratch_database(args.postgres, "voltaro_bench") as (_, url):
        return await bench_on(args, url)


async def bench_on(args: argparse.Namespace, url: str) -> int:
    directory = Path(tempfile.mkdtemp(prefix="voltaro-bench-"))
    migrate(url)
    cluster = Cluster(
        url, directory, size=2, settings={"log_level": "WARNING", "max_pending_per_ip": 2000}
    )
    spies: list[subprocess.Popen[bytes]] = []
    try:
        cluster.start()
        chargers = [
            Charger(f"BENCH{i:03d}", cluster.urls, order=[1], ping_interval=None)
            for i in range(args.chargers)
        ]
        b = Bench(cluster, chargers)
        async with running(chargers):
            await asyncio.gather(*(c.wait_booted(within=60) for c in chargers))
            await asyncio.sleep(1.5)  # n1's owner map (refreshed every second) has them
            await b.batch("warm-up (routed)", 20, 0, in_flight=1, key=True)
            await b.idle(3.0)
            if args.py_spy:
                spies = start_py_spy(args, cluster)
                await asyncio.sleep(1.0)
            await b.batch("routed n1->n2, one at a time", args.commands, 0, in_flight=1, key=True)
            await b.batch(
                "routed n1->n2, concurrent",
                args.commands,
                0,
                in_flight=args.in_flight,
                key=True,
            )
            for spy in spies:
                spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            for spy in spies:
                spy.wait(timeout=60)
            spies.clear()
            await b.batch("unrouted on n2, one at a time", args.commands, 1, in_flight=1, key=False)
        await b.client.aclose()
        if b.failures:
            print(f"FAILED: {len(b.failures)} commands, e.g. {b.failures[:3]}")
            return 1
        print("every command Accepted and received exactly once by its charger")
        return 0
    finally:
        for spy in spies:
            spy.kill()
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--chargers", type=int, default=20)
    p.add_argument("--commands", type=int, default=200)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--py-spy", default="", help="a directory: record n1 and n2 with py-spy")
    p.add_argument("--py-spy-bin", default=str(Path(sys.executable).parent / "py-spy"))
    p.add_argument("--py-spy-format", default="speedscope", choices=["speedscope", "raw"])
    p.add_argument("--py-spy-extra", default="", help='more py-spy options, e.g. "--gil"')
    p.add_argument(
        "--postgres",
        default=os.environ.get(
            "VOLTARO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    return asyncio.run(bench(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
