"""Effective circuit limits (issue 17): what the allocator may hand out on a circuit this
round. A circuit's configured limit (its breaker), lowered by a schedule entry that is in
force (``[[load_schedule]]``, e.g. a lower limit in the day's expensive hours), minus
the building's other load on that circuit, pushed from outside (``PUT
/site/external-load``, a meter on the grid connection):

    available per phase = min(configured, schedule) - other load on that phase

Pure: the load manager computes these every round and passes them to the allocator.

A pushed value is valid for the time its sender gave. After that (and, on the circuits
``external_load_circuits`` names, before the first value) the other load is assumed to
be the higher of the last value and ``external_load_fallback_amps`` per phase: a meter
that stops reporting never makes more room, only less (the production-safe side).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum

from voltaro.domain.circuits import Circuit, CircuitError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Amps3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleEntry:
    """``limit_amps`` per phase on ``circuit_id`` from ``start`` to ``end`` local time on
    ``days`` (0 = Monday). An entry whose end is not after its start runs past midnight
    and belongs to the day it starts on (22:00-06:00 on fri runs into Saturday morning);
    start == end is the whole day."""

    circuit_id: str
    days: frozenset[int]
    start: time
    end: time
    limit_amps: float

    def active(self, local: datetime) -> bool:
        now = local.time().replace(tzinfo=None)
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= now < self.end
        if self.start == self.end:
            return day in self.days
        return (day in self.days and now >= self.start) or (
            (day - 1) % 7 in self.days and now < self.end
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalLoad:
    """The building's other load on a circuit, per phase (L1, L2, L3), as pushed."""

    circuit_id: str
    amps: Amps3
    at: datetime
    valid_until: datetime


class ExternalState(StrEnum):
    NONE = "none"  # no external signal on this circuit
    LIVE = "live"  # a value within its validity
    STALE = "stale"  # its validity ran out: the fallback assumption applies
    MISSING = "missing"  # expected (external_load_circuits), none pushed yet


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitLimit:
    """What the allocator applies on one circuit: per phase in A (None: no A limit) and
    the power limit left in kW (None: no kW limit). Never negative."""

    amps: Amps3 | None
    kw: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EffectiveLimit:
    """A circuit's effective limit and where it comes from (shown in the live view)."""

    circuit_id: str
    limit: CircuitLimit
    schedule_amps: float | None  # the schedule entry in force (lowest), if any
    external: ExternalState
    external_amps: Amps3 | None  # the other load subtracted (assumed when stale/missing)
    source: str  # "configured" or "schedule", "+external" or "+external-fallback"


def schedule_limit(
    entries: Iterable[ScheduleEntry], circuit_id: str, local: datetime
) -> float | None:
    """The lowest limit of the entries in force on the circuit, or None."""
    limits = [e.limit_amps for e in entries if e.circuit_id == circuit_id and e.active(local)]
    return min(limits) if limits else None


def external_for(
    circuit_id: str,
    pushed: Mapping[str, ExternalLoad],
    expected: Iterable[str],
    fallback_amps: float,
    now: datetime,
) -> tuple[ExternalState, Amps3 | None]:
    value = pushed.get(circuit_id)
    if value is None:
        if circuit_id in set(expected):
            return ExternalState.MISSING, (fallback_amps, fallback_amps, fallback_amps)
        return ExternalState.NONE, None
    if now < value.valid_until:
        return ExternalState.LIVE, value.amps
    assumed = tuple(max(a, fallback_amps) for a in value.amps)
    return ExternalState.STALE, (assumed[0], assumed[1], assumed[2])


