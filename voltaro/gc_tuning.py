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
- A small middle generation (``threshold1 = 1``, young ``threshold0 = 300``): in steady
  traffic each connection waiting for its next message is a chain of ~30 coroutines
  and cells that lives for the message interval, longer than a young collection, so
  they pass through the middle generation by the tens of thousands. With the defaults
  (700, 10) a middle collection walked 20,000-37,000 objects: pauses of 16-28 ms of
  CPU every ~2 s at 500 msg/s from 1,000 chargers, every charger waiting (measured with
  the collector's callbacks and a trio instrument; the longest trio steps in the run
  were these). At (300, 1) the longest middle collection measured 4.9 ms and the longest
  young one 1.8 ms, for the same total collector time (each object is still walked once
  per generation; 0.59 vs 0.62 s in 33 s) and the same total in a 10,000-charger storm
  (10.2 vs 10.3 s).
- ``threshold2 = 2000``: a full collection at most every 2,000 middle collections. The
  middle generation now runs ~17x as often as at 10 (875 against 48 in 33 s at 500
  msg/s on PostgreSQL), so full collections stay about as rare in time as before: at
  1,000 one ran in that steady window (160 ms, every charger waiting), at 2,000 none,
  as with the old settings (the 25 % growth rule of 3.11 still applies in a storm).

Cyclic garbage is still collected (the young generations every few hundred
allocations, the old one less often); reference counting frees everything else at once.
Measured together, 4,000 first contacts then 4,000 reconnects: collector time 12.3 s ->
3.5 s, server CPU 36-39 s -> 24-25 s (docs/benchmarks.md).
"""

from __future__ import annotations

import gc

THRESHOLDS = (300, 1, 2000)


def tune_for_long_lived_connections() -> None:
    """Call once, after the server's imports and before it accepts connections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
