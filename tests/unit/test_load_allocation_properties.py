"""Property tests of the load allocator over random sites (issue 17).

Random circuit trees (children's limits sometimes above their parent's, A and/or kW
limits), random phase wirings (single-, two- and three-phase chargers, rotated),
chargers online, offline or rejecting profiles, and sessions with random phase use,
priority, draw and history. Whatever the site:

- no limit (circuit per phase, circuit kW, charger rating) is exceeded by the offered
  limits plus what non-obeying chargers may draw (offline: fallback; rejecting: rating),
  (offline: the higher of its fallback and what it last accepted) except on a circuit
  the reservations alone overload, where nothing is offered;
- every managed session gets at least the minimum or is parked at 0 A, and is parked
  only when its minimum does not fit next to the admitted sessions of its priority or
  higher;
- capacity is not wasted: a session below its cap meets a full limit on its path,
  where (equal share) nobody gets more than it, or (priority) every lower-priority
  session has only the minimum;
- parked sessions rotate: over as many rounds as there are sessions, every session
  that can fit at all gets a turn.

Sessions carry id tags, some of which have a priority: a session's priority is the
higher of its charger's and its tag's (case-insensitive), checked on every grant.

Sites come with and without effective limits (a schedule entry in force and the
building's other load per phase, voltaro/domain/site_limits.py): the limits checked are
then the effective ones (min(configured, schedule) minus the other load, per phase).

The checks walk the tree themselves; they do not reuse the allocator's bookkeeping.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from voltaro.domain.authorization import tag_key
from voltaro.domain.circuits import PHASES, ChargerWiring, Circuit, Phase
from voltaro.domain.load_allocation import (
    Allocation,
    ChargerState,
    ParkReason,
    Policy,
    PolicyMode,
    ProfileState,
    Session,
    Site,
    allocate,
)
from voltaro.domain.site_limits import ExternalLoad, ScheduleEntry, effective_limits

NOW = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)
TOL = 1e-6
TAGS = ["t0", "t1", "fleet-2"]


def rank(site: Site, s: Session) -> int:
    """A session's priority, worked out here: the higher of its charger's and its tag's."""
    if s.id_tag is None:
        return s.priority
    return max(s.priority, site.tag_priorities.get(s.id_tag.upper(), s.priority))


@st.composite
def sites(draw: st.DrawFn) -> Site:
    count = draw(st.integers(1, 5))
    circuits = []
    for i in range(count):
        parent = None if i == 0 else f"c{draw(st.integers(0, i - 1))}"
        amps = draw(st.one_of(st.none(), st.integers(0, 100).map(float)))
        kw = draw(st.one_of(st.none(), st.integers(0, 60).map(float)))
        if amps is None and kw is None:
            amps = float(draw(st.integers(0, 100)))
        circuits.append(Circuit(circuit_id=f"c{i}", parent=parent, limit_amps=amps, limit_kw=kw))
    chargers = []
    for j in range(draw(st.integers(1, 8))):
        width = draw(st.sampled_from([1, 1, 2, 3, 3]))
        phases = tuple(draw(st.permutations(PHASES))[:width])
        rating = float(draw(st.integers(4, 40)))
        chargers.append(
            ChargerWiring(
                charger_id=f"k{j}",
                circuit_id=f"c{draw(st.integers(0, count - 1))}",
                phases=phases,
                max_amps=rating,
                fallback_amps=float(draw(st.integers(0, int(rating)))),
            )
        )
    if not draw(st.booleans()):
        return Site(circuits=tuple(circuits), chargers=tuple(chargers))
    # Effective limits: some circuits with a schedule entry in force, some with the
    # building's other load per phase (fresh or stale, with a fallback).
    schedule = []
    pushed = {}
    for c in circuits:
        if draw(st.booleans()):
            schedule.append(
                ScheduleEntry(
                    circuit_id=c.circuit_id,
                    days=frozenset(range(7)),
                    start=time(0),
                    end=time(0),
                    limit_amps=float(draw(st.integers(0, 100))),
                )
            )
        if draw(st.booleans()):
            other = draw(st.tuples(*[st.integers(0, 80).map(float)] * 3))
            age = draw(st.sampled_from([-60, 60]))
            pushed[c.circuit_id] = ExternalLoad(
                circuit_id=c.circuit_id,
                amps=other,
                at=NOW - timedelta(seconds=120),
                valid_until=NOW + timedelta(seconds=age),
            )
    limits = effective_limits(
        circuits,
        schedule=schedule,
        pushed=pushed,
        fallback_amps=float(draw(st.integers(0, 40))),
        voltage=230.0,
        now=NOW,
        local=NOW,
    )
    return Site(
        circuits=tuple(circuits),
        chargers=tuple(chargers),
        limits={k: v.limit for k, v in limits.items()},
    )


