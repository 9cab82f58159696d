"""The Voltaro console: live site status and remote commands, over the control socket."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.widgets import DataTable, Footer, Header, RichLog, Static

from console.commands import COMMANDS, CommandSpec, is_destructive
from console.link import ControlLink, RequestFailed
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

COLUMNS = (
    ("Charger", "id", 16),
    ("Link", "link", 7),
    ("Registration", "reg", 12),
    ("Vendor/model", "model", 18),
    ("Connectors", "conn", 26),
    ("Error", "error", 14),
    ("Last seen", "seen", 20),
    ("Tx", "tx", 11),
    ("kW", "kw", 6),
    ("kWh", "kwh", 8),
)

STATUS_STYLE = {
    "Available": "green",
    "Preparing": "cyan",
    "Charging": "bold blue",
    "SuspendedEV": "yellow",
    "SuspendedEVSE": "yellow",
    "Finishing": "cyan",
    "Reserved": "magenta",
    "Unavailable": "grey50",
    "Faulted": "bold red",
}


class ChargerCommands(Provider):
    """Command palette: every command for every charger (ctrl+p)."""

    async def search(self, query: str) -> Hits:
        app = self.app
        assert isinstance(app, ConsoleApp)
        matcher = self.matcher(query)
        for charger_id in sorted(app.chargers):
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
    #chargers { height: 1fr; }
    #feed { height: 8; border-top: solid $primary; }
    .dialog { width: 70; height: auto; max-height: 90%; background: $panel;
              border: thick $primary; padding: 1 2; }
    .wide { width: 95%; }
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

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.link = ControlLink(socket_path)
        self.chargers: dict[str, dict[str, Any]] = {}
        self.role = wire.Role.VIEWER
        self._dirty: set[str] = set()
        self.health = "connecting"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="banner")
        yield DataTable(id="chargers", cursor_type="row", zebra_stripes=True)
        yield RichLog(id="feed", max_lines=500, markup=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#chargers", DataTable)
        for label, key, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        self.sub_title = "connecting…"
        self.set_interval(0.25, self._flush_dirty)
        self.follow_server()

    # --- server link -----------------------------------------------------------------

    @work(exclusive=True, group="link")
    async def follow_server(self) -> None:
        await self.link.run(self._on_frame, self._on_state)

    async def _on_state(self, state: str, hello: dict[str, Any] | None) -> None:
        banner = self.query_one("#banner", Static)
        if hello is not None:
            self.role = wire.Role(hello.get("role", "viewer"))
            banner.remove_class("shown")
            self.log_feed(f"[green]connected[/green] as {hello.get('user')} ({self.role})")
            await self.resync()
        else:
            banner.update(f"SERVER UNREACHABLE: {state}. Reconnecting…")
            banner.add_class("shown")
            self.sub_title = state

    async def resync(self) -> None:
        try:
            status = await self.link.request("status")
            listed = await self.link.request("chargers.list")
        except RequestFailed as exc:
            self.log_feed(f"[red]resync failed: {exc}[/red]")
            return
        self._show_status(status)
        self.chargers = {c["charger_id"]: c for c in listed}
        table = self.query_one("#chargers", DataTable)
        table.clear()
        for charger_id in sorted(self.chargers):
            table.add_row(*self._cells(self.chargers[charger_id]), key=charger_id)

    def _show_status(self, status: dict[str, Any]) -> None:
        db = "db ok" if status.get("database", {}).get("ok") else "DATABASE DOWN"
        uptime = int(status.get("uptime_s", 0))
        self.sub_title = (
            f"{status.get('connected_chargers', 0)} connected · {db} · "
            f"up {uptime // 3600}h{uptime % 3600 // 60:02d}m · {self.role}"
        )

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "resync":
            self.log_feed("[yellow]events were dropped; resyncing[/yellow]")
            await self.resync()
            return
        if frame["type"] != "event":
            return
        name, data = frame["event"], frame["data"]
        charger_id = data.get("charger_id")
        charger = self.chargers.get(charger_id) if charger_id else None
        if name in ("charger.updated", "charger.removed") or (charger is None and charger_id):
            await self.resync()
        elif charger is not None:
            self._apply(charger, name, data)
            self._dirty.add(charger_id)
        self.log_feed(self._describe(name, data))

    def _apply(self, charger: dict[str, Any], name: str, data: dict[str, Any]) -> None:
        if name == "charger.connected":
            charger["connected"] = True
        elif name == "charger.disconnected":
            charger["connected"] = False
        elif name == "charger.boot":
            charger.update(vendor=data.get("vendor"), model=data.get("model"))
        elif name == "connector.status":
            connectors = {c["connector_id"]: c for c in charger.setdefault("connectors", [])}
            entry = connectors.setdefault(
                data["connector_id"],
                {"connector_id": data["connector_id"], "availability": "Operative"},
            )
            entry.update(
                status=data.get("status"),
                error_code=data.get("error_code"),
                status_at=data.get("at"),
            )
            charger["connectors"] = sorted(connectors.values(), key=lambda c: c["connector_id"])
        elif name == "transaction.started":
            charger.setdefault("active_transactions", []).append(
                {
                    "transaction_id": data["transaction_id"],
                    "connector_id": data["connector_id"],
                    "meter_start": data.get("meter_start"),
                    "last_meter_wh": data.get("meter_start"),
                    "last_power_w": None,
                }
            )
        elif name == "transaction.stopped":
            charger["active_transactions"] = [
                t
                for t in charger.get("active_transactions", [])
                if t["transaction_id"] != data["transaction_id"]
            ]
        elif name == "meter.values":
            for tx in charger.get("active_transactions", []):
                if tx["transaction_id"] == data.get("transaction_id"):
                    if data.get("energy_wh") is not None:
                        tx["last_meter_wh"] = data["energy_wh"]
                    if data.get("power_w") is not None:
                        tx["last_power_w"] = data["power_w"]
        charger["last_seen"] = data.get("at", charger.get("last_seen"))

    def _flush_dirty(self) -> None:
        """Apply batched changes: a few cell updates, never a full redraw per event."""
        if not self._dirty:
            return
        table = self.query_one("#chargers", DataTable)
        for charger_id in self._dirty:
            charger = self.chargers.get(charger_id)
            if charger is None or charger_id not in table.rows:
                continue
            for (_, key, _), value in zip(COLUMNS, self._cells(charger), strict=True):
                table.update_cell(charger_id, key, value)
        self._dirty.clear()

    @staticmethod
    def _cells(c: dict[str, Any]) -> tuple[str, ...]:
        conns = " ".join(
            f"[{STATUS_STYLE.get(k.get('status') or '', 'white')}]{k['connector_id']}:"
            f"{(k.get('status') or '-')[:9]}[/]"
            for k in c.get("connectors", [])
            if k["connector_id"] > 0
        )
        errors = ",".join(
            sorted(
                {
                    k["error_code"]
                    for k in c.get("connectors", [])
                    if k.get("error_code") not in (None, "NoError")
                }
            )
        )
        txs = c.get("active_transactions", [])
        tx = txs[0] if txs else None
        kw = f"{tx['last_power_w'] / 1000:.1f}" if tx and tx.get("last_power_w") else ""
        kwh = ""
        if tx and tx.get("last_meter_wh") is not None and tx.get("meter_start") is not None:
            kwh = f"{(tx['last_meter_wh'] - tx['meter_start']) / 1000:.2f}"
        model = " ".join(v for v in (c.get("vendor"), c.get("model")) if v)
        link = "[green]online[/]" if c.get("connected") else "[grey50]offline[/]"
        return (
            c["charger_id"],
            link,
            c.get("registration", ""),
            model,
            conns or "-",
            f"[red]{errors}[/]" if errors else "",
            (c.get("last_seen") or "")[:19],
            str(tx["transaction_id"]) if tx else "",
            kw,
            kwh,
        )

    @staticmethod
    def _describe(name: str, data: dict[str, Any]) -> str:
        who = data.get("charger_id", "")
        match name:
            case "connector.status":
                return (
                    f"{who} #{data.get('connector_id')} {data.get('status')} "
                    f"{data.get('error_code') or ''}"
                )
            case "transaction.started":
                return f"{who} tx {data.get('transaction_id')} started ({data.get('id_tag')})"
            case "transaction.stopped":
                return (
                    f"{who} tx {data.get('transaction_id')} stopped: "
                    f"{data.get('energy_wh')} Wh, {data.get('reason')}"
                )
            case "command.result":
                result = data.get("status") or (data.get("error") or {}).get("message")
                return f"{who} {data.get('action')} by {data.get('user')}: {result}"
            case _:
                details = " ".join(
                    f"{k}={v}" for k, v in data.items() if k not in ("charger_id", "payload")
                )
                return f"{name} {who} {details}"

    def log_feed(self, text: str) -> None:
        self.query_one("#feed", RichLog).write(text)

    # --- actions -------------------------------------------------------------------

    def selected(self) -> str | None:
        table = self.query_one("#chargers", DataTable)
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
        txs = self.chargers.get(charger_id, {}).get("active_transactions", [])
        if txs:
            defaults["transaction_id"] = str(txs[0]["transaction_id"])

        def with_args(args: dict[str, Any] | None) -> None:
            if args is None:
                return
            if is_destructive(spec, args):

                def confirmed(yes: bool | None) -> None:
                    if yes:
                        self.send_command(charger_id, spec, args)

                self.push_screen(Confirm(f"{spec.title} on {charger_id}?"), confirmed)
            else:
                self.send_command(charger_id, spec, args)

        self.push_screen(CommandForm(spec, charger_id, defaults), with_args)

    @work(group="commands")
    async def send_command(self, charger_id: str, spec: CommandSpec, args: dict[str, Any]) -> None:
        self.notify(f"{spec.title} → {charger_id}…", timeout=2)
        try:
            result = await self.link.request(
                "command", {"charger_id": charger_id, "action": spec.ocpp_action, "args": args}
            )
        except RequestFailed as exc:
            self.notify(
                f"{spec.title} on {charger_id}: {exc.message}", severity="error", title=exc.code
            )
            self.log_feed(f"[red]{charger_id} {spec.title}: {exc}[/red]")
            return
        text = f"{spec.title} on {charger_id}: {result.get('status')}"
        for entry in result.get("configuration", [])[:20]:
            text += f"\n{entry['key']} = {entry['value']}"
        self.notify(
            text,
            severity="information"
            if result.get("status") in ("Accepted", "Unlocked", "Scheduled", "RebootRequired")
            else "warning",
        )
        self.log_feed(text)

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
        except RequestFailed as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(DetailScreen(charger, frames))

    @work(group="views")
    async def action_transactions(self) -> None:
        try:
            rows = await self.link.request("transactions.list", {"limit": 100})
        except RequestFailed as exc:
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
        except RequestFailed as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(TagScreen(rows, self.link))

    @work(group="views")
    async def action_reload(self) -> None:
        await self.resync()

    @work(group="commands")
    async def action_accept(self) -> None:
        charger_id = self.selected()
        if charger_id is None:
            return
        try:
            await self.link.request("chargers.accept", {"charger_id": charger_id})
            self.notify(f"{charger_id} accepted")
        except RequestFailed as exc:
            self.notify(f"accept {charger_id}: {exc.message}", severity="error", title=exc.code)
