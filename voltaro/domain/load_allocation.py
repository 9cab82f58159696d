"""Site load allocation (issue 17): given the circuit tree, each charger's state and the
active sessions, the current limit each session is offered so that no circuit's limit is
exceeded on any phase. Pure and synchronous; the load manager service feeds it and
sends the results as charging profiles (OCPP 1.6 §3.13).

The rules, in the order they apply:

1. Chargers that will not follow a limit are reserved first, on every phase they are
   wired to and on every circuit up to the root. An offline charger: at what its running
   sessions last accepted if that is more than its fallback (their TxProfiles stay in
   force offline, §3.13.3), but only until its leased ChargePointMaxProfile runs out;
   from then on it holds itself to the fallback (the composite is the lower of the two,
   §3.13.1), and it is counted there. A charger that rejects profiles, online or not:
   at its full rating. What is left is shared among the others' sessions.
2. Admission: every admitted session gets at least ``min_amps`` (IEC 61851-1: a
   charger cannot offer a car less than 6 A), or it is parked at 0 A with the reason.
   Sessions are admitted in order: higher priority first (priority policy), then
   sessions whose turn is not over, then parked sessions (longest parked first), then
   sessions that have charged longer than ``rotation_seconds`` (longest charging
   last). So when there is not room for everyone, the parked sessions take their turn.
3. Sharing: from the minimum up, progressive filling (max-min fairness). Equal
   share raises every admitted session together until it reaches its cap or a limit
   on its path is full; the priority policy does that class by class, highest first.
4. Unused capacity: a session whose car draws less than it was offered (by more than
   ``headroom_amps``) is capped at its draw plus the headroom, so the rest goes to
   others while the car can still ramp up; once it draws close to its cap it is
   uncapped on the next round.

Limits are A per phase. A circuit's kW limit bounds the sum of its phase currents at
the nominal voltage (P = U x sum(I), unity power factor assumed).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from voltaro.domain.authorization import tag_key
from voltaro.domain.circuits import (
    DEFAULT_VOLTAGE,
    PHASES,
    ChargerWiring,
    Circuit,
    Phase,
    ancestors,
    check_tree,
)
from voltaro.domain.site_limits import CircuitLimit

_EPS = 1e-9


class PolicyMode(StrEnum):
    EQUAL = "equal"  # everyone shares equally; priority is ignored
    PRIORITY = "priority"  # higher priority is admitted and served first


class ProfileState(StrEnum):
    """What a charger did with the last charging profile Voltaro sent it."""

    UNKNOWN = "unknown"  # nothing sent yet (assumed to obey)
    PENDING = "pending"  # sent, no answer yet
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # Rejected/NotSupported: counted at its full rating


class ParkReason(StrEnum):
    NO_CAPACITY = "no-capacity"  # the minimum does not fit next to the sessions ahead
    BLOCKED = "blocked"  # the minimum does not fit even alone (limit or reservations)
    BELOW_MINIMUM = "below-minimum"  # the charger's rating is below the minimum


class ReserveReason(StrEnum):
    OFFLINE = "offline"  # counted at its fallback limit
    REJECTS_PROFILES = "rejects-profiles"  # counted at its full rating


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    mode: PolicyMode = PolicyMode.EQUAL
    min_amps: float = 6.0
    rotation_seconds: float = 900.0
    headroom_amps: float = 2.0
    resolution_amps: float = 0.1  # limits are rounded down to this step
    voltage: float = DEFAULT_VOLTAGE


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerState:
    """``holding_amps``: the limit per phase its sessions last accepted (all connectors
    together), which it keeps applying when it loses the connection (a TxProfile lasts
    as long as its transaction, §3.13.3): an offline charger is counted at the higher of
    that and its fallback until ``lease_expires``: when the ChargePointMaxProfile lease
    it holds has fallen to the fallback on its own (and its cars have followed); at the
    fallback from then on. None: no lease known, so it keeps what it holds as long as
    its sessions run."""

    charger_id: str
    online: bool
    profiles: ProfileState = ProfileState.UNKNOWN
    holding_amps: float = 0.0
    lease_expires: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """An active session as the allocator sees it.

    ``phases_used`` None: unknown, assumed to be all the charger's phases.
    ``priority``: its charger's; ``id_tag``: the tag that started it, whose priority in
    ``Site.tag_priorities`` counts when it is higher (``session_priority``).
    ``offered_amps``: what it was offered last round (None: nothing yet). ``parked`` and
    ``since``: its state after the last round and since when (a new session: parked
    since it started, so waiting counts from plug-in).
    """

    charger_id: str
    connector_id: int
    transaction_id: int | None = None
    phases_used: int | None = None
    priority: int = 0
    id_tag: str | None = None
    draw_amps: float | None = None
    offered_amps: float | None = None
    parked: bool = True
    since: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    """``limits``: a circuit's effective limit this round (schedule, external load;
    voltaro/domain/site_limits.py) in place of its configured one."""

    circuits: tuple[Circuit, ...]
    chargers: tuple[ChargerWiring, ...]
    limits: Mapping[str, CircuitLimit] = field(default_factory=dict)
    # id tag (folded with authorization.tag_key: case-insensitive, §7.28) -> priority
    tag_priorities: Mapping[str, int] = field(default_factory=dict)

    def wiring(self, charger_id: str) -> ChargerWiring | None:
        return next((w for w in self.chargers if w.charger_id == charger_id), None)


def session_priority(site: Site, session: Session) -> tuple[int, str]:
    """A session's priority and where it comes from: the higher of its charger's and
    its id tag's (a fleet card outranks a visitor on any charger; a priority charger
    keeps its rank for any card). Ties go to the charger."""
    tagged = None if session.id_tag is None else site.tag_priorities.get(tag_key(session.id_tag))
    if tagged is not None and tagged > session.priority:
        return tagged, "tag"
    return session.priority, "charger"


def limit_of(site: Site, circuit: Circuit) -> CircuitLimit:
    """The circuit's limit in force: the effective one if given, else its own."""
    effective = site.limits.get(circuit.circuit_id)
    if effective is not None:
        return effective
    amps = circuit.limit_amps
    return CircuitLimit(amps=None if amps is None else (amps, amps, amps), kw=circuit.limit_kw)


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """One session's result: ``amps`` per phase (0 when parked), ``since`` carried to the
    next round, and for a parked session the reason and the limit that stopped it."""

    charger_id: str
    connector_id: int
    transaction_id: int | None
    amps: float
    cap_amps: float
    phases: tuple[Phase, ...]  # the site phases its current flows on
    parked: ParkReason | None
    since: datetime
    detail: str = ""
    priority: int = 0  # the one it was allocated with (session_priority)
    priority_from: str = "charger"  # or "tag"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reserve:
    charger_id: str
    amps: float
    phases: tuple[Phase, ...]
    reason: ReserveReason


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitLoad:
    """Offered plus reserved current on each phase against the circuit's limits."""

    circuit_id: str
    amps: tuple[float, float, float]  # L1, L2, L3
    limit_amps: float | None
    limit_kw: float | None
    kw: float  # the same currents at the nominal voltage
    effective: CircuitLimit | None = None  # the limit in force this round


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    grants: tuple[Grant, ...]
    reserved: tuple[Reserve, ...]
    loads: tuple[CircuitLoad, ...]
    unmanaged: tuple[tuple[str, int], ...]  # sessions on chargers on no circuit
    overloaded: tuple[str, ...]  # circuits whose reservations alone exceed a limit

    def grant(self, charger_id: str, connector_id: int) -> Grant | None:
        for grant in self.grants:
            if grant.charger_id == charger_id and grant.connector_id == connector_id:
                return grant
        return None


