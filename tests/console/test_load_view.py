"""The load view's pure rendering (console/load_view.py): bars against a limit (0 A, at
the limit, over it), sparklines scaled to the limit, history per circuit from the
rounds the console sees, and the lines a site's live allocation turns into."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from console.feed import describe
from console.load_view import (
    EMPTY,
    LoadHistory,
    circuit_lines,
    counted_lines,
    flag,
    load_level,
    phase_bar,
    session_lines,
    spark,
    summary_line,
)
from console.model import Site

NOW = datetime(2026, 12, 5, 21, 0, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_bar_is_empty_at_zero_amps() -> None:
    bar = phase_bar(0.0, 32.0, 16)
    assert bar.plain == "░" * 16
    assert flag(0.0, 32.0).plain == "    "


def test_bar_fills_in_proportion_with_eighths() -> None:
    assert phase_bar(16.0, 32.0, 16).plain == "█" * 8 + "░" * 8
    assert phase_bar(8.0, 32.0, 10).plain == "██▌" + "░" * 7  # 2.5 cells
    assert phase_bar(32.0, 32.0, 10).plain == "█" * 10
    assert flag(32.0, 32.0).plain == "full"
    assert flag(31.0, 32.0).plain == "    "


def test_bar_over_the_limit_is_distinct_without_colour() -> None:
    over = phase_bar(40.0, 32.0, 10)
    assert over.plain == "█" * 9 + "!"
    assert "red" in str(over.style)
    assert flag(40.0, 32.0).plain == "OVER"
    # Within rounding of the limit is at it, not over it.
    assert phase_bar(32.04, 32.0, 10).plain == "█" * 10


def test_bar_colour_follows_the_level() -> None:
    assert "green" in str(phase_bar(10.0, 32.0, 10).spans[0].style)
    assert "yellow" in str(phase_bar(30.0, 32.0, 10).spans[0].style)


def test_bar_without_a_limit_is_empty_and_dim() -> None:
    assert phase_bar(12.0, None, 8).plain == "░" * 8


def test_spark_is_scaled_to_the_limit_and_marks_over() -> None:
    line = spark([None, 0.0, 0.5, 1.0, 1.3], 10)
    assert line.plain == " ▁▅██"
    assert "red" in str(line.spans[-1].style)
    assert "red" not in str(line.spans[-2].style)
    assert spark([0.1] * 20, 5).plain == "▂▂▂▂▂"  # the last five only


def test_level_is_the_tightest_limit() -> None:
    assert load_level({"amps": [16.0, 8.0, 0.0], "limit_amps": 32.0}) == 0.5
    assert load_level({"amps": [10.0, 10.0, 10.0], "limit_amps": 32, "kw": 6.9, "limit_kw": 6.9})
    assert load_level({"amps": [1.0], "limit_amps": None, "limit_kw": None}) is None


def live(at: datetime, site: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "computed_at": stamp(at),
        "policy": "equal",
        "loads": [{"circuit": "site", "amps": site, "limit_amps": 32.0, "limit_kw": None}],
        "sessions": extra.get("sessions", []),
        "reserved": extra.get("reserved", []),
        "overloaded": extra.get("overloaded", []),
        "unmanaged": extra.get("unmanaged", []),
    }


def test_history_keeps_the_peak_per_bucket_and_carries_it_forward() -> None:
    history = LoadHistory(bucket_seconds=10)
    assert history.series("site", NOW, 4) == [None] * 4
    history.add(live(NOW - timedelta(seconds=35), [8.0, 8.0, 8.0]), NOW)
    history.add(live(NOW - timedelta(seconds=21), [32.0, 0.0, 0.0]), NOW)
    history.add(live(NOW - timedelta(seconds=20), [16.0, 16.0, 16.0]), NOW)
    # The same round seen twice (event and snapshot) counts once.
    assert not history.add(live(NOW - timedelta(seconds=20), [16.0, 16.0, 16.0]), NOW)
    series = history.series("site", NOW, 5)
    # Buckets: -40..-31 (8 A), -30..-21 (32 A), -20..-11 (16 A), then carried over.
    assert series == [0.25, 1.0, 0.5, 0.5, 0.5]
    assert history.series("site", NOW, 6)[0] is None


def test_history_before_the_window_is_carried_in() -> None:
    history = LoadHistory(bucket_seconds=10)
    history.add(live(NOW - timedelta(minutes=5), [16.0, 0.0, 0.0]), NOW)
    assert history.series("site", NOW, 3) == [0.5, 0.5, 0.5]


CIRCUITS = [
    {"name": "site", "parent": None, "limit_amps": 32.0, "limit_kw": None, "chargers": []},
    {
        "name": "feeder-a",
        "parent": "site",
        "limit_amps": 20.0,
        "limit_kw": 11.0,
        "chargers": [{"charger_id": "CP-A", "max_amps": 32.0}],
    },
]


def test_circuit_lines_show_each_phase_against_its_limit_at_80_columns() -> None:
    view = live(NOW, [32.0, 40.0, 0.0])
    view["loads"].append(
        {
            "circuit": "feeder-a",
            "amps": [16.0, 16.0, 16.0],
            "limit_amps": 20.0,
            "limit_kw": 11.0,
            "kw": 11.04,
        }
    )
    history = LoadHistory()
    history.add(view, NOW)
    lines = [line.plain for line in circuit_lines(CIRCUITS, view, history, NOW, 78)]
    assert all(len(line) <= 78 for line in lines), lines
    assert lines[0].startswith("CIRCUIT")
    site = lines[1:4]
    assert site[0].startswith("site")
    assert " L1 " in site[0]
    assert "32.0/32 A full" in site[0]
    assert "40.0/32 A OVER" in site[1]
    assert "!" in site[1]
    assert " 0.0/32 A" in site[2]
    assert site[0].rstrip().endswith("█")  # the sparkline: at the limit now
    feeder = lines[4:8]
    assert feeder[0].startswith(" feeder-a")  # indented under the site
    assert "20 A 11 kW" in feeder[1]
    assert "16.0/20 A" in feeder[0]
    assert " kW " in feeder[3]
    assert "11.0/11 kW full" in feeder[3]


def test_no_circuits_is_said_in_words() -> None:
    assert [line.plain for line in circuit_lines([], None, LoadHistory(), NOW, 78)] == [EMPTY]
    assert summary_line([], None, NOW).plain == ""
    assert "waiting" in summary_line(CIRCUITS, None, NOW).plain


def test_sessions_show_offered_drawn_parked_and_why() -> None:
    view = live(
        NOW,
        [32.0, 32.0, 32.0],
        sessions=[
            {
                "charger_id": "CP-A",
                "connector_id": 1,
                "amps": 16.0,
                "cap_amps": 32.0,
                "draw_amps": 15.2,
                "accepted_amps": 16.0,
                "parked": None,
                "detail": "",
            },
            {
                "charger_id": "CP-C",
                "connector_id": 2,
                "amps": 0.0,
                "cap_amps": 32.0,
                "draw_amps": None,
                "accepted_amps": None,
                "parked": "no-capacity",
                "detail": "circuit site L3 (32 A) is full",
            },
            {
                "charger_id": "CP-A",
                "connector_id": 2,
                "amps": 12.0,
                "cap_amps": 12.0,
                "draw_amps": 10.0,
                "accepted_amps": 12.0,
                "parked": None,
                "detail": "",
            },
        ],
    )
    lines = [line.plain for line in session_lines(view, CIRCUITS, 78)]
    assert lines[0].split() == ["CHARGER", "CONN", "OFFER", "A", "DRAWN", "A", "PARKED", "WHY"]
    # Parked first, with the reason and the limit that stopped it.
    assert lines[1].split()[:5] == ["CP-C", "2", "0.0", "-", "no-capacity"]
    assert lines[1].endswith("no-capacity   circuit site L3 (32 A) is full")
    assert lines[2].split() == ["CP-A", "1", "16.0", "15.2", "-"]
    assert lines[3].split()[:5] == ["CP-A", "2", "12.0", "10.0", "-"]
    assert "draws 10.0 A: capped at 12.0 A" in lines[3]
    assert all(len(line) <= 78 for line in lines)
    summary = summary_line(CIRCUITS, view, NOW + timedelta(seconds=3)).plain
    assert "3 sessions" in summary
    assert "1 parked" in summary
    assert "(3s ago)" in summary


def test_counted_chargers_overloads_and_unmanaged_sessions() -> None:
    view = live(
        NOW,
        [32.0, 32.0, 32.0],
        reserved=[
            {
                "charger_id": "CP-D",
                "amps": 16.0,
                "reason": "rejects-profiles",
                "phases": ["L1", "L2", "L3"],
            },
            {"charger_id": "CP-E", "amps": 6.0, "reason": "offline", "phases": ["L2"]},
        ],
        overloaded=["feeder-a"],
        unmanaged=[{"charger_id": "CP-X", "connector_id": 1}],
    )
    lines = [line.plain for line in counted_lines(view, 78)]
    assert lines[0].startswith("CP-D")
    assert "16.0 A on L1 L2 L3: refuses profiles" in lines[0]
    assert "6.0 A on L2: offline" in lines[1]
    assert lines[2].startswith("OVERLOADED feeder-a")
    assert lines[3] == "not managed (on no circuit): CP-X #1"
    assert all(len(line) <= 78 for line in lines)
    assert "OVERLOADED" in summary_line(CIRCUITS, view, NOW).plain


def test_wide_terminals_keep_bars_readable_and_a_longer_sparkline() -> None:
    view = live(NOW, [16.0, 16.0, 16.0])
    lines = [line.plain for line in circuit_lines(CIRCUITS[:1], view, LoadHistory(), NOW, 159)]
    assert all(len(line) <= 159 for line in lines)
    assert lines[1].count("█") + lines[1].count("░") == 60  # at most 60 cells
    assert "LAST 10 MIN" in lines[0]  # the rest goes to the sparkline


def test_a_refused_profile_is_a_feed_warning() -> None:
    line = describe(
        "load.profile_refused",
        {
            "charger_id": "CP-D",
            "connector_id": 0,
            "purpose": "TxDefaultProfile",
            "answer": "Rejected",
        },
        "2026-12-05T21:00:00.000Z",
    )
    assert line is not None
    assert line.severity == "warning"
    assert line.text == (
        "CP-D refused a TxDefaultProfile (Rejected): counted at its full rating until it "
        "boots again"
    )


def test_an_overloaded_circuit_and_a_refusing_charger_are_alerts_until_they_clear() -> None:
    site = Site()
    refusing = {
        "charger_id": "CP-D",
        "amps": 16.0,
        "reason": "rejects-profiles",
        "phases": ["L1", "L2", "L3"],
    }
    offline = {"charger_id": "CP-E", "amps": 6.0, "reason": "offline", "phases": ["L1"]}
    site.set_load_alerts(
        live(NOW, [40.0, 40.0, 40.0], reserved=[refusing, offline], overloaded=["site"]), "21:00:00"
    )
    alerts = {a.key: a for a in site.alerts.values()}
    assert set(alerts) == {":load:site:overloaded", "CP-D:load:refuses-profiles"}
    assert alerts[":load:site:overloaded"].text.startswith("circuit site overloaded")
    assert alerts["CP-D:load:refuses-profiles"].charger_id == "CP-D"
    assert "16.0 A" in alerts["CP-D:load:refuses-profiles"].text
    assert site.summary(NOW).attention == 2
    # The next round: no overload, CP-D still refusing. The overload is cleared (kept
    # until acknowledged, like every alert), no longer counted as needing attention.
    site.set_load_alerts(live(NOW, [16.0, 16.0, 16.0], reserved=[refusing]), "21:00:05")
    assert not site.alerts[":load:site:overloaded"].active
    assert site.alerts["CP-D:load:refuses-profiles"].active
    assert site.summary(NOW).attention == 1


def test_the_buildings_other_load_is_stacked_before_the_chargers() -> None:
    bar = phase_bar(8.0, 32.0, 16, other=8.0)
    assert bar.plain == "▒" * 4 + "█" * 4 + "░" * 8
    assert phase_bar(0.0, 32.0, 16, other=32.0).plain == "▒" * 16  # the building alone
    assert phase_bar(8.0, 32.0, 10, other=30.0).plain == "█" * 9 + "!"  # together over


def external_view(state: str, schedule: float | None = None) -> dict[str, Any]:
    view = live(NOW, [10.0, 4.0, 0.0])
    view["loads"][0].update(
        {
            "effective_limit_amps": [20.0, 20.0, 20.0],
            "limit_source": "configured+external" if state == "live" else "+external-fallback",
            "schedule_amps": schedule,
            "external_load": {"state": state, "amps": [12.0, 6.0, 0.0]},
        }
    )
    return view


def test_a_circuit_with_an_external_signal_shows_the_breakers_view() -> None:
    view = external_view("live")
    lines = [line.plain for line in circuit_lines(CIRCUITS[:1], view, LoadHistory(), NOW, 78)]
    assert "▒ other load, █ chargers" in lines[0]
    # L1: 12 A of the building's and 10 A of the chargers' on a 32 A breaker.
    assert "22.0/32 A" in lines[1]
    assert "▒" in lines[1]
    assert "10.0/32 A" in lines[2]
    assert " 0.0/32 A" in lines[3]
    assert lines[3][:12].strip() == "▒12 A other"
    assert load_level(view["loads"][0]) == 22.0 / 32.0
    stale = [
        line.plain
        for line in circuit_lines(CIRCUITS[:1], external_view("stale"), LoadHistory(), NOW, 78)
    ]
    assert stale[3][:12].strip() == "▒12 A stale"


def test_a_schedule_entry_lowers_the_limit_shown() -> None:
    view = external_view("live", schedule=25.0)
    lines = [line.plain for line in circuit_lines(CIRCUITS[:1], view, LoadHistory(), NOW, 78)]
    assert "22.0/25 A" in lines[1]
    assert lines[2][:12].strip() == "25 A sched"
