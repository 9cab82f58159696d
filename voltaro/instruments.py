"""Counters and latency histograms kept in plain Python on the hot paths (issue 19).

The Prometheus exposition (voltaro/service/metrics.py) reads these at scrape time with a
custom collector instead of incrementing ``prometheus_client`` objects per message: a
dict increment or a bisect into a list costs a fraction of what a labelled
``Counter.labels(...).inc()`` does (a lock and a label lookup per call), and the hot
path was tuned in issue 14. One set per server (built in the composition root), never
module globals: tests run several servers in one process.

Everything here runs on the trio thread except where a docstring says otherwise, so a
plain ``+=`` is exact.
"""

from __future__ import annotations

from bisect import bisect_left

# Upper bounds (seconds) of the latency buckets. A charger's answer budget is
# db_retry_seconds (5 s by default) and the charger's own timeout is about 30 s; the
# interesting part is the millisecond range (the p99 target of issue 14 is 10 ms).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Histogram:
    """Counts per bucket (not cumulative; the last slot is +Inf) and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus "le").
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs as Prometheus wants them, ending with +Inf."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out
