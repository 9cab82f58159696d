"""The load allocator on small sites one can check by hand (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from voltaro.domain.circuits import (
    ChargerWiring,
    Circuit,
    CircuitError,
    Phase,
    check_tree,
    parse_wiring,
    wiring_text,
)
from voltaro.domain.load_allocation import (
    ChargerState,
    ParkReason,
    Policy,
    PolicyMode,
    ProfileState,
    ReserveReason,
    Session,
    Site,
    allocate,
)

NOW = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)
L1, L2, L3 = Phase.L1, Phase.L2, Phase.L3


def charger(
    cid: str, circuit: str = "site", phases: tuple[Phase, ...] = (L1, L2, L3), **kw: float
) -> ChargerWiring:
    return ChargerWiring(charger_id=cid, circuit_id=circuit, phases=phases, **kw)


def online(*ids: str, profiles: ProfileState = ProfileState.ACCEPTED) -> dict[str, ChargerState]:
    return {i: ChargerState(charger_id=i, online=True, profiles=profiles) for i in ids}


def session(cid: str, connector: int = 1, **kw: object) -> Session:
    kw.setdefault("since", NOW - timedelta(seconds=10))
    return Session(charger_id=cid, connector_id=connector, **kw)  # type: ignore[arg-type]


def amps(allocation: object, cid: str, connector: int = 1) -> float:
    grant = allocation.grant(cid, connector)  # type: ignore[attr-defined]
    assert grant is not None
    return float(grant.amps)


def test_equal_share_on_one_circuit_rounds_down() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=32),),
        chargers=(charger("A"), charger("B"), charger("C")),
    )
    result = allocate(
        site, online("A", "B", "C"), [session("A"), session("B"), session("C")], Policy(), NOW
    )
    assert [g.amps for g in result.grants] == [10.6, 10.6, 10.6]  # 32 / 3, rounded down
    assert result.loads[0].amps == pytest.approx((31.8, 31.8, 31.8))


def test_sessions_that_do_not_get_the_minimum_are_parked_with_the_reason() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=16),),
        chargers=(charger("A"), charger("B"), charger("C")),
    )
    result = allocate(
        site,
        online("A", "B", "C"),
        [
            session("A", since=NOW - timedelta(seconds=30)),
            session("B", since=NOW - timedelta(seconds=20)),
            session("C", since=NOW - timedelta(seconds=10)),
        ],
        Policy(),
        NOW,
    )
    # Two minimums (12 A) fit, three (18 A) do not: the longest waiting go first.
    assert (amps(result, "A"), amps(result, "B"), amps(result, "C")) == (8.0, 8.0, 0.0)
    parked = result.grant("C", 1)
    assert parked is not None
    assert parked.parked is ParkReason.NO_CAPACITY
    assert parked.detail == "circuit site L1 (16 A) is full"


def test_phase_rotation_spreads_single_phase_chargers() -> None:
    rotated = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=16),),
        chargers=(
            charger("A", phases=(L1,)),
            charger("B", phases=(L2,)),
            charger("C", phases=(L3,)),
        ),
    )
    sessions = [session("A"), session("B"), session("C")]
    result = allocate(rotated, online("A", "B", "C"), sessions, Policy(), NOW)
    assert [g.amps for g in result.grants] == [16.0, 16.0, 16.0]
    assert result.loads[0].amps == (16.0, 16.0, 16.0)

    same_phase = Site(
        circuits=rotated.circuits,
        chargers=(
            charger("A", phases=(L2,)),
            charger("B", phases=(L2,)),
            charger("C", phases=(L2,)),
        ),
    )
    result = allocate(same_phase, online("A", "B", "C"), sessions, Policy(), NOW)
    assert sorted(g.amps for g in result.grants) == [0.0, 8.0, 8.0]
    assert result.loads[0].amps == (0.0, 16.0, 0.0)


def test_a_single_phase_car_on_a_rotated_three_phase_charger_loads_the_charger_l1() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=20),),
        chargers=(charger("A", phases=(L3, L1, L2)), charger("B", phases=(L1, L2, L3))),
    )
    sessions = [session("A", phases_used=1), session("B", phases_used=2)]
    result = allocate(site, online("A", "B"), sessions, Policy(), NOW)
    # A draws from site L3 only, B from L1 and L2: nobody shares a phase.
    assert amps(result, "A") == 20.0
    assert amps(result, "B") == 20.0
    assert result.loads[0].amps == (20.0, 20.0, 20.0)
    # A three-phase car on B shares site L3 with A.
    result = allocate(site, online("A", "B"), [sessions[0], session("B")], Policy(), NOW)
    assert amps(result, "A") == 10.0
    assert amps(result, "B") == 10.0


def test_every_limit_on_the_way_to_the_root_applies() -> None:
    site = Site(
        circuits=(
            Circuit(circuit_id="site", limit_amps=40),
            Circuit(circuit_id="feeder-a", parent="site", limit_amps=20),
            Circuit(circuit_id="feeder-b", parent="site", limit_amps=63),  # above its parent
        ),
        chargers=(charger("A1", "feeder-a"), charger("A2", "feeder-a"), charger("B1", "feeder-b")),
    )
    result = allocate(
        site,
        online("A1", "A2", "B1"),
        [session("A1"), session("A2"), session("B1")],
        Policy(),
        NOW,
    )
    assert (amps(result, "A1"), amps(result, "A2"), amps(result, "B1")) == (10.0, 10.0, 20.0)


def test_an_offline_charger_counts_at_its_fallback_and_a_rejecter_at_its_rating() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=63),),
        chargers=(
            charger("OFF", fallback_amps=10),
            charger("NO", max_amps=16),
            charger("A"),
        ),
    )
    states = online("A") | online("NO", profiles=ProfileState.REJECTED)
    result = allocate(site, states, [session("A"), session("NO")], Policy(), NOW)
    reasons = {r.charger_id: (r.reason, r.amps) for r in result.reserved}
    assert reasons == {
        "OFF": (ReserveReason.OFFLINE, 10.0),
        "NO": (ReserveReason.REJECTS_PROFILES, 16.0),
    }
    assert amps(result, "A") == 32.0  # 63 - 10 - 16 = 37 left, A is rated 32
    assert result.grant("NO", 1) is None  # not managed: it would not follow a limit


def test_reservations_that_fill_a_circuit_block_sessions_and_flag_it() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=16),),
        chargers=(
            charger("OFF1", fallback_amps=10),
            charger("OFF2", fallback_amps=10),
            charger("A"),
        ),
    )
    result = allocate(site, online("A"), [session("A")], Policy(), NOW)
    grant = result.grant("A", 1)
    assert grant is not None
    assert grant.parked is ParkReason.BLOCKED
    assert grant.amps == 0
    assert result.overloaded == ("site",)


def test_a_car_that_draws_less_frees_the_rest_with_headroom() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=32),),
        chargers=(charger("A"), charger("B")),
    )
    slow = session("A", draw_amps=8.0, offered_amps=16.0, parked=False)
    result = allocate(site, online("A", "B"), [slow, session("B")], Policy(), NOW)
    assert (amps(result, "A"), amps(result, "B")) == (10.0, 22.0)  # 8 + 2 headroom

    # It ramps up to its cap: no longer car-limited, it gets its share back.
    ramped = session("A", draw_amps=9.5, offered_amps=10.0, parked=False)
    result = allocate(site, online("A", "B"), [ramped, session("B")], Policy(), NOW)
    assert (amps(result, "A"), amps(result, "B")) == (16.0, 16.0)


def test_priority_policy_serves_higher_priority_first() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=20),),
        chargers=(charger("FLEET"), charger("GUEST")),
    )
    sessions = [session("FLEET", priority=1), session("GUEST")]
    result = allocate(
        site, online("FLEET", "GUEST"), sessions, Policy(mode=PolicyMode.PRIORITY), NOW
    )
    assert (amps(result, "FLEET"), amps(result, "GUEST")) == (14.0, 6.0)
    result = allocate(site, online("FLEET", "GUEST"), sessions, Policy(mode=PolicyMode.EQUAL), NOW)
    assert (amps(result, "FLEET"), amps(result, "GUEST")) == (10.0, 10.0)


def test_parked_sessions_take_their_turn_after_the_rotation_period() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=10),),
        chargers=(charger("A"), charger("B")),
    )
    t0 = NOW - timedelta(seconds=100)
    sessions = [
        session("A", parked=False, since=t0, offered_amps=10.0),
        session("B", parked=True, since=t0),
    ]
    policy = Policy(rotation_seconds=900)
    early = allocate(site, online("A", "B"), sessions, policy, NOW)
    assert (amps(early, "A"), amps(early, "B")) == (10.0, 0.0)  # A's turn is not over
    late = allocate(site, online("A", "B"), sessions, policy, t0 + timedelta(seconds=900))
    assert (amps(late, "A"), amps(late, "B")) == (0.0, 10.0)
    swapped = late.grant("A", 1)
    assert swapped is not None
    assert swapped.since == t0 + timedelta(seconds=900)


def test_a_kw_limit_bounds_the_sum_of_phase_currents() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_kw=11.0),),
        chargers=(charger("A"), charger("B", phases=(L2,))),
    )
    result = allocate(site, online("A", "B"), [session("A"), session("B")], Policy(), NOW)
    # 11 kW / 230 V = 47.8 A over all phases: 4 shares of 11.95 A.
    assert (amps(result, "A"), amps(result, "B")) == (11.9, 11.9)
    assert result.loads[0].kw <= 11.0


def test_sessions_on_chargers_on_no_circuit_are_listed_as_unmanaged() -> None:
    site = Site(circuits=(Circuit(circuit_id="site", limit_amps=16),), chargers=(charger("A"),))
    result = allocate(site, online("A", "X"), [session("A"), session("X")], Policy(), NOW)
    assert result.unmanaged == (("X", 1),)


def test_two_connectors_share_their_charger_rating() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=100),),
        chargers=(charger("A", max_amps=32),),
    )
    result = allocate(site, online("A"), [session("A", 1), session("A", 2)], Policy(), NOW)
    assert (amps(result, "A", 1), amps(result, "A", 2)) == (16.0, 16.0)


@pytest.mark.parametrize(
    ("text", "wired"),
    [
        ("L1=L2,L2=L3,L3=L1", (L2, L3, L1)),
        ("l1=l3", (L3,)),
        ("L2=L1, L1=L3", (L3, L1)),
    ],
)
def test_phase_wiring_parses(text: str, wired: tuple[Phase, ...]) -> None:
    assert parse_wiring(text) == wired
    assert parse_wiring(wiring_text(wired)) == wired


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("L1=L1,L2=L1", "same site phase"),
        ("L2=L1", "from L1 up"),
        ("L1", "must look like L1=L2"),
        ("L1=L4", "not L1, L2 or L3"),
        ("", "empty"),
    ],
)
def test_bad_phase_wiring_says_why(text: str, message: str) -> None:
    with pytest.raises(CircuitError, match=message):
        parse_wiring(text)


def test_a_tree_with_a_cycle_or_an_unknown_parent_is_refused() -> None:
    with pytest.raises(CircuitError, match="cycle: a -> b -> a"):
        check_tree(
            [
                Circuit(circuit_id="a", parent="b", limit_amps=10),
                Circuit(circuit_id="b", parent="a", limit_amps=10),
            ]
        )
    with pytest.raises(CircuitError, match="parent nowhere is not a circuit"):
        check_tree([Circuit(circuit_id="a", parent="nowhere", limit_amps=10)])
    with pytest.raises(CircuitError, match="needs a limit"):
        check_tree([Circuit(circuit_id="a")])
    with pytest.raises(CircuitError, match="circuit b is not a circuit"):
        check_tree([Circuit(circuit_id="a", limit_amps=1)], [charger("X", "b")])


def test_an_offline_charger_holding_a_higher_limit_is_counted_at_it() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=40),),
        chargers=(charger("OFF", fallback_amps=6, max_amps=32), charger("A")),
    )
    # Its session accepted 20 A before the connection dropped: it keeps drawing that.
    states = online("A") | {"OFF": ChargerState(charger_id="OFF", online=False, holding_amps=20)}
    result = allocate(site, states, [session("A")], Policy(), NOW)
    assert [(r.charger_id, r.amps) for r in result.reserved] == [("OFF", 20.0)]
    assert amps(result, "A") == 20.0


def test_an_offline_charger_is_counted_at_its_holding_until_its_lease_runs_out() -> None:
    """The leased ChargePointMaxProfile (§3.13.1): until the lease runs out the charger
    may apply what its sessions last accepted; from then on it holds itself to the
    fallback, so it is counted there and the rest goes to the others."""
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=40),),
        chargers=(charger("OFF", fallback_amps=6, max_amps=32), charger("A")),
    )
    expires = NOW + timedelta(seconds=30)

    def offline_at(moment: datetime) -> tuple[float, float]:
        state = ChargerState(charger_id="OFF", online=False, holding_amps=20, lease_expires=expires)
        result = allocate(site, online("A") | {"OFF": state}, [session("A")], Policy(), moment)
        (reserve,) = result.reserved
        assert reserve.reason is ReserveReason.OFFLINE
        return reserve.amps, amps(result, "A")

    assert offline_at(NOW) == (20.0, 20.0)
    assert offline_at(expires - timedelta(milliseconds=1)) == (20.0, 20.0)
    assert offline_at(expires) == (6.0, 32.0)  # 40 - 6 = 34, A is rated 32
    assert offline_at(expires + timedelta(hours=5)) == (6.0, 32.0)
    # Holding less than the fallback: the fallback either way.
    low = ChargerState(charger_id="OFF", online=False, holding_amps=4, lease_expires=expires)
    result = allocate(site, online("A") | {"OFF": low}, [session("A")], Policy(), NOW)
    assert [r.amps for r in result.reserved] == [6.0]


def test_without_a_lease_an_offline_charger_keeps_what_it_holds() -> None:
    """No lease accepted (never sent, or the charger dropped before answering): its
    TxProfiles stay in force as long as their transactions (§3.13.3)."""
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=40),),
        chargers=(charger("OFF", fallback_amps=6, max_amps=32), charger("A")),
    )
    state = ChargerState(charger_id="OFF", online=False, holding_amps=20)
    later = NOW + timedelta(days=1)
    result = allocate(site, online("A") | {"OFF": state}, [session("A")], Policy(), later)
    assert [r.amps for r in result.reserved] == [20.0]


def test_an_offline_charger_that_refuses_profiles_is_counted_at_its_rating() -> None:
    """It refused its lease (or any profile): it has no fallback to fall to."""
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=63),),
        chargers=(charger("NO", fallback_amps=6, max_amps=16), charger("A")),
    )
    state = ChargerState(
        charger_id="NO",
        online=False,
        profiles=ProfileState.REJECTED,
        lease_expires=NOW - timedelta(hours=1),
    )
    result = allocate(site, online("A") | {"NO": state}, [session("A")], Policy(), NOW)
    assert [(r.reason, r.amps) for r in result.reserved] == [(ReserveReason.REJECTS_PROFILES, 16.0)]


def test_a_tags_priority_counts_when_it_is_higher_than_the_chargers() -> None:
    site = Site(
        circuits=(Circuit(circuit_id="site", limit_amps=14),),
        chargers=(charger("A", priority=1), charger("B"), charger("C")),
        tag_priorities={"FLEET-1": 2, "VISITOR": 0},
    )
    sessions = [
        # Session.priority is its charger's (the load manager fills it in).
        session("A", transaction_id=1, priority=1, id_tag="visitor"),  # charger 1 > tag 0
        session("B", transaction_id=2, id_tag="fleet-1"),  # tag 2 (any case) beats charger 0
        session("C", transaction_id=3, id_tag="unknown"),  # no tag priority: charger 0
    ]
    result = allocate(site, online("A", "B", "C"), sessions, Policy(mode=PolicyMode.PRIORITY), NOW)
    got = {g.charger_id: (g.priority, g.priority_from, g.amps) for g in result.grants}
    # 14 A: B (2) and A (1) get their minimum, C (0) does not fit and is parked; the
    # rest goes to B first.
    assert got == {"B": (2, "tag", 8.0), "A": (1, "charger", 6.0), "C": (0, "charger", 0.0)}
    # The equal policy ignores priority: the first two by arrival, 7 A each.
    equal = allocate(site, online("A", "B", "C"), sessions, Policy(), NOW)
    assert {g.charger_id: g.amps for g in equal.grants} == {"A": 7.0, "B": 7.0, "C": 0.0}
