"""Operator commands: one implementation shared by the control socket and the HTTP API.

``execute`` checks the arguments (nothing is sent on bad input), the charger and the
spec's state rules, records who asked before anything is sent, routes the command to the
charger's live connection, records the answer, and applies it (availability, reboot
flag, known configuration).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

import trio
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from voltaro.control.wire import Event
from voltaro.domain.authorization import decide
from voltaro.domain.certificates import (
    USE_NAMES,
    CertificateError,
    CertificateUse,
    describe,
    hash_data,
    load_certificate,
    parse_hash_data,
)
from voltaro.domain.charging_profiles import (
    ChargingProfile,
    ProfileError,
    RateUnit,
    parse_profile,
    profile_to_wire,
)
from voltaro.domain.commands import (
    ACTION_OF,
    CertificateSigned,
    ChangeAvailability,
    ChangeConfiguration,
    ClearCache,
    Command,
    CommandError,
    CommandErrorCode,
    CommandOutcome,
    DataTransfer,
    DeleteCertificate,
    ExtendedTriggerableMessage,
    ExtendedTriggerMessage,
    GetCompositeSchedule,
    GetConfiguration,
    GetDiagnostics,
    GetInstalledCertificateIds,
    GetLocalListVersion,
    InstallCertificate,
    RemoteStart,
    RemoteStop,
    Reset,
    ResetType,
    SendLocalList,
    TriggerableMessage,
    TriggerMessage,
    UnlockConnector,
    UpdateFirmware,
    check_allowed,
    check_remote_start_tag,
    validate,
)
from voltaro.domain.credentials import password_bytes
from voltaro.domain.model import Availability, RegistrationStatus
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.secrets import redact_value
from voltaro.domain.timestamps import format_utc, parse_timestamp, utc_now
from voltaro.net.registry import Registry
from voltaro.service.charger_health import HealthRecorder
from voltaro.service.hub import EventHub
from voltaro.settings import Settings
from voltaro.store import certificates, chargers, tags, transactions
from voltaro.store import commands as audit
from voltaro.store.db import Database

log = logging.getLogger(__name__)

# Friendly names (as in `voltaro ctl` and the API paths) -> OCPP action names.
ALIASES = {
    "remote-start": "RemoteStartTransaction",
    "remote-stop": "RemoteStopTransaction",
    "availability": "ChangeAvailability",
    "reset": "Reset",
    "unlock": "UnlockConnector",
    "set-config": "ChangeConfiguration",
    "get-config": "GetConfiguration",
    "clear-cache": "ClearCache",
    "data-transfer": "DataTransfer",
    "trigger": "TriggerMessage",
    "update-firmware": "UpdateFirmware",
    "get-diagnostics": "GetDiagnostics",
    "local-list-version": "GetLocalListVersion",
    "composite-schedule": "GetCompositeSchedule",
    "install-certificate": "InstallCertificate",
    "installed-certificates": "GetInstalledCertificateIds",
    "delete-certificate": "DeleteCertificate",
    "trigger-ext": "ExtendedTriggerMessage",
}
# Sent only by the services that keep what they change (the local list sync, the
# reservations), never as a bare command: a reservation or list the server does not know
# about would be worse than none.
MANAGED = {
    "SendLocalList": "use local-list sync (it keeps the version the charger holds)",
    "ReserveNow": "use reservations add (it stores the reservation)",
    "CancelReservation": "use reservations cancel (it updates the stored reservation)",
    "SetChargingProfile": "use profiles set (it checks and stores the profile)",
    "ClearChargingProfile": "use profiles clear (it updates the stored profiles)",
    "CertificateSigned": "Voltaro sends it after signing the charger's SignCertificate CSR",
    # Their requestId comes from the server's request table (store.firmware.new_request).
    "GetLog": "use logs get (it numbers the request and makes the upload URL)",
    "SignedUpdateFirmware": "use firmware update-signed (it numbers the request)",
}
ACTIONS = frozenset(ACTION_OF.values())


# Failures after which the command was certainly not sent to the charger.
_NOT_SENT = frozenset(
    {
        CommandErrorCode.OFFLINE,
        CommandErrorCode.BUSY,
        CommandErrorCode.UNAVAILABLE,
        CommandErrorCode.OWNER_UNREACHABLE,
    }
)


def _bad(message: str) -> CommandError:
    return CommandError(CommandErrorCode.BAD_ARGUMENTS, message)


def _int(args: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    value = args.get(key)
    if value is None:
        if required:
            raise _bad(f"{key} is required")
        return None
    if isinstance(value, bool):
        raise _bad(f"{key} must be an integer")
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _bad(f"{key} must be an integer, got {value!r}") from None
    if isinstance(value, int):
        return value
    raise _bad(f"{key} must be an integer")


def _str(args: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = args.get(key)
    if value is None:
        if required:
            raise _bad(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    return value


_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,35}")


def check_request_id(value: object) -> str:
    """An idempotency key: 1-36 letters, digits, ``. _ : -`` (a UUID fits).

    Raises:
        CommandError: BAD_ARGUMENTS.
    """
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise _bad("request_id must be 1-36 letters, digits or . _ : - (a UUID fits)")
    return value


def command_time(args: dict[str, Any], key: str) -> datetime | None:
    """An optional ISO 8601 argument (raises CommandError BAD_ARGUMENTS)."""
    return _when(args, key)


def _when(args: dict[str, Any], key: str) -> datetime | None:
    value = args.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(f"{key} must be an ISO 8601 time")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise _bad(f"{key} must be an ISO 8601 time, got {value!r}") from None


def _choice(value: str, options: dict[str, Any], what: str) -> Any:
    for name, member in options.items():
        if value.lower() == name.lower():
            return member
    raise _bad(f"{what} must be one of {', '.join(options)}, got {value!r}")


def _certificate_use(args: dict[str, Any]) -> CertificateUse:
    """certificate_type: the OCPP value or the short name (central, manufacturer)."""
    text = _str(args, "certificate_type") or ""
    options: dict[str, Any] = {**USE_NAMES, **{u.value: u for u in CertificateUse}}
    return _choice(text, options, "certificate type")  # type: ignore[no-any-return]


def command_from_args(action: str, args: dict[str, Any]) -> Command:
    """Build a command from an action (OCPP name or ctl alias) and JSON arguments.

    Raises:
        CommandError: BAD_ARGUMENTS with a one-line reason.
    """
    name = ALIASES.get(action, action)
    if name not in ACTIONS:
        raise _bad(f"unknown command {action!r}")
    if name in MANAGED:
        raise _bad(f"{name} is not sent on its own: {MANAGED[name]}")
    if not isinstance(args, dict):
        raise _bad("arguments must be an object")
    command: Command
    match name:
        case "RemoteStartTransaction":
            force = args.get("force", False)
            if not isinstance(force, bool):
                raise _bad("force must be true or false")
            profile = None
            if args.get("charging_profile") is not None:
                try:
                    profile = parse_profile(args["charging_profile"])
                except ProfileError as exc:
                    raise _bad(f"charging profile: {exc}") from None
            command = RemoteStart(
                id_tag=_str(args, "id_tag") or "",
                connector_id=_int(args, "connector_id", required=False),
                force=force,
                charging_profile=profile,
            )
        case "RemoteStopTransaction":
            command = RemoteStop(transaction_id=_int(args, "transaction_id") or 0)
        case "ChangeAvailability":
            kind = _choice(
                _str(args, "type") or "", {a.value: a for a in Availability}, "availability"
            )
            command = ChangeAvailability(connector_id=_int(args, "connector_id") or 0, type=kind)
        case "Reset":
            kind = _choice(
                _str(args, "type", required=False) or "Soft",
                {r.value: r for r in ResetType},
                "reset type",
            )
            command = Reset(type=kind)
        case "UnlockConnector":
            command = UnlockConnector(connector_id=_int(args, "connector_id") or 0)
        case "ChangeConfiguration":
            command = ChangeConfiguration(
                key=_str(args, "key") or "", value=_str(args, "value") or ""
            )
        case "GetConfiguration":
            keys = args.get("keys") or ()
            if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
                raise _bad("keys must be a list of strings")
            command = GetConfiguration(keys=tuple(keys))
        case "ClearCache":
            command = ClearCache()
        case "DataTransfer":
            command = DataTransfer(
                vendor_id=_str(args, "vendor_id") or "",
                message_id=_str(args, "message_id", required=False),
                data=_str(args, "data", required=False),
            )
        case "UpdateFirmware":
            command = UpdateFirmware(
                location=_str(args, "location") or "",
                # Absent: now (the charger starts at once; §5.19 retrieveDate).
                retrieve_date=_when(args, "retrieve_date") or utc_now(),
                retries=_int(args, "retries", required=False),
                retry_interval=_int(args, "retry_interval", required=False),
            )
        case "GetDiagnostics":
            command = GetDiagnostics(
                location=_str(args, "location") or "",
                retries=_int(args, "retries", required=False),
                retry_interval=_int(args, "retry_interval", required=False),
                start_time=_when(args, "start_time"),
                stop_time=_when(args, "stop_time"),
            )
        case "GetLocalListVersion":
            command = GetLocalListVersion()
        case "GetCompositeSchedule":
            unit = _str(args, "unit", required=False)
            command = GetCompositeSchedule(
                connector_id=_int(args, "connector_id") or 0,
                duration=_int(args, "duration") or 0,
                rate_unit=None
                if unit is None
                else _choice(unit, {u.value: u for u in RateUnit}, "unit"),
            )
        case "InstallCertificate":
            command = InstallCertificate(
                certificate_type=_certificate_use(args),
                certificate=_str(args, "certificate") or "",
            )
        case "GetInstalledCertificateIds":
            command = GetInstalledCertificateIds(certificate_type=_certificate_use(args))
        case "DeleteCertificate":
            raw = args.get("certificate_hash_data", args)
            try:
                data = parse_hash_data(raw)
            except CertificateError as exc:
                raise _bad(str(exc)) from None
            command = DeleteCertificate(certificate_hash_data=data)
        case "ExtendedTriggerMessage":
            message = _choice(
                _str(args, "requested_message") or "",
                {m.value: m for m in ExtendedTriggerableMessage},
                "message",
            )
            command = ExtendedTriggerMessage(
                requested_message=message, connector_id=_int(args, "connector_id", required=False)
            )
        case _:  # TriggerMessage
            message = _choice(
                _str(args, "requested_message") or "",
                {m.value: m for m in TriggerableMessage},
                "message",
            )
            command = TriggerMessage(
                requested_message=message, connector_id=_int(args, "connector_id", required=False)
            )
    validate(command)
    return command


def command_args(command: Command) -> dict[str, Any]:
    """The command's arguments as JSON for the audit row, secrets hidden (an
    AuthorizationKey never reaches the commands table; voltaro.domain.secrets).

    A location Voltaro built for one charger holds a URL token (a credential for that
    file transfer): the audit keeps what it points at (``served``) instead."""
    if isinstance(command, SendLocalList):
        # The tags, not their whole IdTagInfo: the audit says what changed on the list.
        return {
            "list_version": command.list_version,
            "update_type": command.update_type.value,
            "entries": len(command.entries),
            "id_tags": [e.id_tag for e in command.entries if e.info is not None],
            "removed": [e.id_tag for e in command.entries if e.info is None],
        }
    if isinstance(command, InstallCertificate):
        # What was installed, not the PEM: its subject, validity and hash data.
        certificate = load_certificate(command.certificate)
        out_install: dict[str, Any] = {
            "certificate_type": command.certificate_type.value,
            "certificate": describe(certificate),
        }
        try:
            out_install["certificate_hash_data"] = hash_data(certificate).to_wire()
        except CertificateError:
            pass  # not self-signed: the operator computes it with the issuer's certificate
        return out_install
    if isinstance(command, CertificateSigned):
        return {"certificate_chain": f"({command.summary or 'PEM chain'}; PEM not recorded)"}
    if isinstance(command, DeleteCertificate):
        return {"certificate_hash_data": command.certificate_hash_data.to_wire()}
    out: dict[str, Any] = {}
    for field in getattr(command, "__dataclass_fields__", {}):
        value = getattr(command, field)
        if isinstance(value, ChargingProfile):
            out[field] = profile_to_wire(value)
            continue
        if isinstance(value, datetime):
            value = format_utc(value)
        out[field] = (
            list(value)
            if isinstance(value, tuple)
            else (value.value if hasattr(value, "value") else value)
        )
    if out.get("served"):
        where = "remote_location" if "remote_location" in out else "location"  # GetLog's
        out[where] = f"({out['served']}; URL token not recorded)"
    if "served" in out and out["served"] is None:
        del out["served"]
    return redact_value(out)  # type: ignore[no-any-return]


class Prepared(Protocol):
    """A command's record a router writes in the transaction of the command's audit row
    (several nodes: the routed request and its NOTIFY, in one commit)."""

    def unit(self, session: Session) -> None: ...

    def abandon(self) -> None:
        """Not written after all (the transaction failed): forget it."""
        ...


class CommandRouter(Protocol):
    """Where a command goes: the charger's live connection. One seam, so that a
    multi-node deployment can put a network (the owner node) behind it."""

    def is_connected(self, charger_id: str) -> bool: ...

    async def reachable(self, charger_id: str) -> bool:
        """Connected now, as far as this node can tell (several nodes: reads the owner
        table; ``is_connected`` may be a second old)."""
        ...

    def lookup(self, request_id: str) -> Callable[[Session], Any] | None:
        """A unit of work reading what this idempotency key already holds, run in the
        transaction that reads the charger; None: nothing is kept (one node)."""
        ...

    async def previous(
        self, found: Any, request_id: str, charger_id: str, action: str
    ) -> CommandOutcome | None:
        """The answer of the request with this idempotency key (``found``: what
        :meth:`lookup` read), waiting for it while it is in flight, before any state
        check; raises its error. None: no such request (or it ended unsent)."""
        ...

    def prepare(
        self, charger_id: str, command: Command, *, actor: str, request_id: str | None
    ) -> Prepared | None:
        """What to write with the audit row before :meth:`send`; None: nothing."""
        ...

    async def send(
        self,
        charger_id: str,
        command: Command,
        *,
        actor: str = "",
        request_id: str | None = None,
        prepared: Any = None,
    ) -> CommandOutcome:
        """``request_id``: the caller's idempotency key (several nodes: a retry with it
        is never sent twice; a single node holds no requests and ignores it).
        ``prepared``: what :meth:`prepare` gave, written with the audit row."""
        ...


class LocalRouter:
    """Routes to connections held by this process."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def is_connected(self, charger_id: str) -> bool:
        return self._registry.get(charger_id) is not None

    async def reachable(self, charger_id: str) -> bool:
        return self.is_connected(charger_id)

    def lookup(self, request_id: str) -> Callable[[Session], Any] | None:
        return None  # a single node keeps no requests

    async def previous(
        self, found: Any, request_id: str, charger_id: str, action: str
    ) -> CommandOutcome | None:
        return None

    def prepare(
        self, charger_id: str, command: Command, *, actor: str, request_id: str | None
    ) -> Prepared | None:
        return None

    async def send(
        self,
        charger_id: str,
        command: Command,
        *,
        actor: str = "",
        request_id: str | None = None,
        prepared: Any = None,
    ) -> CommandOutcome:
        link = self._registry.get(charger_id)
        if link is None:
            raise CommandError(CommandErrorCode.OFFLINE, f"charger {charger_id} is not connected")
        return await link.send_command(command)


