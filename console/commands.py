"""The operator commands the console offers: pure data, no Textual (unit-testable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voltaro.control import wire


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text | int | list | choice | file (its text is sent)
    required: bool = True
    choices: tuple[str, ...] = ()
    default: str = ""


@dataclass(frozen=True)
class CommandSpec:
    action: str  # the ctl / wire name
    title: str
    fields: tuple[Field, ...] = ()
    destructive: bool = False
    fixed: tuple[tuple[str, Any], ...] = ()
    op: str = "command"  # the control op; "command" sends an OCPP CALL to the charger

    @property
    def ocpp_action(self) -> str:
        return {
            "remote-start": "RemoteStartTransaction",
            "remote-stop": "RemoteStopTransaction",
            "reset": "Reset",
            "hard-reset": "Reset",
            "unlock": "UnlockConnector",
            "availability": "ChangeAvailability",
            "get-config": "GetConfiguration",
            "set-config": "ChangeConfiguration",
            "clear-cache": "ClearCache",
            "data-transfer": "DataTransfer",
            "trigger": "TriggerMessage",
            "install-certificate": "InstallCertificate",
            "installed-certificates": "GetInstalledCertificateIds",
            "delete-certificate": "DeleteCertificate",
            "trigger-ext": "ExtendedTriggerMessage",
        }.get(self.action, self.action)

    def role(self) -> wire.Role:
        if self.op != "command":
            return wire.OPS[self.op]
        return wire.command_role(self.ocpp_action, dict(self.fixed)) or wire.Role.ADMIN


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "remote-start",
        "Remote start",
        (Field("id_tag", "Id tag"), Field("connector_id", "Connector", "int", required=False)),
    ),
    CommandSpec(
        "remote-stop",
        "Remote stop",
        (Field("transaction_id", "Transaction", "int"),),
        destructive=True,
    ),
    CommandSpec("reset", "Soft reset", destructive=True, fixed=(("type", "Soft"),)),
    CommandSpec("hard-reset", "Hard reset", destructive=True, fixed=(("type", "Hard"),)),
    CommandSpec(
        "unlock",
        "Unlock connector",
        (Field("connector_id", "Connector", "int"),),
        destructive=True,
    ),
    CommandSpec(
        "availability",
        "Change availability",
        (
            Field("connector_id", "Connector (0 = all)", "int", default="0"),
            Field(
                "type",
                "Operative or Inoperative",
                "choice",
                choices=("Operative", "Inoperative"),
                default="Operative",
            ),
        ),
    ),
    CommandSpec(
        "get-config",
        "Get configuration",
        (Field("keys", "Keys (blank = all)", "list", required=False),),
    ),
    CommandSpec("set-config", "Set configuration", (Field("key", "Key"), Field("value", "Value"))),
    CommandSpec("clear-cache", "Clear authorization cache"),
    CommandSpec(
        "data-transfer",
        "Data transfer",
        (
            Field("vendor_id", "Vendor id"),
            Field("message_id", "Message id", required=False),
            Field("data", "Data", required=False),
        ),
    ),
    CommandSpec(
        "trigger",
        "Trigger message",
        (
            Field(
                "requested_message",
                "Message",
                "choice",
                choices=(
                    "StatusNotification",
                    "Heartbeat",
                    "MeterValues",
                    "BootNotification",
                    "DiagnosticsStatusNotification",
                    "FirmwareStatusNotification",
                ),
                default="StatusNotification",
            ),
            Field("connector_id", "Connector", "int", required=False),
        ),
    ),
)
COMMANDS += (
    CommandSpec("local-list-sync", "Sync local list", op="local_list.sync"),
    CommandSpec(
        "reserve",
        "Reserve",
        (
            Field("id_tag", "Id tag"),
            Field("connector_id", "Connector (0 = any)", "int", default="0"),
            Field("minutes", "Minutes", "int", default="30"),
        ),
        op="reservations.add",
    ),
    CommandSpec(
        "cancel-reservation",
        "Cancel reservation",
        (Field("reservation_id", "Reservation", "int"),),
        destructive=True,
        op="reservations.cancel",
    ),
)
COMMANDS += (
    CommandSpec(
        "limit",
        "Limit charger",
        (
            Field("limit", "Limit", "int"),
            Field("unit", "A or W", "choice", choices=("A", "W"), default="A"),
        ),
        fixed=(("connector_id", 0),),
        op="profiles.set",
    ),
)
COMMANDS += (
    # Opens the step chart (console/schedule_screen.py) rather than a notification.
    CommandSpec(
        "schedule",
        "Composite schedule (chart)",
        (
            Field("connector_id", "Connector (0 = the whole charger)", "int", default="0"),
            Field("duration", "Duration (seconds)", "int", default="3600"),
            Field("unit", "A or W (blank: the charger's)", "choice", False, ("A", "W")),
        ),
        op="profiles.composite",
    ),
)
_CERTIFICATE_TYPE = Field(
    "certificate_type",
    "Type",
    "choice",
    choices=("CentralSystemRootCertificate", "ManufacturerRootCertificate"),
    default="CentralSystemRootCertificate",
)
COMMANDS += (
    CommandSpec(
        "install-certificate",
        "Install root certificate",
        (_CERTIFICATE_TYPE, Field("certificate", "PEM file (path on this machine)", "file")),
    ),
    CommandSpec("installed-certificates", "List installed certificates", (_CERTIFICATE_TYPE,)),
    CommandSpec(
        "delete-certificate",
        "Delete certificate",
        (Field("index", "Number (as in `voltaro ctl certificates show`)", "int"),),
        destructive=True,
        op="certificates.delete",
    ),
)
# The 1.6 security extension (issue 15): SignChargePointCertificate starts a certificate
# renewal; GetLog makes the charger upload its security (or diagnostics) log here.
COMMANDS += (
    CommandSpec(
        "trigger-ext",
        "Extended trigger message",
        (
            Field(
                "requested_message",
                "Message",
                "choice",
                choices=(
                    "SignChargePointCertificate",
                    "LogStatusNotification",
                    "FirmwareStatusNotification",
                    "StatusNotification",
                    "Heartbeat",
                    "MeterValues",
                    "BootNotification",
                ),
                default="SignChargePointCertificate",
            ),
            Field("connector_id", "Connector", "int", required=False),
        ),
    ),
    CommandSpec(
        "get-log",
        "Get log (upload here)",
        (
            Field(
                "log_type",
                "Log",
                "choice",
                choices=("SecurityLog", "DiagnosticsLog"),
                default="SecurityLog",
            ),
        ),
        op="logs.get",
    ),
)
COMMANDS += (CommandSpec("remove", "Remove charger", destructive=True, op="chargers.remove"),)
BY_ACTION = {c.action: c for c in COMMANDS}


class FormError(ValueError):
    pass


def build_args(spec: CommandSpec, values: dict[str, str]) -> dict[str, Any]:
    """Turn form text into command arguments; raise FormError with a one-line reason."""
    args: dict[str, Any] = dict(spec.fixed)
    for field in spec.fields:
        raw = values.get(field.name, "").strip()
        if not raw:
            if field.required:
                raise FormError(f"{field.label} is required")
            continue
        if field.kind == "int":
            try:
                args[field.name] = int(raw)
            except ValueError:
                raise FormError(f"{field.label} must be a whole number") from None
        elif field.kind == "list":
            args[field.name] = raw.replace(",", " ").split()
        elif field.kind == "file":
            try:
                with open(raw, encoding="ascii") as handle:
                    args[field.name] = handle.read()
            except (OSError, ValueError) as exc:
                raise FormError(f"{field.label}: cannot read {raw}: {exc}") from None
        elif field.kind == "choice":
            match = next((c for c in field.choices if c.lower() == raw.lower()), None)
            if match is None:
                raise FormError(f"{field.label}: one of {', '.join(field.choices)}")
            args[field.name] = match
        else:
            args[field.name] = raw
    return args


def is_destructive(spec: CommandSpec, args: dict[str, Any]) -> bool:
    return spec.destructive or (spec.action == "availability" and args.get("type") == "Inoperative")


def _sessions(n: int) -> str:
    return "no session running" if n == 0 else f"ends {n} session{'s' if n != 1 else ''}"


def confirmation(
    spec: CommandSpec, charger_id: str, args: dict[str, Any], sessions: dict[int, int]
) -> str:
    """The question a destructive command asks: its target and what it will do.

    ``sessions``: the charger's active sessions as transaction id -> connector id.
    """
    n = len(sessions)
    match spec.action:
        case "hard-reset":
            return f"Hard reset {charger_id}: reboots it now, {_sessions(n)} abruptly"
        case "reset":
            return f"Soft reset {charger_id}: {_sessions(n)} cleanly, then reboots it"
        case "remote-stop":
            tx = args.get("transaction_id")
            where = f" on connector {sessions[tx]}" if tx in sessions else ""
            return f"Remote stop on {charger_id}: ends session {tx}{where}"
        case "unlock":
            cid = args.get("connector_id")
            running = [t for t, c in sessions.items() if c == cid]
            effect = f"ends session {running[0]}" if running else "no session on it"
            return f"Unlock connector {cid} of {charger_id}: {effect}"
        case "availability":
            cid = args.get("connector_id")
            target = "the whole charger" if cid == 0 else f"connector {cid}"
            affected = n if cid == 0 else sum(1 for c in sessions.values() if c == cid)
            later = f" (after {affected} running session{'s' if affected != 1 else ''})"
            return f"Make {target} of {charger_id} Inoperative: no new sessions" + (
                later if affected else ""
            )
        case "remove":
            return (
                f"Remove {charger_id}: forgets it and closes its connection"
                + (f", {_sessions(n)}" if n else "")
                + "; it cannot connect again until added back"
            )
        case _:
            return f"{spec.title} on {charger_id}?"