# A constraint: ("circuit" | "charger", id, phase), phase None for a circuit's kW limit.
Key = tuple[str, str, Phase | None]


def footprint(
    wiring: ChargerWiring,
    phases_used: int | None,
    by_id: Mapping[str, Circuit],
    limits: Mapping[str, CircuitLimit] | None = None,
) -> dict[Key, float]:
    """How much of each constraint one ampere offered to a session uses: 1 on each
    phase it draws from, on its charger and every circuit up to the root; the number
    of phases on a kW limit."""
    count = len(wiring.phases) if phases_used is None else min(phases_used, len(wiring.phases))
    phases = wiring.phases[: max(count, 1)]
    out: dict[Key, float] = {("charger", wiring.charger_id, p): 1.0 for p in phases}
    for circuit_id in ancestors(by_id, wiring.circuit_id):
        circuit = by_id[circuit_id]
        limit = (limits or {}).get(circuit_id)
        if (circuit.limit_amps if limit is None else limit.amps) is not None:
            out.update({("circuit", circuit_id, p): 1.0 for p in phases})
        if (circuit.limit_kw if limit is None else limit.kw) is not None:
            out[("circuit", circuit_id, None)] = float(len(phases))
    return out


def capacities(site: Site, voltage: float) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for circuit in site.circuits:
        limit = limit_of(site, circuit)
        if limit.amps is not None:
            out.update(
                {("circuit", circuit.circuit_id, p): limit.amps[i] for i, p in enumerate(PHASES)}
            )
        if limit.kw is not None:
            out[("circuit", circuit.circuit_id, None)] = limit.kw * 1000.0 / voltage
    for wiring in site.chargers:
        out.update({("charger", wiring.charger_id, p): wiring.max_amps for p in wiring.phases})
    return out


