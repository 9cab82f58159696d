"""Modal screens: command menu, argument form, confirmation, details, lists, help."""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from console.commands import COMMANDS, CommandSpec, FormError, build_args
from voltaro.control import wire

HELP = """\
[b]Voltaro console[/b]

  arrows / Enter   select a charger
  ctrl+o           commands for the selected charger
  ctrl+p           command palette (every command, every charger)
  F2               charger details (metadata, connectors, configuration, frames)
  F3               transactions
  F4               id tags (ctrl+n add, ctrl+b block in that view)
  F5               reload everything from the server
  F6               accept the selected (pending) charger
  F1               this help
  Escape           close a dialog
  ctrl+q           quit
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(HELP)
            yield Button("Close", id="close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)


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
            yield Label(f"Command for [b]{self.charger_id}[/b]")
            yield OptionList(*options, id="menu")

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
            yield Label(f"[b]{self.spec.title}[/b] on {self.charger_id}")
            for field in self.spec.fields:
                yield Label(field.label)
                yield Input(
                    value=self.defaults.get(field.name, field.default), id=f"f-{field.name}"
                )
            yield Static("", id="form-error")
            yield Button("Send", variant="primary", id="send")

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

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_no(self) -> None:
        self.dismiss(False)

    def action_yes(self) -> None:
        self.dismiss(True)


class DetailScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,f2", "dismiss", "Close"),
        Binding("ctrl+f", "filter", "Filter frames"),
    ]

    def __init__(self, charger: dict[str, Any], frames: list[dict[str, Any]]) -> None:
        super().__init__()
        self.charger = charger
        self.frames = frames

    def compose(self) -> ComposeResult:
        c = self.charger
        meta = "\n".join(
            f"{k}: {c.get(k)}"
            for k in (
                "charger_id",
                "registration",
                "connected",
                "vendor",
                "model",
                "serial_number",
                "firmware_version",
                "last_boot",
                "last_seen",
                "has_password",
            )
        )
        heartbeat = c.get("heartbeat_interval") or {}
        if heartbeat:
            meta += (
                f"\nheartbeat interval: {heartbeat.get('boot_answer')} s"
                + (" (set by an operator)" if heartbeat.get("set") else " (default)")
                + (
                    f", charger reports {heartbeat['reported']} s"
                    if heartbeat.get("mismatch")
                    else ""
                )
            )
        if c.get("call_errors_sent"):
            meta += f"\nCALLERRORs sent: {c['call_errors_sent']}"
        with VerticalScroll(classes="dialog wide"):
            yield Static(f"[b]Charger[/b]\n{meta}")
            for note in c.get("attention", []):
                # Operator settings not in effect and pending changes come first.
                yield Static(f"[b]! {note}[/b]", classes="attention")
            yield Label("Connectors")
            yield DataTable(id="detail-connectors")
            yield Label("Status history")
            yield Static(
                "\n".join(
                    f"{h['at']}  #{h['connector_id']} {h['status']} {h.get('error_code') or ''}"
                    for h in c.get("status_history", [])[:15]
                )
                or "-"
            )
            yield Label("Configuration")
            yield Static(
                "\n".join(
                    f"{e['key']} = {e['value']}{' (ro)' if e['readonly'] else ''}"
                    for e in c.get("configuration", [])
                )
                or "unknown yet (get-config to read it)"
            )
            yield Label("Recent transactions")
            yield Static(
                "\n".join(
                    f"{t['transaction_id']}  #{t['connector_id']} {t['id_tag']} "
                    f"{t['state']} {t['energy_wh'] or ''} Wh"
                    for t in c.get("transactions", [])[:10]
                )
                or "-"
            )
            yield Label("Recent OCPP frames (ctrl+f filters by action)")
            yield Input(placeholder="action filter, e.g. MeterValues", id="frame-filter")
            yield Static(self._frames_text(""), id="frames")

    def on_mount(self) -> None:
        table = self.query_one("#detail-connectors", DataTable)
        table.add_columns("Connector", "Status", "Error", "Availability", "Since")
        for k in self.charger.get("connectors", []):
            table.add_row(
                str(k["connector_id"]),
                k["status"] or "-",
                k["error_code"] or "",
                # A change the charger answered Scheduled is pending, not done.
                k["availability"]
                + (f" ({k['availability_note']})" if k.get("availability_note") else ""),
                k["status_at"] or "",
            )

    def _frames_text(self, action: str) -> str:
        lines = []
        for f in self.frames:
            if action and (f.get("action") or "").lower() != action.lower():
                continue
            try:
                pretty = json.dumps(json.loads(f["payload"]), indent=1)
            except ValueError:
                pretty = f["payload"]
            arrow = "<-" if f["direction"] == "in" else "->"
            lines.append(f"{f['at']} {arrow} {f.get('action') or ''}\n{pretty}")
        return "\n".join(lines[:40]) or "-"

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#frames", Static).update(self._frames_text(event.value.strip()))

    def action_filter(self) -> None:
        self.query_one("#frame-filter", Input).focus()


class ListScreen(ModalScreen[None]):
    """A read-only table (transactions, tags)."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        super().__init__()
        self.title_text = title
        self.columns = columns
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"[b]{self.title_text}[/b]")
            yield DataTable(id="list")

    def on_mount(self) -> None:
        table = self.query_one("#list", DataTable)
        table.add_columns(*self.columns)
        for row in self.rows:
            table.add_row(*["" if v is None else str(v) for v in row])


class TagScreen(ModalScreen[None]):
    """Id tags: list, add (ctrl+n), block the selected one (ctrl+b)."""

    BINDINGS = [
        Binding("escape,f4", "dismiss", "Close"),
        Binding("ctrl+n", "add", "Add tag"),
        Binding("ctrl+b", "block", "Block tag"),
    ]

    def __init__(self, tags: list[dict[str, Any]], link: Any) -> None:
        super().__init__()
        self.tags = tags
        self.link = link

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("[b]Id tags[/b]  ctrl+n add · ctrl+b block · Escape close")
            yield DataTable(id="tags", cursor_type="row")
            yield Input(
                placeholder="new tag: TAG [Accepted|Blocked|Expired|Invalid] "
                "[expiry ISO8601] [parent]",
                id="new-tag",
            )

    def on_mount(self) -> None:
        table = self.query_one("#tags", DataTable)
        table.add_columns("Tag", "Status", "Expiry", "Parent")
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#tags", DataTable)
        table.clear()
        for t in self.tags:
            table.add_row(
                t["id_tag"],
                t["status"],
                t["expiry_date"] or "",
                t["parent_id_tag"] or "",
                key=t["id_tag"],
            )

    def action_add(self) -> None:
        self.query_one("#new-tag", Input).focus()

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        parts = event.value.split()
        if not parts:
            return
        args: dict[str, Any] = {"id_tag": parts[0]}
        if len(parts) > 1:
            args["status"] = parts[1]
        if len(parts) > 2:
            args["expiry"] = parts[2]
        if len(parts) > 3:
            args["parent"] = parts[3]
        await self._call("tags.add", args)
        event.input.value = ""

    async def action_block(self) -> None:
        table = self.query_one("#tags", DataTable)
        if table.row_count == 0:
            return
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        await self._call("tags.block", {"id_tag": str(row_key.value)})

    async def _call(self, op: str, args: dict[str, Any]) -> None:
        try:
            await self.link.request(op, args)
            self.tags = await self.link.request("tags.list")
        except Exception as exc:  # RequestFailed: show the server's refusal
            self.app.notify(str(exc), severity="error", title=op)
            return
        self._fill()
        self.app.notify(f"{op} {args['id_tag']}: done")
