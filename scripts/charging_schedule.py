"""The charger side of Smart Charging (OCPP 1.6 §3.13): which installed charging profiles
are in force at a time, and the composite schedule they make together. Pure and
stdlib-only, so the simulator stays independent of the server's code.

Profiles are the ``csChargingProfiles`` of SetChargingProfile as the ``ocpp`` library
hands them over (snake_case keys). The rules, from §3.13.1-§3.13.4 and §5.7/§5.16:

- A profile is in force at ``t`` when ``validFrom <= t < validTo`` (each optional), its
  schedule has started and not run out (``duration``), and a period has begun.
- Schedule start: Absolute at ``startSchedule`` (else when the profile was received);
  Relative at the start of the transaction (else at the start of the asked window, as
  if a transaction started then); Recurring at ``startSchedule`` plus whole days or
  weeks.
- Within a purpose the highest ``stackLevel`` in force wins; when its schedule ends the
  next one down applies again.
- A TxProfile (the connector's transaction) overrides the TxDefaultProfile; a
  TxDefaultProfile on the connector overrides the one on connector 0.
- ChargePointMaxProfile (connector 0) caps everything: the composite is the lower of
  it and the connector's Tx/TxDefault limit. Offline changes none of this: the charger
  keeps its profiles; when a short TxProfile runs out, the TxDefault and the
  ChargePointMaxProfile limits are what is left.
- Limits in A become W as A x voltage x phases (``numberPhases``, default 3), and back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

VOLTAGE = 230.0  # nominal phase voltage for A <-> W
DEFAULT_PHASES = 3  # numberPhases when a period does not say (§7.13)
_RECURRENCE = {"Daily": 86400.0, "Weekly": 7 * 86400.0}


@dataclass(frozen=True, slots=True)
class Installed:
    """A profile as the charger holds it: for which connector, and when it came."""

    connector_id: int
    profile: Mapping[str, Any]
    received: datetime


@dataclass(frozen=True, slots=True)
class Limit:
    watts: float
    phases: int

    def in_unit(self, unit: str, voltage: float = VOLTAGE) -> float:
        return self.watts if unit == "W" else self.watts / (voltage * self.phases)


@dataclass(frozen=True, slots=True)
class Period:
    """A period of a composite schedule: from ``start`` seconds on, ``limit`` in the
    schedule's unit."""

    start: int
    limit: float
    phases: int


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def _anchor(
    profile: Mapping[str, Any], t: datetime, *, received: datetime, tx_start: datetime | None
) -> datetime | None:
    """The start of the schedule occurrence that ``t`` falls in (None: not started)."""
    schedule = profile["charging_schedule"]
    kind = profile["charging_profile_kind"]
    start = parse_time(schedule.get("start_schedule"))
    if kind == "Relative":
        # The charger picks the start point (§3.13.1): the transaction's; a charger-wide
        # maximum has none, so it runs from when it was received.
        if profile["charging_profile_purpose"] == "ChargePointMaxProfile":
            return received
        return tx_start
    if kind == "Recurring":
        length = _RECURRENCE.get(profile.get("recurrency_kind") or "Daily", 86400.0)
        base = start or received
        if t < base:
            return None
        cycles = math.floor((t - base).total_seconds() / length)
        return base + timedelta(seconds=cycles * length)
    return start or received


def _to_watts(limit: float, unit: str, phases: int, voltage: float) -> float:
    return limit if unit == "W" else limit * voltage * phases


def profile_limit(
    installed: Installed,
    t: datetime,
    *,
    tx_start: datetime | None,
    voltage: float = VOLTAGE,
) -> Limit | None:
    """The limit ``installed`` sets at ``t``, or None when it is not in force then."""
    profile = installed.profile
    valid_from = parse_time(profile.get("valid_from"))
    valid_to = parse_time(profile.get("valid_to"))
    if (valid_from is not None and t < valid_from) or (valid_to is not None and t >= valid_to):
        return None
    anchor = _anchor(profile, t, received=installed.received, tx_start=tx_start)
    if anchor is None or t < anchor:
        return None
    schedule = profile["charging_schedule"]
    elapsed = (t - anchor).total_seconds()
    duration = schedule.get("duration")
    if duration is not None and elapsed >= duration:
        return None
    current: Mapping[str, Any] | None = None
    for period in sorted(schedule["charging_schedule_period"], key=lambda p: p["start_period"]):
        if period["start_period"] <= elapsed:
            current = period
    if current is None:
        return None
    phases = int(current.get("number_phases") or DEFAULT_PHASES)
    unit = schedule["charging_rate_unit"]
    return Limit(watts=_to_watts(float(current["limit"]), unit, phases, voltage), phases=phases)


