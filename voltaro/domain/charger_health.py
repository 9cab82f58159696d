"""Per-charger health from hourly counters: the pure rules (issue 19).

The server counts, per charger and per clock hour (UTC), what an operator needs to judge
a charger's link and clock: connections, seconds online, commands that timed out,
CALLERRORs sent and received, the lag of the charger's timestamps behind the time we
received them, and the intervals between its heartbeats. Those hourly buckets are kept
48 hours (service/charger_health.py writes them with the last-seen batch). Here they are
turned into figures and flags; no clock, no IO: ``now`` is always given.

Clock drift. A charger's timestamp (StatusNotification, MeterValues, StartTransaction,
StopTransaction; a 1.6 BootNotification carries none) is compared with the time we
received the message: ``lag = received - charger_time``. A message sent at once lags by
its transit time plus the clock's offset; a message the charger queued while offline lags
by hours. So the *smallest* lag of an hour is the best estimate of the offset (the
minimum filter NTP uses for the same reason), and ``drift = -min_lag``: positive when
the charger's clock is ahead of ours, negative when it is behind. The latest hour with
samples is used: a clock the charger corrected (after a Heartbeat, whose answer carries
our time, OCPP 1.6 §4.6) stops being reported as drifting an hour later at most.

Heartbeat regularity. Only intervals between two heartbeats on one connection count
(a reconnection is not a missed heartbeat). Their mean and spread (standard deviation)
are compared with the HeartbeatInterval the charger should use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum

HOUR = timedelta(hours=1)
WINDOW_HOURS = 24  # the figures: the current clock hour and the 23 before it
KEEP_HOURS = 48  # buckets older than this are deleted


def hour_of(at: datetime) -> datetime:
    """The clock hour ``at`` falls in (its bucket)."""
    return at.replace(minute=0, second=0, microsecond=0)


def split_by_hour(start: datetime, end: datetime) -> list[tuple[datetime, float]]:
    """Seconds of [start, end) in each clock hour: an online period is counted in the
    buckets it covers."""
    out: list[tuple[datetime, float]] = []
    cursor = start
    while cursor < end:
        bucket = hour_of(cursor)
        upto = min(end, bucket + HOUR)
        out.append((bucket, (upto - cursor).total_seconds()))
        cursor = upto
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class HourBucket:
    """One charger's counts in one clock hour. Every field but ``hour`` adds up."""

    hour: datetime
    connects: int = 0
    online_s: float = 0.0
    command_timeouts: int = 0
    call_errors_sent: int = 0
    call_errors_received: int = 0
    clock_samples: int = 0
    min_lag_s: float | None = None  # smallest (received - charger time) of the hour
    heartbeat_intervals: int = 0
    heartbeat_sum_s: float = 0.0
    heartbeat_sumsq_s: float = 0.0  # sum of squared intervals: the spread, additively


_ADDITIVE = tuple(f.name for f in fields(HourBucket) if f.name not in ("hour", "min_lag_s"))


def merge(a: HourBucket, b: HourBucket) -> HourBucket:
    """Two counts of the same hour (stored + not yet written)."""
    values = {name: getattr(a, name) + getattr(b, name) for name in _ADDITIVE}
    lags = [lag for lag in (a.min_lag_s, b.min_lag_s) if lag is not None]
    return replace(a, min_lag_s=min(lags) if lags else None, **values)


def combine(buckets: Iterable[HourBucket]) -> list[HourBucket]:
    """Buckets merged per hour, oldest first."""
    by_hour: dict[datetime, HourBucket] = {}
    for bucket in buckets:
        seen = by_hour.get(bucket.hour)
        by_hour[bucket.hour] = bucket if seen is None else merge(seen, bucket)
    return [by_hour[h] for h in sorted(by_hour)]


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """When a charger is flagged (settings ``health_*``, docs/operations.md)."""

    flapping_connects_per_hour: int = 6
    drift_seconds: float = 120.0
    heartbeat_tolerance: float = 0.5  # mean or spread off by more than this share


class Regularity(StrEnum):
    UNKNOWN = "unknown"  # fewer than MIN_INTERVALS intervals in the window
    REGULAR = "regular"
    IRREGULAR = "irregular"


MIN_INTERVALS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatFigures:
    expected_s: int | None
    intervals: int
    mean_s: float | None
    spread_s: float | None  # standard deviation
    regularity: Regularity


def heartbeat_regularity(
    intervals: int, total_s: float, total_sq_s: float, expected_s: int | None, tolerance: float
) -> HeartbeatFigures:
    """Mean and spread of the intervals against the interval the charger should keep."""
    if intervals == 0:
        return HeartbeatFigures(
            expected_s=expected_s,
            intervals=0,
            mean_s=None,
            spread_s=None,
            regularity=Regularity.UNKNOWN,
        )
    mean = total_s / intervals
    spread = math.sqrt(max(0.0, total_sq_s / intervals - mean * mean))
    if intervals < MIN_INTERVALS or not expected_s:
        regularity = Regularity.UNKNOWN
    elif abs(mean - expected_s) > tolerance * expected_s or spread > tolerance * expected_s:
        regularity = Regularity.IRREGULAR
    else:
        regularity = Regularity.REGULAR
    return HeartbeatFigures(
        expected_s=expected_s,
        intervals=intervals,
        mean_s=round(mean, 3),
        spread_s=round(spread, 3),
        regularity=regularity,
    )


