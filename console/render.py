"""How the model looks on screen: table cells as Rich Text (no Textual widgets here)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
        # Several nodes: which one holds it (issue 18).
        link = Text("online" + (f" {c.node}" if c.node else ""), style="green")
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


def protection_line(p: dict[str, Any]) -> str | None:
    """What the server refused, shed or failed since it started (issue 11), in one line
    of at most 80 columns; None when all is quiet. ``voltaro ctl status`` has the detail."""
    frames = p.get("frame_log") or {}
    conns = p.get("connections") or {}
    parts = [
        (
            frames.get("dropped_rate", 0)
            + frames.get("shed_buffer", 0)
            + frames.get("rows_skipped", 0),
            "frames shed",
        ),
        (frames.get("truncated", 0), "truncated"),
        (sum((p.get("handshakes_refused") or {}).values()), "handshakes refused"),
        ((p.get("auth") or {}).get("locked_out", 0), "lockouts"),
        (p.get("abuse_cut_off", 0), "cut off"),
        (conns.get("refused_per_ip", 0) + conns.get("refused_global", 0), "sockets capped"),
        (conns.get("accept_errors", 0) + conns.get("http_accept_errors", 0), "accept errors"),
        (sum((p.get("background_failures") or {}).values()), "task errors"),
    ]
    shown = [f"{n} {what}" for n, what in parts if n]
    if not shown:
        return None
    line = "protection: " + " · ".join(shown)
    return line if len(line) <= 78 else line[:77] + "…"


def nodes_line(cluster: Any) -> str | None:
    """Several nodes (issue 18): each node with its lease left (database clock) and the
    chargers it owns, this console's node starred, in at most 78 columns; None on a
    single node."""
    if not isinstance(cluster, dict) or not isinstance(cluster.get("nodes"), list):
        return None
    parts = []
    for n in cluster["nodes"]:
        if not isinstance(n, dict):
            continue
        me = "*" if n.get("node_id") == cluster.get("node_id") else ""
        lease = f"{n.get('lease_left_s', 0):.0f} s" if n.get("live") else "EXPIRED"
        count = n.get("chargers", 0)
        parts.append(f"{n.get('node_id')}{me} {lease} {count} charger{'s' if count != 1 else ''}")
    if not parts:
        return None
    line = "nodes: " + " · ".join(parts)
    return line if len(line) <= 78 else line[:77] + "…"


def site_bar(
    summary: SiteSummary,
    sparkline: str,
    *,
    stale: bool,
    alerts: int = 0,
    protection: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
) -> Text:
    """Two lines at a glance: power and sessions, connectors and chargers, database, and
    what needs attention. Fits 80 columns."""
    out = Text()
    out.append(f"{summary.power_w / 1000:.1f} kW", style="bold")
    if sparkline:
        out.append(" " + sparkline, style="blue")
    out.append(f" · {summary.charging} charging · ")
    if stale:
        out.append("db ?", style=STALE)
    elif summary.database_ok:
        out.append("db ok", style="green")
    else:
        out.append("DATABASE DOWN", style="bold white on red")
    if summary.attention:
        out.append(" · ")
        out.append(f"{summary.attention} need attention", style="bold red")
    if alerts:
        out.append(" · ")
        out.append(f"{alerts} alert{'s' if alerts != 1 else ''} (F7)", style="bold red")
    out.append("\nconnectors ")
    out.append(f"{summary.available} free", style="green")
    out.append(f" {summary.occupied} busy ")
    out.append(f"{summary.faulted} faulted", style="bold red" if summary.faulted else "")
    out.append(f" {summary.unavailable} off · chargers ")
    out.append(f"{summary.online} online ")
    out.append(f"{summary.offline} offline", style="red" if summary.offline else "")
    line = None if stale or not protection else protection_line(protection)
    if line:
        out.append("\n" + line, style="yellow")
    nodes = None if stale else nodes_line(cluster)
    if nodes:
        out.append("\n" + nodes)
    if summary.pending:
        # Its own line, so that it is never cut off at 80 columns (issue 12 #10).
        n = summary.pending
        out.append(
            f"\n{n} charger{'s' if n != 1 else ''} waiting for acceptance: select and press F6",
            style="bold black on yellow",
        )
    return out


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 12) -> str:
    """Samples as at most ``width`` block characters (averaged in equal buckets, so an
    hour of one-a-minute samples is 12 five-minute bars), scaled to their maximum."""
    if not values:
        return ""
    if len(values) > width:
        size = len(values) / width
        values = [
            sum(chunk) / len(chunk)
            for i in range(width)
            if (chunk := values[int(i * size) : int((i + 1) * size)] or values[-1:])
        ]
    top = max(values)
    if top <= 0:
        return ""
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1)))] for v in values)


def attention_key(site: Site, c: Charger, now: datetime) -> tuple[int, str]:
    return (site.attention_rank(c, now), c.charger_id)


# Sort orders: "attention" (faulted, offline, pending first) and one per column.
SORTS = ("attention", "id", "link", "conn", "kw", "tx", "kwh", "error", "seen", "reg", "model")


def sort_key(sort: str, site: Site, c: Charger, now: datetime) -> tuple[Any, ...]:
    rank, ident = attention_key(site, c, now)
    match sort:
        case "id":
            return (ident,)
        case "link":
            return (c.pending, not c.connected, ident)
        case "conn":
            return (min((k.status or "~" for k in c.outlets), default="~"), ident)
        case "kw":
            return (-c.power_w, ident)
        case "tx":
            return (-len(c.sessions), ident)
        case "kwh":
            return (-(c.energy_wh or 0.0), ident)
        case "error":
            return (not c.faulted, ident)
        case "seen":
            seen = parse_time(c.last_seen)
            return (-(seen.timestamp() if seen else 0.0), ident)
        case "reg":
            return (c.registration, ident)
        case "model":
            return ((c.vendor or "~").lower(), (c.model or "").lower(), ident)
        case _:
            return (rank, ident)


def matches_filter(c: Charger, text: str) -> bool:
    """`/` filter: id, vendor, model, a connector status or error, a session's tag."""
    if not text:
        return True
    wanted = text.lower()
    haystack = [c.charger_id, c.vendor or "", c.model or "", c.registration]
    haystack += ["online" if c.connected else "offline"]
    for k in c.connectors.values():
        haystack += [k.status or "", k.error_code or "", k.vendor_error_code or "", k.info or ""]
    haystack += [s.id_tag or "" for s in c.sessions.values()]
    return any(wanted in h.lower() for h in haystack)


