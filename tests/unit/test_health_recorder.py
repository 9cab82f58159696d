"""The in-memory side of the per-charger health counters (service/charger_health.py):
what the last-seen batch takes, gives back after a failed write, and what a read adds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from voltaro.domain.charger_health import HourBucket, combine
from voltaro.service.charger_health import HealthRecorder

T = datetime(2026, 12, 5, 9, 59, 30, tzinfo=UTC)
H9, H10 = datetime(2026, 12, 5, 9, tzinfo=UTC), datetime(2026, 12, 5, 10, tzinfo=UTC)


def test_counts_taken_restored_and_read() -> None:
    r = HealthRecorder()
    r.connected("CP-1", T)
    r.clock("CP-1", T - timedelta(seconds=30), T)  # 30 s behind
    r.clock("CP-1", T - timedelta(hours=2), T)  # from its queue
    r.heartbeat("CP-1", T)
    r.heartbeat("CP-1", T + timedelta(seconds=20))  # one interval, in hour 9
    r.disconnected("CP-1", T + timedelta(seconds=50))  # 30 s in hour 9, 20 s in hour 10
    r.connected("CP-1", T + timedelta(seconds=51))
    r.heartbeat("CP-1", T + timedelta(seconds=60))  # a new connection: no interval
    read = r.pending("CP-1", T + timedelta(seconds=61))
    assert read == [
        HourBucket(
            hour=H9,
            connects=1,
            online_s=30.0,
            clock_samples=2,
            min_lag_s=30.0,
            heartbeat_intervals=1,
            heartbeat_sum_s=20.0,
            heartbeat_sumsq_s=400.0,
        ),
        HourBucket(hour=H10, connects=1, online_s=20.0 + 10.0),  # + online since 10:00:21
    ]
    # The batch: the live connection's 10 s are left for a later one (counted every
    # ONLINE_EVERY, at an hour's change or at the disconnection).
    taken = r.take(T + timedelta(seconds=61))
    written = [read[0], HourBucket(hour=H10, connects=1, online_s=20.0)]
    assert combine(b for _, b in taken) == written
    assert r.take(T + timedelta(seconds=62)) == []
    r.restore(taken)  # the write failed: the next batch carries them
    again = r.take(T + timedelta(seconds=63))
    assert combine(b for _, b in again) == written
    assert r.take(T + timedelta(seconds=110)) == []  # 59 s after 10:00:21
    (online,) = r.take(T + timedelta(seconds=111))
    assert online == ("CP-1", HourBucket(hour=H10, online_s=60.0))
    r.call_error_sent("CP-2")
    r.command_timed_out("CP-2")
    r.call_error_received("CP-2")
    (only,) = r.pending("CP-2")
    assert (only.call_errors_sent, only.command_timeouts, only.call_errors_received) == (1, 1, 1)
    assert set(r.pending_all()) == {"CP-1", "CP-2"}


def test_final_batch_counts_every_connected_charger() -> None:
    r = HealthRecorder()
    r.connected("CP-1", T + timedelta(seconds=40))
    assert [b.online_s for _, b in r.take(T + timedelta(seconds=50))] == [0.0]  # connects only
    (bucket,) = [b for _, b in r.take(T + timedelta(seconds=55), final=True)]
    assert bucket.online_s == 15.0
    assert r.prune_before(T) == H9 - timedelta(hours=48)
    assert r.prune_before(T + timedelta(minutes=30)) is None  # once an hour


def test_online_counted_in_steps_never_twice() -> None:
    """A flush counts the seconds online of the chargers due a slice at a time, giving
    way between: a charger that disconnected (or reconnected) meanwhile had its time
    counted by the disconnection and is not counted again."""
    r = HealthRecorder()
    start = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    for n in (1, 2, 3):
        r.connected(f"CP-{n}", start)
    r.connected("CP-4", start + timedelta(seconds=30))  # not due yet
    now = start + timedelta(seconds=61)
    due = r.online_due(now)
    assert sorted(cid for cid, _ in due) == ["CP-1", "CP-2", "CP-3"]
    r.count_online(due[:1], now)
    # Between two steps: one leaves, one leaves and comes back.
    left, back = sorted(cid for cid, _ in due[1:])
    r.disconnected(left, start + timedelta(seconds=40))
    r.disconnected(back, start + timedelta(seconds=45))
    r.connected(back, start + timedelta(seconds=50))
    r.count_online(due[1:], now)
    online = {cid: b.online_s for cid, b in r.take(now)}
    first = due[0][0]
    # CP-4 and the reconnected one's new connection are not due yet: connects only.
    assert online == {first: 61.0, left: 40.0, back: 45.0, "CP-4": 0.0}
