"""`l`: site load management, live (issue 17, docs/load-management.md "What an operator
sees"). Each circuit's load per phase against its limit as bars with a sparkline of
its recent load, each session's offered and drawn current, parked sessions and why,
chargers that do not follow limits and what they are counted at, overloaded circuits.

Data: ``circuits.list`` (the tree and the latest round) when the screen opens, every
``REREAD_EVERY`` seconds (the tree has no event of its own) and when a round names
circuits the tree does not; between reads every ``load.allocation`` event (published
after each round) replaces the live view. Drawing is pure (console/load_view.py); the
history behind the sparklines is the app's (``ConsoleApp.load_history``), fed by every
round the console sees, so it is there when the screen opens.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from console.link import RequestFailed
from console.load_view import circuit_lines, counted_lines, session_lines, summary_line
from console.screens import LiveScreen

REREAD_EVERY = 15.0  # seconds: circuits added, changed or removed show within this
REDRAW_EVERY = 0.25  # at most this often while rounds arrive (a burst is one redraw)
AGE_EVERY = 1.0  # the "last round 3s ago" clock


class LoadScreen(LiveScreen):
    """Circuits per phase against their limits, sessions, parked and why; live."""

    BINDINGS = [
        Binding("escape,l", "app.pop_screen", "Back"),
        Binding("r", "reread", "Re-read"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.circuits: list[dict[str, Any]] = []
        self.live: dict[str, Any] | None = None
        self.problem = "reading the circuits…"
        self.reads = 0  # circuits.list answers, for tests
        self.rounds = 0  # load.allocation events applied, for tests
        self._dirty = True

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="load"):
            yield Static(id="load-summary")
            yield Static(id="load-circuits")
            yield Static(id="load-sessions")
            yield Static(id="load-counted")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Site load"
        self.sub_title = "per phase against each circuit's limit"
        self.set_interval(REREAD_EVERY, self._reread_later)
        self.set_interval(REDRAW_EVERY, self._draw_if_dirty)
        self.set_interval(AGE_EVERY, self._mark_dirty)
        self.start_live()

    def _reread_later(self) -> None:
        self._stale = True

    def _mark_dirty(self) -> None:
        self._dirty = True

    def site_event(self, name: str, data: dict[str, Any]) -> None:
        if name != "load.allocation":
            return
        self.live = data
        self.rounds += 1
        self._dirty = True
        known = {str(c.get("name")) for c in self.circuits}
        named = {str(x.get("circuit")) for x in data.get("loads") or []}
        if named != known:  # a circuit added, renamed or removed: re-read the tree
            self._stale = True

    @work(exclusive=True, group="load")
    async def refresh_data(self) -> None:
        try:
            result = await self.console.link.request("circuits.list")
        except RequestFailed as exc:
            self.problem = f"circuits: {exc.message}"
        except TimeoutError:
            self.problem = "circuits: no answer in time"
        else:
            self.problem = ""
            self.circuits = list(result.get("circuits") or [])
            live = result.get("live")
            if live is not None:
                self.console.load_history.add(live, self.console.clock())
            if not self.circuits:
                self.live = None
            elif live is not None and _newer(live, self.live):
                self.live = live
        self.reads += 1
        self.draw()

    def action_reread(self) -> None:
        self.refresh_data()

    def on_resize(self) -> None:
        self.draw()

    def _draw_if_dirty(self) -> None:
        if self._dirty:
            self.draw()

    def draw(self) -> None:
        self._dirty = False
        now = self.console.clock()
        width = max(40, self.app.size.width - 1)  # the scrollbar's column
        summary = self.query_one("#load-summary", Static)
        if self.problem:
            summary.update(Text(self.problem, style="bold red" if self.reads else ""))
        else:
            summary.update(summary_line(self.circuits, self.live, now))
        history = self.console.load_history
        lines = circuit_lines(self.circuits, self.live, history, now, width)
        self.query_one("#load-circuits", Static).update(Text("\n").join(lines))
        sessions = self.query_one("#load-sessions", Static)
        counted = self.query_one("#load-counted", Static)
        if not self.circuits:
            sessions.update("")
            counted.update("")
            return
        sessions.update(Text("\n").join(session_lines(self.live, self.circuits, width)))
        counted.update(Text("\n").join(counted_lines(self.live, width)))


def _newer(candidate: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """A snapshot read while events arrived may be older than the last event."""
    if current is None:
        return True
    return str(candidate.get("computed_at") or "") >= str(current.get("computed_at") or "")
