"""Per-charger health rules (voltaro/domain/charger_health.py): pure, no clock, no IO."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from voltaro.domain.charger_health import (
    Flag,
    HealthThresholds,
    HourBucket,
    Regularity,
    ResetRequest,
    assess,
    boot_reason,
    combine,
    heartbeat_regularity,
    hour_of,
    split_by_hour,
)

NOW = datetime(2026, 12, 5, 10, 20, tzinfo=UTC)
H = hour_of(NOW)  # 10:00
LIMITS = HealthThresholds(flapping_connects_per_hour=6, drift_seconds=120, heartbeat_tolerance=0.5)


def test_online_time_is_split_over_the_hours_it_covers() -> None:
    start = datetime(2026, 12, 5, 8, 45, tzinfo=UTC)
    end = datetime(2026, 12, 5, 10, 15, tzinfo=UTC)
    assert split_by_hour(start, end) == [
        (datetime(2026, 12, 5, 8, tzinfo=UTC), 900.0),
        (datetime(2026, 12, 5, 9, tzinfo=UTC), 3600.0),
        (datetime(2026, 12, 5, 10, tzinfo=UTC), 900.0),
    ]
    assert split_by_hour(end, end) == []


def test_buckets_of_one_hour_add_up_and_keep_the_smallest_lag() -> None:
    merged = combine(
        [
            HourBucket(hour=H, connects=2, min_lag_s=5.0, clock_samples=1),
            HourBucket(hour=H - timedelta(hours=1), connects=1),
            HourBucket(hour=H, connects=1, min_lag_s=-3.0, clock_samples=2, online_s=10),
            HourBucket(hour=H, min_lag_s=None, command_timeouts=1),
        ]
    )
    assert [b.hour for b in merged] == [H - timedelta(hours=1), H]
    assert merged[1] == HourBucket(
        hour=H, connects=3, min_lag_s=-3.0, clock_samples=3, online_s=10, command_timeouts=1
    )


def test_drift_is_the_smallest_lag_so_queued_messages_do_not_count() -> None:
    # The charger's clock is 200 s behind: live messages lag 200.2 s, a StopTransaction
    # from its offline queue lags 3 hours; the minimum is the clock's offset.
    bucket = HourBucket(hour=H, clock_samples=3, min_lag_s=200.2)
    health = assess([bucket], now=NOW, expected_heartbeat_s=300, thresholds=LIMITS)
    assert health.clock_drift_s == pytest.approx(-200.2)
    assert health.flags == ((Flag.DRIFTING, "clock 200 s behind the server's (over 120 s)"),)
    ahead = assess(
        [HourBucket(hour=H, clock_samples=1, min_lag_s=-150.0)],
        now=NOW,
        expected_heartbeat_s=300,
        thresholds=LIMITS,
    )
    assert ahead.clock_drift_s == 150.0
    assert "ahead of" in ahead.flags[0][1]


def test_the_latest_hour_with_samples_tells_the_drift() -> None:
    # Drifting two hours ago, corrected since: not flagged any more.
    buckets = [
        HourBucket(hour=H - timedelta(hours=2), clock_samples=5, min_lag_s=900.0),
        HourBucket(hour=H - timedelta(hours=1), clock_samples=5, min_lag_s=0.4),
        HourBucket(hour=H, connects=1),
    ]
    health = assess(buckets, now=NOW, expected_heartbeat_s=300, thresholds=LIMITS)
    assert health.clock_drift_s == -0.4
    assert health.clock_measured_hour == H - timedelta(hours=1)
    assert health.clock_samples == 10
    assert health.flags == ()


def test_flapping_counts_this_hour_or_the_one_before() -> None:
    def flags(connects_now: int, connects_before: int) -> tuple[tuple[Flag, str], ...]:
        buckets = [
            HourBucket(hour=H, connects=connects_now),
            HourBucket(hour=H - timedelta(hours=1), connects=connects_before),
            HourBucket(hour=H - timedelta(hours=5), connects=40),  # long ago: no flag
        ]
        return assess(buckets, now=NOW, expected_heartbeat_s=None, thresholds=LIMITS).flags

    assert flags(6, 0) == ()
    assert flags(7, 0) == ((Flag.FLAPPING, "7 connections in an hour (over 6)"),)
    assert flags(1, 9) == ((Flag.FLAPPING, "9 connections in an hour (over 6)"),)


def test_window_is_this_hour_and_the_23_before() -> None:
    buckets = [
        HourBucket(hour=H - timedelta(hours=23), connects=1, online_s=3600, command_timeouts=2),
        HourBucket(hour=H - timedelta(hours=24), connects=5, online_s=3600, command_timeouts=9),
        HourBucket(hour=H, connects=1, online_s=1200, call_errors_sent=3, call_errors_received=1),
    ]
    health = assess(buckets, now=NOW, expected_heartbeat_s=None, thresholds=LIMITS)
    assert health.window_start == H - timedelta(hours=23)
    assert health.connects == 2
    assert health.max_connects_per_hour == 1
    assert health.online_s == 4800
    elapsed = 23 * 3600 + 20 * 60
    assert health.online_share == round(4800 / elapsed, 4)
    assert (health.command_timeouts, health.call_errors_sent, health.call_errors_received) == (
        2,
        3,
        1,
    )


def test_heartbeat_regularity() -> None:
    # Five intervals of 300 s, one of 310: regular.
    intervals = [300.0] * 5 + [310.0]
    figures = heartbeat_regularity(
        len(intervals), sum(intervals), sum(i * i for i in intervals), 300, 0.5
    )
    assert figures.regularity is Regularity.REGULAR
    assert figures.mean_s == pytest.approx(301.667, abs=0.001)
    assert figures.spread_s == pytest.approx(3.727, abs=0.001)
    # Every 30 s although the interval is 300 s: irregular (too often).
    fast = heartbeat_regularity(10, 300.0, 9000.0, 300, 0.5)
    assert fast.regularity is Regularity.IRREGULAR
    # Mean right but wildly spread: irregular.
    spread = [50.0, 550.0, 50.0, 550.0]
    wild = heartbeat_regularity(4, sum(spread), sum(i * i for i in spread), 300, 0.5)
    assert wild.mean_s == 300
    assert wild.spread_s == 250
    assert wild.regularity is Regularity.IRREGULAR
    # Too few intervals, or none: unknown.
    assert heartbeat_regularity(2, 600, 180_000, 300, 0.5).regularity is Regularity.UNKNOWN
    none = heartbeat_regularity(0, 0, 0, 300, 0.5)
    assert (none.regularity, none.mean_s) == (Regularity.UNKNOWN, None)


def test_boot_reason() -> None:
    boot = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    reset = ResetRequest(at=boot - timedelta(minutes=2), type="Hard", actor="alice")
    assert boot_reason(boot, reset=reset, firmware_at=None) == "Reset Hard requested by alice"
    old_reset = ResetRequest(at=boot - timedelta(hours=2), type="Soft", actor="alice")
    assert (
        boot_reason(boot, reset=old_reset, firmware_at=None)
        == "not requested: power loss, crash or watchdog"
    )
    # Installed is reported after the reboot it caused.
    installed = boot + timedelta(minutes=1)
    assert boot_reason(boot, reset=old_reset, firmware_at=installed) == "firmware installation"
    # Both: the later cause is the one that rebooted it.
    assert (
        boot_reason(boot, reset=reset, firmware_at=boot - timedelta(minutes=10))
        == "Reset Hard requested by alice"
    )
    assert boot_reason(None, reset=reset, firmware_at=None) is None