@st.composite
def scenarios(
    draw: st.DrawFn, *, all_online: bool = False
) -> tuple[Site, dict[str, ChargerState], list[Session], Policy]:
    site = draw(sites())
    # Some id tags carry a priority (stored folded, looked up case-insensitively).
    site = replace(
        site,
        tag_priorities={
            tag_key(t): p
            for t, p in draw(st.dictionaries(st.sampled_from(TAGS), st.integers(0, 3))).items()
        },
    )
    states = {}
    for wiring in site.chargers:
        state = ChargerState(
            charger_id=wiring.charger_id,
            online=True if all_online else draw(st.booleans()),
            profiles=ProfileState.ACCEPTED
            if all_online
            else draw(st.sampled_from(list(ProfileState))),
            holding_amps=float(draw(st.integers(0, 40))),
            # No lease, one still running, or one that ran out (then: the fallback).
            lease_expires=draw(
                st.one_of(
                    st.none(), st.integers(-600, 600).map(lambda s: NOW + timedelta(seconds=s))
                )
            ),
        )
        states[wiring.charger_id] = state
    sessions = []
    for wiring in site.chargers:
        for connector in range(1, draw(st.integers(0, 2)) + 1):
            offered = draw(st.one_of(st.none(), st.integers(0, 40).map(float)))
            sessions.append(
                Session(
                    charger_id=wiring.charger_id,
                    connector_id=connector,
                    phases_used=draw(st.sampled_from([None, 1, 2, 3])),
                    priority=0 if all_online else draw(st.integers(0, 2)),
                    id_tag=None if all_online else draw(st.sampled_from([None, *TAGS, "T1"])),
                    draw_amps=draw(st.one_of(st.none(), st.integers(0, 40).map(float))),
                    offered_amps=offered,
                    parked=draw(st.booleans()),
                    since=NOW - timedelta(seconds=draw(st.integers(0, 3000))),
                )
            )
    policy = Policy(
        mode=draw(st.sampled_from(list(PolicyMode))),
        min_amps=float(draw(st.sampled_from([6, 6, 8]))),
        headroom_amps=float(draw(st.integers(1, 4))),
        rotation_seconds=600.0,
    )
    return site, states, sessions, policy


