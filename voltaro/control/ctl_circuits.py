"""``voltaro ctl circuits``: the site's circuit tree for load management (issue 17).
Kept out of ctl.py, which hands over its parser group and calls these three functions."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from voltaro.control.human import table

HELP = {
    "circuits": "the site's circuits for load management (actions below)",
    "circuits list": "circuits with their limits, chargers and phase wiring, and the live load",
    "circuits add": "add a circuit: a limit in A per phase and/or kW, under a --parent",
    "circuits set-limit": "change a circuit's limits (off clears one) or move it (--parent)",
    "circuits remove": "remove a circuit nothing hangs off",
    "circuits assign": "put a charger on a circuit with its phase wiring, rating and fallback",
    "circuits unassign": "take a charger off load management",
    "circuits tag-priority": "give an id tag's sessions a priority (off removes it); "
    "the higher of the tag's and the charger's counts",
    "circuits external-load": "show the building's other load per circuit, or push it "
    "(--amps; operator)",
}


def _limit(text: str) -> float | None:
    """A limit in A or kW, or ``off`` (cleared)."""
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (or off)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a limit cannot be negative")
    return value


def add_parsers(group: Any) -> None:
    """``group``: ctl's _Group for the circuits subcommands (help lines from HELP)."""
    add = group.add_parser("add")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--parent", help="the circuit it hangs off (none: a root, the site)")
    add.add_argument("--limit", dest="limit_amps", type=_limit, help="A per phase")
    add.add_argument("--kw", dest="limit_kw", type=_limit, help="kW over all phases")
    group.add_parser("list")
    setl = group.add_parser("set-limit")
    setl.add_argument("name", metavar="NAME")
    setl.add_argument("--limit", dest="limit_amps", type=_limit, default=argparse.SUPPRESS)
    setl.add_argument("--kw", dest="limit_kw", type=_limit, default=argparse.SUPPRESS)
    where = setl.add_mutually_exclusive_group()
    where.add_argument("--parent", default=argparse.SUPPRESS, help="move it under PARENT")
    where.add_argument("--root", action="store_true", help="move it to the top (a site)")
    group.add_parser("remove").add_argument("name", metavar="NAME")
    assign = group.add_parser("assign")
    assign.add_argument("charger_id", metavar="CHARGER")
    assign.add_argument("circuit", metavar="CIRCUIT")
    assign.add_argument(
        "--phases",
        help="charger phase=site phase, e.g. L1=L2,L2=L3,L3=L1; L1=L3 alone: a "
        "single-phase charger on L3 (default L1=L1,L2=L2,L3=L3)",
    )
    assign.add_argument("--max", dest="max_amps", type=float, default=32.0, help="A (32)")
    assign.add_argument(
        "--fallback",
        dest="fallback_amps",
        type=float,
        default=6.0,
        help="A it keeps when it loses the server (6)",
    )
    assign.add_argument("--priority", type=int, default=0, help="higher first (0)")
    group.add_parser("unassign").add_argument("charger_id", metavar="CHARGER")
    tagp = group.add_parser("tag-priority")
    tagp.add_argument("id_tag", metavar="TAG")
    tagp.add_argument("priority", metavar="N", type=_priority, help="a whole number, or off")
    ext = group.add_parser("external-load")
    ext.add_argument("circuit", metavar="CIRCUIT", nargs="?", help="default: the root")
    ext.add_argument("--amps", type=_phase_amps, help="A of other load: one number or L1,L2,L3")
    ext.add_argument(
        "--valid", dest="valid_for_s", type=float, default=300.0, help="seconds it holds (300)"
    )


def _priority(text: str) -> int | None:
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (or off)") from None