def describe(key: Key, capacity: Mapping[Key, float], policy: Policy) -> str:
    kind, name, phase = key
    if kind == "charger":
        return f"charger {name} rating on {phase} ({capacity[key]:g} A)"
    if phase is None:
        return f"circuit {name} power limit ({capacity[key] * policy.voltage / 1000:g} kW)"
    return f"circuit {name} {phase} ({capacity[key]:g} A)"


def _reservation(
    wiring: ChargerWiring, state: ChargerState | None, now: datetime
) -> Reserve | None:
    refuses = state is not None and state.profiles is ProfileState.REJECTED
    if (state is None or not state.online) and not refuses:
        held = 0.0 if state is None else state.holding_amps
        if state is not None and state.lease_expires is not None and now >= state.lease_expires:
            held = 0.0  # its lease ran out: the fallback caps every session (§3.13.1)
        return Reserve(
            charger_id=wiring.charger_id,
            amps=min(wiring.max_amps, max(wiring.fallback_amps, held)),
            phases=wiring.phases,
            reason=ReserveReason.OFFLINE,
        )
    if refuses:
        return Reserve(
            charger_id=wiring.charger_id,
            amps=wiring.max_amps,
            phases=wiring.phases,
            reason=ReserveReason.REJECTS_PROFILES,
        )
    return None


def _cap(session: Session, wiring: ChargerWiring, policy: Policy) -> float:
    """The most worth offering: the rating, or draw + headroom for a car that takes
    clearly less than it was offered (never below the minimum)."""
    cap = wiring.max_amps
    draw, offered = session.draw_amps, session.offered_amps
    if draw is not None and offered is not None and draw < offered - policy.headroom_amps:
        cap = min(cap, max(policy.min_amps, draw + policy.headroom_amps))
    return cap


def _admission_key(session: Session, policy: Policy, now: datetime) -> tuple[float, ...]:
    stamp = session.since.timestamp()
    if not session.parked and (now - session.since).total_seconds() < policy.rotation_seconds:
        turn = (0.0, stamp)  # its turn is not over
    elif session.parked:
        turn = (1.0, stamp)  # longest parked first
    else:
        turn = (2.0, -stamp)  # turn over: the longest charging goes last
    rank = -float(session.priority) if policy.mode is PolicyMode.PRIORITY else 0.0
    return (rank, *turn)


def _fill(
    group: Sequence[int],
    amps: list[float],
    caps: Sequence[float],
    prints: Sequence[Mapping[Key, float]],
    room: dict[Key, float],
) -> None:
    """Progressive filling: raise every session of ``group`` together until it reaches its
    cap or a constraint on its path is full. ``room`` is what is left of each constraint."""

    def open_(i: int) -> bool:
        return caps[i] - amps[i] > _EPS and all(room[k] > _EPS for k in prints[i])

    active = [i for i in group if open_(i)]
    while active:
        step = min(caps[i] - amps[i] for i in active)
        rate: dict[Key, float] = defaultdict(float)
        for i in active:
            for key, coef in prints[i].items():
                rate[key] += coef
        for key, total in rate.items():
            step = min(step, room[key] / total)
        step = max(step, 0.0)
        for i in active:
            amps[i] += step
            for key, coef in prints[i].items():
                room[key] -= coef * step
        active = [i for i in active if open_(i)]


