"""The simulator's charging-profile rules (scripts/charging_schedule.py, OCPP 1.6 §3.13):
stack levels, purposes, Absolute/Recurring/Relative, validFrom/validTo, A and W with the
number of phases, and the composite schedule GetCompositeSchedule answers (§5.7)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scripts.charging_schedule import (
    Installed,
    Period,
    composite,
    limit_at,
    parse_time,
)

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # a Monday
HW = 22080.0  # 32 A x 3 x 230 V


def profile(
    purpose: str,
    periods: list[tuple[int, float]] | list[tuple[int, float, int]],
    *,
    pid: int = 1,
    level: int = 0,
    kind: str = "Absolute",
    unit: str = "W",
    start: datetime | None = T0,
    duration: int | None = None,
    recurrency: str | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    connector: int = 0,
    received: datetime = T0,
) -> Installed:
    schedule: dict[str, Any] = {
        "charging_rate_unit": unit,
        "charging_schedule_period": [
            {"start_period": p[0], "limit": p[1], **({"number_phases": p[2]} if len(p) > 2 else {})}
            for p in periods
        ],
    }
    if start is not None:
        schedule["start_schedule"] = start.isoformat().replace("+00:00", "Z")
    if duration is not None:
        schedule["duration"] = duration
    body: dict[str, Any] = {
        "charging_profile_id": pid,
        "stack_level": level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "charging_schedule": schedule,
    }
    if recurrency:
        body["recurrency_kind"] = recurrency
    if valid_from:
        body["valid_from"] = valid_from.isoformat()
    if valid_to:
        body["valid_to"] = valid_to.isoformat()
    return Installed(connector_id=connector, profile=body, received=received)


def watts(profiles: list[Installed], connector: int, t: datetime, **kw: Any) -> float:
    return limit_at(profiles, connector, t, max_watts=HW, **kw).watts


def test_no_profile_is_the_hardware_limit() -> None:
    assert watts([], 1, T0) == HW
    assert composite([], 1, T0, 60, "W", max_watts=HW) == [Period(0, HW, 3)]


def test_charge_point_max_caps_tx_default_and_tx_profile_overrides_default() -> None:
    cap = profile("ChargePointMaxProfile", [(0, 11000)], pid=1)
    default = profile("TxDefaultProfile", [(0, 16, 3)], pid=2, unit="A")  # 11040 W
    assert watts([cap, default], 1, T0) == 11000  # the cap is lower
    tx = profile("TxProfile", [(0, 6, 1)], pid=3, unit="A", connector=1)  # 1380 W
    assert watts([cap, default, tx], 1, T0) == 6 * 230
    assert watts([cap, default, tx], 2, T0) == 11000  # connector 2 has no TxProfile
    # Connector 0: the whole charger, i.e. the ChargePointMaxProfile.
    assert watts([cap, default, tx], 0, T0) == 11000


def test_connector_default_overrides_the_chargers_default() -> None:
    everywhere = profile("TxDefaultProfile", [(0, 7000)], pid=1)
    here = profile("TxDefaultProfile", [(0, 9000)], pid=2, connector=2)
    assert watts([everywhere, here], 1, T0) == 7000
    assert watts([everywhere, here], 2, T0) == 9000


def test_highest_stack_level_wins_until_its_schedule_ends() -> None:
    low = profile("TxDefaultProfile", [(0, 5000)], pid=1, level=0)
    high = profile("TxDefaultProfile", [(0, 9000), (600, 3000)], pid=2, level=3, duration=1200)
    both = [low, high]
    assert watts(both, 1, T0) == 9000
    assert watts(both, 1, T0 + timedelta(seconds=600)) == 3000
    assert watts(both, 1, T0 + timedelta(seconds=1200)) == 5000  # high ran out
    assert composite(both, 1, T0, 1800, "W", max_watts=HW) == [
        Period(0, 9000, 3),
        Period(600, 3000, 3),
        Period(1200, 5000, 3),
    ]


def test_valid_from_and_valid_to() -> None:
    later = profile(
        "ChargePointMaxProfile",
        [(0, 4000)],
        valid_from=T0 + timedelta(minutes=10),
        valid_to=T0 + timedelta(minutes=20),
    )
    assert watts([later], 1, T0) == HW
    assert watts([later], 1, T0 + timedelta(minutes=10)) == 4000
    assert watts([later], 1, T0 + timedelta(minutes=20)) == HW
    assert composite([later], 1, T0, 3600, "W", max_watts=HW) == [
        Period(0, HW, 3),
        Period(600, 4000, 3),
        Period(1200, HW, 3),
    ]


def test_relative_runs_from_the_transaction_start() -> None:
    relative = profile(
        "TxDefaultProfile", [(0, 10, 3), (300, 6, 3)], kind="Relative", unit="A", start=None
    )
    started = T0 - timedelta(seconds=200)
    assert watts([relative], 1, T0, tx_start=started) == 10 * 230 * 3
    assert watts([relative], 1, T0 + timedelta(seconds=100), tx_start=started) == 6 * 230 * 3
    assert watts([relative], 1, T0) == HW  # no transaction: not started
    # The composite without a transaction: as if one started at the window's start.
    assert composite([relative], 1, T0, 600, "A", max_watts=HW) == [
        Period(0, 10, 3),
        Period(300, 6, 3),
    ]


def test_daily_recurring_repeats_every_day() -> None:
    midnight = datetime(2026, 1, 1, tzinfo=UTC)
    # 06:00-22:00 11 kW, the rest of the day 22 kW, every day.
    daily = profile(
        "ChargePointMaxProfile",
        [(0, 22000), (6 * 3600, 11000), (22 * 3600, 22000)],
        kind="Recurring",
        recurrency="Daily",
        start=midnight,
    )
    assert watts([daily], 1, datetime(2026, 1, 9, 5, 59, tzinfo=UTC)) == 22000
    assert watts([daily], 1, datetime(2026, 1, 9, 6, 0, tzinfo=UTC)) == 11000
    assert watts([daily], 1, datetime(2026, 1, 9, 23, 0, tzinfo=UTC)) == 22000
    window = composite(
        [daily], 1, datetime(2026, 1, 9, 21, 0, tzinfo=UTC), 10 * 3600, "W", max_watts=HW
    )
    assert window == [Period(0, 11000, 3), Period(3600, 22000, 3), Period(9 * 3600, 11000, 3)]


def test_weekly_recurring_and_before_its_start() -> None:
    weekly = profile(
        "ChargePointMaxProfile",
        [(0, 3000), (86400, 9000)],
        kind="Recurring",
        recurrency="Weekly",
        start=T0,  # Monday 08:00: 3 kW for a day, then 9 kW the rest of the week
    )
    assert watts([weekly], 1, T0 + timedelta(days=7, hours=1)) == 3000
    assert watts([weekly], 1, T0 + timedelta(days=9)) == 9000
    assert watts([weekly], 1, T0 - timedelta(hours=1)) == HW  # not started yet


def test_amps_and_watts_with_the_number_of_phases() -> None:
    one_phase = profile("TxDefaultProfile", [(0, 16, 1)], unit="A")
    assert watts([one_phase], 1, T0) == 16 * 230
    assert composite([one_phase], 1, T0, 60, "A", max_watts=HW) == [Period(0, 16, 1)]
    assert composite([one_phase], 1, T0, 60, "W", max_watts=HW) == [Period(0, 3680, 1)]
    three = profile("TxDefaultProfile", [(0, 11040)], unit="W")
    assert composite([three], 1, T0, 60, "A", max_watts=HW) == [Period(0, 16, 3)]


def test_offline_a_short_tx_profile_falls_back_to_the_charge_point_maximum() -> None:
    """The site load manager's safety net: a TxProfile that is not renewed (the charger
    is offline) runs out, and the ChargePointMaxProfile limit is what remains."""
    cap = profile("ChargePointMaxProfile", [(0, 4000)], pid=1)
    boost = profile("TxProfile", [(0, 7000)], pid=2, connector=1, duration=300, level=1)
    assert watts([cap, boost], 1, T0) == 4000  # never above the cap
    lower = profile("TxProfile", [(0, 2000)], pid=3, connector=1, duration=300, level=2)
    assert watts([cap, lower], 1, T0 + timedelta(seconds=299)) == 2000
    assert watts([cap, lower], 1, T0 + timedelta(seconds=300)) == 4000


def lease(start: datetime, rating: float, seconds: int, fallback: float) -> Installed:
    """The load manager's leased ChargePointMaxProfile (issue 17): Absolute from the
    server's now, the rating until the lease runs out, then the fallback with no end."""
    return profile(
        "ChargePointMaxProfile",
        [(0, rating), (seconds, fallback)],
        pid=1699,
        level=1,
        unit="A",
        start=start,
    )


