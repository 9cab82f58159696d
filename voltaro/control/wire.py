"""The control socket's wire format: newline-delimited JSON, stdlib only.

This module is the whole contract between the server and its clients (the Textual
console and ``voltaro ctl``); the console imports nothing else from the server.

Frames (one JSON object per line, UTF-8):

client -> server
    {"type": "request", "id": 7, "op": "chargers.show", "args": {"charger_id": "CP-1"}}

server -> client
    {"type": "hello", "protocol": 1, "server_version": "0.1.0", "user": "alice",
     "role": "operator"}                                  (first frame on every connection)
    {"type": "response", "id": 7, "ok": true, "result": {...}}
    {"type": "response", "id": 7, "ok": false, "error": {"code": "offline", "message": "..."}}
    {"type": "event", "seq": 42, "event": "connector.status", "at": "2025-...Z", "data": {...}}
    (with "node": "n2" when another node of a cluster published it; seq is this node's)
    {"type": "resync", "reason": "..."}   (events were dropped: re-read state, then go on)

Ops, their arguments and results are listed in OPS and documented in docs/control.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 64 * 1024


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"viewer": 0, "operator": 1, "admin": 2}[self.value]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"  # malformed frame or unknown op
    BAD_ARGUMENTS = "bad_arguments"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"  # unknown charger, tag or transaction: the one code for all
    CONFLICT = "conflict"  # already exists
    UNKNOWN_CHARGER = "not_found"  # an alias: unknown chargers are not_found too
    OFFLINE = "offline"
    NOT_ALLOWED = "not_allowed"
    TIMEOUT = "timeout"
    CALL_ERROR = "call_error"
    DISCONNECTED = "disconnected"
    BUSY = "busy"  # the charger was busy with earlier commands: nothing was sent
    UNAVAILABLE = "unavailable"  # the database is unavailable: retry later
    # Several nodes: the node holding the charger did not take the command: not sent.
    OWNER_UNREACHABLE = "owner_unreachable"
    INTERNAL = "internal"


# op -> the least role allowed to run it. "command" is checked per action (COMMAND_ROLES).
OPS: dict[str, Role] = {
    "status": Role.VIEWER,
    "subscribe": Role.VIEWER,  # args: {"frames"?: bool, "charger_id"?: str, "kinds"?: [str]}
    "unsubscribe": Role.VIEWER,
    "chargers.list": Role.VIEWER,
    "chargers.show": Role.VIEWER,  # args: {"charger_id"}
    "chargers.frames": Role.VIEWER,  # args: {"charger_id", "limit"?, "action"?}
    # Health over 24 h (issue 19): args {"charger_id"?, "flagged"?: bool} -> [health]
    "chargers.health": Role.VIEWER,
    # args: {"charger_id", "password"?, "allow_no_subprotocol"?, "security_profile"? (0-3)}
    "chargers.add": Role.ADMIN,
    "chargers.set_profile": Role.ADMIN,  # args: {"charger_id", "security_profile"}
    # args: {"charger_id", "group"}: the group whose local list it gets (null: none).
    "chargers.set_group": Role.OPERATOR,
    # args: {"charger_id", "generate": true} or {"charger_id", "password"}: sends
    # ChangeConfiguration AuthorizationKey; the old password stays valid until the
    # charger logs in with the new one (docs/security.md).
    "chargers.set_password": Role.ADMIN,
    "security.events": Role.VIEWER,  # counts per kind and the recent events
    "chargers.remove": Role.ADMIN,
    "chargers.accept": Role.OPERATOR,
    "chargers.reject": Role.OPERATOR,
    "tags.list": Role.VIEWER,
    "tags.add": Role.OPERATOR,  # args: {"id_tag", "status"?, "expiry"?, "parent"?}
    "tags.block": Role.OPERATOR,
    # args: {"id_tag", "status"?, "expiry"? (ISO 8601 or "" to clear), "parent"? ("" clears)}
    "tags.set": Role.OPERATOR,
    "tags.unblock": Role.OPERATOR,  # args: {"id_tag"}: Accepted again
    "tags.remove": Role.ADMIN,
    # args: {"active"?, "charger_id"?, "limit"?, "state"?, "since"?, "until"? (start time)}
    "transactions.list": Role.VIEWER,
    "transactions.show": Role.VIEWER,  # args: {"transaction_id"}
    # Reconciliation: close a transaction whose stop never came (audited, who did it).
    # args: {"transaction_id": int, "meter_stop": int|null, "reason": str|null}
    "transactions.close": Role.OPERATOR,
    # StopTransactions that closed nothing: unknown/foreign ids, conflicting second stops.
    # args: {"charger_id"?, "kind"? (unknown, foreign, conflict), "limit"?}
    "transactions.stops": Role.VIEWER,
    # One page of the billing export, sessions started in [from, to) in start order:
    # args {"from"?, "to"? (ISO 8601), "charger_id"?, "after"? (a page's next), "limit"?}
    # -> {"items": [session], "next": {"start_time", "transaction_id"} | null}
    "transactions.export": Role.VIEWER,
    "quarantine.list": Role.VIEWER,  # args: {"charger_id"?, "limit"?} (read-only)
    # The command audit: who sent what to which charger, when, and the outcome.
    # args: {"charger_id"?, "actor"? (Unix user or api:<token>), "action"?, "since"?
    # (ISO 8601), "limit"?}
    "commands.list": Role.VIEWER,
    "command": Role.OPERATOR,  # args: {"charger_id", "action", "args": {...}}
    # Firmware Management (docs/firmware.md):
    "firmware.add": Role.ADMIN,  # args: {"path" (absolute, on the server), "name"?, "sha256"?}
    "firmware.list": Role.VIEWER,
    # args: {"file" (name or id), "force"?: bool}: refused while a campaign or (unless
    # force) a pending UpdateFirmware still uses it
    "firmware.remove": Role.ADMIN,
    # args: {"charger_id", "location"? | "file"?, "retrieve_date"?, "retries"?,
    #        "retry_interval"?}
    "firmware.update": Role.ADMIN,
    # args: {"charger_id", "location"? (absent: Voltaro's upload URL), "start_time"?,
    #        "stop_time"?, "retries"?, "retry_interval"?}
    "diagnostics.get": Role.OPERATOR,
    "diagnostics.list": Role.VIEWER,  # args: {"charger_id"?, "limit"?}
    "files.read": Role.ADMIN,  # args: {"id", "offset"?, "length"?}: base64 "data", "eof"
    # The 1.6 security extension (issue 15, docs/security.md):
    # args: {"charger_id", "log_type"? (SecurityLog|DiagnosticsLog), "location"? (absent:
    #        Voltaro's upload URL), "oldest"?, "latest"?, "retries"?, "retry_interval"?}
    "logs.get": Role.OPERATOR,
    "logs.list": Role.VIEWER,  # args: {"charger_id"?, "limit"?}: uploaded logs
    # args: {"charger_id", "location"? | "file"?, "signing_certificate" (PEM),
    #        "signature"? (base64) | "private_key"? (PEM; needs "file"), "retrieve_date"?,
    #        "install_date"?, "retries"?, "retry_interval"?}
    "firmware.update_signed": Role.ADMIN,
    # args: {"pattern" (shell-style, commas between several) | "charger_ids" (a list),
    #        "location"? | "file"?, "retrieve_date"?, "max_parallel"?, "retries"?,
    #        "retry_interval"?}
    "firmware.campaign": Role.ADMIN,
    "firmware.campaigns": Role.VIEWER,  # args: {"campaign_id"?}: one, else the latest
    # Stops sending to the chargers not sent UpdateFirmware yet (those already sent it
    # go on): stopping a rollout that goes wrong is an operator's call.
    "firmware.cancel": Role.OPERATOR,  # args: {"campaign_id"}
    # Local Authorization List (issue 16): sync chargers' lists with the tag table.
    # args: {"charger_ids"?: [..] (absent: every connected charger), "full"?: bool}
    "local_list.sync": Role.OPERATOR,
    "local_list.show": Role.VIEWER,  # args: {"charger_id"}: what it holds, the list
    # Reservations (issue 16). add: {"charger_id", "id_tag", "expiry" (ISO 8601) or
    # "minutes", "connector_id"? (0 = any)}; cancel: {"reservation_id"};
    # list: {"charger_id"?, "open"?: bool, "limit"?}
    "reservations.add": Role.OPERATOR,
    "reservations.cancel": Role.OPERATOR,
    "reservations.list": Role.VIEWER,
    # Smart Charging (issue 16). set: {"charger_id", "connector_id", "profile" (OCPP
    # csChargingProfiles JSON)}; clear: {"charger_id", "profile_id"?, "connector_id"?,
    # "purpose"?, "stack_level"?}; list: {"charger_id", "all"?};
    # composite: {"charger_id", "connector_id", "duration", "unit"?}
    "profiles.set": Role.OPERATOR,
    "profiles.clear": Role.OPERATOR,
    "profiles.list": Role.VIEWER,
    "profiles.composite": Role.OPERATOR,
    # Site load management (issue 17, docs/load-management.md). list: the tree, each
    # charger's wiring and the load manager's latest allocation ("live"); add: {"name",
    # "parent"?, "limit_amps"?, "limit_kw"?}; set_limit: {"name", "limit_amps"?,
    # "limit_kw"?, "parent"?} (absent: kept; null: cleared, or moved to the root);
    # remove: {"name"};
    # assign: {"charger_id", "circuit", "phases"? ("L1=L2,L2=L3,L3=L1"), "max_amps"?,
    # "fallback_amps"?, "priority"?}; unassign: {"charger_id"}
    "circuits.list": Role.VIEWER,
    "circuits.add": Role.ADMIN,
    "circuits.set_limit": Role.ADMIN,
    "circuits.remove": Role.ADMIN,
    "circuits.assign": Role.ADMIN,
    "circuits.unassign": Role.ADMIN,
    "circuits.tag_priority": Role.ADMIN,
    "circuits.external_load": Role.VIEWER,
    "circuits.set_external_load": Role.OPERATOR,
    # Charger certificates (1.6 security extension, docs/security.md). show:
    # {"charger_id"}: what it holds (numbered) and its SignCertificate requests;
    # delete: {"charger_id", "index"} or {"charger_id", "hash_data": {...}}.
    "certificates.show": Role.VIEWER,
    "certificates.delete": Role.ADMIN,
}

# OCPP action -> the least role allowed to send it. Hard reset needs admin (args.type).
COMMAND_ROLES: dict[str, Role] = {
    "RemoteStartTransaction": Role.OPERATOR,
    "RemoteStopTransaction": Role.OPERATOR,
    "ChangeAvailability": Role.OPERATOR,
    "Reset": Role.OPERATOR,  # Hard: ADMIN, see command_role()
    "UnlockConnector": Role.OPERATOR,
    "ChangeConfiguration": Role.ADMIN,
    "GetConfiguration": Role.OPERATOR,
    "ClearCache": Role.OPERATOR,
    "DataTransfer": Role.OPERATOR,
    "TriggerMessage": Role.OPERATOR,
    # Firmware Management: new firmware is the admin's call (docs/firmware.md).
    "UpdateFirmware": Role.ADMIN,
    "GetDiagnostics": Role.OPERATOR,
    "GetLocalListVersion": Role.OPERATOR,
    "GetCompositeSchedule": Role.OPERATOR,
    # Which roots a charger trusts is the admin's call; reading them is not.
    "InstallCertificate": Role.ADMIN,
    "GetInstalledCertificateIds": Role.OPERATOR,
    "DeleteCertificate": Role.ADMIN,
    "ExtendedTriggerMessage": Role.OPERATOR,
}


def command_role(action: str, args: dict[str, Any]) -> Role | None:
    """The least role for a command, or None for an unknown action."""
    if action == "Reset" and str(args.get("type", "Soft")).lower() == "hard":
        return Role.ADMIN
    return COMMAND_ROLES.get(action)


class Event(StrEnum):
    CHARGER_CONNECTED = "charger.connected"  # {charger_id, remote}
    CHARGER_DISCONNECTED = "charger.disconnected"  # {charger_id, reason}
    # {charger_id, status, vendor, model, firmware_version, same_identity}
    CHARGER_BOOT = "charger.boot"
    CHARGER_UPDATED = "charger.updated"  # {charger_id, registration} (added/accepted/...)
    CHARGER_REMOVED = "charger.removed"  # {charger_id}
    CONNECTOR_STATUS = "connector.status"  # {charger_id, connector_id, status, error_code,
    #                                         info, vendor_error_code, at}
    TRANSACTION_STARTED = "transaction.started"  # {transaction_id, charger_id, connector_id,
    #                                              id_tag, id_tag_status, meter_start, start_time}
    TRANSACTION_STOPPED = "transaction.stopped"  # {transaction_id, charger_id, connector_id,
    #                                              meter_stop, energy_wh, reason, stop_time}
    TRANSACTION_ENDED = "transaction.ended"  # {transaction_id, charger_id, connector_id,
    #                     state (interrupted|refused|closed), reason, energy_wh, energy_flag,
    #                     closed_by}: ended other than by the charger's StopTransaction
    # A StopTransaction that closed nothing, kept for reconciliation (transactions.stops):
    TRANSACTION_ORPHAN_STOP = "transaction.orphan_stop"  # {charger_id, transaction_id, kind
    #                      (unknown|foreign|conflict), meter_stop, stop_time, reason, id_tag}
    METER_VALUES = "meter.values"  # {charger_id, connector_id, transaction_id, energy_wh,
    #                                 power_w, current_a, current_phase_a (the highest
    #                                 line current), current_phases_a ({L1, L2,
    #                                 L3} by the charger's phase, or null), voltage_v,
    #                                 soc, at}
    COMMAND_RESULT = "command.result"  # {charger_id, action, ok, status?, error?, user}
    FRAME = "frame"  # {charger_id, direction, action, unique_id, payload, at}
    TAG_UPDATED = "tag.updated"  # {id_tag, status}
    # Health and liveness for consoles (issue 12):
    SERVER_HEALTH = "server.health"  # {database: {ok, backend, error?}, connected_chargers,
    #                                  protection?} published on every change
    #                                  (service/health.py); protection: the counters of
    #                                  `status` (see protection_notes) without the ones
    #                                  that move with every frame (stored, open)
    CHARGERS_SEEN = "chargers.seen"  # {chargers: {charger_id: last seen}} batched, at most
    #                                  once per liveness flush (every few seconds)
    QUARANTINED = "message.quarantined"  # {id, charger_id, unique_id, action, error}
    # Firmware Management (issue 16):
    FIRMWARE_STATUS = "firmware.status"  # {charger_id, status, at}
    DIAGNOSTICS_STATUS = "diagnostics.status"  # {charger_id, status, at}
    # The 1.6 security extension (issue 15): after GetLog / SignedUpdateFirmware.
    LOG_STATUS = "log.status"  # {charger_id, status, request_id, at}
    SIGNED_FIRMWARE_STATUS = "firmware.signed_status"  # {charger_id, status, request_id, at}
    CAMPAIGN_PROGRESS = "campaign.progress"  # {campaign_id, charger_id, state, detail?}
    CAMPAIGN_FINISHED = "campaign.finished"  # {campaign_id}
    FILE_UPLOADED = "file.uploaded"  # {id, kind, name, size, charger_id}
    # Issue 16: the Local Authorization List and reservations.
    LOCAL_LIST_SYNCED = "local_list.synced"  # {charger_id, result, ok, version,
    #                    update_type, messages, entries, detail, error_code}
    RESERVATION_UPDATED = "reservation.updated"  # a reservation view (reservations.list)
    # Security events at the connection edge (issue 15): {kind, charger_id, remote,
    # detail, at}; kinds in docs/security.md (downgrade, certificate_cn_mismatch, ...).
    SECURITY_EVENT = "security.event"
    # Site load management (issue 17, docs/load-management.md):
    LOAD_ALLOCATION = "load.allocation"  # the live view of circuits.list after each round
    LOAD_PROFILE_REFUSED = "load.profile_refused"  # {charger_id, connector_id, purpose,
    #                          answer}: the charger will be counted at its full rating


class WireError(ValueError):
    """A frame that does not follow this format."""


def event_kinds(kinds: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The ``kinds`` of a subscribe filter, checked and lower-cased: an event name
    (``connector.status``) or its group (``transaction`` for transaction.*), any case.

    Raises:
        WireError: an unknown kind (the message lists the valid ones).
    """
    names = {e.value for e in Event}
    groups = {name.split(".")[0] for name in names}
    out = []
    for kind in kinds:
        if not isinstance(kind, str) or kind.lower() not in names | groups:
            valid = ", ".join(sorted(names | groups))
            raise WireError(f"unknown event kind {kind!r}; valid: {valid}")
        out.append(kind.lower())
    return tuple(out)


