"""The console's screens besides the main one: dialogs, the live detail and transactions
views, alerts, events and tags. Each shows its own keys in its own footer."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    OptionList,
    RichLog,
    Static,
)
from textual.widgets.option_list import Option

from console.commands import COMMANDS, CommandSpec, FormError, build_args
from console.feed import CATEGORIES, FeedLine
from console.link import RequestFailed
from console.model import parse_time
from console.render import STATUS_STYLE, health_text, kwh, sparkline
from voltaro.control import wire

if TYPE_CHECKING:
    from console.app import ConsoleApp

HELP = """\
[b]Voltaro console[/b]   (keys of each screen are in its footer)
 ↑↓ PgUp/PgDn  select a charger     /  filter (id, vendor, status, tag)
 s  sort by the next column          r  reverse the order
 ctrl+o  commands for the charger    ctrl+p  palette: any command, any charger
 F2  details (live): connectors, sessions, history, config, commands, frames;
     g there: the selected connector's composite schedule as a step chart
 F3  transactions and orphan stops (live): / t state, p period, f from-to;
     Enter opens one, c closes an interrupted one
 F4  id tags: n new, b block, u unblock (each asks first)
 F5  re-read everything              F6  accept the selected pending charger
 F7  alerts and what needs attention (click the site bar)   F8  all events
 F9  firmware campaigns (live): progress per charger; n new, x cancel
 F10 audit: commands sent (/ CHARGER by:USER action:NAME), k quarantine
 l   site load (live): circuits per phase, parked and why
 Escape  back / close                ctrl+q  quit
