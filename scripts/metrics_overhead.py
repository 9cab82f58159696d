#!/usr/bin/env python3
"""What issue 19's metrics and log context add to one charger message, measured alone.

    .venv/bin/python scripts/metrics_overhead.py

scripts/bench.py measures whole messages (hundreds of us each, with a spread of tens of
us on a shared machine); the instruments added per message are far below that spread,
so this times exactly the code a MeterValues adds, in the order the server runs it:
two frames counted (in and out), three hub events seen by the tap (the frame log's two
"frame" events and "meter.values"), the answer's latency observed, one database unit
observed (two clock reads each), three context variables set (the reader's message id,
the worker's message id and action). The minimum of several repeats is reported: the
least disturbed run, which is what the code costs.
"""

from __future__ import annotations

import timeit
from time import perf_counter

from voltaro.logs import ACTION, MESSAGE_ID
from voltaro.protocol.traffic import Traffic
from voltaro.service.metrics import EventTally
from voltaro.store.health import DatabaseHealth

traffic = Traffic()
tally = EventTally()
health = DatabaseHealth()
FRAME = {"charger_id": "CP-1", "direction": "in", "payload": "[]"}
METER = {"charger_id": "CP-1", "energy_wh": 1200.0}


def one_message() -> None:
    received = perf_counter()
    MESSAGE_ID.set("m-1")  # reader: the frame's id
    traffic.frame("in", 2, "MeterValues")
    tally("frame", FRAME)
    MESSAGE_ID.set("m-1")  # worker: the answer's id and action
    ACTION.set("MeterValues")
    started = perf_counter()
    health.finished(perf_counter() - started)  # the unit of work
    tally("meter.values", METER)
    traffic.frame("out", 3, "MeterValues")
    tally("frame", FRAME)
    traffic.answered("MeterValues", perf_counter() - received)


def main() -> None:
    n = 200_000
    best = min(timeit.repeat(one_message, number=n, repeat=7)) / n
    print(f"metrics and log context per MeterValues: {best * 1e6:.2f} us (min of 7 x {n})")


if __name__ == "__main__":
    main()