def allocate(
    site: Site,
    chargers: Mapping[str, ChargerState],
    sessions: Iterable[Session],
    policy: Policy,
    now: datetime,
) -> Allocation:
    """Each session's limit for this round.

    Raises:
        CircuitError: the tree or a charger's wiring is not usable.
    """
    check_tree(site.circuits, site.chargers)
    by_id = {c.circuit_id: c for c in site.circuits}
    wiring_of = {w.charger_id: w for w in site.chargers}
    capacity = capacities(site, policy.voltage)
    room = dict(capacity)
    reserved: list[Reserve] = []
    for wiring in site.chargers:
        reserve = _reservation(wiring, chargers.get(wiring.charger_id), now)
        if reserve is None:
            continue
        reserved.append(reserve)
        for key, coef in footprint(wiring, None, by_id, site.limits).items():
            if key[0] == "circuit":
                room[key] -= coef * reserve.amps
    reserved_ids = {r.charger_id for r in reserved}
    free = dict(room)  # what the reservations leave, before any session
    overloaded = sorted({key[1] for key, left in room.items() if left < -_EPS})

    managed: list[Session] = []
    sources: dict[tuple[str, int], str] = {}
    unmanaged: list[tuple[str, int]] = []
    for session in sessions:
        if session.charger_id not in wiring_of:
            unmanaged.append((session.charger_id, session.connector_id))
        elif session.charger_id not in reserved_ids:
            # Its priority from here on is the higher of its charger's and its tag's.
            rank, source = session_priority(site, session)
            sources[(session.charger_id, session.connector_id)] = source
            managed.append(replace(session, priority=rank))
    managed.sort(key=lambda s: (*_admission_key(s, policy, now), s.charger_id, s.connector_id))
    prints = [
        footprint(wiring_of[s.charger_id], s.phases_used, by_id, site.limits) for s in managed
    ]
    caps = [_cap(s, wiring_of[s.charger_id], policy) for s in managed]
    amps = [0.0] * len(managed)
    parked: dict[int, tuple[ParkReason, str]] = {}
    for i, session in enumerate(managed):
        wiring = wiring_of[session.charger_id]
        if wiring.max_amps < policy.min_amps:
            parked[i] = (
                ParkReason.BELOW_MINIMUM,
                f"charger rating {wiring.max_amps:g} A is below the {policy.min_amps:g} A minimum",
            )
            continue
        short = [
            key for key, coef in prints[i].items() if room[key] - coef * policy.min_amps < -_EPS
        ]
        if short:
            key = short[0]
            why = (
                ParkReason.BLOCKED
                if free[key] - prints[i][key] * policy.min_amps < -_EPS
                else ParkReason.NO_CAPACITY
            )
            parked[i] = (why, f"{describe(key, capacity, policy)} is full")
            continue
        amps[i] = policy.min_amps
        for key, coef in prints[i].items():
            room[key] -= coef * policy.min_amps

    admitted = [i for i in range(len(managed)) if i not in parked]
    if policy.mode is PolicyMode.PRIORITY:
        levels = sorted({managed[i].priority for i in admitted}, reverse=True)
        groups = [[i for i in admitted if managed[i].priority == level] for level in levels]
    else:
        groups = [admitted]
    for group in groups:
        _fill(group, amps, caps, prints, room)

    step = policy.resolution_amps
    grants: list[Grant] = []
    for i, session in enumerate(managed):
        rounded = math.floor(amps[i] / step + 1e-6) * step if step > 0 else amps[i]
        reason: ParkReason | None = None
        detail = ""
        if i in parked:
            reason, detail = parked[i]
        is_parked = reason is not None
        grants.append(
            Grant(
                charger_id=session.charger_id,
                connector_id=session.connector_id,
                transaction_id=session.transaction_id,
                amps=round(rounded, 6),
                cap_amps=caps[i],
                phases=tuple(k[2] for k in prints[i] if k[0] == "charger" and k[2] is not None),
                parked=reason,
                since=session.since if is_parked == session.parked else now,
                detail=detail,
                priority=session.priority,
                priority_from=sources[(session.charger_id, session.connector_id)],
            )
        )
    return Allocation(
        grants=tuple(grants),
        reserved=tuple(reserved),
        loads=circuit_loads(site, grants, reserved, policy),
        unmanaged=tuple(unmanaged),
        overloaded=tuple(overloaded),
    )


def circuit_loads(
    site: Site, grants: Iterable[Grant], reserved: Iterable[Reserve], policy: Policy
) -> tuple[CircuitLoad, ...]:
    """The current each circuit may carry per phase: offered limits plus reservations."""
    by_id = {c.circuit_id: c for c in site.circuits}
    wiring_of = {w.charger_id: w for w in site.chargers}
    per_phase: dict[str, list[float]] = {c.circuit_id: [0.0, 0.0, 0.0] for c in site.circuits}
    flows = [(g.charger_id, g.phases, g.amps) for g in grants]
    flows += [(r.charger_id, r.phases, r.amps) for r in reserved]
    for charger_id, phases, amps in flows:
        for circuit_id in ancestors(by_id, wiring_of[charger_id].circuit_id):
            for phase in phases:
                per_phase[circuit_id][PHASES.index(phase)] += amps
    return tuple(
        CircuitLoad(
            circuit_id=c.circuit_id,
            amps=(
                per_phase[c.circuit_id][0],
                per_phase[c.circuit_id][1],
                per_phase[c.circuit_id][2],
            ),
            limit_amps=c.limit_amps,
            limit_kw=c.limit_kw,
            kw=sum(per_phase[c.circuit_id]) * policy.voltage / 1000.0,
            effective=limit_of(site, c),
        )
        for c in site.circuits
    )
