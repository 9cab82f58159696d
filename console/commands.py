"""The operator commands the console offers: pure data, no Textual (unit-testable)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voltaro.control import wire


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text | int | list | choice
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
        }[self.action]

    def role(self) -> wire.Role:
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
    CommandSpec("reset", "Soft reset", fixed=(("type", "Soft"),)),
    CommandSpec("hard-reset", "Hard reset", destructive=True, fixed=(("type", "Hard"),)),
    CommandSpec("unlock", "Unlock connector", (Field("connector_id", "Connector", "int"),)),
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
