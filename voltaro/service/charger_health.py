"""Per-charger health counters, collected in memory and written with the last-seen batch.

Counting must cost the hot path nothing it did not already pay (issue 14 made it fast):
each event below is a dictionary update in the connection's task, and the counts are
added to their hourly rows (store/charger_health.py) by ``Liveness.flush``, in the same
unit of work as the last-seen times, every few seconds. A batch the database cannot take
is kept and added to the next one, like the last-seen times.

Where the events come from:
- connected / disconnected: the listener's directory (service/directory.py), so a
  takeover (a new connection replacing a live one) counts one connection and no gap;
- heartbeat, clock: the charger's own messages (service/ingest.py);
- CALLERRORs sent: the protocol layer's CallErrorLog;
- command timeouts and CALLERRORs received: the command layer, as each command ends.

Reads (``ctl chargers health``, the API, the console) add what is not written yet
(``pending``), seconds online up to now included, to the stored hours. Counts a flush
has taken stay readable here until the slice holding them has committed, and a read
never overlaps the write of a slice (``settling``): each count is seen exactly once,
from memory or from the database, never neither nor both.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import trio
from sqlalchemy.orm import Session

from voltaro.domain.charger_health import (
    HOUR,
    KEEP_HOURS,
    WINDOW_HOURS,
    ChargerHealth,
    HealthThresholds,
    HourBucket,
    assess,
    boot_reason,
    combine,
    hour_of,
    split_by_hour,
)
from voltaro.domain.timestamps import format_utc, utc_now
from voltaro.settings import Settings
from voltaro.store import charger_health as store
from voltaro.store.charger_health import ChargerFacts
from voltaro.store.db import Database

# Seconds online are added to the hourly rows at most this often per charger (and at a
# disconnection): a connected charger costs one row update a minute, not one per batch.
ONLINE_EVERY = timedelta(seconds=60)
PRUNE_EVERY = timedelta(hours=1)


class _Counts:
    """One charger's counts of one hour not written yet: mutable, so that counting an
    event (a MeterValues' clock sample, on the hot path) is a few attribute updates."""

    __slots__ = (
        "call_errors_received",
        "call_errors_sent",
        "clock_samples",
        "command_timeouts",
        "connects",
        "heartbeat_intervals",
        "heartbeat_sum_s",
        "heartbeat_sumsq_s",
        "min_lag_s",
        "online_s",
    )

    def __init__(self) -> None:
        self.connects = self.command_timeouts = self.clock_samples = 0
        self.call_errors_sent = self.call_errors_received = self.heartbeat_intervals = 0
        self.online_s = self.heartbeat_sum_s = self.heartbeat_sumsq_s = 0.0
        self.min_lag_s: float | None = None

    def lag(self, lag: float) -> None:
        self.clock_samples += 1
        if self.min_lag_s is None or lag < self.min_lag_s:
            self.min_lag_s = lag

    def bucket(self, hour: datetime) -> HourBucket:
        # Spelled out: a flush converts every charger's counts (a comprehension over
        # __slots__ cost ~4 µs each, 40 ms for 10,000 chargers on the trio thread).
        return HourBucket(
            hour=hour,
            call_errors_received=self.call_errors_received,
            call_errors_sent=self.call_errors_sent,
            clock_samples=self.clock_samples,
            command_timeouts=self.command_timeouts,
            connects=self.connects,
            heartbeat_intervals=self.heartbeat_intervals,
            heartbeat_sum_s=self.heartbeat_sum_s,
            heartbeat_sumsq_s=self.heartbeat_sumsq_s,
            min_lag_s=self.min_lag_s,
            online_s=self.online_s,
        )

    def absorb(self, b: HourBucket) -> None:
        for name in self.__slots__:
            if name != "min_lag_s":
                setattr(self, name, getattr(self, name) + getattr(b, name))
        if b.min_lag_s is not None and (self.min_lag_s is None or b.min_lag_s < self.min_lag_s):
            self.min_lag_s = b.min_lag_s


# A charger's counts of one hour as a flush takes them, before conversion.
TakenCounts = tuple[str, datetime, _Counts]


class HealthRecorder:
    def __init__(self) -> None:
        self._pending: dict[tuple[str, datetime], _Counts] = {}
        # Taken by a flush, not committed yet (still counted by reads).
        self._unsettled: dict[tuple[str, datetime], _Counts] = {}
        # Held while a slice of counts is written and while a read takes its snapshot
        # and reads the stored hours: the read sees a slice either uncommitted (here)
        # or committed (stored), never both or neither (a flush of 10,000 chargers
        # writes for seconds on SQLite, in 100-charger slices).
        self.settling = trio.Lock()
        self._online_since: dict[str, datetime] = {}  # counted up to this time
        self._last_heartbeat: dict[str, datetime] = {}  # on the current connection
        self._pruned_at: datetime | None = None

    def _counts(self, charger_id: str, at: datetime) -> _Counts:
        key = (charger_id, hour_of(at))
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = _Counts()
        return counts

    # --- events --------------------------------------------------------------------------

    def connected(self, charger_id: str, at: datetime | None = None) -> None:
        at = at or utc_now()
        self._counts(charger_id, at).connects += 1
        self._online_since.setdefault(charger_id, at)
        self._last_heartbeat.pop(charger_id, None)  # a new connection: no interval yet

    def disconnected(self, charger_id: str, at: datetime | None = None) -> None:
        since = self._online_since.pop(charger_id, None)
        self._last_heartbeat.pop(charger_id, None)
        if since is not None:
            self._count_online(charger_id, since, at or utc_now())

    def _count_online(self, charger_id: str, start: datetime, end: datetime) -> None:
        for hour, seconds in split_by_hour(start, end):
            self._counts(charger_id, hour).online_s += seconds

    def heartbeat(self, charger_id: str, at: datetime) -> None:
        previous = self._last_heartbeat.get(charger_id)
        self._last_heartbeat[charger_id] = at
        if previous is None or at <= previous:
            return
        interval = (at - previous).total_seconds()
        counts = self._counts(charger_id, at)
        counts.heartbeat_intervals += 1
        counts.heartbeat_sum_s += interval
        counts.heartbeat_sumsq_s += interval * interval

    def clock(self, charger_id: str, charger_time: datetime, received_at: datetime) -> None:
        """A timestamp the charger set, and when we received it (drift, see the domain)."""
        self._counts(charger_id, received_at).lag((received_at - charger_time).total_seconds())

    def call_error_sent(self, charger_id: str) -> None:
        self._counts(charger_id, utc_now()).call_errors_sent += 1

    def command_timed_out(self, charger_id: str) -> None:
        self._counts(charger_id, utc_now()).command_timeouts += 1

    def call_error_received(self, charger_id: str) -> None:
        self._counts(charger_id, utc_now()).call_errors_received += 1

    # --- the batch -----------------------------------------------------------------------

    def take(
        self, now: datetime | None = None, *, final: bool = False
    ) -> list[tuple[str, HourBucket]]:
        """The counts to write now (still read from here until ``settled`` once written,
        or ``restore``d if the write fails): everything pending, with the seconds online
        of chargers last counted ``ONLINE_EVERY`` ago or in an earlier hour (of every
        connected one when ``final``: the last batch before shutdown)."""
        return self.buckets(self.take_unconverted(now, final=final))

    def take_unconverted(
        self, now: datetime | None = None, *, final: bool = False
    ) -> list[TakenCounts]:
        """``take`` without converting the counts to buckets: a flush converts each
        slice's just before writing it (``buckets``), not 10,000 chargers' in one step."""
        now = now or utc_now()
        self.count_online(self.online_due(now, final=final), now)
        taken, self._pending = self._pending, {}
        if not self._unsettled:
            self._unsettled = taken  # the usual case: the last flush settled everything
        else:
            self._merge_unsettled(taken)
        return [(charger_id, hour, c) for (charger_id, hour), c in taken.items()]

    @staticmethod
    def buckets(taken: list[TakenCounts]) -> list[tuple[str, HourBucket]]:
        """Taken counts as the buckets a write stores (they no longer change: new events
        are counted in new objects)."""
        return [(charger_id, c.bucket(hour)) for charger_id, hour, c in taken]

    def _merge_unsettled(self, taken: dict[tuple[str, datetime], _Counts]) -> None:
        for key, counts in taken.items():
            unsettled = self._unsettled.get(key)
            if unsettled is None:
                self._unsettled[key] = counts
            else:
                unsettled.absorb(counts.bucket(key[1]))

    def online_due(self, now: datetime, *, final: bool = False) -> list[tuple[str, datetime]]:
        """The connected chargers whose seconds online are due to be counted: last
        counted ``ONLINE_EVERY`` ago or in an earlier hour (all of them when ``final``)."""
        if final:
            return list(self._online_since.items())
        # Comparisons only: this runs over every connected charger at every flush.
        counted_before = now - ONLINE_EVERY
        this_hour = hour_of(now)
        return [
            (charger_id, since)
            for charger_id, since in self._online_since.items()
            if since <= counted_before or since < this_hour
        ]

    def count_online(self, due: list[tuple[str, datetime]], now: datetime) -> None:
        """Count the seconds online up to ``now`` of ``due`` (from ``online_due``),
        except a charger that disconnected or was counted since (its disconnection
        counted its time): a flush counts them a slice at a time, giving way between."""
        for charger_id, since in due:
            if self._online_since.get(charger_id) is since:
                self._count_online(charger_id, since, now)
                self._online_since[charger_id] = now

    def settled(self, counts: list[tuple[str, HourBucket]]) -> None:
        """These taken counts are committed (or refused for good): no longer counted
        here. Call it under ``settling``, right after the commit."""
        for charger_id, bucket in counts:
            self._unsettled.pop((charger_id, bucket.hour), None)

    def restore(self, counts: list[tuple[str, HourBucket]]) -> None:
        """These taken counts were not written: pending again, for the next flush."""
        for charger_id, bucket in counts:
            self._unsettled.pop((charger_id, bucket.hour), None)
            self._counts(charger_id, bucket.hour).absorb(bucket)

    def prune_before(self, now: datetime | None = None) -> datetime | None:
        """The age before which stored hours go, once an hour (None when not due)."""
        now = now or utc_now()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return None
        self._pruned_at = now
        return hour_of(now) - timedelta(hours=KEEP_HOURS)

    def pending(self, charger_id: str, now: datetime | None = None) -> list[HourBucket]:
        """What is counted but not written yet for one charger, seconds online up to
        ``now`` included (nothing changes here)."""
        return self.pending_all(now, only=charger_id).get(charger_id, [])

    def pending_all(
        self, now: datetime | None = None, *, only: str | None = None
    ) -> dict[str, list[HourBucket]]:
        now = now or utc_now()
        grouped: dict[str, list[HourBucket]] = {}
        for unwritten in (self._pending, self._unsettled):
            for (charger_id, hour), counts in unwritten.items():
                if only is None or charger_id == only:
                    grouped.setdefault(charger_id, []).append(counts.bucket(hour))
        for charger_id, since in self._online_since.items():
            if only is None or charger_id == only:
                grouped.setdefault(charger_id, []).extend(
                    HourBucket(hour=h, online_s=s) for h, s in split_by_hour(since, now)
                )
        return {charger_id: combine(b) for charger_id, b in grouped.items()}

    @property
    def unwritten(self) -> int:
        return len(self._pending.keys() | self._unsettled.keys())


# --- the report: stored hours + what is not written yet ----------------------------------

# Resets and firmware reports are searched this far back for the cause of a boot.
BOOT_CAUSE_LOOKBACK = timedelta(days=7)


def thresholds_of(settings: Settings) -> HealthThresholds:
    return HealthThresholds(
        flapping_connects_per_hour=settings.health_flapping_connects_per_hour,
        drift_seconds=settings.health_drift_seconds,
        heartbeat_tolerance=settings.health_heartbeat_tolerance,
    )


def _ts(value: datetime | None) -> str | None:
    return format_utc(value) if value is not None else None


def health_view(facts: ChargerFacts, health: ChargerHealth, *, connected: bool) -> dict[str, Any]:
    """The JSON view of one charger's health (ctl, API, console: the same fields)."""
    heartbeat = health.heartbeat
    cause = None
    if facts.last_boot is not None and utc_now() - facts.last_boot <= BOOT_CAUSE_LOOKBACK:
        cause = boot_reason(facts.last_boot, reset=facts.reset, firmware_at=facts.firmware_at)
    return {
        "charger_id": facts.charger_id,
        "connected": connected,
        "window_start": format_utc(health.window_start),
        "connects_last_hour": health.connects_last_hour,
        "connects_24h": health.connects,
        "max_connects_per_hour": health.max_connects_per_hour,
        "online_s_24h": health.online_s,
        "online_share_24h": health.online_share,
        "command_timeouts_24h": health.command_timeouts,
        "call_errors_sent_24h": health.call_errors_sent,
        "call_errors_received_24h": health.call_errors_received,
        "clock_drift_s": health.clock_drift_s,
        "clock_measured_hour": _ts(health.clock_measured_hour),
        "clock_samples_24h": health.clock_samples,
        "heartbeat": {
            "expected_s": heartbeat.expected_s,
            "intervals_24h": heartbeat.intervals,
            "mean_s": heartbeat.mean_s,
            "spread_s": heartbeat.spread_s,
            "regularity": heartbeat.regularity.value,
        },
        "last_boot": _ts(facts.last_boot),
        "last_boot_reason": cause,
        "firmware_version": facts.firmware_version,
        "vendor": facts.vendor,
        "model": facts.model,
        "flags": [{"flag": flag.value, "reason": reason} for flag, reason in health.flags],
    }


def _report(
    s: Session,
    charger_ids: list[str] | None,
    now: datetime,
    pending: dict[str, list[HourBucket]],
) -> tuple[dict[str, ChargerFacts], dict[str, list[HourBucket]]]:
    window = hour_of(now) - (WINDOW_HOURS - 1) * HOUR
    facts = store.charger_facts(s, charger_ids, now - BOOT_CAUSE_LOOKBACK)
    stored = store.buckets(s, list(facts), window)
    return facts, {cid: stored.get(cid, []) + pending.get(cid, []) for cid in facts}


async def health_report(
    db: Database,
    recorder: HealthRecorder | None,
    settings: Settings,
    *,
    charger_id: str | None = None,
    is_connected: Callable[[str], bool] = lambda _: False,
) -> list[dict[str, Any]]:
    """Every registered charger's health (or one's; [] if unknown), by charger id."""
    now = utc_now()
    if recorder is None:
        facts, counts = await db.run(_report, None if charger_id is None else [charger_id], now, {})
    else:
        async with recorder.settling:
            if charger_id is None:
                pending = recorder.pending_all(now)
            else:
                pending = {charger_id: recorder.pending(charger_id, now)}
            facts, counts = await db.run(
                _report, None if charger_id is None else [charger_id], now, pending
            )
    thresholds = thresholds_of(settings)
    out = []
    for cid, fact in facts.items():
        expected = fact.heartbeat_reported or fact.heartbeat_set or settings.heartbeat_interval
        health = assess(counts[cid], now=now, expected_heartbeat_s=expected, thresholds=thresholds)
        out.append(health_view(fact, health, connected=is_connected(cid)))
    return out