def _read_state(
    s: Session,
    charger_id: str,
    lookup: Callable[[Session], Any] | None,
    id_tag: str | None,
) -> tuple[Any, Any, Any, Any]:
    """What a command's checks read, in one transaction: the request id's earlier
    attempt (if the router keeps them), the charger, and for a RemoteStart its tag and
    the tag's live sessions."""
    found = lookup(s) if lookup is not None else None
    charger = chargers.get_charger(s, charger_id)
    tag = live = None
    if id_tag is not None:
        tag = tags.get_tag(s, id_tag)
        live = transactions.live_sessions_of_tag(s, id_tag)
    return found, charger, tag, live


def _record(
    s: Session,
    *,
    charger_id: str,
    action: str,
    request: dict[str, Any],
    actor: str,
    prepared: Prepared | None,
) -> int:
    """The audit row, and what the router writes with it (one commit)."""
    audit_id = audit.record_command(
        s, charger_id=charger_id, action=action, request=request, actor=actor
    )
    if prepared is not None:
        prepared.unit(s)
    return audit_id


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def outcome_label(status: str) -> str:
    """A charger's answer status as a metrics label: "NotSupported" -> "not_supported";
    anything that is not a short plain word (never expected: answers are schema-checked)
    is "other", so the label keeps few values."""
    if not status.isalnum() or len(status) > 32:
        return "other"
    return _CAMEL.sub("_", status).lower()