def event_matches(
    name: str, data: dict[str, Any], charger_id: str | None, kinds: tuple[str, ...]
) -> bool:
    """Whether an event passes a subscribe filter (``kinds`` from event_kinds)."""
    if kinds and not any(name == k or name.startswith(k + ".") for k in kinds):
        return False
    if charger_id is None:
        return True
    if data.get("charger_id") == charger_id:
        return True
    # chargers.seen batches many chargers: it passes when it names this one.
    seen = data.get("chargers")
    return isinstance(seen, dict) and charger_id in seen


@dataclass(frozen=True, slots=True)
class Request:
    id: int | str
    op: str
    args: dict[str, Any] = field(default_factory=dict)


def encode(frame: dict[str, Any]) -> bytes:
    """One frame as a JSON line (compact, UTF-8, newline-terminated)."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a frame object.

    Raises:
        WireError: not JSON, not an object, or without a string ``type``.
    """
    try:
        frame = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise WireError("a frame must be a JSON object with a string 'type'")
    return frame


def request(rid: int | str, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "request", "id": rid, "op": op, "args": args or {}}


def parse_request(frame: dict[str, Any]) -> Request:
    """Validate a request frame's shape (not its arguments).

    Raises:
        WireError: not a request, bad id, unknown op or args not an object.
    """
    if frame.get("type") != "request":
        raise WireError("expected a frame of type 'request'")
    rid = frame.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        raise WireError("a request needs an 'id' (integer or string)")
    op = frame.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise WireError(f"unknown op {op!r}")
    args = frame.get("args", {})
    if not isinstance(args, dict):
        raise WireError("'args' must be an object")
    return Request(id=rid, op=op, args=args)