def effective_limits(
    circuits: Iterable[Circuit],
    *,
    schedule: Iterable[ScheduleEntry] = (),
    pushed: Mapping[str, ExternalLoad] | None = None,
    expected: Iterable[str] = (),
    fallback_amps: float = 0.0,
    voltage: float,
    now: datetime,
    local: datetime,
) -> dict[str, EffectiveLimit]:
    """Every circuit's limit this round (``now`` UTC for validity, ``local`` for the
    schedule). A kW limit loses the other load's power (sum of its phases at
    ``voltage``); a schedule limit in A applies per phase even on a kW-only circuit."""
    entries = tuple(schedule)
    pushed = pushed or {}
    expected = tuple(expected)
    out: dict[str, EffectiveLimit] = {}
    for circuit in circuits:
        scheduled = schedule_limit(entries, circuit.circuit_id, local)
        amps = circuit.limit_amps
        source = "configured"
        if scheduled is not None and (amps is None or scheduled < amps):
            amps, source = scheduled, "schedule"
        state, other = external_for(circuit.circuit_id, pushed, expected, fallback_amps, now)
        if state is ExternalState.LIVE:
            source += "+external"
        elif state in (ExternalState.STALE, ExternalState.MISSING):
            source += "+external-fallback"
        load = other or (0.0, 0.0, 0.0)
        per_phase: Amps3 | None = None
        if amps is not None:
            per_phase = (
                max(0.0, amps - load[0]),
                max(0.0, amps - load[1]),
                max(0.0, amps - load[2]),
            )
        kw = None
        if circuit.limit_kw is not None:
            kw = max(0.0, circuit.limit_kw - sum(load) * voltage / 1000.0)
        out[circuit.circuit_id] = EffectiveLimit(
            circuit_id=circuit.circuit_id,
            limit=CircuitLimit(amps=per_phase, kw=kw),
            schedule_amps=scheduled,
            external=state,
            external_amps=other,
            source=source,
        )
    return out


def _clock(text: object, where: str) -> time:
    if not isinstance(text, str):
        raise CircuitError(f'{where}: a time must look like "22:00"')
    try:
        parsed = time.fromisoformat(text.strip())
    except ValueError:
        raise CircuitError(f'{where}: {text!r} is not a time like "22:00"') from None
    if parsed.tzinfo is not None:
        raise CircuitError(f"{where}: times are local to the server (no offset)")
    return parsed


def _days(raw: object, where: str) -> frozenset[int]:
    """``["mon", "tue"]``, ``"mon-fri"``, ``"sat,sun"`` or ``"all"`` (the default)."""
    if raw is None:
        return frozenset(range(7))
    parts: list[str]
    if isinstance(raw, str):
        parts = [p.strip().lower() for p in raw.split(",") if p.strip()]
    elif isinstance(raw, list | tuple) and all(isinstance(p, str) for p in raw):
        parts = [str(p).strip().lower() for p in raw]
    else:
        raise CircuitError(f'{where}: days must be like ["mon", "tue"] or "mon-fri"')
    out: set[int] = set()
    for part in parts:
        if part in ("all", "*"):
            out.update(range(7))
            continue
        first, sep, last = part.partition("-")
        if first[:3] not in DAYS or (sep and last[:3] not in DAYS):
            raise CircuitError(f"{where}: {part!r} is not a day (mon ... sun)")
        a = DAYS.index(first[:3])
        b = DAYS.index(last[:3]) if sep else a
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not out:
        raise CircuitError(f"{where}: days is empty")
    return frozenset(out)


_KEYS = {"circuit", "days", "from", "to", "limit_amps"}


def schedule_from_toml(raw: object) -> tuple[ScheduleEntry, ...]:
    """``[[load_schedule]]`` tables: circuit, days?, from, to ("HH:MM" local), limit_amps.

    Raises:
        CircuitError: with a one-line reason naming the entry.
    """
    if not isinstance(raw, list | tuple):
        raise CircuitError("expected [[load_schedule]] tables")
    out: list[ScheduleEntry] = []
    for n, entry in enumerate(raw, 1):
        if isinstance(entry, ScheduleEntry):
            out.append(entry)
            continue
        where = f"load_schedule entry {n}"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("circuit"), str):
            raise CircuitError(f"{where}: needs a circuit")
        unknown = set(entry) - _KEYS
        if unknown:
            raise CircuitError(f"{where}: unknown key {sorted(unknown)[0]}")
        limit = entry.get("limit_amps")
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise CircuitError(f"{where}: limit_amps must be a number")
        if not math.isfinite(limit) or limit < 0:
            raise CircuitError(f"{where}: limit_amps must be a finite number >= 0")
        out.append(
            ScheduleEntry(
                circuit_id=str(entry["circuit"]),
                days=_days(entry.get("days"), where),
                start=_clock(entry.get("from"), where),
                end=_clock(entry.get("to"), where),
                limit_amps=float(limit),
            )
        )
    return tuple(out)


def schedule_text(entry: ScheduleEntry) -> str:
    days = ",".join(DAYS[d] for d in sorted(entry.days))
    return f"{entry.circuit_id} {days} {entry.start:%H:%M}-{entry.end:%H:%M} {entry.limit_amps:g} A"