def clock_drift(buckets: Sequence[HourBucket]) -> tuple[float | None, datetime | None]:
    """(charger clock minus ours in seconds, the hour it was measured in), from the
    latest hour with samples; (None, None) without samples."""
    for bucket in reversed(buckets):
        if bucket.clock_samples and bucket.min_lag_s is not None:
            return round(-bucket.min_lag_s, 3), bucket.hour
    return None, None


class Flag(StrEnum):
    FLAPPING = "flapping"
    DRIFTING = "drifting"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerHealth:
    """A charger's health over the window (the current hour and the 23 before it)."""

    window_start: datetime
    connects_last_hour: int  # this clock hour and the one before, the higher
    connects: int
    max_connects_per_hour: int
    online_s: float
    online_share: float  # of the time since the window started
    command_timeouts: int
    call_errors_sent: int
    call_errors_received: int
    clock_drift_s: float | None
    clock_measured_hour: datetime | None
    clock_samples: int
    heartbeat: HeartbeatFigures
    flags: tuple[tuple[Flag, str], ...] = field(default=())


def assess(
    buckets: Iterable[HourBucket],
    *,
    now: datetime,
    expected_heartbeat_s: int | None,
    thresholds: HealthThresholds,
) -> ChargerHealth:
    """The figures and flags of one charger from its buckets (any order, any age)."""
    current = hour_of(now)
    start = current - (WINDOW_HOURS - 1) * HOUR
    window = [b for b in combine(buckets) if start <= b.hour <= current]
    per_hour = {b.hour: b.connects for b in window}
    recent = max(per_hour.get(current, 0), per_hour.get(current - HOUR, 0))
    drift, measured = clock_drift(window)
    heartbeat = heartbeat_regularity(
        sum(b.heartbeat_intervals for b in window),
        sum(b.heartbeat_sum_s for b in window),
        sum(b.heartbeat_sumsq_s for b in window),
        expected_heartbeat_s,
        thresholds.heartbeat_tolerance,
    )
    online = sum(b.online_s for b in window)
    elapsed = (now - start).total_seconds()
    flags: list[tuple[Flag, str]] = []
    if recent > thresholds.flapping_connects_per_hour:
        flags.append(
            (
                Flag.FLAPPING,
                f"{recent} connections in an hour (over {thresholds.flapping_connects_per_hour})",
            )
        )
    if drift is not None and abs(drift) > thresholds.drift_seconds:
        side = "ahead of" if drift > 0 else "behind"
        flags.append(
            (
                Flag.DRIFTING,
                f"clock {abs(drift):.0f} s {side} the server's "
                f"(over {thresholds.drift_seconds:g} s)",
            )
        )
    return ChargerHealth(
        window_start=start,
        connects_last_hour=recent,
        connects=sum(per_hour.values()),
        max_connects_per_hour=max(per_hour.values(), default=0),
        online_s=round(online, 1),
        online_share=round(min(1.0, online / elapsed), 4) if elapsed > 0 else 0.0,
        command_timeouts=sum(b.command_timeouts for b in window),
        call_errors_sent=sum(b.call_errors_sent for b in window),
        call_errors_received=sum(b.call_errors_received for b in window),
        clock_drift_s=drift,
        clock_measured_hour=measured,
        clock_samples=sum(b.clock_samples for b in window),
        heartbeat=heartbeat,
        flags=tuple(flags),
    )


# --- why the charger last booted -------------------------------------------------------

# A reboot that follows what was asked within this time is taken to be its consequence.
BOOT_CAUSE_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetRequest:
    at: datetime
    type: str  # Soft / Hard
    actor: str


def boot_reason(
    last_boot: datetime | None,
    *,
    reset: ResetRequest | None,
    firmware_at: datetime | None,
) -> str | None:
    """What most likely made the charger boot last. OCPP 1.6 BootNotification carries no
    reason (2.0.1's does), so it is inferred: an accepted Reset or a firmware
    installation reported around the boot (Installing before it, Installed after it),
    else the charger rebooted on its own (power
    loss, crash, watchdog)."""
    if last_boot is None:
        return None
    candidates: list[tuple[datetime, str]] = []
    if reset is not None and timedelta(0) <= last_boot - reset.at <= BOOT_CAUSE_WINDOW:
        candidates.append((reset.at, f"Reset {reset.type} requested by {reset.actor}"))
    if firmware_at is not None and abs(last_boot - firmware_at) <= BOOT_CAUSE_WINDOW:
        candidates.append((firmware_at, "firmware installation"))
    if not candidates:
        return "not requested: power loss, crash or watchdog"
    return max(candidates)[1]
