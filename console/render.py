"""How the model looks on screen: table cells as Rich Text (no Textual widgets here)."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from console.model import Charger, Connector, Session, Site, SiteSummary, parse_time

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
STALE = "grey42"

# (label, key): the charger table's columns, most important first so that an 80x24
# terminal shows id, link, connector statuses and kW without scrolling (issue 12 #6).
CHARGER_COLUMNS = (
    ("Charger", "id"),
    ("Link", "link"),
    ("Connectors", "conn"),
    ("kW", "kw"),
    ("Sessions", "tx"),
    ("kWh", "kwh"),
    ("Fault", "error"),
    ("Last seen", "seen"),
    ("Registration", "reg"),
    ("Vendor / model", "model"),
)


def kw(power_w: float | None) -> str:
    if power_w is None:
        return ""
    return f"{power_w / 1000:.1f}"


def kwh(energy_wh: float | None) -> str:
    if energy_wh is None:
        return ""
    return f"{energy_wh / 1000:.2f}"


def age(value: str | None, now: datetime) -> str:
    """'12s ago', '5m ago', '3h ago', '2d ago'; '' when unknown."""
    at = parse_time(value)
    if at is None:
        return ""
    seconds = max(0, int((now - at).total_seconds()))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def connector_text(k: Connector, stale: bool = False) -> Text:
    status = k.status or "unknown"
    style = STALE if stale else STATUS_STYLE.get(status, "white")
    return Text(f"{k.connector_id} {status}", style=style)


def fault_text(c: Charger) -> Text:
    """Every faulted connector with its error code, vendor code and info (§4.9)."""
    out = Text()
    for k in c.faults():
        if out:
            out.append("; ")
        parts = [p for p in (k.error_code, k.vendor_error_code, k.info) if p and p != "NoError"]
        label = f"#{k.connector_id} " if k.connector_id else ""
        out.append(label + " ".join(parts or [k.status or "fault"]), style="bold red")
    return out


def charger_cells(c: Charger, now: datetime, *, stale: bool) -> tuple[Text, ...]:
    """One row of the charger table. ``stale``: the console is disconnected and what it
    shows may be out of date, so nothing looks live (issue 12 #4)."""
    if stale:
        link = Text("stale", style=STALE)
    elif c.pending:
        link = Text("pending", style="bold black on yellow")
    elif c.connected:
        link = Text("online", style="green")
    else:
        link = Text("offline", style="bold red")
    conns = Text(" ").join(connector_text(k, stale) for k in c.outlets) or Text("-")
    sessions = sorted(c.sessions.values(), key=lambda s: s.connector_id)
    tx = ", ".join(f"#{s.connector_id} tx {s.transaction_id}" for s in sessions)
    model = " ".join(v for v in (c.vendor, c.model) if v)
    ident = Text(c.charger_id, style="bold red" if c.faulted and not stale else "")
    return (
        ident,
        link,
        conns,
        Text("" if stale else kw(c.power_w if sessions else None), justify="right"),
        Text(tx, style=STALE if stale else ""),
        Text(kwh(c.energy_wh), justify="right", style=STALE if stale else ""),
        fault_text(c) if not stale else Text(""),
        Text(age(c.last_seen, now), style=STALE if stale else ""),
        Text(c.registration, style="bold yellow" if c.pending else ""),
        Text(model),
    )


def session_energy(s: Session) -> str:
    return kwh(s.energy_wh)


def site_bar(summary: SiteSummary, sparkline: str, *, stale: bool) -> Text:
    """The one-glance line: power, sessions, connectors, chargers, database, attention."""
    out = Text()
    out.append(f"{summary.power_w / 1000:.1f} kW ", style="bold")
    if sparkline:
        out.append(sparkline + " ", style="blue")
    out.append(f"· {summary.charging} charging · ")
    out.append(f"conn {summary.available} avail {summary.occupied} busy ")
    out.append(f"{summary.faulted} faulted", style="bold red" if summary.faulted else "")
    out.append(f" {summary.unavailable} unavail · ")
    out.append(f"{summary.online} online ")
    out.append(f"{summary.offline} offline", style="red" if summary.offline else "")
    out.append(" ")
    if summary.pending:
        out.append(f"{summary.pending} waiting for acceptance (F6)", style="bold black on yellow")
    else:
        out.append("0 pending")
    out.append(" · ")
    if stale:
        out.append("db ?", style=STALE)
    elif summary.database_ok:
        out.append("db ok", style="green")
    else:
        out.append("DB DOWN", style="bold white on red")
    if summary.attention:
        out.append(" · ")
        out.append(f"{summary.attention} need attention (F7)", style="bold red")
    return out


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 20) -> str:
    """The last ``width`` samples as block characters, scaled to their maximum."""
    tail = values[-width:]
    if not tail or max(tail) <= 0:
        return ""
    top = max(tail)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1)))] for v in tail)


def attention_key(site: Site, c: Charger, now: datetime) -> tuple[int, str]:
    return (site.attention_rank(c, now), c.charger_id)