def _top(
    profiles: Iterable[Installed], t: datetime, tx_start: datetime | None, voltage: float
) -> Limit | None:
    """The limit of the highest stack level in force at ``t``."""
    best: tuple[int, Limit] | None = None
    for installed in profiles:
        limit = profile_limit(installed, t, tx_start=tx_start, voltage=voltage)
        level = int(installed.profile["stack_level"])
        if limit is not None and (best is None or level > best[0]):
            best = (level, limit)
    return best[1] if best is not None else None


def limit_at(
    profiles: Iterable[Installed],
    connector_id: int,
    t: datetime,
    *,
    tx_start: datetime | None = None,
    max_watts: float,
    voltage: float = VOLTAGE,
) -> Limit:
    """What connector ``connector_id`` may draw at ``t`` (connector 0: the whole charger,
    i.e. the ChargePointMaxProfile), never above ``max_watts`` (the hardware)."""
    installed = list(profiles)

    def of(purpose: str, connector: int) -> list[Installed]:
        return [
            p
            for p in installed
            if p.connector_id == connector and p.profile["charging_profile_purpose"] == purpose
        ]

    cap = _top(of("ChargePointMaxProfile", 0), t, tx_start, voltage)
    limit = Limit(watts=max_watts, phases=DEFAULT_PHASES)
    if connector_id > 0:
        chosen = (
            _top(of("TxProfile", connector_id), t, tx_start, voltage)
            or _top(of("TxDefaultProfile", connector_id), t, tx_start, voltage)
            or _top(of("TxDefaultProfile", 0), t, tx_start, voltage)
        )
        if chosen is not None and chosen.watts < limit.watts:
            limit = chosen
    if cap is not None and cap.watts < limit.watts:
        limit = cap
    return limit


def _breakpoints(
    installed: Installed, start: datetime, end: datetime, tx_start: datetime | None
) -> set[datetime]:
    """Every time in [start, end) at which ``installed`` may change what it says."""
    profile = installed.profile
    schedule = profile["charging_schedule"]
    out: set[datetime] = set()
    for key in ("valid_from", "valid_to"):
        moment = parse_time(profile.get(key))
        if moment is not None:
            out.add(moment)
    anchors: list[datetime] = []
    if profile["charging_profile_kind"] == "Recurring":
        length = _RECURRENCE.get(profile.get("recurrency_kind") or "Daily", 86400.0)
        base = parse_time(schedule.get("start_schedule")) or installed.received
        first = math.floor((start - base).total_seconds() / length)
        last = math.floor((end - base).total_seconds() / length)
        anchors = [base + timedelta(seconds=k * length) for k in range(max(first, 0), last + 1)]
    else:
        anchor = _anchor(profile, start, received=installed.received, tx_start=tx_start)
        anchors = [anchor] if anchor is not None else []
    for anchor in anchors:
        out.add(anchor)
        for period in schedule["charging_schedule_period"]:
            out.add(anchor + timedelta(seconds=period["start_period"]))
        if schedule.get("duration") is not None:
            out.add(anchor + timedelta(seconds=schedule["duration"]))
    return {t for t in out if start < t < end}


def composite(
    profiles: Iterable[Installed],
    connector_id: int,
    start: datetime,
    duration: int,
    unit: str,
    *,
    tx_start: datetime | None = None,
    max_watts: float,
    voltage: float = VOLTAGE,
) -> list[Period]:
    """The composite schedule of a connector for ``duration`` seconds from ``start``
    (GetCompositeSchedule, §5.7): the limit in force, as ascending periods of whole
    seconds; a period only where the limit changes."""
    installed = list(profiles)
    if tx_start is None:
        tx_start = start  # Relative profiles: as if the transaction started now
    end = start + timedelta(seconds=duration)
    moments = {start}
    for p in installed:
        moments |= _breakpoints(p, start, end, tx_start)
    at_offset: dict[int, Limit] = {}
    for moment in sorted(moments):
        offset = math.ceil((moment - start).total_seconds())
        if offset < duration:
            at_offset[offset] = limit_at(
                installed,
                connector_id,
                start + timedelta(seconds=offset),
                tx_start=tx_start,
                max_watts=max_watts,
                voltage=voltage,
            )
    periods: list[Period] = []
    for offset in sorted(at_offset):
        limit = at_offset[offset]
        value = round(limit.in_unit(unit, voltage), 1)
        if not periods or (periods[-1].limit, periods[-1].phases) != (value, limit.phases):
            periods.append(Period(start=offset, limit=value, phases=limit.phases))
    return periods
