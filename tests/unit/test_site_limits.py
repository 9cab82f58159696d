"""Effective circuit limits (issue 17): schedule entries and the building's other load."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from voltaro.domain.circuits import ChargerWiring, Circuit, CircuitError, Phase
from voltaro.domain.load_allocation import ChargerState, Policy, Session, Site, allocate
from voltaro.domain.site_limits import (
    ExternalLoad,
    ExternalState,
    ScheduleEntry,
    effective_limits,
    schedule_from_toml,
    schedule_limit,
)
from voltaro.settings import SettingsError, load_settings

# A Monday.
NOW = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)
SITE = Circuit(circuit_id="site", limit_amps=63.0)


def pushed(amps: tuple[float, float, float], valid_s: float) -> dict[str, ExternalLoad]:
    return {
        "site": ExternalLoad(
            circuit_id="site", amps=amps, at=NOW, valid_until=NOW + timedelta(seconds=valid_s)
        )
    }


def test_a_schedule_entry_runs_past_midnight_on_the_day_it_starts() -> None:
    (night,) = schedule_from_toml(
        [{"circuit": "site", "days": "mon-fri", "from": "22:00", "to": "06:00", "limit_amps": 40}]
    )
    assert night.days == frozenset(range(5))
    monday = datetime(2026, 1, 5)
    assert night.active(monday.replace(hour=23))
    assert night.active(monday.replace(hour=5) + timedelta(days=1))  # Tuesday early
    assert not night.active(monday.replace(hour=5))  # Sunday night did not start it
    assert not night.active(monday.replace(hour=12))
    saturday = monday + timedelta(days=5)
    assert night.active(saturday.replace(hour=5))  # Friday's night
    assert not night.active(saturday.replace(hour=23))
    assert schedule_limit([night], "site", monday.replace(hour=23)) == 40
    assert schedule_limit([night], "feeder", monday.replace(hour=23)) is None


def test_the_lowest_of_configured_and_schedule_minus_the_other_load_per_phase() -> None:
    day = ScheduleEntry(
        circuit_id="site", days=frozenset(range(7)), start=time(8), end=time(20), limit_amps=40
    )
    high = ScheduleEntry(
        circuit_id="site", days=frozenset(range(7)), start=time(0), end=time(0), limit_amps=100
    )
    limits = effective_limits(
        [SITE],
        schedule=[day, high],
        pushed=pushed((10.0, 0.0, 45.0), 300),
        voltage=230.0,
        now=NOW,
        local=NOW.replace(tzinfo=None),
    )
    site = limits["site"]
    assert site.limit.amps == (30.0, 40.0, 0.0)  # never below 0
    assert site.source == "schedule+external"
    assert site.external is ExternalState.LIVE
    # A schedule cannot raise a limit above the breaker's.
    night = effective_limits(
        [SITE], schedule=[high], voltage=230.0, now=NOW, local=NOW.replace(hour=2)
    )["site"]
    assert night.limit.amps == (63.0, 63.0, 63.0)
    assert night.source == "configured"


def test_a_stale_value_falls_back_to_the_higher_of_it_and_the_fallback() -> None:
    stale = effective_limits(
        [SITE],
        pushed=pushed((10.0, 30.0, 0.0), -1),
        fallback_amps=20.0,
        voltage=230.0,
        now=NOW,
        local=NOW,
    )["site"]
    assert stale.external is ExternalState.STALE
    assert stale.external_amps == (20.0, 30.0, 20.0)
    assert stale.limit.amps == (43.0, 33.0, 43.0)
    assert stale.source == "configured+external-fallback"
    # Expected but never pushed: the fallback; not expected: nothing subtracted.
    missing = effective_limits(
        [SITE], expected=["site"], fallback_amps=20.0, voltage=230.0, now=NOW, local=NOW
    )["site"]
    assert missing.external is ExternalState.MISSING
    assert missing.limit.amps == (43.0, 43.0, 43.0)
    none = effective_limits([SITE], fallback_amps=20.0, voltage=230.0, now=NOW, local=NOW)
    assert none["site"].limit.amps == (63.0, 63.0, 63.0)
    assert none["site"].external is ExternalState.NONE


def test_a_kw_limit_loses_the_other_loads_power() -> None:
    kw_only = Circuit(circuit_id="site", limit_kw=40.0)
    limit = effective_limits(
        [kw_only], pushed=pushed((10.0, 10.0, 10.0), 60), voltage=230.0, now=NOW, local=NOW
    )["site"].limit
    assert limit.amps is None
    assert limit.kw == pytest.approx(40.0 - 30 * 0.23)


def test_the_allocator_shares_what_the_effective_limit_leaves() -> None:
    limits = effective_limits(
        [SITE], pushed=pushed((31.0, 23.0, 40.0), 60), voltage=230.0, now=NOW, local=NOW
    )
    site = Site(
        circuits=(SITE,),
        chargers=(
            ChargerWiring(charger_id="A", circuit_id="site", phases=(Phase.L1, Phase.L2, Phase.L3)),
            ChargerWiring(charger_id="B", circuit_id="site", phases=(Phase.L1,)),
        ),
        limits={k: v.limit for k, v in limits.items()},
    )
    states = {c: ChargerState(charger_id=c, online=True) for c in ("A", "B")}
    sessions = [
        Session(charger_id=c, connector_id=1, transaction_id=n, since=NOW)
        for n, c in enumerate(("A", "B"))
    ]
    result = allocate(site, states, sessions, Policy(), NOW)
    # L3 leaves 23 A for A; L1 leaves 32 A for A and B: 16 each.
    assert [g.amps for g in result.grants] == [16.0, 16.0]
    (load,) = result.loads
    assert load.amps == (32.0, 16.0, 16.0)
    assert load.effective is not None
    assert load.effective.amps == (32.0, 40.0, 23.0)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"days": "mon", "from": "1:00", "to": "2:00", "limit_amps": 3}, "needs a circuit"),
        ({"circuit": "s", "from": "25:00", "to": "2:00", "limit_amps": 3}, "is not a time"),
        ({"circuit": "s", "from": "1:00", "to": "2:00", "limit_amps": -3}, ">= 0"),
        ({"circuit": "s", "days": "mo-xx", "from": "1:00", "to": "2:00", "limit_amps": 1}, "day"),
        ({"circuit": "s", "from": "1:00", "to": "2:00", "limit_amps": 1, "x": 1}, "unknown key"),
    ],
)
def test_bad_schedule_entries_are_refused_in_one_line(entry: dict[str, object], why: str) -> None:
    with pytest.raises(CircuitError, match=why):
        schedule_from_toml([entry])


def test_load_schedule_tables_next_to_a_voltaro_table(tmp_path: Path) -> None:
    path = tmp_path / "voltaro.toml"
    path.write_text(
        "[voltaro]\nexternal_load_fallback_amps = 25\nexternal_load_circuits = ['site']\n\n"
        "[[load_schedule]]\ncircuit = 'site'\ndays = ['sat', 'sun']\n"
        "from = '07:00'\nto = '22:00'\nlimit_amps = 40\n"
    )
    settings = load_settings(config_file=path, environ={})
    (entry,) = settings.load_schedule
    assert entry.days == frozenset({5, 6})
    assert (entry.start, entry.end, entry.limit_amps) == (time(7), time(22), 40.0)
    assert settings.external_load_fallback_amps == 25.0
    assert settings.external_load_circuits == ("site",)
    path.write_text("[[load_schedule]]\ncircuit = 'site'\nfrom = '7'\nto = '8'\nlimit_amps = 4\n")
    with pytest.raises(SettingsError, match="setting load_schedule: load_schedule entry 1"):
        load_settings(config_file=path, environ={})


def test_load_tag_priorities_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "voltaro.toml"
    path.write_text('[voltaro]\nport = 9000\n\n[load_tag_priorities]\n"FLEET-01" = 2\n')
    assert load_settings(config_file=path, environ={}).load_tag_priorities == {"FLEET-01": 2}
    env = {"VOLTARO_LOAD_TAG_PRIORITIES": "FLEET-01:2, BOSS:3"}
    assert load_settings(environ=env).load_tag_priorities == {"FLEET-01": 2, "BOSS": 3}
    with pytest.raises(SettingsError, match="priority must be a whole number"):
        load_settings(environ={"VOLTARO_LOAD_TAG_PRIORITIES": "FLEET-01:high"})