class Checker:
    """The site's constraints, computed independently of the allocator."""

    def __init__(self, site: Site, policy: Policy) -> None:
        self.site = site
        self.policy = policy
        self.circuits = {c.circuit_id: c for c in site.circuits}
        self.wiring = {w.charger_id: w for w in site.chargers}
        self.capacity: dict[tuple[str, object], float] = {}
        for c in site.circuits:
            effective = site.limits.get(c.circuit_id)
            if effective is None:
                amps = None if c.limit_amps is None else (c.limit_amps,) * 3
                kw = c.limit_kw
            else:
                amps, kw = effective.amps, effective.kw
            if amps is not None:
                for i, p in enumerate(PHASES):
                    self.capacity[(c.circuit_id, p)] = amps[i]
            if kw is not None:
                self.capacity[(c.circuit_id, "kW")] = kw * 1000 / policy.voltage
        for w in site.chargers:
            for p in w.phases:
                self.capacity[("charger " + w.charger_id, p)] = w.max_amps

    def path(self, charger_id: str) -> list[str]:
        out, current = [], self.wiring[charger_id].circuit_id
        while current is not None:
            out.append(current)
            current = self.circuits[current].parent
        return out

    def usage(self, charger_id: str, phases_used: int | None) -> dict[tuple[str, object], float]:
        """Constraint -> amperes used per ampere offered."""
        wired = self.wiring[charger_id].phases
        phases: tuple[Phase, ...] = wired[: min(phases_used or 3, len(wired))]
        out: dict[tuple[str, object], float] = {}
        for p in phases:
            out[("charger " + charger_id, p)] = 1.0
        for circuit in self.path(charger_id):
            for p in phases:
                out[(circuit, p)] = 1.0
            out[(circuit, "kW")] = float(len(phases))
        return {k: v for k, v in out.items() if k in self.capacity}

    def reserved(self, states: dict[str, ChargerState]) -> dict[tuple[str, object], float]:
        out: dict[tuple[str, object], float] = defaultdict(float)
        for w in self.site.chargers:
            state = states.get(w.charger_id)
            if state and state.profiles is ProfileState.REJECTED:
                amps = w.max_amps  # online or not: it follows no limit
            elif not state or not state.online:
                held = state.holding_amps if state else 0.0
                if state and state.lease_expires is not None and state.lease_expires <= NOW:
                    held = 0.0  # the lease ran out: the charger holds itself to the fallback
                amps = min(w.max_amps, max(w.fallback_amps, held))
            else:
                continue
            for key, coef in self.usage(w.charger_id, None).items():
                if not key[0].startswith("charger "):
                    out[key] += coef * amps
        return out


def managed(site: Site, states: dict[str, ChargerState], sessions: list[Session]) -> list[Session]:
    obeying = {
        cid for cid, s in states.items() if s.online and s.profiles is not ProfileState.REJECTED
    }
    wired = {w.charger_id for w in site.chargers}
    return [s for s in sessions if s.charger_id in obeying and s.charger_id in wired]