CONNECTOR_COLUMNS = (
    ("#", "n"),
    ("Status", "status"),
    ("Fault", "fault"),
    ("Session", "tx"),
    ("Tag", "tag"),
    ("kW", "kw"),
    ("kWh", "kwh"),
    ("For", "dur"),
)


def duration(start: str | None, now: datetime) -> str:
    at = parse_time(start)
    if at is None:
        return ""
    minutes = max(0, int((now - at).total_seconds()) // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def connector_rows(c: Charger, now: datetime, *, stale: bool) -> list[tuple[Text, ...]]:
    """The charger's connectors as rows: what a session on each is doing right now."""
    rows: list[tuple[Text, ...]] = []
    for k in c.outlets:
        s = c.session_on(k.connector_id)
        status = k.status or "unknown"
        details = [v for v in (k.error_code, k.vendor_error_code, k.info) if v and v != "NoError"]
        rows.append(
            (
                Text(str(k.connector_id)),
                Text(status, style=STALE if stale else STATUS_STYLE.get(status, "")),
                Text(" ".join(details), style="bold red" if details else ""),
                Text(str(s.transaction_id) if s else ""),
                Text(s.id_tag or "" if s else ""),
                Text(kw(s.last_power_w) if s else "", justify="right"),
                Text(kwh(s.energy_wh) if s else "", justify="right"),
                Text(duration(s.start_time, now) if s else ""),
            )
        )
    return rows


def health_text(h: dict[str, Any] | None) -> str:
    """A charger's health in the detail view (`chargers.show` health, issue 19)."""
    if not h:
        return "-"
    heartbeat = h.get("heartbeat") or {}
    if heartbeat.get("intervals_24h"):
        beat = (
            f"every {heartbeat['mean_s']:g} s ± {heartbeat['spread_s']:g}"
            + (f" (expected {heartbeat['expected_s']} s)" if heartbeat.get("expected_s") else "")
            + f", {heartbeat['regularity']}"
        )
    else:
        beat = "no intervals measured"
    drift = h.get("clock_drift_s")
    parts = [
        f"[b]online[/b] {h['online_share_24h'] * 100:.0f}% ({h['online_s_24h'] / 3600:.1f} h)",
        f"[b]connections[/b] {h['connects_24h']} (last hour {h['connects_last_hour']}, "
        f"most in an hour {h['max_connects_per_hour']})",
        f"[b]command timeouts[/b] {h['command_timeouts_24h']}",
        f"[b]CALLERRORs[/b] sent {h['call_errors_sent_24h']}, "
        f"received {h['call_errors_received_24h']}",
        "[b]clock[/b] " + ("not measured" if drift is None else f"{drift:+.0f} s vs the server"),
        f"[b]heartbeat[/b] {beat}",
        "[b]last boot[/b] "
        + " ".join(str(v) for v in (h.get("last_boot"), h.get("last_boot_reason")) if v),
    ]
    # The flags themselves are among the attention notes at the top of the view.
    return "  ".join(parts)
