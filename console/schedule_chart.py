"""A composite schedule (OCPP 1.6 §5.7 GetCompositeSchedule.conf) as a step chart in
the terminal: the limit over time, each period labelled, the current time marked.

Pure: the schedule in (as ``profiles.composite`` returns it: the charger's answer with
snake_case keys), Rich Text out; the screen that asks and redraws is in
console/schedule_screen.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.text import Text

LINE = "bold cyan"
NOW = "bold yellow"
AXIS = "grey50"
# Tick spacings to choose from, the smallest that leaves room for an "HH:MM" label.
TICKS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
LABEL_GAP = 8  # columns between two time labels at least


class ScheduleError(ValueError):
    """The answer holds no schedule that can be drawn (the message says why)."""


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime
    limit: float
    phases: int | None


@dataclass(frozen=True, slots=True)
class Schedule:
    connector_id: int | None
    start: datetime
    end: datetime
    unit: str  # A or W (chargingRateUnit, §7.9)
    periods: tuple[Period, ...]
    min_rate: float | None

    def limit_at(self, moment: datetime) -> float | None:
        for p in self.periods:
            if p.start <= moment < p.end:
                return p.limit
        return None

    def current(self, now: datetime) -> Period | None:
        return next((p for p in self.periods if p.start <= now < p.end), None)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_schedule(result: dict[str, Any], *, duration: int, asked_at: datetime) -> Schedule:
    """The schedule of a ``profiles.composite`` result over ``duration`` seconds.

    §5.7: periods start ``startPeriod`` seconds after the schedule's start
    (``chargingSchedule.startSchedule``, else ``scheduleStart``; neither: when it was
    asked); the last one lasts to the end of the schedule (its ``duration``, else the
    duration asked for).

    Raises:
        ScheduleError: Rejected, or no periods.
    """
    status = result.get("status")
    if status != "Accepted":
        raise ScheduleError(f"the charger answered {status or 'nothing'}")
    details = result.get("details") or {}
    schedule = details.get("charging_schedule") or {}
    raw = schedule.get("charging_schedule_period") or []
    if not raw:
        raise ScheduleError("the charger sent no charging schedule periods")
    start = (
        _time(schedule.get("start_schedule")) or _time(details.get("schedule_start")) or asked_at
    )
    length = schedule.get("duration")
    seconds = length if isinstance(length, int) and length > 0 else duration
    end = start + timedelta(seconds=seconds)
    ordered = sorted(raw, key=lambda p: p.get("start_period", 0))
    periods = []
    for n, p in enumerate(ordered):
        begin = start + timedelta(seconds=int(p.get("start_period", 0)))
        until = (
            start + timedelta(seconds=int(ordered[n + 1].get("start_period", 0)))
            if n + 1 < len(ordered)
            else end
        )
        if until > begin:
            periods.append(
                Period(
                    start=begin,
                    end=min(until, end),
                    limit=float(p.get("limit", 0)),
                    phases=p.get("number_phases"),
                )
            )
    minimum = schedule.get("min_charging_rate")
    return Schedule(
        connector_id=details.get("connector_id"),
        start=start,
        end=end,
        unit=str(schedule.get("charging_rate_unit") or "A"),
        periods=tuple(periods),
        min_rate=float(minimum) if isinstance(minimum, int | float) else None,
    )


def amount(value: float, unit: str) -> str:
    """16 A, 7.4 kW, 11 kW: watts in kW past 1000, no trailing zeros."""
    if unit == "W" and value >= 1000:
        return f"{value / 1000:.1f}".removesuffix(".0") + " kW"
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _span(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 86400 and seconds % 3600 == 0:
        days, hours = divmod(seconds // 3600, 24)
        return f"{days}d{hours}h" if hours else f"{days}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m" + (f"{seconds % 60:02d}s" if seconds % 60 else "")
    return f"{seconds}s"


def _clock(moment: datetime, step: int) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%m-%d") if step >= 86400 else moment.strftime("%H:%M")


def step_chart(schedule: Schedule, now: datetime, *, width: int, height: int) -> Text:
    """The schedule as ``height`` rows of step line plus two axis rows, ``width``
    columns in all: limits on the left, UTC times below, the current time a dotted
    column (▲ now) when it falls inside the schedule."""
    top = max((p.limit for p in schedule.periods), default=0.0)
    levels = sorted({p.limit for p in schedule.periods})
    labels = {amount(v, schedule.unit) for v in [*levels, 0.0]}
    gutter = max(len(label) for label in labels) + 1
    columns = max(10, width - gutter - 1)
    rows = max(3, height)
    span = (schedule.end - schedule.start).total_seconds()
    per_column = span / columns

    def row_of(value: float | None) -> int | None:
        if value is None:
            return None
        return 0 if top <= 0 else round(value / top * (rows - 1))

    moments = [schedule.start + timedelta(seconds=(x + 0.5) * per_column) for x in range(columns)]
    level = [row_of(schedule.limit_at(m)) for m in moments]
    grid = [[" "] * columns for _ in range(rows)]
    style = [[""] * columns for _ in range(rows)]

    def put(r: int, x: int, char: str, how: str = LINE) -> None:
        grid[r][x], style[r][x] = char, how

    for x, r in enumerate(level):
        if r is None:
            continue
        before = level[x - 1] if x > 0 else None
        if before is None or before == r:
            put(r, x, "─")
            continue
        low, high = sorted((before, r))
        for between in range(low + 1, high):
            put(between, x, "│")
        if r > before:  # up: leave the old level, arrive at the new one
            put(before, x, "┘")
            put(r, x, "┌")
        else:
            put(before, x, "┐")
            put(r, x, "└")
    # Each period's limit written over its step, where the step is wide enough.
    for p in schedule.periods:
        first = max(0, int((p.start - schedule.start).total_seconds() / per_column))
        last = min(columns, int((p.end - schedule.start).total_seconds() / per_column))
        r = row_of(p.limit)
        label = amount(p.limit, schedule.unit)
        if r is None or last - first < len(label) + 2:
            continue
        r = r + 1 if r + 1 < rows else r - 1
        if r < 0 or any(grid[r][x] != " " for x in range(first + 1, first + 1 + len(label))):
            continue
        for i, char in enumerate(label):
            put(r, first + 1 + i, char, "cyan")
    now_x = None
    if schedule.start <= now < schedule.end:
        now_x = min(columns - 1, int((now - schedule.start).total_seconds() / per_column))
        for r in range(rows):
            if grid[r][now_x] == " ":
                put(r, now_x, "┊", NOW)
            else:
                style[r][now_x] = "bold black on yellow"
    # Left: the limit of every level drawn (each period's), and 0.
    axis_labels = {row_of(v): amount(v, schedule.unit) for v in [0.0, *levels]}
    out = Text(no_wrap=True, overflow="crop")
    for r in range(rows - 1, -1, -1):
        out.append(axis_labels.get(r, "").rjust(gutter - 1) + " ", style="bold")
        out.append("┤" if r in axis_labels else "│", style=AXIS)
        for x in range(columns):
            out.append(grid[r][x], style=style[r][x] or None)
        out.append("\n")
    # Below: ticks at round UTC times, the now marker under its column.
    step = next((s for s in TICKS if s / per_column >= LABEL_GAP), TICKS[-1])
    first_tick = (int(schedule.start.timestamp()) // step + 1) * step
    ticks: list[tuple[int, str]] = []
    at = first_tick
    while at < schedule.end.timestamp():
        x = int((at - schedule.start.timestamp()) / per_column)
        if 0 <= x < columns:
            ticks.append((x, _clock(datetime.fromtimestamp(at, UTC), step)))
        at += step
    axis = ["─"] * columns
    for x, _ in ticks:
        axis[x] = "┬"
    out.append(" " * gutter + "└", style=AXIS)
    out.append("".join(axis), style=AXIS)
    out.append("\n")
    under = [" "] * (columns + 1)
    under_style = [""] * (columns + 1)
    for x, label in ticks:
        if x + len(label) <= columns and all(c == " " for c in under[x : x + len(label) + 1]):
            under[x : x + len(label)] = list(label)
    if now_x is not None:
        mark = "▲now " + now.astimezone(UTC).strftime("%H:%M")
        begin = min(now_x, columns - len(mark))
        under[begin : begin + len(mark)] = list(mark)
        under_style[begin : begin + len(mark)] = [NOW] * len(mark)
    out.append(" " * (gutter + 1))
    for char, how in zip(under[:columns], under_style[:columns], strict=True):
        out.append(char, style=how or None)
    return out


def period_lines(schedule: Schedule, now: datetime) -> list[Text]:
    """One line per period: from, to, how long, the limit (◀ now on the current one)."""
    lines = []
    current = schedule.current(now)
    for n, p in enumerate(schedule.periods, 1):
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{n:>2}  {_stamp(p.start)} → {_stamp(p.end)}  {_span_of(p):>7}  ")
        line.append(f"{amount(p.limit, schedule.unit):>8}", style="bold cyan")
        if p.phases:
            line.append(f"  {p.phases} phase{'s' if p.phases != 1 else ''}")
        if p is current:
            line.append("  ◀ now", style=NOW)
        elif p.end <= now:
            line.stylize("grey50")
        lines.append(line)
    return lines


def _span_of(p: Period) -> str:
    return _span((p.end - p.start).total_seconds())


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def _minute(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%m-%d %H:%M")


def summary(schedule: Schedule, now: datetime) -> str:
    """The line above the chart: connector, span, what applies now."""
    current = schedule.current(now)
    connector = schedule.connector_id
    where = "the whole charger" if connector == 0 else f"connector {connector}"
    # One line at 80 columns: minutes only (the periods below have the seconds).
    text = (
        f"{where}: {_minute(schedule.start)} → {_minute(schedule.end)} UTC "
        f"({_span((schedule.end - schedule.start).total_seconds())}), unit {schedule.unit}"
    )
    if current is not None:
        text += f"; now {amount(current.limit, schedule.unit)}"
    elif now < schedule.start:
        text += "; starts later"
    else:
        text += "; ended"
    if schedule.min_rate is not None:
        text += f"; min {amount(schedule.min_rate, schedule.unit)}"
    return text