def offered_load(
    checker: Checker, sessions: list[Session], result: Allocation
) -> dict[tuple[str, object], float]:
    load: dict[tuple[str, object], float] = defaultdict(float)
    for s in sessions:
        grant = result.grant(s.charger_id, s.connector_id)
        assert grant is not None
        for key, coef in checker.usage(s.charger_id, s.phases_used).items():
            load[key] += coef * grant.amps
    return load


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_no_limit_is_exceeded_and_everyone_gets_the_minimum_or_is_parked(
    scenario: tuple[Site, dict[str, ChargerState], list[Session], Policy],
) -> None:
    site, states, sessions, policy = scenario
    result = allocate(site, states, sessions, policy, NOW)
    checker = Checker(site, policy)
    mine = managed(site, states, sessions)
    assert {(g.charger_id, g.connector_id) for g in result.grants} == {
        (s.charger_id, s.connector_id) for s in mine
    }
    reserved = checker.reserved(states)
    load = offered_load(checker, mine, result)
    for key, capacity in checker.capacity.items():
        if reserved[key] > capacity + TOL:
            assert load[key] == 0, f"{key} is overloaded by reservations yet offered {load[key]}"
            assert key[0] in result.overloaded
        else:
            assert load[key] + reserved[key] <= capacity + TOL, key
    by_key = {(s.charger_id, s.connector_id): s for s in mine}
    for g in result.grants:
        expected = rank(site, by_key[(g.charger_id, g.connector_id)])
        assert g.priority == expected
        assert g.priority_from == (
            "tag" if expected > by_key[(g.charger_id, g.connector_id)].priority else "charger"
        )
        if g.parked is None:
            assert g.amps >= policy.min_amps - TOL
            assert g.amps <= g.cap_amps + TOL
        else:
            assert g.amps == 0
            assert g.detail


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_parking_only_when_needed_and_capacity_is_not_wasted(
    scenario: tuple[Site, dict[str, ChargerState], list[Session], Policy],
) -> None:
    site, states, sessions, policy = scenario
    result = allocate(site, states, sessions, policy, NOW)
    checker = Checker(site, policy)
    mine = managed(site, states, sessions)
    reserved = checker.reserved(states)
    load = offered_load(checker, mine, result)
    grant = {
        (s.charger_id, s.connector_id): result.grant(s.charger_id, s.connector_id) for s in mine
    }
    prio = policy.mode is PolicyMode.PRIORITY
    for s in mine:
        g = grant[(s.charger_id, s.connector_id)]
        assert g is not None
        usage = checker.usage(s.charger_id, s.phases_used)
        if g.parked in (ParkReason.NO_CAPACITY, ParkReason.BLOCKED):
            # Its minimum did not fit next to the admitted sessions' minimums (of its
            # priority or higher under the priority policy).
            ahead: dict[tuple[str, object], float] = defaultdict(float)
            for other in mine:
                og = grant[(other.charger_id, other.connector_id)]
                assert og is not None
                if og.parked is None and (not prio or rank(site, other) >= rank(site, s)):
                    for key, coef in checker.usage(other.charger_id, other.phases_used).items():
                        ahead[key] += coef * policy.min_amps
            assert any(
                reserved[k] + ahead[k] + coef * policy.min_amps > checker.capacity[k] + TOL
                for k, coef in usage.items()
            ), f"{s} parked although its minimum fits"
        elif g.parked is ParkReason.BELOW_MINIMUM:
            assert checker.wiring[s.charger_id].max_amps < policy.min_amps
        elif g.amps < g.cap_amps - policy.resolution_amps - TOL:
            # Below its cap: a limit on its path is full (rounding down leaves at most
            # one step per session on it).
            def full(key: tuple[str, object]) -> bool:
                sharing = sum(
                    checker.usage(o.charger_id, o.phases_used).get(key, 0.0) for o in mine
                )
                slack = checker.capacity[key] - reserved[key] - load[key]
                return slack <= policy.resolution_amps * sharing + TOL

            def others_on(key: tuple[str, object]) -> list[tuple[Session, float]]:
                out = []
                for o in mine:
                    og = grant[(o.charger_id, o.connector_id)]
                    assert og is not None
                    if key in checker.usage(o.charger_id, o.phases_used) and og.parked is None:
                        out.append((o, og.amps))
                return out

            bottlenecks = [k for k in usage if full(k)]
            assert bottlenecks, f"{s} gets {g.amps} A below its cap {g.cap_amps} with room left"
            if prio:
                assert any(
                    all(
                        amps <= policy.min_amps + TOL
                        for o, amps in others_on(k)
                        if rank(site, o) < rank(site, s)
                    )
                    for k in bottlenecks
                ), f"a lower-priority session got more than the minimum ahead of {s}"
            else:
                assert any(
                    all(amps <= g.amps + policy.resolution_amps + TOL for _, amps in others_on(k))
                    for k in bottlenecks
                ), f"{s} is not the best served on any of its full limits"


@settings(max_examples=150, deadline=None)
@given(scenarios(all_online=True))
def test_parked_sessions_rotate_without_starvation(
    scenario: tuple[Site, dict[str, ChargerState], list[Session], Policy],
) -> None:
    site, states, sessions, policy = scenario
    now = NOW
    served: set[tuple[str, int]] = set()
    never_fits: set[tuple[str, int]] = set()
    current = sessions
    for _ in range(len(sessions) + 1):
        now += timedelta(seconds=policy.rotation_seconds)
        result = allocate(site, states, current, policy, now)
        following = []
        for s in current:
            g = result.grant(s.charger_id, s.connector_id)
            assert g is not None
            key = (s.charger_id, s.connector_id)
            if g.parked is None:
                served.add(key)
            elif g.parked is not ParkReason.NO_CAPACITY:
                never_fits.add(key)
            following.append(
                Session(
                    charger_id=s.charger_id,
                    connector_id=s.connector_id,
                    phases_used=s.phases_used,
                    offered_amps=g.amps,
                    parked=g.parked is not None,
                    since=g.since,
                )
            )
        current = following
    starved = {(s.charger_id, s.connector_id) for s in sessions} - served - never_fits
    assert not starved