Destructive commands (reset, remote stop, unlock, inoperative, remove) name
their target and effect and wait for y; Enter alone answers No.
"""


def filter_key_applies(app_focused: object, action: str) -> bool:
    """The `/` binding is a priority binding, so that keys typed in the same burst (a
    paste, tmux send-keys) reach the filter box it opens instead of the table behind it;
    inside an input box `/` is just a character."""
    return not (action == "filter" and isinstance(app_focused, Input))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Static(HELP)
        yield Footer()


class CommandMenu(ModalScreen[CommandSpec | None]):
    BINDINGS = [Binding("escape", "dismiss_none", "Close")]

    def __init__(self, charger_id: str, role: wire.Role) -> None:
        super().__init__()
        self.charger_id = charger_id
        self.role = role

    def compose(self) -> ComposeResult:
        options = []
        for spec in COMMANDS:
            allowed = self.role.allows(spec.role())
            label = spec.title if allowed else f"{spec.title} (needs {spec.role()})"
            options.append(Option(label, id=spec.action, disabled=not allowed))
        with Vertical(classes="dialog"):
            yield Label(f"Command for [b]{self.charger_id}[/b]", id="menu-title")
            yield OptionList(*options, id="menu")
        yield Footer()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        spec = next(c for c in COMMANDS if c.action == event.option.id)
        self.dismiss(spec)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class CommandForm(ModalScreen[dict[str, Any] | None]):
    """Arguments for one command; returns the argument dict or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, spec: CommandSpec, charger_id: str, defaults: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.spec = spec
        self.charger_id = charger_id
        self.defaults = defaults or {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"[b]{self.spec.title}[/b] on [b]{self.charger_id}[/b]")
            for field in self.spec.fields:
                yield Label(field.label)
                yield Input(
                    value=self.defaults.get(field.name, field.default), id=f"f-{field.name}"
                )
            yield Static("", id="form-error")
            yield Button("Send", variant="primary", id="send")
        yield Footer()

    def on_mount(self) -> None:
        if not self.spec.fields:
            self.query_one("#send", Button).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._submit()

    def _submit(self) -> None:
        values = {f.name: self.query_one(f"#f-{f.name}", Input).value for f in self.spec.fields}
        try:
            self.dismiss(build_args(self.spec, values))
        except FormError as exc:
            self.query_one("#form-error", Static).update(f"[red]{exc}[/red]")

    def action_cancel(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    """A yes/no question that names the target and the effect. "No" has the focus, so
    Enter alone never confirms; y confirms, n or Escape cancels."""

    BINDINGS = [
        Binding("escape,n", "no", "No"),
        Binding("y", "yes", "Yes, do it"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button("No (n)", id="no")
                yield Button("Yes, do it (y)", variant="error", id="yes")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_no(self) -> None:
        self.dismiss(False)

    def action_yes(self) -> None:
        self.dismiss(True)


class TextScreen(ModalScreen[None]):
    """Read-only text (a full OCPP frame, a command's answer)."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            yield Label(f"[b]{self.title_text}[/b]")
            yield Static(Text(self.body))
        yield Footer()


def _blank(value: Any) -> str:
    """'' for missing values; 0 stays 0 (issue 12 #9)."""
    return "" if value is None else str(value)


def short_payload(payload: str, width: int = 60) -> str:
    """A frame's payload on one line: compact JSON, cut at ``width`` characters. Of an
    OCPP-J message (§4 of OCPP-J 1.6: [2, id, action, payload], [3, id, payload],
    [4, id, code, description, details]) only the payload, or the error's code and
    description: the message id would fill the column."""
    try:
        message = json.loads(payload)
    except ValueError:
        text = payload.replace("\n", " ")
    else:
        if isinstance(message, list) and len(message) >= 3 and message[0] in (2, 3, 4):
            if message[0] == 2 and len(message) >= 4:
                message = message[3]
            elif message[0] == 3:
                message = message[2]
            elif message[0] == 4:
                message = " ".join(str(part) for part in message[2:4] if part)
        if isinstance(message, str):
            text = message
        else:
            text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def pretty_frame(payload: str) -> str:
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload


class LiveScreen(Screen[None]):
    """A screen that re-reads its data from the server when a relevant event arrives,
    at most once a second (so a busy charger cannot keep it busy)."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return filter_key_applies(self.app.focused, action)

    REFRESH_AT_MOST_EVERY = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._stale = False

    def start_live(self) -> None:
        """Read now, then again whenever something relevant happened (called from the
        subclass's on_mount: Textual runs each class's on_mount itself)."""
        self.set_interval(self.REFRESH_AT_MOST_EVERY, self._maybe_refresh)
        self.refresh_data()

    @property
    def console(self) -> ConsoleApp:
        return self.app  # type: ignore[return-value]

    def relevant(self, name: str, data: dict[str, Any]) -> bool:
        return False

    def site_event(self, name: str, data: dict[str, Any]) -> None:
        if self.relevant(name, data):
            self._stale = True

    def _maybe_refresh(self) -> None:
        if self._stale:
            self._stale = False
            self.refresh_data()

    def refresh_data(self) -> object:
        """Start re-reading (a worker in subclasses)."""
        raise NotImplementedError


class DetailScreen(LiveScreen):
    """F2: everything about one charger, kept current while it is open."""

    BINDINGS = [
        Binding("escape,f2", "app.pop_screen", "Back"),
        Binding("slash", "filter", "Filter frames", priority=True),
        Binding("ctrl+o", "commands", "Commands"),
        Binding("g", "schedule", "Schedule chart"),
    ]

    def __init__(self, charger_id: str) -> None:
        super().__init__()
        self.charger_id = charger_id
        self.charger: dict[str, Any] = {}
        self.frames: list[dict[str, Any]] = []
        self.frame_filter = ""
        self.power: list[float] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail"):
            yield Static(id="meta")
            yield Label("[b]Connectors[/b]")
            yield DataTable(id="detail-connectors", cursor_type="row")
            yield Static(id="sessions")
            yield Label("[b]Health[/b] (this clock hour and the 23 before)")
            yield Static(id="health")
            yield Label("[b]Status history[/b]")
            yield Static(id="history")
            yield Label("[b]Recent commands[/b]")
            yield Static(id="commands")
            yield Label("[b]Configuration[/b]")
            yield Static(id="configuration")
            yield Label("[b]OCPP frames[/b] (/ filters by action or text, Enter shows one)")
            yield Input(placeholder="filter frames", id="frame-filter")
            yield DataTable(id="frames", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"Charger {self.charger_id}"
        connectors = self.query_one("#detail-connectors", DataTable)
        connectors.add_columns(
            "#", "Status", "Error", "Vendor code", "Info", "Session", "Tag", "kW", "kWh", "Since"
        )
        frames = self.query_one("#frames", DataTable)
        frames.add_columns("Time", "Dir", "Action", "Payload")
        connectors.focus()
        self.start_live()

    def relevant(self, name: str, data: dict[str, Any]) -> bool:
        # chargers.seen: it sent something (a heartbeat, say): new frames in the log.
        return data.get("charger_id") == self.charger_id or self.charger_id in (
            data.get("chargers") or {}
        )

    @work(exclusive=True, group="detail")
    async def refresh_data(self) -> None:
        link = self.console.link
        try:
            self.charger = await link.request("chargers.show", {"charger_id": self.charger_id})
            try:
                self.frames = await link.request(
                    "chargers.frames", {"charger_id": self.charger_id, "limit": 200}
                )
            except RequestFailed as exc:
                if exc.code != "forbidden":
                    raise
                # Viewers see raw frames only when the server allows it (viewer_frames).
                self.frames = [{"at": "", "direction": "", "action": "", "payload": exc.message}]
        except Exception as exc:  # RequestFailed or TimeoutError: say so, keep the old view
            self.notify(f"{self.charger_id}: {exc}", severity="error")
            return
        site = self.console.site.chargers.get(self.charger_id)
        if site is not None:
            self.power.append(site.power_w)
            self.power = self.power[-60:]
        self._show()

    def _show(self) -> None:
        c = self.charger
        model = " ".join(_blank(c.get(k)) for k in ("vendor", "model") if c.get(k))
        facts = [
            ("registration", c.get("registration")),
            ("link", "online" if c.get("connected") else "offline"),
            ("model", model or None),
            ("serial", c.get("charge_box_serial_number") or c.get("serial_number")),
            ("firmware", c.get("firmware_version")),
            ("last boot", c.get("last_boot")),
            ("last seen", c.get("last_seen")),
            ("password", "set" if c.get("has_password") else "none"),
            (
                "security",
                f"profile {c.get('security_profile', 0)}"
                + (" (new password not used yet)" if c.get("password_pending") else ""),
            ),
        ]
        heartbeat = c.get("heartbeat_interval") or {}
        if heartbeat:
            facts.append(
                (
                    "heartbeat",
                    f"{heartbeat.get('boot_answer')} s"
                    + (" (set by an operator)" if heartbeat.get("set") else "")
                    + (
                        f", charger reports {heartbeat['reported']} s"
                        if heartbeat.get("mismatch")
                        else ""
                    ),
                )
            )
        if c.get("call_errors_sent"):
            facts.append(("CALLERRORs sent", c["call_errors_sent"]))
        # What the charger last reported in Firmware/DiagnosticsStatusNotification.
        for key, label in (
            ("firmware_status", "firmware update"),
            ("diagnostics_status", "diagnostics"),
            ("signed_firmware_status", "signed firmware update"),
            ("log_status", "log upload"),
        ):
            report = c.get(key)
            if report:
                request = f" request {report['request_id']}" if report.get("request_id") else ""
                facts.append((label, f"{report['status']}{request} ({report['at']})"))
        # Issue 16: open reservations and the local list the charger last accepted.
        for r in c.get("reservations") or []:
            where = "any connector" if r["connector_id"] == 0 else f"connector {r['connector_id']}"
            facts.append(
                (
                    f"reservation {r['reservation_id']}",
                    f"{where} for {r['id_tag']} until {r['expiry_date']} ({r['state']})",
                )
            )
        local_list = c.get("local_list")
        if local_list:
            facts.append(
                (
                    "local list",
                    f"version {_blank(local_list.get('version'))}, "
                    f"{_blank(local_list.get('entries'))} tags, last sync "
                    f"{_blank(local_list.get('result'))}",
                )
            )
        meta = "  ".join(f"[b]{k}[/b] {v}" for k, v in facts if v not in (None, ""))
        # Operator settings not in effect and pending changes come first.
        notes = "".join(f"\n[b yellow]! {note}[/]" for note in c.get("attention", []))
        self.query_one("#meta", Static).update(meta + notes)
        self.query_one("#health", Static).update(health_text(c.get("health")))
        site = self.console.site.chargers.get(self.charger_id)
        table = self.query_one("#detail-connectors", DataTable)
        cursor = table.cursor_row
        table.clear()
        for k in c.get("connectors", []):
            cid = k["connector_id"]
            session = site.session_on(cid) if site and cid else None
            status = k.get("status") or "-"
            table.add_row(
                str(cid),
                Text(status, style=STATUS_STYLE.get(status, "")),
                Text(
                    _blank(k.get("error_code") if k.get("error_code") != "NoError" else None),
                    style="bold red",
                ),
                _blank(k.get("vendor_error_code")),
                _blank(k.get("info"))
                # A change the charger answered Scheduled is pending, not done.
                + (f" ({k['availability_note']})" if k.get("availability_note") else ""),
                _blank(session.transaction_id if session else None),
                _blank(session.id_tag if session else None),
                f"{session.last_power_w / 1000:.1f}" if session and session.last_power_w else "",
                kwh(session.energy_wh) if session else "",
                _blank(k.get("status_at")),
            )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        spark = sparkline(self.power)
        sessions = [
            f"session {s.transaction_id} on #{s.connector_id}, tag {s.id_tag}, "
            f"{kwh(s.energy_wh) or '0.00'} kWh since {s.start_time or '?'}"
            for s in (site.sessions.values() if site else [])
        ]
        self.query_one("#sessions", Static).update(
            "[b]Sessions now[/b] "
            + ("; ".join(sessions) if sessions else "none")
            + (f"\npower {spark}" if spark else "")
        )
        self.query_one("#history", Static).update(
            "\n".join(
                f"{h['at']}  #{h['connector_id']} {h['status']}"
                + (f" {h['error_code']}" if h.get("error_code") not in (None, "NoError") else "")
                + (f" ({h['info']})" if h.get("info") else "")
                for h in c.get("status_history", [])[:10]
            )
            or "-"
        )
        self.query_one("#commands", Static).update(
            "\n".join(
                f"{x.get('requested_at') or ''}  {x['action']} by {x.get('actor')}: "
                + (x.get("status") or x.get("error") or "no answer yet")
                for x in c.get("commands", [])[:10]
            )
            or "-"
        )
        self.query_one("#configuration", Static).update(
            "\n".join(
                f"{e['key']} = {_blank(e.get('value'))}"
                + (" (read-only)" if e.get("readonly") else "")
                for e in c.get("configuration", [])
            )
            or "unknown yet (Get configuration reads it)"
        )
        self._show_frames()

    def _show_frames(self) -> None:
        table = self.query_one("#frames", DataTable)
        table.clear()
        wanted = self.frame_filter.lower()
        for n, f in enumerate(self.frames):
            payload = f.get("payload") or ""
            action = f.get("action") or ""
            if wanted and wanted not in action.lower() and wanted not in payload.lower():
                continue
            table.add_row(
                (f.get("at") or "")[11:19],
                {"in": "←", "out": "→"}.get(f["direction"], ""),
                action,
                short_payload(payload),
                key=str(n),
            )

    @on(Input.Submitted, "#frame-filter")
    def _filter_done(self) -> None:
        self.query_one("#frames", DataTable).focus()

    @on(Input.Changed, "#frame-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.frame_filter = event.value.strip()
        self._show_frames()

    @on(DataTable.RowSelected, "#frames")
    def _open_frame(self, event: DataTable.RowSelected) -> None:
        frame = self.frames[int(str(event.row_key.value))]
        self.app.push_screen(
            TextScreen(
                f"{frame.get('at')} {frame['direction']} {frame.get('action') or ''}",
                pretty_frame(frame.get("payload") or ""),
            )
        )

    def action_filter(self) -> None:
        box = self.query_one("#frame-filter", Input)
        box.screen.set_focus(box)  # at once, so keys queued behind `/` reach it

    def action_commands(self) -> None:
        self.console.open_commands(self.charger_id)

    def action_schedule(self) -> None:
        """g: the composite schedule of the selected connector (0: the whole charger)."""
        table = self.query_one("#detail-connectors", DataTable)
        connector = 0
        if table.row_count:
            try:
                connector = int(str(table.get_row_at(table.cursor_row)[0]))
            except ValueError:
                connector = 0
        self.console.open_schedule(self.charger_id, connector)


TX_STATES = ("all", "active", "interrupted", "completed", "closed", "refused", "orphan")
# Periods by start time (an orphan stop: by when the server received it). "today" is
# the operator's local day.
PERIODS = ("all", "today", "24 h", "7 d")
ORPHAN_ADVICE = {
    "unknown": "the id is unknown, 0 or -1: find the session by charger, time and tag; "
    "bill from meter_stop",
    "foreign": "the id is another charger's transaction (left untouched): check the "
    "charger's identity and configuration",
    "conflict": "a second stop with another meterStop for a closed transaction: compare "
    "with the billed figure",
}


def period_bounds(period: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(since, until) of a preset period; None: open."""
    if period == "today":
        local = now.astimezone()
        return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC), None
    if period == "24 h":
        return now - timedelta(hours=24), None
    if period == "7 d":
        return now - timedelta(days=7), None
    return None, None


def parse_local(text: str, *, end: bool = False) -> datetime | None:
    """'2026-12-04' or '2026-12-04 18:00' (or ISO 8601) in the operator's local time.
    A bare date as the end of a range means the end of that day."""
    text = text.strip()
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive: local time
    if end and len(text) == 10:
        moment += timedelta(days=1)
    return moment.astimezone(UTC)


def _wire_time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _short(moment: datetime) -> str:
    return moment.astimezone().strftime("%m-%d %H:%M")


class PeriodForm(ModalScreen[tuple[datetime | None, datetime | None] | None]):
    """F3 `f`: transactions started from .. to (local time, either may stay empty)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("[b]Transactions started[/b] (local time; empty = open)")
            yield Label("from (2026-12-01 or 2026-12-01 06:00)")
            yield Input(id="from")
            yield Label("to (a date alone: to the end of that day)")
            yield Input(id="to")
            yield Static("", id="form-error")
            yield Button("Show", variant="primary", id="send")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#from", Input).focus()

    @on(Input.Submitted, "#from")
    def _next(self) -> None:
        self.query_one("#to", Input).focus()

    @on(Input.Submitted, "#to")
    @on(Button.Pressed, "#send")
    def _submit(self) -> None:
        try:
            since = parse_local(self.query_one("#from", Input).value)
            until = parse_local(self.query_one("#to", Input).value, end=True)
        except ValueError:
            self.query_one("#form-error", Static).update(
                "[red]a date (2026-12-01) or a date and time (2026-12-01 06:00)[/red]"
            )
            return
        if since and until and until <= since:
            self.query_one("#form-error", Static).update("[red]'to' is not after 'from'[/red]")
            return
        self.dismiss((since, until))

    def action_cancel(self) -> None:
        self.dismiss(None)


class TransactionsScreen(LiveScreen):
    """F3: sessions and stops that closed nothing, filterable by text, state and start
    time, live; Enter opens one; c closes an interrupted one."""

    BINDINGS = [
        Binding("escape,f3", "app.pop_screen", "Back"),
        Binding("slash", "filter", "Filter", priority=True),
        Binding("t", "state", "State"),
        Binding("p", "period", "Period"),
        Binding("f", "range", "From-to"),
        Binding("c", "close_tx", "Close interrupted"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []
        self.text_filter = ""
        self.state = "all"
        self.period = "all"  # a PERIODS name, or "range" (self.range)
        self.range: tuple[datetime | None, datetime | None] = (None, None)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ filter by charger or tag", id="tx-filter")
        yield Static(id="tx-state")
        yield DataTable(id="transactions", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Transactions"
        table = self.query_one("#transactions", DataTable)
        for label, key in (
            ("Tx", "tx"),
            ("Charger", "charger"),
            ("#", "conn"),
            ("Tag", "tag"),
            ("State", "state"),
            ("kWh", "kwh"),
            ("Started", "start"),
            ("Stopped", "stop"),
            ("Reason", "reason"),
        ):
            table.add_column(label, key=key)
        table.focus()
        self.start_live()

    def relevant(self, name: str, data: dict[str, Any]) -> bool:
        return name.startswith("transaction.") or name == "meter.values"

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        if self.period == "range":
            return self.range
        return period_bounds(self.period, self.console.clock())

    def period_text(self) -> str:
        since, until = self.bounds()
        if self.period != "range":
            return self.period
        return f"{_short(since) if since else '…'} → {_short(until) if until else '…'}"

    @work(exclusive=True, group="transactions")
    async def refresh_data(self) -> None:
        since, until = self.bounds()
        args: dict[str, Any] = {"limit": 500}
        if since is not None:
            args["since"] = _wire_time(since)
        if until is not None:
            args["until"] = _wire_time(until)
        if self.state not in ("all", "orphan"):
            args["state"] = self.state  # on the server: older ones are not cut off by the limit
        link = self.console.link
        try:
            rows = [] if self.state == "orphan" else await link.request("transactions.list", args)
            stops = (
                await link.request("transactions.stops") if self.state in ("all", "orphan") else []
            )
        except Exception as exc:  # RequestFailed or TimeoutError
            self.notify(f"transactions: {exc}", severity="error")
            return
        self.rows = rows
        self.stops = [
            s for s in stops if _within(s.get("received_at") or s.get("stop_time"), since, until)
        ]
        self._show()

    def visible_rows(self) -> list[tuple[str, dict[str, Any]]]:
        """(row key, row): transactions ("tx:N") and, for all and orphan, the stops
        that closed nothing ("stop:N"), newest first."""
        wanted = self.text_filter.lower()
        out: list[tuple[str, str, dict[str, Any]]] = []
        for t in self.rows:
            if self.state not in ("all", t.get("state")):
                continue
            out.append((str(t.get("start_time") or ""), f"tx:{t['transaction_id']}", t))
        for n, s in enumerate(self.stops):
            out.append((str(s.get("received_at") or s.get("stop_time") or ""), f"stop:{n}", s))
        out.sort(key=lambda item: item[0], reverse=True)
        shown = []
        for _, key, row in out:
            text = f"{row.get('charger_id')} {row.get('id_tag')} {row.get('transaction_id')}"
            if wanted and wanted not in text.lower():
                continue
            shown.append((key, row))
        return shown

    def _show(self) -> None:
        table = self.query_one("#transactions", DataTable)
        selected = None
        if table.row_count:
            selected = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        for key, t in self.visible_rows():
            if key.startswith("stop:"):
                table.add_row(*_stop_cells(t), key=key)
            else:
                table.add_row(*_tx_cells(t), key=key)
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))
        self.query_one("#tx-state", Static).update(
            f"state: [b]{self.state}[/b] (t) · started: [b]{self.period_text()}[/b] (p, f) · "
            f"{table.row_count} shown"
        )

    @on(Input.Submitted, "#tx-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        # Hidden again when empty: at 80x24 every line counts.
        event.input.set_class(bool(event.value.strip()), "shown")
        self.query_one("#transactions", DataTable).focus()

    @on(Input.Changed, "#tx-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value.strip()
        self._show()

    def action_filter(self) -> None:
        box = self.query_one("#tx-filter", Input)
        box.add_class("shown")
        # Focus now, not through focus()'s call_later: keys already queued behind the
        # `/` (a paste, tmux send-keys) must reach the box, not the table behind it.
        box.screen.set_focus(box)

    def action_state(self) -> None:
        self.state = TX_STATES[(TX_STATES.index(self.state) + 1) % len(TX_STATES)]
        self._show()
        self.refresh_data()

    def action_period(self) -> None:
        current = self.period if self.period in PERIODS else "all"
        self.period = PERIODS[(PERIODS.index(current) + 1) % len(PERIODS)]
        self._show()
        self.refresh_data()

    def action_range(self) -> None:
        def chosen(bounds: tuple[datetime | None, datetime | None] | None) -> None:
            if bounds is None:
                return
            self.period, self.range = ("range", bounds) if any(bounds) else ("all", (None, None))
            self._show()
            self.refresh_data()

        self.app.push_screen(PeriodForm(), chosen)

    def selected_row(self) -> tuple[str, dict[str, Any]] | None:
        table = self.query_one("#transactions", DataTable)
        if not table.row_count:
            return None
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        return next(((k, r) for k, r in self.visible_rows() if k == key), None)

    def selected_tx(self) -> dict[str, Any] | None:
        selected = self.selected_row()
        return selected[1] if selected and selected[0].startswith("tx:") else None

    @on(DataTable.RowSelected, "#transactions")
    def _open(self, event: DataTable.RowSelected) -> None:
        key = str(event.row_key.value)
        if key.startswith("tx:"):
            self.open_session(int(key[3:]))
            return
        stop = next((r for k, r in self.visible_rows() if k == key), None)
        if stop is not None:
            self.app.push_screen(
                TextScreen(
                    f"Stop for transaction {stop.get('transaction_id')} that closed nothing",
                    describe_stop(stop),
                )
            )

    @work(group="transactions-show")
    async def open_session(self, tx_id: int) -> None:
        try:
            tx = await self.console.link.request("transactions.show", {"transaction_id": tx_id})
        except Exception as exc:  # RequestFailed or TimeoutError
            self.notify(f"transaction {tx_id}: {exc}", severity="error")
            return
        self.app.push_screen(TextScreen(f"Transaction {tx_id}", describe_session(tx)))

    def action_close_tx(self) -> None:
        selected = self.selected_row()
        if selected is None:
            return
        if selected[0].startswith("stop:"):
            self.notify(
                "a stop that closed nothing has no transaction here to close: Enter says "
                "what to do (docs/reconciliation.md)",
                severity="warning",
            )
            return
        tx = selected[1]
        if tx.get("state") != "interrupted":
            self.notify(
                f"transaction {tx['transaction_id']} is {tx.get('state')}: nothing to close",
                severity="warning",
            )
            return
        self.console.close_transaction(tx)


def _within(value: Any, since: datetime | None, until: datetime | None) -> bool:
    if since is None and until is None:
        return True
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (since is None or moment >= since) and (until is None or moment < until)


def _tx_cells(t: dict[str, Any]) -> tuple[Any, ...]:
    energy = t.get("energy_wh")
    if energy is None and t.get("last_meter_wh") is not None:
        energy = t["last_meter_wh"] - (t.get("meter_start") or 0)
    state = str(t.get("state"))
    return (
        str(t["transaction_id"]),
        _blank(t.get("charger_id")),
        _blank(t.get("connector_id")),
        _blank(t.get("id_tag")),
        Text(
            state,
            style={"active": "bold blue", "interrupted": "bold red", "refused": "red"}.get(
                state, ""
            ),
        ),
        kwh(energy),
        _when(t.get("start_time")),
        _when(t.get("stop_time")),
        _blank(t.get("stop_reason")),
    )


def _when(value: Any) -> str:
    """'2026-12-04T17:45:00.000Z' -> '12-04 17:45' (UTC, as the server stamps)."""
    text = _blank(value)
    return f"{text[5:10]} {text[11:16]}" if len(text) >= 16 and text[10] == "T" else text


def _stop_cells(s: dict[str, Any]) -> tuple[Any, ...]:
    return (
        _blank(s.get("transaction_id")),
        _blank(s.get("charger_id")),
        "",
        _blank(s.get("id_tag")),
        Text(f"orphan {s.get('kind')}", style="bold magenta"),
        "",
        "",
        _when(s.get("stop_time")),
        f"{_blank(s.get('reason'))}, meter {_blank(s.get('meter_stop'))} Wh",
    )


def describe_stop(s: dict[str, Any]) -> str:
    kind = str(s.get("kind"))
    return "\n".join(
        [
            f"charger {s.get('charger_id')} sent StopTransaction for transaction "
            f"{s.get('transaction_id')}, which closed nothing ({kind}).",
            f"meter stop {_blank(s.get('meter_stop'))} Wh  stop time {s.get('stop_time')}  "
            f"reason {_blank(s.get('reason')) or '-'}  tag {_blank(s.get('id_tag')) or '-'}",
            f"received {s.get('received_at') or '-'}",
            "",
            f"What to do: {ORPHAN_ADVICE.get(kind, 'see docs/reconciliation.md')}.",
            "Kept for reconciliation (voltaro ctl transactions stops; docs/reconciliation.md).",
        ]
    )


def describe_session(tx: dict[str, Any]) -> str:
    """A session as text: facts, energy, a power chart and its meter values."""
    lines = [
        f"charger {tx.get('charger_id')} connector {tx.get('connector_id')} "
        f"tag {tx.get('id_tag')} ({tx.get('id_tag_status')})",
        f"state {tx.get('state')}  started {tx.get('start_time')}  "
        f"stopped {_blank(tx.get('stop_time')) or '-'}  "
        f"reason {_blank(tx.get('stop_reason')) or '-'}",
        f"meter start {_blank(tx.get('meter_start'))} Wh  "
        f"stop {_blank(tx.get('meter_stop')) or '-'} Wh  "
        f"energy {kwh(tx.get('energy_wh')) or '-'} kWh",
    ]
    power: list[float] = []
    values = tx.get("meter_values") or []
    rows = []
    for mv in values:
        parts = []
        for sv in mv.get("sampled_values") or []:
            measurand = sv.get("measurand") or "Energy.Active.Import.Register"
            try:
                number = float(sv.get("value"))
            except (TypeError, ValueError):
                continue
            unit = sv.get("unit") or ""
            if measurand.startswith("Power.Active.Import") and not sv.get("phase"):
                power.append(number * (1000 if unit == "kW" else 1))
            parts.append(f"{measurand} {number:g} {unit}".strip())
        rows.append(f"{mv.get('timestamp')}  " + ", ".join(parts))
    if power:
        lines.append(f"power {sparkline(power, 60)}  (max {max(power) / 1000:.1f} kW)")
    lines.append(f"{len(values)} meter values:")
    lines.extend(rows[-50:])
    return "\n".join(lines)


class AlertsScreen(Screen[None]):
    """F7: faults, outages and offline chargers, kept until an operator acknowledges."""

    BINDINGS = [
        Binding("escape,f7", "app.pop_screen", "Back"),
        Binding("a", "acknowledge", "Acknowledge"),
        Binding("enter", "go", "Show charger"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="alerts-count")
        yield DataTable(id="alerts", cursor_type="row", zebra_stripes=True)
        yield Footer()

    @property
    def console(self) -> ConsoleApp:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.title = "Alerts"
        table = self.query_one("#alerts", DataTable)
        # One sentence per alert, the charger first: a separate column as wide as the
        # longest id pushed the text off an 80-column screen.
        table.add_columns("Since", "State", "Alert")
        table.focus()
        self.show_alerts()

    def site_event(self, name: str, data: dict[str, Any]) -> None:
        self.show_alerts()

    def show_alerts(self) -> None:
        table = self.query_one("#alerts", DataTable)
        cursor = table.cursor_row
        table.clear()
        alerts = sorted(self.console.site.alerts.values(), key=lambda a: a.at)
        for alert in alerts:
            table.add_row(
                _when(alert.at),
                Text("open", style="bold red") if alert.active else Text("cleared"),
                Text.assemble(
                    (alert.charger_id or "server", "bold"),
                    ": ",
                    (alert.text, "bold red" if alert.active else "yellow"),
                ),
                key=alert.key,
            )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        self.query_one("#alerts-count", Static).update(
            f"{len(alerts)} alert(s) to acknowledge (a); cleared ones stay until you do"
        )

    def action_acknowledge(self) -> None:
        table = self.query_one("#alerts", DataTable)
        if not table.row_count:
            return
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        self.console.site.acknowledge(key)
        self.console.refresh_site()
        self.show_alerts()

    @on(DataTable.RowSelected, "#alerts")
    def _selected(self, event: DataTable.RowSelected) -> None:
        # The table has the focus and takes Enter itself (select_cursor), so the
        # screen's Enter binding alone never fired: Enter did nothing.
        self.action_go()

    def action_go(self) -> None:
        table = self.query_one("#alerts", DataTable)
        if not table.row_count:
            return
        key = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        alert = self.console.site.alerts.get(key)
        if alert is not None and alert.charger_id:
            self.app.pop_screen()
            self.console.select_charger(alert.charger_id)


class EventsScreen(Screen[None]):
    """F8: the whole feed, filterable by kind and charger."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return filter_key_applies(self.app.focused, action)

    BINDINGS = [
        Binding("escape,f8", "app.pop_screen", "Back"),
        Binding("k", "kind", "Kind"),
        Binding("slash", "filter", "Charger filter", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.kind = "all"
        self.charger = ""

    @property
    def console(self) -> ConsoleApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ filter by charger", id="events-filter")
        yield Static(id="events-kind")
        yield RichLog(id="events", max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Events"
        self.query_one("#events", RichLog).focus()
        self.redraw()

    def redraw(self) -> None:
        log = self.query_one("#events", RichLog)
        log.clear()
        for line in self.console.feed_lines:
            if line.matches(self.kind, self.charger):
                log.write(line.render())
        self.query_one("#events-kind", Static).update(
            f"showing [b]{self.kind}[/b] (k: {' / '.join(CATEGORIES)})"
            + ("; meter values are hidden under 'all'" if self.kind == "all" else "")
        )

    def add_line(self, line: FeedLine) -> None:
        if line.matches(self.kind, self.charger):
            self.query_one("#events", RichLog).write(line.render())

    def action_kind(self) -> None:
        self.kind = CATEGORIES[(CATEGORIES.index(self.kind) + 1) % len(CATEGORIES)]
        self.redraw()

    def action_filter(self) -> None:
        box = self.query_one("#events-filter", Input)
        box.add_class("shown")
        # Focus now, not through focus()'s call_later: keys already queued behind the
        # `/` (a paste, tmux send-keys) must reach the box, not the table behind it.
        box.screen.set_focus(box)

    @on(Input.Submitted, "#events-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        # Hidden again when empty: at 80x24 every line counts.
        event.input.set_class(bool(event.value.strip()), "shown")
        self.query_one("#events", RichLog).focus()

    @on(Input.Changed, "#events-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.charger = event.value.strip()
        self.redraw()


class TagScreen(Screen[None]):
    """F4: id tags; n adds, b blocks and u unblocks the selected one (after a question)."""

    BINDINGS = [
        Binding("escape,f4", "app.pop_screen", "Back"),
        Binding("n", "add", "New tag"),
        Binding("b", "block", "Block"),
        Binding("u", "unblock", "Unblock"),
    ]

    def __init__(self, tags: list[dict[str, Any]]) -> None:
        super().__init__()
        self.tags = tags

    @property
    def console(self) -> ConsoleApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="tags", cursor_type="row", zebra_stripes=True)
        yield Input(
            placeholder="new tag: TAG [Accepted|Blocked|Expired|Invalid] [expiry] [parent]",
            id="new-tag",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Id tags"
        table = self.query_one("#tags", DataTable)
        table.add_columns("Tag", "Status", "Expiry", "Parent")
        self._fill()
        table.focus()

    def _fill(self) -> None:
        table = self.query_one("#tags", DataTable)
        cursor = table.cursor_row
        table.clear()
        for t in self.tags:
            status = t["status"]
            table.add_row(
                t["id_tag"],
                Text(status, style="green" if status == "Accepted" else "bold red"),
                _blank(t.get("expiry_date")),
                _blank(t.get("parent_id_tag")),
                key=t["id_tag"],
            )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    def action_add(self) -> None:
        self.query_one("#new-tag", Input).focus()

    @on(Input.Submitted, "#new-tag")
    def _submitted(self, event: Input.Submitted) -> None:
        parts = event.value.split()
        if not parts:
            return
        args: dict[str, Any] = {"id_tag": parts[0]}
        for key, value in zip(("status", "expiry", "parent"), parts[1:], strict=False):
            args[key] = value
        event.input.value = ""
        self.query_one("#tags", DataTable).focus()
        self.call_op("tags.add", args)

    def _selected(self) -> str | None:
        table = self.query_one("#tags", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _ask(self, question: str, op: str, id_tag: str) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.call_op(op, {"id_tag": id_tag})

        self.app.push_screen(Confirm(question), answered)

    def action_block(self) -> None:
        tag = self._selected()
        if tag is not None:
            self._ask(f"Block tag {tag}: chargers will refuse it from now on", "tags.block", tag)

    def action_unblock(self) -> None:
        tag = self._selected()
        if tag is not None:
            self._ask(f"Unblock tag {tag}: it is Accepted again", "tags.unblock", tag)

    @work(group="tags")
    async def call_op(self, op: str, args: dict[str, Any]) -> None:
        link = self.console.link
        try:
            await link.request(op, args)
            self.tags = await link.request("tags.list")
        except Exception as exc:  # RequestFailed or TimeoutError: show the refusal
            self.notify(f"{op} {args['id_tag']}: {exc}", severity="error")
            return
        self._fill()
        self.notify(f"{op} {args['id_tag']}: done")


OnEvent = Callable[[str, dict[str, Any]], None]


AUDIT_KINDS = ("commands", "quarantine")


def _short_time(text: str | None) -> str:
    """A wire time as local "MM-DD HH:MM:SS" ("-" when absent or unreadable)."""
    moment = parse_time(text)
    return moment.astimezone().strftime("%m-%d %H:%M:%S") if moment else "-"


class AuditScreen(LiveScreen):
    """F10: the records an operator reconciles besides sessions (issue 19): the command
    audit (who sent what to which charger, when, the answer) and the charger messages
    kept as raw frames (quarantine). `/` filters on the server: a charger id, `by:USER`
    and `action:NAME` (the audit), in any combination; `k` switches the list."""

    BINDINGS = [
        Binding("escape,f10", "app.pop_screen", "Back"),
        Binding("slash", "filter", "Filter", priority=True),
        Binding("k", "kind", "Commands / quarantine"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.kind = "commands"
        self.filter_text = ""
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ CHARGER by:USER action:NAME", id="audit-filter")
        yield Static(id="audit-kind")
        yield DataTable(id="audit", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Audit"
        self._columns()
        self.query_one("#audit", DataTable).focus()
        self.start_live()

    def relevant(self, name: str, data: dict[str, Any]) -> bool:
        return name == ("command.result" if self.kind == "commands" else wire.Event.QUARANTINED)

    def _columns(self) -> None:
        table = self.query_one("#audit", DataTable)
        table.clear(columns=True)
        if self.kind == "commands":
            table.add_columns("When", "Charger", "Action", "Arguments", "By", "Answer")
        else:
            table.add_columns("When", "Kind", "Charger", "Message", "Action", "Tx", "Error")

    def filters(self) -> dict[str, Any]:
        """The filter box as request arguments: `by:` and `action:` words, else a
        charger id (the quarantine filters by charger only)."""
        args: dict[str, Any] = {}
        for word in self.filter_text.split():
            key, _, value = word.partition(":")
            if value and key.lower() == "by":
                args["actor"] = value
            elif value and key.lower() == "action":
                args["action"] = value
            else:
                args["charger_id"] = word
        if self.kind == "quarantine":
            args = {k: v for k, v in args.items() if k == "charger_id"}
        return args

    @work(exclusive=True, group="audit")
    async def refresh_data(self) -> None:
        op = "commands.list" if self.kind == "commands" else "quarantine.list"
        args = {**self.filters(), "limit": 500}
        try:
            self.rows = await self.console.link.request(op, args)
        except RequestFailed as exc:
            self.rows = []
            self._show(f"{exc.code}: {exc.message}")
            return
        except TimeoutError as exc:
            self.notify(f"audit: {exc}", severity="error")
            return
        self._show()

    def _show(self, problem: str = "") -> None:
        table = self.query_one("#audit", DataTable)
        table.clear()
        for r in self.rows:
            if self.kind == "commands":
                request = r.get("request") or {}
                table.add_row(
                    _short_time(r.get("requested_at")),
                    r.get("charger_id"),
                    r.get("action"),
                    " ".join(f"{k}={v}" for k, v in request.items())[:40],
                    r.get("actor"),
                    (r.get("status") or (f"error: {r['error']}" if r.get("error") else "…"))[:60],
                )
            else:
                table.add_row(
                    _short_time(r.get("at")),
                    r.get("kind"),
                    r.get("charger_id"),
                    r.get("unique_id"),
                    r.get("action"),
                    _blank(r.get("transaction_id")),
                    (r.get("error") or "")[:60],
                )
        shown = f"[b]{self.kind}[/b] (k switches), {len(self.rows)} shown, newest first"
        if self.filter_text:
            shown += f"; filter: {self.filter_text}"
        self.query_one("#audit-kind", Static).update(
            shown + (f"  [red]{problem}[/]" if problem else "")
        )

    def action_kind(self) -> None:
        self.kind = AUDIT_KINDS[(AUDIT_KINDS.index(self.kind) + 1) % len(AUDIT_KINDS)]
        self._columns()
        self.refresh_data()

    def action_filter(self) -> None:
        box = self.query_one("#audit-filter", Input)
        box.add_class("shown")
        box.screen.set_focus(box)

    @on(Input.Submitted, "#audit-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.input.set_class(bool(event.value.strip()), "shown")
        self.filter_text = event.value.strip()
        self.query_one("#audit", DataTable).focus()
        self.refresh_data()
