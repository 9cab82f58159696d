"""The Voltaro console: live site status and remote commands, over the control socket.

Flow: the link's reader posts every frame as a message (``Frame``) and never waits; the
message handler applies it to the model (console/model.py) and marks rows dirty; a
timer redraws dirty rows in batches. Re-reading the whole state (a resync: after a
reconnect, a dropped-events marker or a charger the model does not know) runs in its own
exclusive worker, so the reader keeps delivering replies meanwhile (issue 12 #1).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, RichLog, Static

from console.campaign_screen import CampaignScreen
from console.commands import COMMANDS, CommandSpec, confirmation, is_destructive
from console.feed import FeedLine, describe
from console.link import ControlLink, LinkState, RequestFailed
from console.load_screen import LoadScreen
from console.load_view import LoadHistory
from console.model import Charger, Site
from console.render import (
    CHARGER_COLUMNS,
    CONNECTOR_COLUMNS,
    SORTS,
    charger_cells,
    connector_rows,
    matches_filter,
    site_bar,
    sort_key,
    sparkline,
)
from console.schedule_screen import ScheduleScreen
from console.screens import (
    AlertsScreen,
    AuditScreen,
    CommandForm,
    CommandMenu,
    Confirm,
    DetailScreen,
    EventsScreen,
    HelpScreen,
    TagScreen,
    TransactionsScreen,
    filter_key_applies,
)
from console.table import LiveTable
from voltaro.control import wire

FLUSH_EVERY = 0.25  # seconds between batched table redraws
POWER_SAMPLE_EVERY = 60.0  # one sparkline sample a minute: the bar shows the last hour
AGES_EVERY = 5.0  # "last seen 12s ago" is redrawn this often
HEALTH_EVERY = 60.0  # the per-charger health flags (flapping, drifting) are re-read this often
FRAMES_PER_TURN = 200  # events handled before keys and redraws get their turn
HEADER_EVERY = 1.0  # the site bar's power total follows meter values this often
# Events that cannot move a charger in the order unless the table is sorted by one of
# these columns (a meter value changes kW, kWh and last seen, nothing else).
ORDER_NEUTRAL = {"meter.values": {"kw", "kwh", "seen"}, "chargers.seen": {"seen"}}


def utc_now() -> datetime:
    return datetime.now(UTC)


class ChargerCommands(Provider):
    """Command palette: every command for every charger (ctrl+p)."""

    async def search(self, query: str) -> Hits:
        app = self.app
        assert isinstance(app, ConsoleApp)
        matcher = self.matcher(query)
        for charger_id in sorted(app.site.chargers):
            for spec in COMMANDS:
                text = f"{spec.action} {charger_id}"
                score = matcher.match(text)
                if score > 0:
                    yield Hit(
                        score,
                        matcher.highlight(text),
                        partial(app.start_command, charger_id, spec),
                        help=spec.title,
                    )


class SiteBar(Static):
    """The site at a glance; a click opens the list behind its attention count (F7)."""

    def on_click(self) -> None:
        self.app.push_screen(AlertsScreen())


class MainScreen(Screen[None]):
    """The site at a glance. Its keys (and only its keys) are in its footer."""

    BINDINGS = [
        Binding("f1", "app.help", "Help"),
        Binding("ctrl+o", "app.commands", "Commands"),
        Binding("f2", "app.details", "Details"),
        Binding("f3", "app.transactions", "Sessions"),
        # Before F7 so that 80 columns show it: the site bar names F7 when there are alerts.
        Binding("l", "app.load", "Load"),
        Binding("slash", "app.filter", "Filter", priority=True),
        Binding("f7", "app.alerts", "Alerts"),
        Binding("s", "app.sort", "Sort"),
        Binding("r", "app.reverse", "Reverse", show=False),
        Binding("f4", "app.tags", "Tags", show=False),
        Binding("f5", "app.reload", "Reload", show=False),
        Binding("f6", "app.accept", "Accept", show=False),
        Binding("f8", "app.events", "Events", show=False),
        Binding("f9", "app.campaigns", "Firmware", show=False),
        Binding("f10", "app.audit", "Audit", show=False),
        Binding("escape", "app.clear_filter", "Clear filter", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="banner")
        yield SiteBar("", id="sitebar")
        yield Input(placeholder="filter: id, vendor, status or tag (Escape clears)", id="filter")
        yield LiveTable(
            id="chargers",
            cursor_type="row",
            zebra_stripes=True,
            fixed_columns=1,
            cursor_foreground_priority="renderable",
        )
        yield DataTable(
            id="connectors",
            cursor_type="none",
            cursor_foreground_priority="renderable",
            show_cursor=False,
        )
        yield RichLog(id="feed", max_lines=500)
        yield Footer()

    def on_mount(self) -> None:
        app = self.app
        assert isinstance(app, ConsoleApp)
        app.main_ready()


class ConsoleApp(App[None]):
    TITLE = "Voltaro"
    CSS = """
    #banner { background: $error; color: $text; height: auto; padding: 0 1; display: none; }
    #banner.shown { display: block; }
    #sitebar { height: auto; padding: 0 1; background: $boost; }
    #filter, #tx-filter, #events-filter, #audit-filter { display: none; height: 3; }
    #filter.shown, #tx-filter.shown, #events-filter.shown, #audit-filter.shown {
        display: block;
    }
    #chargers { height: 1fr; min-height: 4; }
    #connectors { height: auto; max-height: 6; border-top: solid $primary-darken-2; }
    #feed { height: 5; border-top: solid $primary; }
    .dialog { width: 76; height: auto; max-height: 90%; background: $panel;
              border: thick $primary; padding: 0 1; }
    .help { width: 80; padding: 0; }
    .wide { width: 95%; }
    .buttons { height: auto; margin-top: 1; }
    .buttons Button { margin-right: 2; }
    ModalScreen { align: center middle; }
    #detail { height: 1fr; }
    #detail-connectors, #frames { height: auto; max-height: 12; }
    #transactions, #alerts, #tags { height: 1fr; }
    #events { height: 1fr; }
    #campaigns { height: auto; max-height: 8; }
    #load { height: 1fr; scrollbar-size-vertical: 1; }
    #load-sessions, #load-counted { margin-top: 1; }
    #targets { height: 1fr; }
    """
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]
    COMMANDS = App.COMMANDS | {ChargerCommands}

    class Frames(Message):
        """Frames from the server (events, resync markers) wait in the inbox."""

    class Link(Message):
        """The link connected or went down."""

        def __init__(self, state: LinkState) -> None:
            super().__init__()
            self.state = state

    def __init__(self, socket_path: str, *, clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__()
        self.link = ControlLink(socket_path)
        self.clock = clock
        self.site = Site()
        self.role = wire.Role.VIEWER
        self.stale = True  # nothing is known to be current until the first resync
        self.link_reason = "connecting…"
        self.sort = "attention"
        self.reverse = False
        self.filter_text = ""
        self._dirty: set[str] = set()  # changed since the last redraw
        self._offscreen: set[str] = set()  # changed, not redrawn until scrolled into view
        self._order: list[str] = []
        self._order_dirty = True  # something happened that may move a row
        self._header_dirty = True  # something besides meter values changed the header
        self._header_at = 0.0  # monotonic time of the last header update
        self._resync_wanted = False
        self._resyncing = False
        self._replay: list[tuple[str, dict[str, Any], str | None, str | None]] = []
        self._inbox: deque[dict[str, Any]] = deque()
        self._inbox_posted = False
        self._cells: dict[str, tuple[Any, ...]] = {}
        self.power_history: deque[float] = deque(maxlen=60)
        # Recent load per circuit from every round seen, for the load screen's sparklines.
        self.load_history = LoadHistory()
        self.feed_lines: deque[FeedLine] = deque(maxlen=5000)
        self.main = MainScreen()

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def main_ready(self) -> None:
        """Called by the main screen once its widgets exist."""
        # Widgets of the main screen, kept so that updates reach them while another
        # screen is on top (App.query_one searches the active screen only).
        self.table = self.main.query_one("#chargers", LiveTable)
        self.connectors = self.main.query_one("#connectors", DataTable)
        self.feed = self.main.query_one("#feed", RichLog)
        self.banner = self.main.query_one("#banner", Static)
        self.sitebar = self.main.query_one("#sitebar", Static)
        for label, key in CHARGER_COLUMNS:
            self.table.add_column(label, key=key)
        for label, key in CONNECTOR_COLUMNS:
            self.connectors.add_column(label, key=key)
        self.sub_title = "connecting…"
        self.set_interval(FLUSH_EVERY, self._redraw)
        self.watch(self.table, "scroll_y", lambda: self._draw_rows_in_view(), init=False)
        self.set_interval(POWER_SAMPLE_EVERY, self._sample_power)
        self.set_interval(AGES_EVERY, self._age_tick)
        self.set_interval(HEALTH_EVERY, self._health_tick)
        self._show_banner()
        self.table.focus()
        self.follow_server()

    def deliver_screenshot(
        self,
        filename: str | None = None,
        path: str | None = None,
        time_format: str | None = None,
    ) -> str | None:
        """The palette's Screenshot: Textual's default saves into ~/Downloads, which a
        server account seldom has (the save failed). Save into VOLTARO_SCREENSHOT_DIR or
        the current directory, falling back to the temporary directory; say where."""
        candidates = [path, os.environ.get("VOLTARO_SCREENSHOT_DIR"), os.getcwd()]
        candidates.append(tempfile.gettempdir())
        reason = "no directory"
        for directory in [c for c in candidates if c]:
            try:
                Path(directory).mkdir(parents=True, exist_ok=True)
                saved = self.save_screenshot(filename, directory, time_format)
            except OSError as exc:
                reason = f"{directory}: {exc.strerror or exc}"
                continue
            self.notify(f"Saved screenshot to {saved}", title="Screenshot")
            return saved
        self.notify(f"Screenshot not saved: {reason}", title="Screenshot", severity="error")
        return None

    def now_text(self) -> str:
        return self.clock().strftime("%H:%M:%S")

    # --- server link -----------------------------------------------------------------

    @work(exclusive=True, group="link")
    async def follow_server(self) -> None:
        def on_frame(frame: dict[str, Any]) -> None:
            # Only queues and posts: the reader never waits. One message carries every
            # frame that arrived meanwhile (one message per frame cost more than the
            # frames themselves at hundreds of meter values a second).
            self._inbox.append(frame)
            if not self._inbox_posted:
                self._inbox_posted = True
                self.post_message(self.Frames())

        def on_state(state: LinkState) -> None:
            self.post_message(self.Link(state))

        await self.link.run(on_frame, on_state)

    @on(Link)
    def _on_link(self, message: Link) -> None:
        state = message.state
        if state.connected and state.hello is not None:
            self.role = wire.Role(state.hello.get("role", "viewer"))
            self.log_feed(
                FeedLine(
                    self.now_text(),
                    "",
                    "ok",
                    "links",
                    f"connected to the server as {state.hello.get('user')} ({self.role})",
                )
            )
            self.link_reason = ""
            self.request_resync()
        else:
            if not self.stale or self.link_reason != state.reason:
                self.log_feed(FeedLine(self.now_text(), "", "fault", "links", state.reason))
            self.stale = True
            self.link_reason = state.reason
            self._dirty.update(self.site.chargers)
        self._show_banner()

    def request_resync(self) -> None:
        """Re-read the whole state soon, in the resync worker (coalesced)."""
        self._resync_wanted = True
        if not self._resyncing:
            self._resyncing = True
            self._resync_worker()

    @work(exclusive=True, group="resync")
    async def _resync_worker(self) -> None:
        try:
            while self._resync_wanted and self.link.connected:
                self._resync_wanted = False
                self._replay = []
                try:
                    status = await self.link.request("status")
                    listed = await self.link.request("chargers.list")
                    interrupted = await self.link.request(
                        "transactions.list", {"state": "interrupted", "limit": 1000}
                    )
                except (RequestFailed, TimeoutError) as exc:
                    self.log_feed(
                        FeedLine(
                            self.now_text(),
                            "",
                            "warning",
                            "links",
                            f"could not re-read the state: {exc}",
                        )
                    )
                    return
                self.site.load(status, listed, interrupted, self.clock())
                await self._read_health_flags()
                # Events that arrived while the snapshot was read may be newer than it.
                for name, data, at, node in self._replay:
                    self.site.apply(name, data, at, node)
                self._replay = []
                self.stale = False
                self._dirty.update(self.site.chargers)
                self._order = []  # force a full redraw in the new order
                self._show_banner()
                self._redraw()
        finally:
            self._resyncing = False
            self._replay = []

    async def _read_health_flags(self) -> None:
        """Chargers flapping or drifting (issue 19): no event announces them, they are
        read at every resync and every HEALTH_EVERY seconds. A server without the op
        (older) or a failed read leaves the alerts as they were."""
        try:
            flagged = await self.link.request("chargers.health", {"flagged": True})
        except (RequestFailed, TimeoutError):
            return
        self.site.set_charger_flags(flagged, self.now_text())
        self.refresh_site()
        if isinstance(self.screen, AlertsScreen):
            self.screen.show_alerts()

    def _health_tick(self) -> None:
        if self.link.connected and not self.stale:
            self._health_worker()

    @work(exclusive=True, group="health-flags")
    async def _health_worker(self) -> None:
        await self._read_health_flags()

    @on(Frames)
    def _on_frames(self, message: Frames) -> None:
        """Handle a bounded batch, then let keys and redraws in before the next one."""
        self._inbox_posted = False
        for _ in range(min(len(self._inbox), FRAMES_PER_TURN)):
            self._on_frame(self._inbox.popleft())
        if self._inbox and not self._inbox_posted:
            self._inbox_posted = True
            self.post_message(self.Frames())

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "resync":
            self.log_feed(
                FeedLine(
                    self.now_text(),
                    "",
                    "warning",
                    "links",
                    "the console fell behind and missed events; re-reading the state",
                )
            )
            self.request_resync()
            return
        if frame["type"] != "event":
            return
        name, data, at = str(frame["event"]), dict(frame.get("data") or {}), frame.get("at")
        node = frame.get("node")  # another node of a cluster published it
        if name == "load.allocation":
            self.load_history.add(data, self.clock())
            self.site.set_load_alerts(data, at or "")
        if self._resyncing:
            self._replay.append((name, data, at, node))
        known = self.site.apply(name, data, at, node)
        if self.sort in ORDER_NEUTRAL.get(name, {self.sort}):
            self._order_dirty = True
        if name != "meter.values":
            self._header_dirty = True
        charger_id = data.get("charger_id")
        if isinstance(charger_id, str):
            self._dirty.add(charger_id)
        elif name == "chargers.seen":
            self._dirty.update(data.get("chargers") or {})
        if name == "server.health":
            self._show_banner()
        if not known or name in ("charger.updated", "charger.removed"):
            self.request_resync()
        line = describe(name, data, at)
        if line is not None:
            self.log_feed(line)
        for screen in self.screen_stack:
            handler = getattr(screen, "site_event", None)
            if handler is not None:
                handler(name, data)

    # --- drawing -----------------------------------------------------------------------

    def _show_banner(self) -> None:
        banner = self.banner
        if self.stale and self.link_reason:
            banner.update(
                f"NOT CONNECTED: {self.link_reason}. Reconnecting… (rows are grey: stale)"
            )
            banner.add_class("shown")
        elif not self.site.database_ok:
            db = self.site.health.get("database") or {}
            # The driver's error can run to four lines at 80 columns: the banner says
            # what it means and the start of the error; F7 and F8 have all of it.
            error = " ".join(str(db.get("error") or "").split())
            if len(error) > 60:
                error = error[:59] + "…"
            banner.update(
                "DATABASE DOWN: the server cannot reach its database. Chargers get errors "
                "for transaction messages and retry them; nothing is lost."
                + (f" ({error})" if error else "")
            )
            banner.add_class("shown")
        else:
            banner.remove_class("shown")
        self._show_header()

    def _show_header(self) -> None:
        self._header_dirty = False
        self._header_at = time.monotonic()
        summary = self.site.summary(self.clock())
        if self.stale:
            self.sub_title = "disconnected" if self.link_reason else "connecting…"
        else:
            uptime = int(self.site.health.get("uptime_s", 0))
            db = "db ok" if self.site.database_ok else "DATABASE DOWN"
            total = len(self.site.chargers)
            self.sub_title = (
                f"{summary.online} of {total} online · {db} · "
                f"up {uptime // 3600}h{uptime % 3600 // 60:02d}m · {self.role}"
                + cluster_title(self.site.health.get("cluster"))
            )
        self.sitebar.update(
            site_bar(
                summary,
                sparkline(list(self.power_history)),
                stale=self.stale,
                alerts=len(self.site.alerts),
                protection=self.site.health.get("protection"),
                cluster=self.site.health.get("cluster"),
            )
        )

    def refresh_site(self) -> None:
        self._show_header()

    def _sample_power(self) -> None:
        self.power_history.append(self.site.summary(self.clock()).power_w)

    def _age_tick(self) -> None:
        self._dirty.update(self.site.chargers)

    def visible_order(self) -> list[str]:
        now = self.clock()
        shown = [c for c in self.site.chargers.values() if matches_filter(c, self.filter_text)]
        shown.sort(key=lambda c: sort_key(self.sort, self.site, c, now), reverse=self.reverse)
        return [c.charger_id for c in shown]

    def _redraw(self) -> None:
        """Redraw what changed: the changed cells of changed rows in place, or every row
        when the order changed. The selection always stays on the same charger (issue
        12 #3). The order is only recomputed when an event could have moved a row."""
        if not self._dirty and self._order:
            return
        table = self.table
        now = self.clock()
        selected = self.selected()
        order = self._order
        if self._order_dirty or not self._order:
            self._order_dirty = False
            order = self.visible_order()
        if order != self._order:
            table.clear()
            self._cells = {}
            for charger_id in order:
                cells = charger_cells(self.site.chargers[charger_id], now, stale=self.stale)
                table.add_row(*cells, key=charger_id)
                self._cells[charger_id] = tuple(_signature(c) for c in cells)
            self._order = order
            self._offscreen.clear()
            if selected is not None and selected in table.rows:
                table.move_cursor(row=table.get_row_index(selected), scroll=True)
        else:
            self._offscreen |= self._dirty
            self._draw_rows_in_view(now)
        if selected is None or selected in self._dirty or self.selected() != selected:
            self._show_connectors()
        self._dirty.clear()
        if self._header_dirty or time.monotonic() - self._header_at >= HEADER_EVERY:
            self._show_header()

    def _draw_rows_in_view(self, now: datetime | None = None) -> None:
        """Redraw the changed rows that are on screen; the others wait in ``_offscreen``
        until they scroll into view (with 1,000 chargers most changes are off screen,
        and a row's cells cost more to build than the event that changed them)."""
        if not self._offscreen:
            return
        table = self.table
        now = now or self.clock()
        for index in table.rows_in_view():
            charger_id = self._order[index]
            if charger_id not in self._offscreen:
                continue
            self._offscreen.discard(charger_id)
            charger = self.site.chargers.get(charger_id)
            if charger is None:
                continue
            cells = charger_cells(charger, now, stale=self.stale)
            before = self._cells.get(charger_id, ())
            after = tuple(_signature(c) for c in cells)
            # Only the cells that look different: a meter value changes two or three.
            changed = [
                (key, value)
                for n, ((_, key), value) in enumerate(zip(CHARGER_COLUMNS, cells, strict=True))
                if n >= len(before) or before[n] != after[n]
            ]
            if changed:
                table.set_cells(charger_id, changed)
            self._cells[charger_id] = after

    def _show_connectors(self) -> None:
        """The selected charger's connectors as rows (status, fault, session, energy)."""
        charger_id = self.selected()
        charger = self.site.chargers.get(charger_id) if charger_id else None
        self.connectors.clear()
        if charger is None:
            return
        for row in connector_rows(charger, self.clock(), stale=self.stale):
            self.connectors.add_row(*row)
        self.connectors.border_title = f"{charger.charger_id} connectors"

    @on(DataTable.RowHighlighted, "#chargers")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_connectors()

    @on(DataTable.HeaderSelected, "#chargers")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if self.sort == key:
            self.reverse = not self.reverse
        else:
            self.sort, self.reverse = key, False
        self._resort()

    def log_feed(self, line: FeedLine) -> None:
        self.feed_lines.append(line)
        if line.matches("all", ""):
            self.feed.write(line.render())
        for screen in self.screen_stack:
            if isinstance(screen, EventsScreen):
                screen.add_line(line)

    # --- selection, filter, sort ---------------------------------------------------------

    def selected(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def select_charger(self, charger_id: str) -> None:
        if charger_id in self.table.rows:
            self.table.move_cursor(row=self.table.get_row_index(charger_id))

    def _resort(self) -> None:
        self._order = []
        self._redraw()
        label = dict((k, lbl) for lbl, k in CHARGER_COLUMNS).get(self.sort, "attention")
        self.notify(f"sorted by {label}{' (reversed)' if self.reverse else ''}", timeout=1.5)

    def action_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.reverse = False
        self._resort()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self._resort()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return filter_key_applies(self.focused, action)

    def action_filter(self) -> None:
        box = self.main.query_one("#filter", Input)
        box.add_class("shown")
        # Focus now, not through focus()'s call_later: keys already queued behind the
        # `/` (a paste, tmux send-keys) must reach the box, not the table behind it.
        box.screen.set_focus(box)

    def action_clear_filter(self) -> None:
        box = self.main.query_one("#filter", Input)
        if box.has_class("shown"):
            box.value = ""
            box.remove_class("shown")
            self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._order = []
        self._redraw()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.table.focus()

    # --- actions -------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_commands(self) -> None:
        charger_id = self.selected()
        if charger_id is None:
            self.notify("no charger selected", severity="warning")
            return
        self.open_commands(charger_id)

    def open_commands(self, charger_id: str) -> None:
        def chosen(spec: CommandSpec | None) -> None:
            if spec is not None:
                self.start_command(charger_id, spec)

        self.push_screen(CommandMenu(charger_id, self.role), chosen)

    def start_command(self, charger_id: str, spec: CommandSpec) -> None:
        defaults: dict[str, str] = {}
        charger = self.site.chargers.get(charger_id)
        if charger is not None and charger.sessions:
            defaults["transaction_id"] = str(min(charger.sessions))

        def with_args(args: dict[str, Any] | None) -> None:
            if args is None:
                return
            if spec.op == "profiles.composite":
                self.open_schedule(charger_id, **args)
                return
            if is_destructive(spec, args):

                def confirmed(yes: bool | None) -> None:
                    if yes:
                        self.send_command(charger_id, spec, args)

                sessions = _sessions(charger)
                self.push_screen(Confirm(confirmation(spec, charger_id, args, sessions)), confirmed)
            else:
                self.send_command(charger_id, spec, args)

        if spec.fields:
            self.push_screen(CommandForm(spec, charger_id, defaults), with_args)
        else:
            with_args(dict(spec.fixed))

    def open_schedule(
        self,
        charger_id: str,
        connector_id: int = 0,
        duration: int = 3600,
        unit: str | None = None,
    ) -> None:
        """The connector's composite schedule as a live step chart."""
        self.push_screen(ScheduleScreen(charger_id, connector_id, duration, unit))

    @work(group="commands")
    async def send_command(self, charger_id: str, spec: CommandSpec, args: dict[str, Any]) -> None:
        self.notify(f"{spec.title} → {charger_id}…", timeout=2)
        now = self.now_text()
        try:
            if spec.op == "command":
                result = await self.link.request(
                    "command",
                    {"charger_id": charger_id, "action": spec.ocpp_action, "args": args},
                )
            else:
                result = await self.link.request(spec.op, {"charger_id": charger_id, **args})
        except (RequestFailed, TimeoutError) as exc:
            message = exc.message if isinstance(exc, RequestFailed) else "no answer in time"
            self.notify(f"{spec.title} on {charger_id}: {message}", severity="error")
            self.log_feed(
                FeedLine(
                    now,
                    charger_id,
                    "warning",
                    "commands",
                    f"{spec.title} on {charger_id}: {message}",
                )
            )
            return
        if isinstance(result, list):  # local_list.sync: one result per charger
            result = result[0] if result else {}
        status = (
            result.get("status")
            or result.get("answer")  # a reservation: the charger's answer
            or result.get("result")  # a local list sync
            or ("done" if spec.op != "command" else "?")
        )
        text = f"{spec.title} on {charger_id}: {status}"
        for entry in wire.redact(result.get("configuration", []))[:20]:
            text += f"\n{entry['key']} = {entry['value']}"
        for held in (result.get("details") or {}).get("certificates", []):
            # GetInstalledCertificateIds: what the charger holds of that type (the numbers
            # to delete by are those of `voltaro ctl certificates show`, over both types).
            text += f"\nserial {held['serialNumber']} ({held['hashAlgorithm']})"
        accepted = status in (
            "Accepted",
            "Unlocked",
            "Scheduled",
            "RebootRequired",
            "done",
            "up-to-date",
        )
        self.notify(text, severity="information" if accepted else "warning")
        self.log_feed(FeedLine(now, charger_id, "ok" if accepted else "warning", "commands", text))

    def action_details(self) -> None:
        charger_id = self.selected()
        if charger_id is None:
            self.notify("no charger selected", severity="warning")
            return
        self.push_screen(DetailScreen(charger_id))

    def action_transactions(self) -> None:
        self.push_screen(TransactionsScreen())

    def action_alerts(self) -> None:
        self.push_screen(AlertsScreen())

    def action_events(self) -> None:
        self.push_screen(EventsScreen())

    def action_campaigns(self) -> None:
        self.push_screen(CampaignScreen())

    def action_audit(self) -> None:
        self.push_screen(AuditScreen())

    def action_load(self) -> None:
        self.push_screen(LoadScreen())

    @work(group="views")
    async def action_tags(self) -> None:
        try:
            rows = await self.link.request("tags.list")
        except (RequestFailed, TimeoutError) as exc:
            self.notify(f"tags: {exc}", severity="error")
            return
        self.push_screen(TagScreen(rows))

    def action_reload(self) -> None:
        self.request_resync()

    def close_transaction(self, tx: dict[str, Any]) -> None:
        """Close an interrupted transaction (h-tx's transactions.close) after a question."""
        tx_id = int(tx["transaction_id"])
        question = (
            f"Close transaction {tx_id} on {tx.get('charger_id')} connector "
            f"{tx.get('connector_id')} ({tx.get('state')}): billed up to its last meter "
            f"value ({tx.get('last_meter_wh') if tx.get('last_meter_wh') is not None else '?'} Wh)"
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._close_tx(tx_id, tx.get("last_meter_wh"))

        self.push_screen(Confirm(question), confirmed)

    @work(group="commands")
    async def _close_tx(self, tx_id: int, meter_stop: Any) -> None:
        try:
            await self.link.request(
                "transactions.close",
                {
                    "transaction_id": tx_id,
                    "meter_stop": int(meter_stop) if isinstance(meter_stop, int | float) else None,
                    "reason": "closed by an operator in the console",
                },
            )
        except (RequestFailed, TimeoutError) as exc:
            message = exc.message if isinstance(exc, RequestFailed) else "no answer in time"
            self.notify(f"close transaction {tx_id}: {message}", severity="error")
            return
        self.notify(f"transaction {tx_id} closed")
        self.log_feed(
            FeedLine(self.now_text(), "", "ok", "sessions", f"transaction {tx_id} closed")
        )

    @work(group="commands")
    async def action_accept(self) -> None:
        charger_id = self.selected()
        if charger_id is None:
            return
        now = self.now_text()
        try:
            result = await self.link.request("chargers.accept", {"charger_id": charger_id})
        except (RequestFailed, TimeoutError) as exc:
            message = exc.message if isinstance(exc, RequestFailed) else "no answer in time"
            self.notify(f"accept {charger_id}: {message}", severity="error")
            return
        text = f"{charger_id} accepted"
        if result.get("boot_trigger"):
            text += f"; asked it to boot again: {result['boot_trigger']}"
        self.notify(text)
        self.log_feed(FeedLine(now, charger_id, "ok", "commands", text))


def _sessions(charger: Charger | None) -> dict[int, int]:
    if charger is None:
        return {}
    return {t.transaction_id: t.connector_id for t in charger.sessions.values()}


def _signature(cell: Text) -> tuple[str, str, tuple[Any, ...]]:
    """What a cell looks like, to skip redrawing cells that did not change."""
    return (cell.plain, str(cell.style), tuple(cell.spans))


def cluster_title(cluster: Any) -> str:
    """Several nodes (issue 18): which node this console is attached to and how many
    nodes hold a lease, as of the last status read."""
    if not isinstance(cluster, dict):
        return ""
    nodes = cluster.get("nodes") or []
    live = sum(1 for n in nodes if isinstance(n, dict) and n.get("live"))
    fenced = " FENCED" if cluster.get("fenced") else ""
    return f" · node {cluster.get('node_id')}{fenced} ({live}/{len(nodes)} nodes live)"