def _phase_amps(text: str) -> list[float]:
    try:
        return [float(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give A as N or L1,L2,L3") from None


def request_for(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    action = ns.action
    if action == "list":
        return "circuits.list", {}
    if action == "add":
        args = {"name": ns.name, "limit_amps": ns.limit_amps, "limit_kw": ns.limit_kw}
        if ns.parent:
            args["parent"] = ns.parent
        return "circuits.add", args
    if action == "set-limit":
        changes: dict[str, Any] = {"name": ns.name}
        for key in ("limit_amps", "limit_kw", "parent"):
            if hasattr(ns, key):
                changes[key] = getattr(ns, key)
        if ns.root:
            changes["parent"] = None
        return "circuits.set_limit", changes
    if action == "remove":
        return "circuits.remove", {"name": ns.name}
    if action == "assign":
        return "circuits.assign", {
            "charger_id": ns.charger_id,
            "circuit": ns.circuit,
            "phases": ns.phases,
            "max_amps": ns.max_amps,
            "fallback_amps": ns.fallback_amps,
            "priority": ns.priority,
        }
    if action == "tag-priority":
        return "circuits.tag_priority", {"id_tag": ns.id_tag, "priority": ns.priority}
    if action == "external-load":
        if ns.amps is None:
            return "circuits.external_load", {}
        args = {"amps": ns.amps, "valid_for_s": ns.valid_for_s}
        if ns.circuit:
            args["circuit"] = ns.circuit
        return "circuits.set_external_load", args
    return "circuits.unassign", {"charger_id": ns.charger_id}


def _amps(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _load_text(load: dict[str, Any] | None) -> str:
    if not load:
        return ""
    return "/".join(f"{a:.1f}" for a in load["amps"])


def _effective_text(load: dict[str, Any] | None) -> str:
    """The limit in force per phase and why, e.g. ``32.0/40.0/23.0 schedule+external``."""
    if not load or load.get("effective_limit_amps") is None:
        return "-"
    amps = "/".join(f"{a:.1f}" for a in load["effective_limit_amps"])
    return f"{amps} {load.get('limit_source', '')}".strip()


def _external_rows(result: Any) -> str:
    rows = [
        (
            e["circuit"],
            e["state"],
            "-" if e["amps"] is None else "/".join(f"{a:g}" for a in e["amps"]),
            "-" if e["assumed_amps"] is None else "/".join(f"{a:g}" for a in e["assumed_amps"]),
            e["valid_until"] or "-",
        )
        for e in result.get("external_loads", [result] if "circuit" in result else [])
    ]
    return table(rows, ["CIRCUIT", "STATE", "PUSHED A", "COUNTED A", "VALID UNTIL"])


def _lease_text(lease: dict[str, Any]) -> str:
    expires = lease.get("expires_at")
    if expires is None:
        return "-"
    return f"{expires} (expired)" if lease.get("expired") else str(expires)


def human(op: str, result: Any, fallback: Callable[[Any], str]) -> str:
    if op in ("circuits.external_load", "circuits.set_external_load"):
        return _external_rows(result)
    if op != "circuits.list":
        return fallback(result)
    live = result.get("live") or {}
    loads = {row["circuit"]: row for row in live.get("loads", [])}
    circuits = table(
        [
            (
                c["name"],
                c["parent"] or "-",
                _amps(c["limit_amps"]),
                _amps(c["limit_kw"]),
                _load_text(loads.get(c["name"])),
                _effective_text(loads.get(c["name"])),
                " ".join(
                    f"{w['charger_id']}({w['phases']} {w['max_amps']:g}A)" for w in c["chargers"]
                ),
            )
            for c in result["circuits"]
        ],
        [
            "CIRCUIT",
            "PARENT",
            "LIMIT A",
            "LIMIT KW",
            "LOAD L1/L2/L3 A",
            "IN FORCE L1/L2/L3 A",
            "CHARGERS",
        ],
    )
    out = circuits
    leases = live.get("leases") or {}
    if leases:
        # Each charger: online, its profile state, when its ChargePointMaxProfile lease
        # falls to the fallback on its own, and what the allocation counts it at.
        counted = {r["charger_id"]: r for r in live.get("reserved") or []}
        states = live.get("chargers") or {}
        out += "\n\n" + table(
            [
                (
                    charger_id,
                    "yes" if lease.get("online") else "no",
                    states.get(charger_id, "-"),
                    _lease_text(lease),
                    "-"
                    if charger_id not in counted
                    else f"{counted[charger_id]['amps']:g} ({counted[charger_id]['reason']})",
                )
                for charger_id, lease in sorted(leases.items())
            ],
            ["CHARGER", "ONLINE", "PROFILES", "LEASE UNTIL", "COUNTED A"],
        )
    tagged = result.get("tag_priorities") or {}
    if tagged:
        out += "\n\nTAG PRIORITIES: " + " ".join(f"{t}={p}" for t, p in tagged.items())
    sessions = live.get("sessions") or []
    if not sessions:
        return out
    rows = table(
        [
            (
                s["charger_id"],
                s["connector_id"],
                s["transaction_id"],
                f"{s.get('priority', 0)} {s.get('priority_from', 'charger')}",
                f"{s['amps']:g}",
                "-" if s.get("draw_amps") is None else f"{s['draw_amps']:g}",
                s.get("parked") or "",
                s.get("detail") or "",
            )
            for s in sessions
        ],
        ["CHARGER", "CONN", "TX", "PRIORITY", "OFFERED A", "DRAWN A", "PARKED", "WHY"],
    )
    return out + "\n\n" + rows
