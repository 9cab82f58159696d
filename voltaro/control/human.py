"""Human output of `voltaro ctl`: tables and detail views with units, local times with
their zone, durations, kWh and ``-`` for empty. ``--json`` prints the results unchanged;
this module only reads them (stdlib only, like the wire format)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

ENERGY_REGISTER = "Energy.Active.Import.Register"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def local_time(text: str | None) -> str | None:
    """Local time with its offset (what the operator's clock shows); the UTC form is in --json."""
    at = parse_time(text)
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S%z") if at else None


def local_and_utc(text: str | None) -> str | None:
    """``2026-12-04 22:41:07 CET (21:41:07 UTC)``: local time with its zone, then UTC."""
    at = parse_time(text)
    if at is None:
        return None
    local, utc = at.astimezone(), at.astimezone(UTC)
    if local.utcoffset() == timedelta(0):
        return f"{utc:%Y-%m-%d %H:%M:%S} UTC"
    zone = local.tzname() or local.strftime("%z")
    utc_form = "%H:%M:%S" if local.date() == utc.date() else "%Y-%m-%d %H:%M:%S"
    return f"{local:%Y-%m-%d %H:%M:%S} {zone} ({utc.strftime(utc_form)} UTC)"


def span(seconds: float | None) -> str | None:
    """A duration an operator reads at a glance: 45s, 12m05s, 3h07m, 2d04h."""
    if seconds is None:
        return None
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def duration(t: dict[str, Any]) -> str | None:
    """A session's length in hours and minutes (so far, when it is still running)."""
    start = parse_time(t.get("start_time"))
    if start is None:
        return None
    stop = parse_time(t.get("stop_time")) or datetime.now(UTC)
    minutes = max(0, int((stop - start).total_seconds() // 60))
    return f"{minutes // 60}h{minutes % 60:02d}m"


def kwh(wh: float | None) -> str | None:
    return None if wh is None else f"{wh / 1000:.3f} kWh"


def energy_kwh(t: dict[str, Any]) -> str | None:
    """Stopped: meter_stop - meter_start; active: the latest register reading so far."""
    wh = t.get("energy_wh")
    live = ""
    if wh is None and t.get("last_meter_wh") is not None:
        wh, live = t["last_meter_wh"] - t["meter_start"], " so far"
    return None if wh is None else f"{wh / 1000:.3f} kWh{live}"


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header]] + [
        ["-" if v is None or v == "" else str(v) for v in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def fields(rows: Sequence[tuple[str, Any]]) -> str:
    """``label  value`` lines, aligned; ``-`` for empty."""
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(
        f"{label:<{width}}  {'-' if value is None or value == '' else value}".rstrip()
        for label, value in rows
    )


def counts(mapping: dict[str, Any] | None) -> str | None:
    """``Available 8, Charging 3``, largest first; None when there is nothing."""
    if not mapping:
        return None
    ordered = sorted(mapping.items(), key=lambda kv: (-int(kv[1] or 0), str(kv[0])))
    return ", ".join(f"{key} {value}" for key, value in ordered)


def flatten(value: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Nested keys as dotted labels (for what a view does not know by name)."""
    for key, item in value.items():
        if isinstance(item, dict) and item:
            yield from flatten(item, f"{prefix}{key}.")
        elif isinstance(item, list | dict):
            yield f"{prefix}{key}", json.dumps(item, separators=(", ", ": ")) if item else "-"
        elif isinstance(item, bool):
            yield f"{prefix}{key}", "yes" if item else "no"
        else:
            yield f"{prefix}{key}", "-" if item is None else str(item)


_STATUS_KEYS = frozenset(
    {
        "version",
        "uptime_s",
        "database",
        "connected_chargers",
        "chargers",
        "connectors_by_status",
        "active_transactions",
        "heartbeat_interval",
        "cluster",
    }
)


def status_text(status: dict[str, Any]) -> str:
    """`voltaro ctl status`: the server at a glance. Keys this view does not know (counters
    added later) follow under their own dotted names, so nothing is hidden."""
    database = status.get("database") or {}
    db_state = "ok" if database.get("ok") else "UNREACHABLE"
    db_line = f"{db_state} ({database.get('backend', '?')})"
    if database.get("error"):
        db_line += f": {database['error']}"
    chargers = status.get("chargers") or {}
    rows: list[tuple[str, Any]] = [
        ("version", status.get("version")),
        ("uptime", span(status.get("uptime_s"))),
        ("database", db_line),
    ]
    if chargers:
        rows.append(
            (
                "chargers",
                f"{chargers.get('total', 0)} registered, "
                f"{status.get('connected_chargers', chargers.get('connected', 0))} connected",
            )
        )
        rows.append(("  by registration", counts(chargers.get("by_registration"))))
    else:
        rows.append(("chargers", f"{status.get('connected_chargers', 0)} connected"))
    if "connectors_by_status" in status:
        rows.append(("connectors", counts(status.get("connectors_by_status"))))
    if "active_transactions" in status:
        rows.append(("active sessions", status.get("active_transactions")))
    if status.get("heartbeat_interval") is not None:
        rows.append(("heartbeat interval", f"{status['heartbeat_interval']} s"))
    cluster = status.get("cluster")
    if isinstance(cluster, dict):
        rows.extend(_cluster_rows(cluster))
    extra = {k: v for k, v in status.items() if k not in _STATUS_KEYS}
    rows.extend((label.replace("_", " "), value) for label, value in flatten(extra))
    text = fields(rows)
    if isinstance(cluster, dict) and cluster.get("nodes"):
        text += "\n\n" + nodes_table(cluster["nodes"], cluster.get("node_id"))
    return text


def _cluster_rows(cluster: dict[str, Any]) -> list[tuple[str, Any]]:
    """This node's part of ``status`` with several nodes (issue 18)."""
    lease = (
        "FENCED: no valid lease; it sends no command and refuses chargers until it has joined again"
        if cluster.get("fenced")
        else f"{cluster.get('lease_left_s', 0):.1f} s left of {cluster.get('lease_s', 0):g} s"
    )
    nodes = cluster.get("nodes") or []
    live = sum(1 for n in nodes if n.get("live"))
    return [
        ("node", f"{cluster.get('node_id')} (incarnation {str(cluster.get('incarnation'))[:8]})"),
        ("  lease", lease),
        ("  fenced", f"{cluster.get('fences', 0)} times since start"),
        (
            "  takeovers",
            f"{cluster.get('evicted', 0)} sockets closed for another node, "
            f"{cluster.get('reaped', 0)} chargers of dead nodes released",
        ),
        ("nodes", f"{live} live of {len(nodes)}" if nodes else "(database unavailable)"),
    ]


def nodes_table(nodes: list[dict[str, Any]], me: str | None = None) -> str:
    """Every node with its lease on the database clock and the chargers it owns."""
    return table(
        [
            [
                f"{n.get('node_id')}{' *' if n.get('node_id') == me else ''}",
                "live" if n.get("live") else "EXPIRED",
                f"{n.get('lease_left_s', 0):.1f} s"
                if n.get("live")
                else f"{span(-float(n.get('lease_left_s') or 0))} ago",
                n.get("chargers"),
                n.get("address"),
                local_and_utc(n.get("started_at")),
            ]
            for n in nodes
        ],
        ["NODE", "STATE", "LEASE LEFT", "CHARGERS", "ADDRESS", "STARTED"],
    )


def _sampled(sv: dict[str, Any]) -> str:
    """A sampled value with its unit; energy in kWh, power in kW (OCPP 1.6 §7.31 units)."""
    raw, unit = str(sv.get("value", "")), sv.get("unit") or ""
    try:
        number = float(raw)
    except ValueError:
        return f"{raw} {unit}".strip()
    if unit == "Wh":
        return f"{number / 1000:.3f} kWh"
    if unit == "kWh":
        return f"{number:.3f} kWh"
    if unit == "W":
        return f"{number / 1000:.2f} kW"
    if unit == "Percent":
        return f"{number:g} %"
    return f"{number:g} {unit}".strip()


def _session_span(tx: dict[str, Any]) -> str | None:
    start = parse_time(tx.get("start_time"))
    if start is None:
        return None
    stop = parse_time(tx.get("stop_time"))
    length = span(((stop or datetime.now(UTC)) - start).total_seconds())
    return length if stop else f"{length} so far"


def transaction_text(tx: dict[str, Any]) -> str:
    """`voltaro ctl transactions show`: the session, then its meter values as a table."""
    stopped = tx.get("stop_time") is not None
    start = tx.get("meter_start")
    end = tx.get("meter_stop") if stopped else tx.get("last_meter_wh")
    rows: list[tuple[str, Any]] = [
        ("session", tx.get("transaction_id")),
        ("charger", f"{tx.get('charger_id')}, connector {tx.get('connector_id')}"),
        ("tag", f"{tx.get('id_tag')} ({tx.get('id_tag_status')})"),
        ("state", tx.get("state")),
        ("started", local_and_utc(tx.get("start_time"))),
        ("stopped", local_and_utc(tx.get("stop_time"))),
        ("duration", _session_span(tx)),
        ("energy", energy_kwh(tx)),
        (
            "meter",
            f"{kwh(start)} at start, {kwh(end) or '-'} {'at stop' if stopped else 'latest'}"
            if start is not None
            else None,
        ),
    ]
    if tx.get("last_power_w") is not None and not stopped:
        rows.append(("power", f"{tx['last_power_w'] / 1000:.2f} kW"))
    rows.append(("stop reason", tx.get("stop_reason")))
    if tx.get("stop_id_tag"):
        rows.append(("stopped by tag", tx["stop_id_tag"]))
    if tx.get("end_reason") or tx.get("closed_by"):
        rows.append(
            ("ended", f"{tx.get('end_reason') or '-'} at {local_and_utc(tx.get('ended_at'))}")
        )
        rows.append(("closed by", tx.get("closed_by")))
    if tx.get("energy_flag"):
        rows.append(("energy note", tx["energy_flag"]))
    text = fields(rows)
    values = tx.get("meter_values") or []
    if not values:
        return f"{text}\n\nmeter values: none"
    readings = table(
        [_reading(mv) for mv in values],
        ["TIME", "ENERGY", "POWER", "CURRENT", "VOLTAGE", "SOC", "CONTEXT", "OTHER"],
    )
    return f"{text}\n\nmeter values ({len(values)}):\n{readings}"


def _per_phase(samples: list[dict[str, Any]], unit: str) -> str | None:
    """``10.1/10.2/10.0 A``: one figure per phase, in the order the charger sent them."""
    if not samples:
        return None
    figures = []
    for sv in samples:
        try:
            figures.append(f"{float(sv['value']):g}")
        except (KeyError, ValueError):
            figures.append(str(sv.get("value")))
    return "/".join(figures) + f" {samples[0].get('unit') or unit}"


def _reading(mv: dict[str, Any]) -> tuple[Any, ...]:
    """One meter value (one timestamp) as a row: energy, power, per-phase current and
    voltage, state of charge, and whatever else the charger measured."""
    by: dict[str, list[dict[str, Any]]] = {}
    for sv in mv.get("sampled_values", []):
        by.setdefault(sv.get("measurand") or ENERGY_REGISTER, []).append(sv)
    energy = by.pop(ENERGY_REGISTER, [])
    power = by.pop("Power.Active.Import", [])
    current = by.pop("Current.Import", [])
    voltage = by.pop("Voltage", [])
    soc = by.pop("SoC", [])
    contexts = sorted({sv.get("context") or "" for group in (energy, power) for sv in group})
    others = [
        f"{measurand}{'[' + sv['phase'] + ']' if sv.get('phase') else ''}={_sampled(sv)}"
        for measurand, group in by.items()
        for sv in group
    ]
    total = [sv for sv in energy if not sv.get("phase")] or energy[:1]
    power_total = [sv for sv in power if not sv.get("phase")] or power[:1]
    return (
        local_time(mv.get("timestamp")),
        _sampled(total[0]) if total else None,
        _sampled(power_total[0]) if power_total else None,
        _per_phase(current, "A"),
        _per_phase(voltage, "V"),
        _sampled(soc[0]) if soc else None,
        ", ".join(c for c in contexts if c) or None,
        " ".join(others) or None,
    )


_ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z$")


def _value(value: Any) -> str:
    """A scalar for people: times in local time with zone (and UTC), yes/no, - for empty."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and _ISO_UTC.match(value):
        return local_and_utc(value) or value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _cell(value: Any) -> Any:
    """A table cell: like _value, but times short (local with offset) to keep rows narrow."""
    if isinstance(value, str) and _ISO_UTC.match(value):
        return local_time(value)
    if value is None or value == "":
        return None
    return _value(value)


def _generic_table(rows: list[dict[str, Any]]) -> str:
    keys = [k for k in rows[0] if not isinstance(rows[0][k], dict | list)]
    return table([[_cell(row.get(k)) for k in keys] for row in rows], [k.upper() for k in keys])


def _session_rows(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            (
                t["transaction_id"],
                t["connector_id"],
                t["id_tag"],
                t["state"],
                local_time(t["start_time"]),
                duration(t),
                energy_kwh(t),
                t.get("stop_reason"),
            )
            for t in rows
        ],
        ["TX", "CONN", "TAG", "STATE", "START", "DURATION", "ENERGY", "REASON"],
    )


def _connector_rows(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            (
                c["connector_id"],
                c.get("status"),
                c.get("error_code"),
                c.get("availability"),
                c.get("availability_note"),
                local_time(c.get("status_at")),
                " ".join(
                    str(v)
                    for v in (c.get("info"), c.get("vendor_id"), c.get("vendor_error_code"))
                    if v
                ),
            )
            for c in rows
        ],
        ["CONN", "STATUS", "ERROR", "AVAILABILITY", "PENDING", "SINCE", "INFO"],
    )


def _history_rows(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            (
                local_time(h.get("at")),
                h.get("connector_id"),
                h.get("status"),
                h.get("error_code"),
                h.get("info"),
            )
            for h in rows
        ],
        ["AT", "CONN", "STATUS", "ERROR", "INFO"],
    )


def _configuration_rows(rows: list[dict[str, Any]]) -> str:
    return table(
        [(c.get("key"), c.get("value"), "yes" if c.get("readonly") else "") for c in rows],
        ["KEY", "VALUE", "READONLY"],
    )


def command_rows(rows: list[dict[str, Any]], *, with_charger: bool = True) -> str:
    """The command audit as a table (``ctl commands list``, ``chargers show``)."""
    header = ["WHEN", "CHARGER", "ACTION", "ARGUMENTS", "BY", "OUTCOME"]
    out = []
    for c in rows:
        request = c.get("request") or {}
        arguments = " ".join(f"{k}={_compact(v)}" for k, v in request.items())
        row = [
            local_time(c.get("requested_at")),
            c.get("charger_id"),
            c["action"],
            arguments,
            c.get("actor"),
            outcome(c),
        ]
        out.append(row if with_charger else row[:1] + row[2:])
    return table(out, header if with_charger else header[:1] + header[2:])


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def outcome(command: dict[str, Any]) -> str:
    """The charger's answer, else the error, else that it is still waiting."""
    if command.get("status"):
        return str(command["status"])
    if command.get("error"):
        return f"error: {command['error']}"
    return "in progress" if command.get("finished_at") is None else "-"


HISTORY_SHOWN = 10

_CHARGER_TABLES = {
    "connectors": ("connectors", _connector_rows),
    "transactions": ("recent sessions", _session_rows),
    "commands": ("recent commands", lambda rows: command_rows(rows, with_charger=False)),
    "configuration": ("configuration (as last reported)", _configuration_rows),
    "status_history": ("status history", _history_rows),
}


def detail_text(charger: dict[str, Any]) -> str:
    """One record (`voltaro ctl chargers show`, and what `chargers add`, `tags add` and
    the like print): what needs attention first (``! ...``), the fields under their JSON
    names (nested ones dotted: ``heartbeat_interval.set``), then one table per list.
    Fields added later are shown the same way, nothing is hidden."""
    notes = [f"! {note}" for note in charger.get("attention") or []]
    scalars: list[tuple[str, str]] = []
    tables: list[str] = []

    def walk(value: dict[str, Any], prefix: str) -> None:
        for key, item in value.items():
            name = f"{prefix}{key}"
            if name == "attention":
                continue
            if isinstance(item, dict) and item:
                walk(item, f"{name}.")
            elif isinstance(item, list) and item and all(isinstance(r, dict) for r in item):
                title, render = _CHARGER_TABLES.get(name, (name.replace("_", " "), _generic_table))
                if name == "status_history" and len(item) > HISTORY_SHOWN:
                    rows, count = item[:HISTORY_SHOWN], f"latest {HISTORY_SHOWN} of {len(item)}"
                else:
                    rows, count = item, str(len(item))
                tables.append(f"{title} ({count}):\n{render(rows)}")
            elif isinstance(item, list):
                scalars.append((name, ", ".join(str(v) for v in item) if item else "-"))
            else:
                scalars.append((name, _value(item)))

    walk(charger, "")
    return "\n\n".join(part for part in ("\n".join(notes), fields(scalars), *tables) if part)


def _drift(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds:+.0f} s"


def _heartbeat(h: dict[str, Any]) -> str | None:
    if not h.get("intervals_24h"):
        return None
    expected = f"/{h['expected_s']}" if h.get("expected_s") else ""
    return f"{h['mean_s']:g}±{h['spread_s']:g}{expected} s {h['regularity']}"


def health_rows(rows: list[dict[str, Any]]) -> str:
    """Per-charger health (``ctl chargers health``): one row per charger, 24 h figures."""
    header = [
        "ID",
        "ONLINE",
        "CONN/H",
        "CONN",
        "TIMEOUTS",
        "ERR SENT",
        "ERR RECV",
        "DRIFT",
        "HEARTBEAT",
        "LAST BOOT",
        "FIRMWARE",
        "FLAGS",
    ]
    out = [
        (
            h["charger_id"],
            f"{h['online_share_24h'] * 100:.0f}%" + (" now" if h["connected"] else ""),
            h["connects_last_hour"],
            h["connects_24h"],
            h["command_timeouts_24h"],
            h["call_errors_sent_24h"],
            h["call_errors_received_24h"],
            _drift(h["clock_drift_s"]),
            _heartbeat(h["heartbeat"]),
            " ".join(part for part in (local_time(h["last_boot"]), h["last_boot_reason"]) if part)
            or None,
            h["firmware_version"],
            "; ".join(f"{f['flag']}: {f['reason']}" for f in h["flags"]) or None,
        )
        for h in rows
    ]
    return table(out, header)
