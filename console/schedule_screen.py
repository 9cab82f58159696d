"""The composite schedule screen: what a connector will be allowed to draw over the
next hours, asked of the charger (GetCompositeSchedule, OCPP 1.6 §5.7) and drawn as a
step chart (console/schedule_chart.py).

Live: asked again when a profile is set or cleared on the charger, a session starts or
stops there (a TxProfile comes and goes with it), the charger reconnects, and every
``REASK_EVERY`` seconds; the current-time marker moves between two answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Label, Static

from console.link import RequestFailed
from console.schedule_chart import (
    Schedule,
    ScheduleError,
    parse_schedule,
    period_lines,
    step_chart,
    summary,
)
from console.screens import LiveScreen

REASK_EVERY = 60.0  # seconds between two GetCompositeSchedule while nothing changes
REDRAW_EVERY = 5.0  # the now marker
UNITS: tuple[str | None, ...] = (None, "A", "W")  # None: the charger's own choice
MIN_DURATION, MAX_DURATION = 300, 7 * 86400
# Commands after which the schedule is different (§3.13): the screen asks again.
CHANGES_PROFILES = {"SetChargingProfile", "ClearChargingProfile", "RemoteStartTransaction"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ScheduleScreen(LiveScreen):
    """Composite schedule of one connector as a step chart, kept current."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "ask", "Ask again"),
        Binding("c", "connector", "Connector"),
        Binding("plus,equals_sign", "longer", "Longer"),
        Binding("minus", "shorter", "Shorter"),
        Binding("u", "unit", "Unit"),
    ]

    def __init__(
        self, charger_id: str, connector_id: int = 0, duration: int = 3600, unit: str | None = None
    ) -> None:
        super().__init__()
        self.charger_id = charger_id
        self.connector_id = connector_id
        self.duration = min(MAX_DURATION, max(60, duration))
        self.unit = unit if unit in ("A", "W") else None
        self.schedule: Schedule | None = None
        self.problem = "asking the charger…"
        self.asked = 0  # answers received, for tests and the summary line

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="schedule"):
            yield Static(id="schedule-summary")
            yield Static(id="schedule-chart")
            yield Label("[b]Periods[/b] (UTC)")
            yield Static(id="schedule-periods")
        yield Footer()

    def on_mount(self) -> None:
        self._title()
        self.set_interval(REDRAW_EVERY, self.draw)
        self.set_interval(REASK_EVERY, self._reask)
        self.start_live()

    def _title(self) -> None:
        unit = self.unit or "charger's unit"
        self.title = f"Schedule {self.charger_id} #{self.connector_id}"
        self.sub_title = f"next {self.duration // 60} min, {unit}"

    def relevant(self, name: str, data: dict[str, Any]) -> bool:
        if data.get("charger_id") != self.charger_id:
            return False
        if name == "command.result":
            return data.get("action") in CHANGES_PROFILES
        return name in ("transaction.started", "transaction.stopped", "charger.connected")

    def _reask(self) -> None:
        self._stale = True

    @work(exclusive=True, group="schedule")
    async def refresh_data(self) -> None:
        args: dict[str, Any] = {
            "charger_id": self.charger_id,
            "connector_id": self.connector_id,
            "duration": self.duration,
        }
        if self.unit is not None:
            args["unit"] = self.unit
        asked_at = self.console.clock()
        try:
            result = await self.console.link.request("profiles.composite", args)
            self.schedule = parse_schedule(result, duration=self.duration, asked_at=asked_at)
            self.problem = ""
        except RequestFailed as exc:
            self.schedule, self.problem = None, f"{self.charger_id}: {exc.message}"
        except TimeoutError:
            self.schedule, self.problem = None, f"{self.charger_id}: no answer in time"
        except ScheduleError as exc:
            self.schedule, self.problem = None, f"{self.charger_id}: {exc}"
        self.asked += 1
        self.draw()

    def on_resize(self) -> None:
        self.draw()

    def draw(self) -> None:
        head = self.query_one("#schedule-summary", Static)
        chart = self.query_one("#schedule-chart", Static)
        periods = self.query_one("#schedule-periods", Static)
        if self.schedule is None:
            head.update(Text(self.problem, style="bold red" if self.asked else ""))
            chart.update("")
            periods.update("")
            return
        now = self.console.clock()
        lines = period_lines(self.schedule, now)
        width, height = self.app.size
        # At 80x24 the chart, its axis and up to 6 periods fit without scrolling.
        rows = max(4, min(14, height - 9 - min(len(lines), 6)))
        head.update(summary(self.schedule, now))
        chart.update(step_chart(self.schedule, now, width=width - 2, height=rows))
        periods.update(Text("\n").join(lines))

    # --- keys ---------------------------------------------------------------------

    def _again(self) -> None:
        self._title()
        self.schedule, self.problem = None, "asking the charger…"
        self.draw()
        self.refresh_data()

    def action_ask(self) -> None:
        self._again()

    def action_connector(self) -> None:
        charger = self.console.site.chargers.get(self.charger_id)
        known = sorted({0, *(charger.connectors if charger else ())})
        later = [c for c in known if c > self.connector_id]
        self.connector_id = later[0] if later else known[0]
        self._again()

    def action_longer(self) -> None:
        self.duration = min(MAX_DURATION, self.duration * 2)
        self._again()

    def action_shorter(self) -> None:
        self.duration = max(MIN_DURATION, self.duration // 2)
        self._again()

    def action_unit(self) -> None:
        self.unit = UNITS[(UNITS.index(self.unit) + 1) % len(UNITS)]
        self._again()
