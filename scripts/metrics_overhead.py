#!/usr/bin/env python3
"""What issue 19's metrics and log context add to one charger message, measured alone.

    .venv/bin/python scripts/metrics_overhead.py

scripts/bench.py measures whole messages (hundreds of us each, with a spread of tens of
us on a shared machine); the instruments added per message are far below that spread,
so this times exactly the code a MeterValues adds, in the order the server runs it:
two frames counted (in and out), one hub event seen by the tap ("meter.values"; the
frame log's "frame" events are not counted there), the answer's latency observed, one database unit
observed (two clock reads each), three context variables set (the reader's message id,
the worker's message id and action). The minimum of several repeats is reported: the
least disturbed run, which is what the code costs.

It then times GET /metrics (the active-transactions query, the text of every series and
the HTTP round trip on loopback) on a real server with a temporary SQLite database.
"""

from __future__ import annotations

import statistics
import tempfile
import timeit
from pathlib import Path
from time import perf_counter

import httpx
import trio

from voltaro import app
from voltaro.logs import ACTION, MESSAGE_ID
from voltaro.protocol.traffic import Traffic
from voltaro.service.metrics import EventTally
from voltaro.settings import ApiScope, ApiToken, Settings
from voltaro.store.health import DatabaseHealth

traffic = Traffic()
tally = EventTally()
health = DatabaseHealth()
METER = {"charger_id": "CP-1", "energy_wh": 1200.0}


def one_message() -> None:
    received = perf_counter()
    MESSAGE_ID.set("m-1")  # reader: the frame's id
    traffic.frame("in", 2, "MeterValues")
    MESSAGE_ID.set("m-1")  # worker: the answer's id and action
    ACTION.set("MeterValues")
    started = perf_counter()
    health.finished(perf_counter() - started)  # the unit of work
    tally("meter.values", METER)
    traffic.frame("out", 3, "MeterValues")
    traffic.answered("MeterValues", perf_counter() - received)


async def scrape_cost(directory: Path) -> tuple[float, int, int]:
    """Median seconds of GET /metrics on a real server, the body's size and series."""
    token = "metrics-overhead-token"
    settings = Settings(
        host="127.0.0.1",
        port=0,
        database_url=f"sqlite:///{directory / 'voltaro.db'}",
        control_socket=str(directory / "ctl.sock"),
        data_dir=str(directory / "data"),
        http_port=0,
        api_tokens=(ApiToken(token=token, scope=ApiScope.METRICS),),
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            lambda task_status: app.run(settings, stop=stop, task_status=task_status)
        )
        host, port = bound.http
        times = []
        async with httpx.AsyncClient(
            base_url=f"http://{host}:{port}", headers={"Authorization": f"Bearer {token}"}
        ) as client:
            for _ in range(50):
                started = perf_counter()
                answer = await client.get("/metrics")
                times.append(perf_counter() - started)
                assert answer.status_code == 200, answer.text
        stop.set()
    series = sum(1 for line in answer.text.splitlines() if line and not line.startswith("#"))
    return statistics.median(times), len(answer.content), series


def main() -> None:
    n = 200_000
    best = min(timeit.repeat(one_message, number=n, repeat=7)) / n
    print(f"metrics and log context per MeterValues: {best * 1e6:.2f} us (min of 7 x {n})")
    with tempfile.TemporaryDirectory() as directory:
        median, size, series = trio.run(scrape_cost, Path(directory))
    print(f"GET /metrics: {median * 1e3:.1f} ms median of 50 ({series} series, {size} bytes)")


if __name__ == "__main__":
    main()
