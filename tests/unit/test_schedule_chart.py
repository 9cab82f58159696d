"""The composite schedule's parsing and step chart (console/schedule_chart.py), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from console.schedule_chart import (
    ScheduleError,
    amount,
    parse_schedule,
    period_lines,
    step_chart,
)

ASKED = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def result(periods: list[dict[str, Any]], **schedule: Any) -> dict[str, Any]:
    return {
        "status": "Accepted",
        "details": {
            "connector_id": 1,
            "schedule_start": "2026-12-05T10:00:00Z",
            "charging_schedule": {
                "charging_rate_unit": "W",
                "charging_schedule_period": periods,
                **schedule,
            },
        },
    }


def test_periods_in_order_to_the_end_of_the_schedule() -> None:
    parsed = parse_schedule(
        result(
            [{"start_period": 1800, "limit": 3680}, {"start_period": 0, "limit": 11000}],
            start_schedule="2026-12-05T10:10:00Z",
            duration=3000,
        ),
        duration=3600,
        asked_at=ASKED,
    )
    assert parsed.start == ASKED + timedelta(minutes=10)  # startSchedule wins
    assert parsed.end == parsed.start + timedelta(seconds=3000)  # the schedule's duration
    assert [(p.limit, (p.end - p.start).seconds) for p in parsed.periods] == [
        (11000.0, 1800),
        (3680.0, 1200),
    ]
    assert parsed.limit_at(parsed.start + timedelta(minutes=31)) == 3680.0
    assert parsed.limit_at(parsed.end) is None


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"status": "Rejected"}, "answered Rejected"),
        (result([]), "no charging schedule periods"),
        ({"status": "Accepted", "details": {}}, "no charging schedule periods"),
    ],
)
def test_nothing_to_draw_says_why(answer: dict[str, Any], reason: str) -> None:
    with pytest.raises(ScheduleError, match=reason):
        parse_schedule(answer, duration=3600, asked_at=ASKED)


def test_amounts() -> None:
    assert amount(16.0, "A") == "16 A"
    assert amount(6.5, "A") == "6.5 A"
    assert amount(11000.0, "W") == "11 kW"
    assert amount(7360.0, "W") == "7.4 kW"
    assert amount(500.0, "W") == "500 W"


def test_chart_size_marker_and_labels() -> None:
    parsed = parse_schedule(
        result([{"start_period": 0, "limit": 11000}, {"start_period": 1800, "limit": 3680}]),
        duration=3600,
        asked_at=ASKED,
    )
    inside = step_chart(parsed, ASKED + timedelta(minutes=45), width=60, height=6).plain
    lines = inside.splitlines()
    assert len(lines) == 6 + 2
    assert all(len(line) <= 60 for line in lines)
    assert lines[0].startswith(" 11 kW ┤")
    assert "▲now 10:45" in lines[-1]
    assert "10:15" in lines[-1] or "10:10" in lines[-1]  # round UTC ticks
    # The marker sits three quarters along, on the 3.7 kW step.
    marker = lines[-1].index("▲")
    assert abs(marker - (8 + 0.75 * 51)) <= 2
    # Before the schedule starts: no marker at all.
    before = step_chart(parsed, ASKED - timedelta(minutes=1), width=60, height=6).plain
    assert "now" not in before
    assert "┊" not in before
    rows = [line.plain for line in period_lines(parsed, ASKED + timedelta(minutes=45))]
    assert "◀ now" in rows[1]
    assert "◀ now" not in rows[0]