def hello(*, server_version: str, user: str, role: Role) -> dict[str, Any]:
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "server_version": server_version,
        "user": user,
        "role": role.value,
    }


def ok(rid: int | str | None, result: Any) -> dict[str, Any]:
    return {"type": "response", "id": rid, "ok": True, "result": result}


def error(rid: int | str | None, code: ErrorCode | str, message: str) -> dict[str, Any]:
    return {
        "type": "response",
        "id": rid,
        "ok": False,
        "error": {"code": str(code), "message": message},
    }


def event(
    seq: int, name: Event | str, at: str, data: dict[str, Any], node: str | None = None
) -> dict[str, Any]:
    frame = {"type": "event", "seq": seq, "event": str(name), "at": at, "data": data}
    if node is not None:
        frame["node"] = node  # another node of the cluster published it (issue 18)
    return frame


def resync(reason: str) -> dict[str, Any]:
    return {"type": "resync", "reason": reason}


# Configuration keys whose values are secrets (OCPP 1.6 security whitepaper: the
# AuthorizationKey is the charger's Basic-auth password). Never shown or logged.
SECRET_KEYS = frozenset({"authorizationkey"})
REDACTED = "•••• (hidden)"


def redact(value: Any) -> Any:
    """A copy of a JSON value with the value of every secret configuration key hidden:
    ``{"key": "AuthorizationKey", "value": "..."}`` in ChangeConfiguration.req and in
    GetConfiguration.conf's configurationKey list, whatever the nesting."""
    if isinstance(value, list):
        return [redact(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: redact(v) for k, v in value.items()}
    key = out.get("key")
    if isinstance(key, str) and key.lower() in SECRET_KEYS and "value" in out:
        out["value"] = REDACTED
    return out


def redact_frame_text(payload: str) -> str:
    """A raw OCPP-J frame (JSON text) with secrets hidden; unparsable text is kept."""
    try:
        parsed = json.loads(payload)
    except (ValueError, RecursionError):
        return payload
    redacted = redact(parsed)
    if redacted == parsed:
        return payload
    return json.dumps(redacted, separators=(",", ":"), ensure_ascii=False)


# --- the hardening counters of ``status`` (issue 11) ------------------------------------


def _counts(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items() if v)


def protection_notes(p: dict[str, Any]) -> list[str]:
    """One line per kind of thing refused, shed or failed since the server started
    (issue 11); nothing when all is quiet."""
    notes: list[str] = []
    frames = p.get("frame_log") or {}
    shed = {
        "over a charger's rate budget": frames.get("dropped_rate", 0),
        "buffer full": frames.get("shed_buffer", 0),
        "refused by the database": frames.get("rows_skipped", 0),
    }
    if any(shed.values()):
        notes.append(f"frame log: {sum(shed.values())} frames not stored ({_counts(shed)})")
    if frames.get("truncated"):
        notes.append(f"frame log: {frames['truncated']} frames stored truncated (byte budget)")
    refused = p.get("handshakes_refused") or {}
    if any(refused.values()):
        notes.append(f"{sum(refused.values())} charger handshakes refused ({_counts(refused)})")
    auth = p.get("auth") or {}
    if auth.get("locked_out"):
        notes.append(
            f"{auth['locked_out']} password attempts refused before checking "
            "(too many failures from one source)"
        )
    if p.get("abuse_cut_off"):
        notes.append(f"{p['abuse_cut_off']} chargers cut off for protocol errors (1008)")
    conns = p.get("connections") or {}
    closed = {
        "per-address cap": conns.get("refused_per_ip", 0),
        "global cap": conns.get("refused_global", 0),
    }
    if any(closed.values()):
        notes.append(f"{sum(closed.values())} sockets closed at accept ({_counts(closed)})")
    failed = conns.get("accept_errors", 0) + conns.get("http_accept_errors", 0)
    if failed:
        notes.append(f"{failed} accepts failed for lack of file descriptors or memory")
    failures = p.get("background_failures") or {}
    if any(failures.values()):
        notes.append(
            f"{sum(failures.values())} unexpected errors in background tasks "
            f"({_counts(failures)}); see the log"
        )
    lost = (p.get("cluster_events") or {}).get("dropped", 0)
    if lost:
        notes.append(
            f"cluster events: {lost} not handed to the other nodes (buffer full while "
            "the database was away); their consoles were told to resync"
        )
    if p.get("connections_crashed"):
        notes.append(f"{p['connections_crashed']} connections ended by an internal error")
    return notes
