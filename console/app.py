"""The Voltaro console: live site status and remote commands, over the control socket.

Flow: the link's reader posts every frame as a message (``Frame``) and never waits; the
message handler applies it to the model (console/model.py) and marks rows dirty; a
timer redraws dirty rows in batches. Re-reading the whole state (a resync: after a
reconnect, a dropped-events marker or a charger the model does not know) runs in its own
exclusive worker, so the reader keeps delivering replies meanwhile (issue 12 #1).
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from functools import partial
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, RichLog, Static

from console.commands import COMMANDS, CommandSpec, confirmation, is_destructive
from console.feed import FeedLine, describe
from console.link import ControlLink, LinkState, RequestFailed
from console.model import Site
from console.render import (
    CHARGER_COLUMNS,
    attention_key,
    charger_cells,
    site_bar,
    sparkline,
)
from console.screens import (
    CommandForm,
    CommandMenu,
    Confirm,
    DetailScreen,
    HelpScreen,
    ListScreen,
    TagScreen,
)
from voltaro.control import wire

FLUSH_EVERY = 0.25  # seconds between batched table redraws
POWER_SAMPLE_EVERY = 60.0  # one sparkline sample a minute: the bar shows the last hour


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


class ConsoleApp(App[None]):
    TITLE = "Voltaro"
    CSS = """
    #banner { background: $error; color: $text; height: auto; padding: 0 1; display: none; }
    #banner.shown { display: block; }
    #sitebar { height: 1; padding: 0 1; background: $boost; }
    #chargers { height: 1fr; }
    #feed { height: 6; border-top: solid $primary; }
    .dialog { width: 70; height: auto; max-height: 90%; background: $panel;
              border: thick $primary; padding: 1 2; }
    .wide { width: 95%; }
    .buttons { height: auto; margin-top: 1; }
    .buttons Button { margin-right: 2; }
    ModalScreen { align: center middle; }
    """
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help"),
        Binding("ctrl+o", "commands", "Commands"),
        Binding("f2", "details", "Details"),
        Binding("f3", "transactions", "Transactions"),
        Binding("f4", "tags", "Tags"),
        Binding("f5", "reload", "Reload"),
        Binding("f6", "accept", "Accept charger"),
    ]
    COMMANDS = App.COMMANDS | {ChargerCommands}

    class Frame(Message):
        """A frame from the server (event or resync marker), posted by the link reader."""

        def __init__(self, frame: dict[str, Any]) -> None:
            super().__init__()
            self.frame = frame

    class Link(Message):
        """The link connected or went down."""

        def __init__(self, state: LinkState) -> None:
            super().__init__()
            self.state = state

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.link = ControlLink(socket_path)
        self.site = Site()
        self.role = wire.Role.VIEWER
        self.stale = True  # nothing is known to be current until the first resync
        self.link_reason = "connecting…"
        self._dirty: set[str] = set()
        self._order: list[str] = []
        self._resync_wanted = False
        self._resyncing = False
        self._replay: list[tuple[str, dict[str, Any], str | None]] = []
        self.power_history: deque[float] = deque(maxlen=60)
        self.feed_lines: deque[FeedLine] = deque(maxlen=2000)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="banner")
        yield Static("", id="sitebar")
        yield DataTable(
            id="chargers",
            cursor_type="row",
            zebra_stripes=True,
            fixed_columns=1,
            cursor_foreground_priority="renderable",
        )
        yield RichLog(id="feed", max_lines=500, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        # Widgets of the main screen, kept so that updates reach them while a modal
        # screen is on top (App.query_one searches the active screen only).
        self.table = self.query_one("#chargers", DataTable)
        self.feed = self.query_one("#feed", RichLog)
        self.banner = self.query_one("#banner", Static)
        self.sitebar = self.query_one("#sitebar", Static)
        table = self.table
        for label, key in CHARGER_COLUMNS:
            table.add_column(label, key=key)
        self.sub_title = "connecting…"
        self.set_interval(FLUSH_EVERY, self._redraw)
        self.set_interval(POWER_SAMPLE_EVERY, self._sample_power)
        self._show_banner()
        self.follow_server()

    # --- server link -----------------------------------------------------------------

    @work(exclusive=True, group="link")
    async def follow_server(self) -> None:
        def on_frame(frame: dict[str, Any]) -> None:
            self.post_message(self.Frame(frame))  # only posts: the reader never waits

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
                    utc_now().strftime("%H:%M:%S"),
                    "",
                    "ok",
                    "links",
                    f"connected to the server as {state.hello.get('user')} ({self.role})",
                )
            )
            self.link_reason = ""
            self.request_resync()
        else:
            if not self.stale:
                self.log_feed(
                    FeedLine(utc_now().strftime("%H:%M:%S"), "", "fault", "links", state.reason)
                )
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
                except (RequestFailed, TimeoutError) as exc:
                    self.log_feed(
                        FeedLine(
                            utc_now().strftime("%H:%M:%S"),
                            "",
                            "warning",
                            "links",
                            f"could not re-read the state: {exc}",
                        )
                    )
                    return
                self.site.load(status, listed)
                # Events that arrived while the snapshot was read may be newer than it.
                for name, data, at in self._replay:
                    self.site.apply(name, data, at)
                self._replay = []
                self.stale = False
                self._dirty.update(self.site.chargers)
                self._order = []  # force a full redraw in the new order
                self._show_banner()
                self._redraw()
        finally:
            self._resyncing = False
            self._replay = []

    @on(Frame)
    def _on_frame(self, message: Frame) -> None:
        frame = message.frame
        if frame["type"] == "resync":
            self.log_feed(
                FeedLine(
                    utc_now().strftime("%H:%M:%S"),
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
        if self._resyncing:
            self._replay.append((name, data, at))
        known = self.site.apply(name, data, at)
        charger_id = data.get("charger_id")
        if isinstance(charger_id, str):
            self._dirty.add(charger_id)
        if name == "server.health":
            self._show_banner()
        if not known or name in ("charger.updated", "charger.removed"):
            self.request_resync()
        line = describe(name, data, at)
        if line is not None:
            self.log_feed(line)

    # --- drawing -----------------------------------------------------------------------

    def _show_banner(self) -> None:
        banner = self.banner
        if self.stale and self.link_reason:
            banner.update(f"NOT CONNECTED: {self.link_reason}. Reconnecting…")
            banner.add_class("shown")
        elif not self.site.database_ok:
            db = self.site.health.get("database") or {}
            banner.update(
                "DATABASE DOWN: "
                f"{db.get('error') or 'the server cannot reach its database'}. "
                "Chargers get errors for transaction messages and retry them; nothing is lost."
            )
            banner.add_class("shown")
        else:
            banner.remove_class("shown")
        self._show_header()

    def _show_header(self) -> None:
        summary = self.site.summary(utc_now())
        if self.stale:
            self.sub_title = "disconnected" if self.link_reason else "connecting…"
        else:
            uptime = int(self.site.health.get("uptime_s", 0))
            db = "db ok" if self.site.database_ok else "DATABASE DOWN"
            total = len(self.site.chargers)
            self.sub_title = (
                f"{summary.online} of {total} online · {db} · "
                f"up {uptime // 3600}h{uptime % 3600 // 60:02d}m · {self.role}"
            )
        self.sitebar.update(
            site_bar(summary, sparkline(list(self.power_history)), stale=self.stale)
        )

    def _sample_power(self) -> None:
        self.power_history.append(self.site.summary(utc_now()).power_w)

    def visible_order(self) -> list[str]:
        now = utc_now()
        return [
            c.charger_id
            for c in sorted(
                self.site.chargers.values(), key=lambda c: attention_key(self.site, c, now)
            )
        ]

    def _redraw(self) -> None:
        """Redraw what changed: cell updates in place, or rows re-added when the order
        changed. The selection always stays on the same charger (issue 12 #3)."""
        if not self._dirty and self._order:
            return
        table = self.table
        now = utc_now()
        order = self.visible_order()
        if order != self._order:
            selected = self.selected()
            table.clear()
            for charger_id in order:
                cells = charger_cells(self.site.chargers[charger_id], now, stale=self.stale)
                table.add_row(*cells, key=charger_id)
            self._order = order
            if selected is not None and selected in table.rows:
                table.move_cursor(row=table.get_row_index(selected), scroll=True)
        else:
            for charger_id in self._dirty:
                charger = self.site.chargers.get(charger_id)
                if charger is None or charger_id not in table.rows:
                    continue
                cells = charger_cells(charger, now, stale=self.stale)
                for (_, key), value in zip(CHARGER_COLUMNS, cells, strict=True):
                    table.update_cell(charger_id, key, value)
        self._dirty.clear()
        self._show_header()

    def log_feed(self, line: FeedLine) -> None:
        self.feed_lines.append(line)
        if line.matches("all", ""):
            self.feed.write(line.render())

    # --- actions -------------------------------------------------------------------

    def selected(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_commands(self) -> None:
        charger_id = self.selected()
        if charger_id is None:
            self.notify("no charger selected", severity="warning")
            return

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
            if is_destructive(spec, args):

                def confirmed(yes: bool | None) -> None:
                    if yes:
                        self.send_command(charger_id, spec, args)

                sessions = (
                    {t.transaction_id: t.connector_id for t in charger.sessions.values()}
                    if charger is not None
                    else {}
                )
                self.push_screen(Confirm(confirmation(spec, charger_id, args, sessions)), confirmed)
            else:
                self.send_command(charger_id, spec, args)

        self.push_screen(CommandForm(spec, charger_id, defaults), with_args)

    @work(group="commands")
    async def send_command(self, charger_id: str, spec: CommandSpec, args: dict[str, Any]) -> None:
        self.notify(f"{spec.title} → {charger_id}…", timeout=2)
        now = utc_now().strftime("%H:%M:%S")
        try:
            result = await self.link.request(
                "command", {"charger_id": charger_id, "action": spec.ocpp_action, "args": args}
            )
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
        text = f"{spec.title} on {charger_id}: {result.get('status')}"
        for entry in result.get("configuration", [])[:20]:
            text += f"\n{entry['key']} = {entry['value']}"
        accepted = result.get("status") in ("Accepted", "Unlocked", "Scheduled", "RebootRequired")
        self.notify(text, severity="information" if accepted else "warning")
        self.log_feed(FeedLine(now, charger_id, "ok" if accepted else "warning", "commands", text))

    @work(group="views")
    async def action_details(self) -> None:
        charger_id = self.selected()
        if charger_id is None:
            return
        try:
            charger = await self.link.request("chargers.show", {"charger_id": charger_id})
            frames = await self.link.request(
                "chargers.frames", {"charger_id": charger_id, "limit": 100}
            )
        except (RequestFailed, TimeoutError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(DetailScreen(charger, frames))

    @work(group="views")
    async def action_transactions(self) -> None:
        try:
            rows = await self.link.request("transactions.list", {"limit": 100})
        except (RequestFailed, TimeoutError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(
            ListScreen(
                "Transactions (latest first)",
                ["Tx", "Charger", "Conn", "Tag", "State", "Start", "Stop", "Wh", "Reason"],
                [
                    [
                        t["transaction_id"],
                        t["charger_id"],
                        t["connector_id"],
                        t["id_tag"],
                        t["state"],
                        t["start_time"],
                        t["stop_time"],
                        t["energy_wh"],
                        t["stop_reason"],
                    ]
                    for t in rows
                ],
            )
        )

    @work(group="views")
    async def action_tags(self) -> None:
        try:
            rows = await self.link.request("tags.list")
        except (RequestFailed, TimeoutError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(TagScreen(rows, self.link))

    def action_reload(self) -> None:
        self.request_resync()

    @work(group="commands")
    async def action_accept(self) -> None:
        charger_id = self.selected()
        if charger_id is None:
            return
        now = utc_now().strftime("%H:%M:%S")
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
