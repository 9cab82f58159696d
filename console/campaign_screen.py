"""F9: firmware campaigns (docs/firmware.md): who is downloading, installing, installed,
failed or waiting for a slot, kept current as chargers report (FirmwareStatusNotification
-> ``campaign.progress`` events); ``n`` starts a campaign, ``x`` cancels one.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from console.commands import CommandSpec, Field
from console.screens import CommandForm, Confirm, LiveScreen
from voltaro.control import wire

# A charger's way through an update, in order: the progress bar fills along it.
STEPS = ("sent", "Downloading", "Downloaded", "Installing", "Installed")
FAILED = {"DownloadFailed": 2, "InstallationFailed": 4, "send_failed": 1, "timed_out": 1}
STATE_STYLE = {
    "waiting": "grey62",
    "sent": "cyan",
    "Downloading": "bold blue",
    "Downloaded": "blue",
    "Installing": "bold magenta",
    "Installed": "bold green",
    "cancelled": "grey50",
}
# The summary's groups: what an operator asks ("who is downloading?").
GROUPS = (
    ("downloading", ("sent", "Downloading", "Downloaded")),
    ("installing", ("Installing",)),
    ("installed", ("Installed",)),
    ("failed", ("DownloadFailed", "InstallationFailed", "send_failed", "timed_out")),
    ("waiting", ("waiting",)),
    ("cancelled", ("cancelled",)),
)

NEW_CAMPAIGN = CommandSpec(
    "campaign",
    "New firmware campaign",
    (
        Field("pattern", "Chargers (shell-style, commas between several: ACME-*,CP-7)"),
        Field("file", "Firmware file served here (name or id; blank: a location)", required=False),
        Field("location", "or a location URL (http, https, ftp, ftps)", required=False),
        Field("max_parallel", "At most this many at once", "int", default="5"),
        Field("retrieve_date", "Start at (ISO 8601 UTC; blank: now)", required=False),
    ),
    op="firmware.campaign",
)


def state_text(state: str) -> Text:
    return Text(state, style="bold red" if state in FAILED else STATE_STYLE.get(state, ""))


def progress_bar(state: str) -> Text:
    """Five cells along sent → Installed; a failure in red where it stopped."""
    if state in FAILED:
        done = FAILED[state]
        return Text("■" * done, style="bold red") + Text("□" * (len(STEPS) - done), "grey50")
    done = STEPS.index(state) + 1 if state in STEPS else 0
    style = "bold green" if done == len(STEPS) else "cyan"
    return Text("■" * done, style=style) + Text("□" * (len(STEPS) - done), style="grey50")


def group_counts(counts: dict[str, int]) -> list[tuple[str, int]]:
    return [(name, sum(counts.get(s, 0) for s in states)) for name, states in GROUPS]


def summary_text(campaign: dict[str, Any]) -> Text:
    """Two lines: what, how many at once, since when; then the counts by group."""
    state = "finished" if campaign.get("finished_at") else "running"
    out = Text()
    out.append(f"campaign {campaign['id']} ", style="bold")
    out.append(
        f"{campaign['pattern']} · {campaign.get('firmware')} · "
        f"{campaign['max_parallel']} at once · from {_when(campaign.get('retrieve_at'))} · "
    )
    out.append(state, style="green" if state == "finished" else "bold cyan")
    out.append("\n")
    for n, (name, count) in enumerate(group_counts(campaign.get("counts") or {})):
        if n:
            out.append(" · ")
        style = "bold red" if name == "failed" and count else ""
        out.append(f"{name} {count}", style=style)
    return out


def _when(value: Any) -> str:
    text = "" if value is None else str(value)
    return f"{text[5:10]} {text[11:16]}" if len(text) >= 16 and text[10:11] == "T" else text


class CampaignScreen(LiveScreen):
    BINDINGS = [
        Binding("escape,f9", "app.pop_screen", "Back"),
        Binding("n", "new", "New campaign"),
        Binding("x", "cancel", "Cancel campaign"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.campaigns: list[dict[str, Any]] = []
        self.shown: dict[str, Any] | None = None  # the selected campaign with targets
        self.selected_id: int | None = None
        self.loads = 0  # completed re-reads (tests wait for them)

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="campaigns", cursor_type="row", zebra_stripes=True)
        yield Static(id="campaign-summary")
        yield DataTable(id="targets", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Firmware campaigns"
        self.query_one("#campaigns", DataTable).add_columns(
            "ID", "Chargers", "Firmware", "Progress", "State"
        )
        self.query_one("#targets", DataTable).add_columns(
            "Charger", "State", "Progress", "Since", "Detail"
        )
        self.query_one("#campaigns", DataTable).focus()
        self.start_live()

    def relevant(self, name: str, data: dict[str, Any]) -> bool:
        shown = self.shown
        if (
            name == "campaign.progress"
            and shown is not None
            and data.get("campaign_id") == shown.get("id")
        ):
            # Shown at once; the counts follow with the re-read (at most once a second).
            for target in shown.get("targets", []):
                if target["charger_id"] == data.get("charger_id"):
                    target["state"] = data.get("state")
                    target["detail"] = data.get("detail")
            self._fill_targets()
        return name in ("campaign.progress", "campaign.finished")

    @work(exclusive=True, group="campaigns")
    async def refresh_data(self) -> None:
        link = self.console.link
        try:
            self.campaigns = await link.request("firmware.campaigns", {"limit": 50})
            if self.selected_id is None and self.campaigns:
                self.selected_id = self.campaigns[0]["id"]
            self.shown = None
            if self.selected_id is not None:
                self.shown = await link.request(
                    "firmware.campaigns", {"campaign_id": self.selected_id}
                )
        except Exception as exc:  # RequestFailed or TimeoutError: say so, keep the view
            self.notify(f"firmware campaigns: {exc}", severity="error")
            return
        self.loads += 1
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#campaigns", DataTable)
        table.clear()
        for c in self.campaigns:
            groups = dict(group_counts(c.get("counts") or {}))
            done = groups["installed"]
            progress = Text(f"{done}/{c['chargers']} installed")
            if groups["failed"]:
                progress.append(f", {groups['failed']} failed", style="bold red")
            table.add_row(
                str(c["id"]),
                c["pattern"],
                str(c.get("firmware") or ""),
                progress,
                Text("finished", style="green")
                if c.get("finished_at")
                else Text("running", style="bold cyan"),
                key=str(c["id"]),
            )
        if self.selected_id is not None and str(self.selected_id) in table.rows:
            table.move_cursor(row=table.get_row_index(str(self.selected_id)))
        self._fill_targets()

    def _fill_targets(self) -> None:
        summary = self.query_one("#campaign-summary", Static)
        table = self.query_one("#targets", DataTable)
        cursor = table.cursor_row
        table.clear()
        if self.shown is None:
            summary.update("no firmware campaign yet: n starts one" if not self.campaigns else "")
            return
        summary.update(summary_text(self.shown))
        for t in self.shown.get("targets", []):
            state = str(t.get("state"))
            table.add_row(
                t["charger_id"],
                state_text(state),
                progress_bar(state),
                _when(t.get("updated_at")),
                t.get("detail") or "",
                key=t["charger_id"],
            )
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    @on(DataTable.RowSelected, "#campaigns")
    def _chosen(self, event: DataTable.RowSelected) -> None:
        chosen = int(str(event.row_key.value))
        if chosen != self.selected_id:
            self.selected_id = chosen
            self.refresh_data()

    # --- start and cancel -------------------------------------------------------------

    def _allowed(self, op: str) -> bool:
        needed = wire.OPS[op]
        if self.console.role.allows(needed):
            return True
        self.notify(f"this needs the {needed} role (you are {self.console.role})", severity="error")
        return False

    def action_new(self) -> None:
        if not self._allowed("firmware.campaign"):
            return

        def with_args(args: dict[str, Any] | None) -> None:
            if args is None:
                return
            matching = sorted(
                c
                for c in self.console.site.chargers
                if any(fnmatch.fnmatchcase(c, p.strip()) for p in args["pattern"].split(",") if p)
            )
            what = args.get("file") or args.get("location") or "?"
            question = (
                f"Update the firmware of {len(matching)} charger"
                f"{'s' if len(matching) != 1 else ''} matching {args['pattern']} to {what}, "
                f"{args.get('max_parallel', 5)} at a time, from "
                f"{args.get('retrieve_date') or 'now'}: each reboots into the new image"
            )

            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.call_op("firmware.campaign", args)

            self.app.push_screen(Confirm(question), confirmed)

        self.app.push_screen(CommandForm(NEW_CAMPAIGN, "the site"), with_args)

    def action_cancel(self) -> None:
        if self.shown is None or not self._allowed("firmware.cancel"):
            return
        campaign = self.shown
        if campaign.get("finished_at"):
            self.notify(f"campaign {campaign['id']} has finished", severity="warning")
            return
        groups = dict(group_counts(campaign.get("counts") or {}))
        question = (
            f"Cancel campaign {campaign['id']}: {groups['waiting']} charger(s) not sent it yet "
            f"never will be; {groups['downloading'] + groups['installing']} already updating "
            "go on to the end"
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.call_op("firmware.cancel", {"campaign_id": campaign["id"]})

        self.app.push_screen(Confirm(question), confirmed)

    @work(group="campaign-ops")
    async def call_op(self, op: str, args: dict[str, Any]) -> None:
        try:
            result = await self.console.link.request(op, args)
        except Exception as exc:  # RequestFailed or TimeoutError: show the refusal
            message = getattr(exc, "message", None) or "no answer in time"
            self.notify(f"{op}: {message}", severity="error")
            return
        self.selected_id = int(result["id"])
        verb = "cancelled" if op == "firmware.cancel" else "started"
        self.notify(f"campaign {result['id']} {verb} ({result['chargers']} chargers)")
        self.refresh_data()
