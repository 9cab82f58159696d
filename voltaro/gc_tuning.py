"""The garbage collector tuned for a server holding thousands of long-lived connections.

Why (issue 14, measured with scripts/bench.py and the collector's own callbacks): each
connection keeps about 200 tracked objects alive (trio tasks and cancel scopes, the
WebSocket and OCPP state). CPython 3.11's defaults (700, 10, 10) run a full collection
whenever the old generation grew by a quarter, and a full collection walks every tracked
object: during a storm of 4,000 connects, 27 full collections of up to 900,000 objects
took 9-10 s of the 36-39 s the server spent, a third of its CPU, each a pause of about
0.35 s for every charger.

- ``gc.freeze()`` once the server has imported everything moves the ~120,000 objects of
  the code itself (modules, classes, functions) to a permanent generation that
  collections never walk; they live as long as the process anyway.
- ``threshold2 = 100`` instead of 10: a full collection at most every 100 collections of
  the middle generation instead of every 10. Young and middle generations keep their
  default sizes, so their pauses stay short (about 0.25 ms and 4 ms measured).

Cyclic garbage is still collected (the young generations every few hundred
allocations, the old one less often); reference counting frees everything else at once.
Measured together, 4,000 first contacts then 4,000 reconnects: collector time 12.3 s ->
3.5 s, server CPU 36-39 s -> 24-25 s (docs/benchmarks.md).
"""

from __future__ import annotations

import gc

THRESHOLDS = (700, 10, 100)


def tune_for_long_lived_connections() -> None:
    """Call once, after the server's imports and before it accepts connections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