def test_a_leased_charge_point_maximum_falls_to_the_fallback_when_the_lease_runs_out() -> None:
    """Offline, nobody renews the lease: at its end every session is held to the
    fallback, whatever its TxProfile says (the composite is the minimum, §3.13.4)."""
    cap = lease(T0, 32, 120, 6)
    default = profile("TxDefaultProfile", [(0, 6)], pid=1700, unit="A", kind="Relative", start=None)
    tx = profile("TxProfile", [(0, 16)], pid=1701, level=1, unit="A", kind="Relative", start=None,
                 connector=1)  # fmt: skip
    installed = [cap, default, tx]
    amps = 230.0 * 3
    assert watts(installed, 1, T0 + timedelta(seconds=119), tx_start=T0) == 16 * amps
    assert watts(installed, 1, T0 + timedelta(seconds=120), tx_start=T0) == 6 * amps
    assert watts(installed, 1, T0 + timedelta(days=3), tx_start=T0) == 6 * amps  # no end
    assert watts(installed, 0, T0 + timedelta(seconds=120)) == 6 * amps
    assert composite(installed, 1, T0, 600, "A", tx_start=T0, max_watts=HW) == [
        Period(0, 16, 3),
        Period(120, 6, 3),
    ]
    # The charger-wide cap: connector 2 (no TxProfile) keeps its TxDefaultProfile's 6 A.
    assert composite(installed, 2, T0, 600, "A", max_watts=HW) == [Period(0, 6, 3)]