class CommandService:
    def __init__(
        self,
        database: Database,
        registry: Registry,
        hub: EventHub | None,
        *,
        settings: Settings,
        router: CommandRouter | None = None,
        health: HealthRecorder | None = None,
    ) -> None:
        self._health = health  # timeouts and CALLERRORs received, per charger (issue 19)
        self._db = database
        self._hub = hub
        self._settings = settings
        self._router = router or LocalRouter(registry)
        # (action, outcome) -> commands, for the metrics (issue 19): the charger's answer
        # status in snake case ("accepted", "not_supported") or the error code
        # ("timeout", "offline", ...). Both sets are small (OCPP 1.6 enums, CommandErrorCode).
        self.outcomes: dict[tuple[str, str], int] = {}

    @property
    def database(self) -> Database:
        return self._db

    def is_connected(self, charger_id: str) -> bool:
        return self._router.is_connected(charger_id)

    async def execute(
        self,
        charger_id: str,
        command: Command,
        *,
        actor: str,
        charger_registration: RegistrationStatus | None = None,
        request_id: str | None = None,
    ) -> CommandOutcome:
        """Carry out one command (see :meth:`_execute`), counting how it ended.

        ``request_id``: an idempotency key from the caller (ctl ``request_id``, the
        API's ``Idempotency-Key``). With several nodes a retry with the same key is never
        sent to the charger again: it gets the first attempt's answer."""
        label = "internal"
        try:
            if request_id is not None:
                check_request_id(request_id)
            outcome = await self._execute(
                charger_id,
                command,
                actor=actor,
                charger_registration=charger_registration,
                request_id=request_id,
            )
            label = outcome_label(outcome.status)
            return outcome
        except CommandError as exc:
            label = str(exc.code)
            raise
        except trio.Cancelled:
            label = "cancelled"
            raise
        finally:
            key = (ACTION_OF[type(command)], label)
            self.outcomes[key] = self.outcomes.get(key, 0) + 1

    async def _execute(
        self,
        charger_id: str,
        command: Command,
        *,
        actor: str,
        charger_registration: RegistrationStatus | None = None,
        request_id: str | None = None,
    ) -> CommandOutcome:
        """Carry out one command. Raises CommandError with a clear reason otherwise.

        ``charger_registration``: the registration the *charger* last received, when it
        differs from the stored one (just accepted: it still believes it is Pending
        until it boots again), for the spec's state rules (OCPP 1.6 §4.2).

        The audit row is written before anything is sent and always finished: with the
        charger's answer, the error, or how it ended (cancelled, internal error). An
        outcome the charger carried out but that could not be stored is returned with
        ``applied=False`` and a warning, never reported as a failure (issue 10 §2.10).
        """
        action = ACTION_OF[type(command)]
        validate(command)
        # A RemoteStart's tag is checked (23.3) unless forced: read it with the charger.
        id_tag = command.id_tag if isinstance(command, RemoteStart) and not command.force else None
        lookup = self._router.lookup(request_id) if request_id is not None else None
        prepared: Prepared | None = None
        try:
            found, charger, tag, live = await self._db.run(_read_state, charger_id, lookup, id_tag)
            if request_id is not None:
                # A retry: the first attempt's answer, before the state checks (the
                # charger may be charging or gone since; RemoteStart is not idempotent),
                # waited for if it is still in flight; never a second CALL.
                earlier = await self._router.previous(found, request_id, charger_id, action)
                if earlier is not None:
                    log.info(
                        "command charger=%s action=%s by=%s request_id=%s: a retry, "
                        "answered from the first attempt",
                        charger_id,
                        action,
                        actor,
                        request_id,
                    )
                    return earlier
            if charger is None:
                raise CommandError(CommandErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
            check_allowed(command, charger_registration or charger.registration)
            if id_tag is not None:
                # Nothing is sent for a tag its StartTransaction would be refused for.
                check_remote_start_tag(
                    id_tag,
                    decide(tag, utc_now()),
                    live,
                    allow_concurrent=self._settings.allow_concurrent_tx,
                )
            secret = self._check_security_change(command, charger)
            if not await self._router.reachable(charger_id):
                raise CommandError(
                    CommandErrorCode.OFFLINE, f"charger {charger_id} is not connected"
                )
            if secret is None:
                # The routed request (several nodes) is written with the audit row: one
                # commit, whose NOTIFY wakes the owner. Not with a new password: that
                # must be stored before the command can leave.
                prepared = self._router.prepare(
                    charger_id, command, actor=actor, request_id=request_id
                )
            audit_id = await self._db.run(
                _record,
                charger_id=charger_id,
                action=action,
                request=command_args(command),
                actor=actor,
                prepared=prepared,
            )
            provisioned = None
            if secret is not None:
                # Valid from now on next to the current password: the charger may take
                # it even if its answer never reaches us (TC_073; issue 15). Hashed in
                # the worker thread (scrypt).
                provisioned = await self._db.run(chargers.add_pending_password, charger_id, secret)
        except BaseException as exc:
            if prepared is not None:
                prepared.abandon()
            if not isinstance(exc, SQLAlchemyError | StorageUnavailable):
                raise
            log.warning(
                "command %s to %s not sent: database unavailable: %s", action, charger_id, exc
            )
            raise CommandError(
                CommandErrorCode.UNAVAILABLE,
                f"{action} not sent: the database is unavailable ({type(exc).__name__}); "
                "retry later",
            ) from None
        log.info("command charger=%s action=%s by=%s", charger_id, action, actor)
        outcome: CommandOutcome | None = None
        error: CommandError | None = None
        try:
            outcome = await self._send(charger_id, command, action, actor, request_id, prepared)
            if provisioned is not None and outcome.status not in ("Accepted", "RebootRequired"):
                # Rejected or NotSupported: the charger keeps its old password (R31).
                await self._forget_password(charger_id, provisioned)
            outcome = await self._apply_reporting(charger_id, command, outcome)
        except CommandError as exc:
            error = exc
            if provisioned is not None and exc.code in _NOT_SENT:
                await self._forget_password(charger_id, provisioned)
            raise
        except trio.Cancelled:
            error = CommandError(
                CommandErrorCode.INTERNAL,
                "cancelled before it completed (server shutting down or the caller went away)",
            )
            if outcome is not None:
                outcome = replace(
                    outcome, applied=False, warning=f"{outcome.status}, outcome not applied"
                )
            raise
        except Exception as exc:
            log.exception("command %s to %s failed unexpectedly", action, charger_id)
            error = CommandError(
                CommandErrorCode.INTERNAL,
                f"{action}: internal error ({type(exc).__name__}); see the server log",
            )
            raise error from exc
        finally:
            await self._finish(audit_id, charger_id, action, actor, outcome, error)
        return outcome

    def _check_security_change(self, command: Command, charger: Any) -> bytes | None:
        """ChangeConfiguration of the security keys (OCPP 1.6 security whitepaper):

        - ``AuthorizationKey``: 16-20 bytes (32-40 hex digits, or 16-20 characters);
          returns the new password's bytes, kept as pending before it is sent;
        - ``SecurityProfile``: only upwards, and only when its prerequisites are in
          place (a password for 1 and 2, a client CA for 3, wss:// for 2 and 3);
          the stored profile follows when the charger accepts (TC_083).
        """
        if not isinstance(command, ChangeConfiguration):
            return None
        key = command.key.lower()
        if key == "authorizationkey":
            secret = password_bytes(command.value)
            if not 16 <= len(secret) <= 20:
                raise _bad(
                    "AuthorizationKey must be 16-20 bytes: 32-40 hex digits "
                    "(OCPP 1.6 security whitepaper) or 16-20 characters"
                )
            return secret
        if key == "securityprofile":
            try:
                wanted = int(command.value.strip())
            except ValueError:
                raise _bad("SecurityProfile must be 1, 2 or 3") from None
            if wanted not in (1, 2, 3):
                raise _bad("SecurityProfile must be 1, 2 or 3")
            if wanted <= charger.security_profile:
                raise CommandError(
                    CommandErrorCode.NOT_ALLOWED,
                    f"SecurityProfile may only be raised (A00.FR.006): {charger.charger_id} "
                    f"is at profile {charger.security_profile}",
                )
            s = self._settings
            missing = []
            if wanted in (1, 2) and not charger.has_password:
                missing.append("a password (AuthorizationKey)")
            if wanted >= 2 and s.tls_port is None:
                missing.append("wss:// on this server (tls_port)")
            if wanted == 3 and not s.tls_client_ca:
                missing.append("a client CA bundle (tls_client_ca)")
            if missing:
                raise CommandError(
                    CommandErrorCode.NOT_ALLOWED,
                    f"SecurityProfile {wanted} needs {' and '.join(missing)} first",
                )
        return None

    async def _forget_password(self, charger_id: str, password_hash: str) -> None:
        try:
            await self._db.run(chargers.drop_pending_password, charger_id, password_hash)
        except (SQLAlchemyError, StorageUnavailable) as exc:
            # Harmless: an unused pending password is replaced by later ones.
            log.warning("charger=%s pending password not dropped: %s", charger_id, exc)

    async def _send(
        self,
        charger_id: str,
        command: Command,
        action: str,
        actor: str,
        request_id: str | None,
        prepared: Prepared | None,
    ) -> CommandOutcome:
        # The link bounds the queue wait and the answer on their own; this scope is the
        # backstop that can never fire first (never a hang).
        s = self._settings
        try:
            with trio.fail_after(s.command_queue_timeout + s.send_timeout + s.call_timeout + 5):
                return await self._router.send(
                    charger_id, command, actor=actor, request_id=request_id, prepared=prepared
                )
        except trio.TooSlowError:
            raise CommandError(
                CommandErrorCode.TIMEOUT, f"{charger_id} did not answer {action} in time"
            ) from None

    async def _apply_reporting(
        self, charger_id: str, command: Command, outcome: CommandOutcome
    ) -> CommandOutcome:
        """Store what the answer changes; if that fails the command still happened."""
        try:
            await self._apply(charger_id, command, outcome)
        except (SQLAlchemyError, StorageUnavailable) as exc:
            warning = (
                f"{outcome.status}, outcome not applied: the database is unavailable "
                f"({type(exc).__name__})"
            )
            log.warning(
                "charger=%s answered %s with %s but its outcome was not stored: %s",
                charger_id,
                outcome.action,
                outcome.status,
                exc,
            )
            return replace(outcome, applied=False, warning=warning)
        return outcome

    async def _apply(self, charger_id: str, command: Command, outcome: CommandOutcome) -> None:
        status = outcome.status
        match command:
            case ChangeAvailability(connector_id=cid, type=kind) if status in (
                "Accepted",
                "Scheduled",
            ):
                # Scheduled: still in use; kept as pending until the charger's
                # StatusNotification shows the change (OCPP 1.6 §5.2, issue 23.2).
                await self._db.run(
                    chargers.set_availability,
                    charger_id,
                    cid,
                    kind,
                    scheduled=status == "Scheduled",
                )
            case Reset() if status == "Accepted":
                await self._db.run(chargers.mark_rebooting, charger_id)
            case GetConfiguration(keys=keys):
                await self._db.run(
                    audit.store_configuration,
                    charger_id,
                    outcome.configuration,
                    outcome.unknown_keys,
                    replace_all=not keys,
                )
            case ChangeConfiguration(key=key, value=value) if status in (
                "Accepted",
                "RebootRequired",
            ):
                await self._db.run(audit.set_configuration_value, charger_id, key, value)
                if key.lower() == "securityprofile":
                    # From now on the charger is refused at its old profile (TC_083).
                    await self._db.run(
                        chargers.set_security_profile, charger_id, int(value.strip())
                    )
            case GetInstalledCertificateIds(certificate_type=use) if status in (
                "Accepted",
                "NotFound",
            ):
                # What the charger holds of this type, for `certificates show` and
                # `certificates delete --index` (NotFound: none).
                reported = [parse_hash_data(d) for d in outcome.details.get("certificates", ())]
                await self._db.run(
                    certificates.replace_reported, charger_id, use, reported, utc_now()
                )
            case InstallCertificate(certificate_type=use, certificate=pem) if status == "Accepted":
                try:
                    installed = hash_data(load_certificate(pem))
                except CertificateError:
                    installed = None  # not self-signed: known after the next list
                if installed is not None:
                    await self._db.run(
                        certificates.add_installed, charger_id, use, installed, utc_now()
                    )
            case DeleteCertificate(certificate_hash_data=data) if status in (
                "Accepted",
                "NotFound",
            ):
                await self._db.run(certificates.remove, charger_id, data)

            case _:
                pass

    async def _finish(
        self,
        audit_id: int,
        charger_id: str,
        action: str,
        actor: str,
        outcome: CommandOutcome | None,
        error: CommandError | None,
    ) -> None:
        """Finish the audit row (shielded, retried for db_retry_seconds; never raises)."""
        status = outcome.status if outcome else None
        text = f"{error.code}: {error.message}" if error else None
        if self._health is not None and error is not None:
            if error.code == CommandErrorCode.TIMEOUT:
                self._health.command_timed_out(charger_id)
            elif error.code == CommandErrorCode.CALL_ERROR:
                self._health.call_error_received(charger_id)
        if outcome is not None and not outcome.applied:
            text = outcome.warning if text is None else f"{outcome.warning}; {text}"
        with trio.CancelScope(shield=True):
            deadline = trio.current_time() + max(1.0, self._settings.db_retry_seconds)
            delay = 0.05
            while True:
                try:
                    await self._db.run(audit.finish_command, audit_id, status=status, error=text)
                    break
                except (SQLAlchemyError, StorageUnavailable) as exc:
                    if trio.current_time() + delay > deadline:
                        log.error(
                            "command audit %d (%s to %s) not finished: database unavailable: "
                            "status=%s error=%s (%s)",
                            audit_id,
                            action,
                            charger_id,
                            status,
                            text,
                            exc,
                        )
                        break
                    await trio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        if self._hub is not None:
            data: dict[str, Any] = {
                "charger_id": charger_id,
                "action": action,
                "ok": error is None,
                "user": actor,
            }
            if outcome is not None:
                data["status"] = outcome.status
                if not outcome.applied:
                    data["applied"] = False
                    data["warning"] = outcome.warning
            if error is not None:
                data["error"] = {"code": str(error.code), "message": error.message}
            self._hub.publish(Event.COMMAND_RESULT, data)
