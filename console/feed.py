"""Events as sentences an operator can read, with a severity and a category for filters.

Pure (Rich Text only). Meter values are 'meter' noise, hidden from the feed by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text

SEVERITY_STYLE = {"fault": "bold red", "warning": "yellow", "ok": "green", "info": ""}
CATEGORIES = ("all", "faults", "commands", "sessions", "links", "meter")


@dataclass(frozen=True, slots=True)
class FeedLine:
    at: str  # HH:MM:SS
    charger_id: str
    severity: str  # fault | warning | ok | info
    category: str  # faults | commands | sessions | links | meter | server
    text: str

    def render(self) -> Text:
        line = Text(f"{self.at} ", style="grey62")
        line.append(self.text, style=SEVERITY_STYLE.get(self.severity, ""))
        return line

    def matches(self, category: str, charger: str) -> bool:
        if category == "all":
            shown = self.category != "meter"
        else:
            shown = self.category == category or (category == "faults" and self.severity == "fault")
        return shown and (not charger or charger.lower() in self.charger_id.lower())


def _num(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if not isinstance(value, int | float):
        return "?"
    return f"{value / scale:.{digits}f}"


def clock(at: str | None) -> str:
    """'2026-12-04T18:01:02.123Z' -> '18:01:02' (UTC, as the server stamps events)."""
    if at and "T" in at:
        return at.split("T", 1)[1][:8]
    return "--:--:--"


def describe(name: str, data: dict[str, Any], at: str | None = None) -> FeedLine | None:
    """The sentence for one event; None for events that are not worth a line."""
    who = str(data.get("charger_id") or "")
    when = clock(at or data.get("at"))

    def line(severity: str, category: str, text: str) -> FeedLine:
        return FeedLine(when, who, severity, category, text)

    match name:
        case "security.event":
            kind = str(data.get("kind") or "event").replace("_", " ")
            remote = f" from {data['remote']}" if data.get("remote") else ""
            detail = f": {data['detail']}" if data.get("detail") else ""
            severity = "fault" if data.get("kind") == "takeover_alert" else "warning"
            return line(severity, "faults", f"security: {kind}{remote}{detail}")
        case "connector.status":
            cid = data.get("connector_id")
            where = f"{who} connector {cid}" if cid else f"{who} (whole charger)"
            status = data.get("status") or "?"
            error = data.get("error_code")
            extras = [
                str(v)
                for v in (
                    error if error not in (None, "NoError") else None,
                    data.get("vendor_error_code"),
                    data.get("info"),
                )
                if v
            ]
            detail = f": {', '.join(extras)}" if extras else ""
            faulty = status == "Faulted" or error not in (None, "", "NoError")
            return line(
                "fault" if faulty else "info",
                "faults" if faulty else "links",
                f"{where} is {status}{detail}",
            )
        case "transaction.started":
            return line(
                "ok",
                "sessions",
                f"{who} connector {data.get('connector_id')}: session "
                f"{data.get('transaction_id')} started for tag {data.get('id_tag')}"
                + (
                    f" ({data['id_tag_status']})"
                    if data.get("id_tag_status") not in (None, "Accepted")
                    else ""
                ),
            )
        case "transaction.stopped":
            return line(
                "info",
                "sessions",
                f"{who} connector {data.get('connector_id')}: session "
                f"{data.get('transaction_id')} ended, {_num(data.get('energy_wh'), 1000, 2)} kWh"
                + (f" ({data['reason']})" if data.get("reason") else ""),
            )
        case "transaction.ended":
            state = data.get("state")
            return line(
                "fault" if state == "interrupted" else "info",
                "sessions",
                f"{who} connector {data.get('connector_id')}: session "
                f"{data.get('transaction_id')} {state}"
                + (f" ({data['reason']})" if data.get("reason") else "")
                + (f", closed by {data['closed_by']}" if data.get("closed_by") else ""),
            )
        case "load.profile_refused":
            # Issue 17: a charger that will not follow a limit is counted at its full
            # rating, which may park others; worth a line (the load screen, `l`, shows it).
            return line(
                "warning",
                "faults",
                f"{who} refused a {data.get('purpose') or 'charging profile'} "
                f"({data.get('answer')}): counted at its full rating until it boots again",
            )
        case "transaction.orphan_stop":
            return line(
                "fault",
                "sessions",
                f"{who} sent a stop for transaction {data.get('transaction_id')} "
                f"({data.get('kind')}, meter {data.get('meter_stop')} Wh) that closed nothing:"
                " kept for reconciliation (F3)",
            )
        case "meter.values":
            parts = []
            if data.get("power_w") is not None:
                parts.append(f"{_num(data['power_w'], 1000)} kW")
            if data.get("energy_wh") is not None:
                parts.append(f"meter {_num(data['energy_wh'], 1000, 2)} kWh")
            if data.get("soc") is not None:
                parts.append(f"SoC {_num(data['soc'], 1, 0)}%")
            return line(
                "info",
                "meter",
                f"{who} connector {data.get('connector_id')}: {', '.join(parts) or 'meter values'}",
            )
        case "command.result":
            user = data.get("user") or "?"
            if data.get("ok"):
                status = data.get("status") or "done"
                severity = "ok" if status in ("Accepted", "Unlocked", "Scheduled") else "warning"
                return line(
                    severity, "commands", f"{data.get('action')} on {who} by {user}: {status}"
                )
            error = data.get("error") or {}
            return line(
                "warning",
                "commands",
                f"{data.get('action')} on {who} by {user} failed: {error.get('message')}",
            )
        case "charger.connected":
            return line("ok", "links", f"{who} connected from {data.get('remote') or '?'}")
        case "charger.disconnected":
            reason = data.get("reason")
            return line(
                "warning", "links", f"{who} disconnected" + (f": {reason}" if reason else "")
            )
        case "charger.boot":
            model = " ".join(str(v) for v in (data.get("vendor"), data.get("model")) if v)
            status = data.get("status")
            return line(
                "warning" if status != "Accepted" else "info",
                "links",
                f"{who} booted ({model or 'unknown model'}), registration {status}",
            )
        case "charger.updated":
            return line("info", "links", f"{who} registration is now {data.get('registration')}")
        case "charger.removed":
            return line("warning", "links", f"{who} was removed")
        case "tag.updated":
            return FeedLine(
                when, "", "info", "commands", f"tag {data.get('id_tag')} is {data.get('status')}"
            )
        case "server.health":
            db = data.get("database") or {}
            if "database" not in data:
                return None
            if db.get("ok"):
                return FeedLine(when, "", "ok", "faults", "database is reachable again")
            return FeedLine(
                when,
                "",
                "fault",
                "faults",
                f"DATABASE DOWN: {db.get('error') or 'not answering'}",
            )
        case "firmware.status":
            status = str(data.get("status") or "?")
            severity = (
                "warning"
                if status.endswith("Failed")
                else "ok"
                if status == "Installed"
                else "info"
            )
            return line(severity, "commands", f"{who} firmware: {status}")
        case "campaign.progress":
            # The charger's own reports are already in the feed as firmware.status.
            state = str(data.get("state") or "?")
            if state not in ("sent", "send_failed", "timed_out", "cancelled"):
                return None
            detail = f" ({data['detail']})" if data.get("detail") else ""
            severity = "warning" if state in ("send_failed", "timed_out") else "info"
            return line(
                severity, "commands", f"campaign {data.get('campaign_id')}: {who} {state}{detail}"
            )
        case "campaign.finished":
            return line("ok", "commands", f"firmware campaign {data.get('campaign_id')} finished")
        case _:
            return None