def test_a_renewed_lease_replaces_the_old_one_and_moves_the_fallback_on() -> None:
    """While connected the lease is renewed (same profile id, a later start): the
    fallback period moves on with it, so a connected charger never reaches it."""
    tx = profile("TxProfile", [(0, 20)], pid=1701, level=1, unit="A", kind="Relative", start=None,
                 connector=1)  # fmt: skip
    first = lease(T0, 32, 120, 6)
    renewed = lease(T0 + timedelta(seconds=40), 32, 120, 6)
    amps = 230.0 * 3
    # The simulator installs by id: the renewal replaces the first lease.
    assert watts([renewed, tx], 1, T0 + timedelta(seconds=150), tx_start=T0) == 20 * amps
    assert watts([renewed, tx], 1, T0 + timedelta(seconds=160), tx_start=T0) == 6 * amps
    assert watts([first, tx], 1, T0 + timedelta(seconds=150), tx_start=T0) == 6 * amps


def test_parse_time_accepts_z_and_offsets() -> None:
    assert parse_time("2026-01-05T08:00:00Z") == T0
    assert parse_time("2026-01-05T09:00:00+01:00") == T0


# --- properties -----------------------------------------------------------------------

limits = st.integers(min_value=0, max_value=40000)
period_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3600), limits), min_size=1, max_size=4
).map(lambda ps: sorted({p[0]: p for p in [(0, ps[0][1]), *ps]}.values()))


@st.composite
def installed_profiles(draw: st.DrawFn) -> list[Installed]:
    out = []
    for pid in range(draw(st.integers(min_value=0, max_value=5))):
        purpose = draw(st.sampled_from(["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"]))
        connector = 0 if purpose == "ChargePointMaxProfile" else draw(st.sampled_from([0, 1]))
        if purpose == "TxProfile":
            connector = 1
        offset = draw(st.integers(min_value=-3600, max_value=3600))
        valid_to = draw(st.none() | st.integers(min_value=1, max_value=7200))
        out.append(
            profile(
                purpose,
                draw(period_lists),
                pid=pid,
                level=draw(st.integers(min_value=0, max_value=3)),
                kind=draw(st.sampled_from(["Absolute", "Relative", "Recurring"])),
                recurrency="Daily",
                start=T0 + timedelta(seconds=offset),
                duration=draw(st.none() | st.integers(min_value=1, max_value=7200)),
                valid_to=T0 + timedelta(seconds=valid_to) if valid_to else None,
                connector=connector,
            )
        )
    return out


@settings(max_examples=150, deadline=None)
@given(installed_profiles(), st.integers(min_value=0, max_value=7199))
def test_composite_agrees_with_the_limit_at_every_second(
    profiles: list[Installed], second: int
) -> None:
    """The composite's periods are ascending from 0 with no repeats, and the period in
    force at any second is what limit_at says then; never above any cap in force."""
    periods = composite(profiles, 1, T0, 7200, "W", max_watts=HW)
    starts = [p.start for p in periods]
    assert starts[0] == 0
    assert starts == sorted(set(starts))
    assert all((a.limit, a.phases) != (b.limit, b.phases) for a, b in itertools.pairwise(periods))
    at = T0 + timedelta(seconds=second)
    in_force = [p for p in periods if p.start <= second][-1]
    expected = limit_at(profiles, 1, at, tx_start=T0, max_watts=HW)
    assert in_force.limit == round(expected.watts, 1)
    cap = limit_at(profiles, 0, at, tx_start=T0, max_watts=HW)
    assert expected.watts <= cap.watts


@settings(max_examples=100, deadline=None)
@given(installed_profiles(), limits, st.integers(min_value=0, max_value=3599))
def test_a_higher_stack_level_in_force_decides(
    profiles: list[Installed], limit: int, second: int
) -> None:
    top = profile("TxProfile", [(0, limit)], pid=99, level=10, connector=1)
    at = T0 + timedelta(seconds=second)
    cap = limit_at(profiles, 0, at, tx_start=T0, max_watts=HW).watts
    assert watts([*profiles, top], 1, at, tx_start=T0) == min(limit, cap)
