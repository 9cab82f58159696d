"""JSON-ready views of domain records: the shapes the control socket and the HTTP API
return and the console reads. One definition, so both interfaces agree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from voltaro.control.wire import redact
from voltaro.domain.commands import CommandOutcome
from voltaro.domain.firmware import TransferKind
from voltaro.domain.model import Charger, Connector, IdTag, MeterValue, Transaction
from voltaro.domain.secrets import redact_value
from voltaro.domain.timestamps import format_utc
from voltaro.store.quarantine import QuarantineEntry


def _ts(value: Any) -> str | None:
    return format_utc(value) if value is not None else None


def connector_view(c: Connector) -> dict[str, Any]:
    return {
        "connector_id": c.connector_id,
        "status": c.status.value if c.status else None,
        "error_code": c.error_code,
        "info": c.info,
        "vendor_id": c.vendor_id,
        "vendor_error_code": c.vendor_error_code,
        "availability": c.availability.value,
        "status_at": _ts(c.status_at),
        # A change the charger answered Scheduled: shown as pending, not as done.
        "scheduled_availability": (
            c.scheduled_availability.value if c.scheduled_availability else None
        ),
        "availability_note": (
            f"{c.scheduled_availability.value} after the session"
            if c.scheduled_availability
            else None
        ),
    }


def charger_view(ch: Charger) -> dict[str, Any]:
    ident = ch.identity
    return {
        "charger_id": ch.charger_id,
        "registration": ch.registration.value,
        "connected": ch.connected,
        "last_seen": _ts(ch.last_seen),
        "last_boot": _ts(ch.last_boot),
        "created_at": _ts(ch.created_at),
        "vendor": ident.vendor if ident else None,
        "model": ident.model if ident else None,
        "serial_number": ident.serial_number if ident else None,
        "charge_box_serial_number": ident.charge_box_serial_number if ident else None,
        "firmware_version": ident.firmware_version if ident else None,
        "iccid": ident.iccid if ident else None,
        "imsi": ident.imsi if ident else None,
        "meter_type": ident.meter_type if ident else None,
        "meter_serial_number": ident.meter_serial_number if ident else None,
        "has_password": ch.has_password,
        "security_profile": ch.security_profile,
        "password_pending": ch.password_pending,
        "allow_no_subprotocol": ch.allow_no_subprotocol,
        "list_group": ch.list_group,
        "connectors": [connector_view(c) for c in ch.connectors],
    }


def heartbeat_view(
    set_by_operator: int | None, reported: int | None, default: int
) -> dict[str, Any]:
    """The charger's HeartbeatInterval: what an operator set (answered at boot), what the
    charger runs by its last report (or our boot answer), and whether they differ."""
    return {
        "set": set_by_operator,
        "reported": reported,
        "default": default,
        "boot_answer": set_by_operator or default,
        "mismatch": set_by_operator is not None
        and reported is not None
        and reported != set_by_operator,
    }


def transaction_view(tx: Transaction) -> dict[str, Any]:
    return {
        "transaction_id": tx.transaction_id,
        "charger_id": tx.charger_id,
        "connector_id": tx.connector_id,
        "id_tag": tx.id_tag,
        "id_tag_status": tx.id_tag_status.value,
        "state": tx.state.value,
        "start_time": _ts(tx.start_time),
        "stop_time": _ts(tx.stop_time),
        "meter_start": tx.meter_start,
        "meter_stop": tx.meter_stop,
        "energy_wh": tx.energy_wh,
        "stop_reason": tx.stop_reason.value if tx.stop_reason else None,
        "stop_id_tag": tx.stop_id_tag,
        "last_meter_wh": tx.last_meter_wh,
        "last_power_w": tx.last_power_w,
        "end_reason": tx.end_reason,
        "ended_at": _ts(tx.ended_at),
        "closed_by": tx.closed_by,
        "energy_flag": tx.energy_flag,
    }


def meter_value_view(mv: MeterValue) -> dict[str, Any]:
    return {
        "timestamp": _ts(mv.timestamp),
        "sampled_values": [
            {
                "value": sv.value,
                "context": sv.context,
                "format": sv.format,
                "measurand": sv.measurand,
                "phase": sv.phase,
                "location": sv.location,
                "unit": sv.unit,
            }
            for sv in mv.sampled_values
        ],
    }


def tag_view(tag: IdTag) -> dict[str, Any]:
    return {
        "id_tag": tag.id_tag,
        "status": tag.status.value,
        "expiry_date": _ts(tag.expiry_date),
        "parent_id_tag": tag.parent_id_tag,
        "groups": list(tag.groups),
    }


def quarantine_view(e: QuarantineEntry) -> dict[str, Any]:
    """A charger message kept as its raw frame (refused by the database, or repaired)."""
    return {
        "id": e.id,
        "kind": e.kind,
        "charger_id": e.charger_id,
        "unique_id": e.unique_id,
        "action": e.action,
        "transaction_id": e.transaction_id,
        "error": e.error,
        "frame": e.frame,
        "at": format_utc(e.at),
    }


def orphan_stop_view(row: dict[str, Any]) -> dict[str, Any]:
    """A StopTransaction that closed nothing (store.transactions.orphan_stops)."""
    return {k: _ts(v) if isinstance(v, datetime) else v for k, v in row.items()}


def command_view(row: dict[str, Any]) -> dict[str, Any]:
    """One entry of the command audit (store.commands.command_log), secrets hidden:
    who sent what to which charger, when, and how it ended (the charger's answer
    ``status``, or the ``error``; both empty while it is in progress)."""
    return {
        "id": row["id"],
        "charger_id": row["charger_id"],
        "action": row["action"],
        "request": redact(row["request"]),
        "actor": row["actor"],
        "requested_at": _ts(row["requested_at"]),
        "finished_at": _ts(row["finished_at"]),
        "status": row["status"],
        "error": row["error"],
    }


def outcome_view(outcome: CommandOutcome) -> dict[str, Any]:
    view: dict[str, Any] = {"action": outcome.action, "status": outcome.status}
    if outcome.configuration or outcome.action == "GetConfiguration":
        view["configuration"] = [
            {"key": e.key, "readonly": e.readonly, "value": e.value} for e in outcome.configuration
        ]
        view["unknown_keys"] = list(outcome.unknown_keys)
    if outcome.data is not None:
        view["data"] = outcome.data
    if outcome.details:
        view["details"] = outcome.details
    if not outcome.applied:
        view["applied"] = False
        view["warning"] = outcome.warning
    # A charger that reports its AuthorizationKey in GetConfiguration (it should not).
    return redact_value(view)  # type: ignore[no-any-return]


def attention(charger: dict[str, Any]) -> list[str]:
    """One line per thing in a charger's detail view an operator should notice: an
    operator setting the charger does not run, a change still pending."""
    notes = []
    heartbeat = charger.get("heartbeat_interval") or {}
    if heartbeat.get("mismatch"):
        notes.append(
            f"HeartbeatInterval set to {heartbeat['set']} s but the charger reports "
            f"{heartbeat['reported']} s"
        )
    for c in charger.get("connectors", []):
        if c.get("availability_note"):
            notes.append(f"connector {c['connector_id']}: {c['availability_note']}")
    return notes


def transfer_status_view(latest: Mapping[Any, Any], history: Sequence[Any]) -> dict[str, Any]:
    """The charger's firmware and diagnostics state (its last report of each kind, or
    null) and the recent reports newest first (store.firmware.TransferStatusEntry)."""
    out: dict[str, Any] = {}
    for kind in TransferKind:
        entry = latest.get(kind)
        out[f"{kind.value}_status"] = None if entry is None else _transfer_entry(entry)
    out["transfer_history"] = [{"kind": e.kind.value, **_transfer_entry(e)} for e in history]
    return out


def _transfer_entry(entry: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"status": entry.status, "at": format_utc(entry.at)}
    if entry.request_id is not None:
        # GetLog / SignedUpdateFirmware reports name their request (1.6 security ext.).
        out["request_id"] = entry.request_id
    return out


def file_view(stored: Any) -> dict[str, Any]:
    """A file Voltaro keeps (store.files.StoredFile)."""
    return {
        "id": stored.id,
        "kind": stored.kind,
        "name": stored.name,
        "size": stored.size,
        "sha256": stored.sha256,
        "charger_id": stored.charger_id,
        "created_by": stored.created_by,
        "created_at": format_utc(stored.created_at),
    }


def campaign_view(campaign: Any, *, targets: bool = True) -> dict[str, Any]:
    """A firmware campaign (store.firmware.Campaign): its counts per state and, with
    ``targets``, every charger's progress."""
    counts: dict[str, int] = {}
    for t in campaign.targets:
        counts[t.state.value] = counts.get(t.state.value, 0) + 1
    view: dict[str, Any] = {
        "id": campaign.id,
        "pattern": campaign.pattern,
        "firmware": (
            f"file #{campaign.file_id}" if campaign.file_id is not None else campaign.location
        ),
        "retrieve_at": format_utc(campaign.retrieve_at),
        "max_parallel": campaign.max_parallel,
        "created_by": campaign.created_by,
        "created_at": format_utc(campaign.created_at),
        "finished_at": _ts(campaign.finished_at),
        "chargers": len(campaign.targets),
        "counts": counts,
    }
    if targets:
        view["targets"] = [
            {
                "charger_id": t.charger_id,
                "state": t.state.value,
                "detail": t.detail,
                "updated_at": format_utc(t.updated_at),
            }
            for t in campaign.targets
        ]
    return view
