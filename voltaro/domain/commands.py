"""Operator commands to chargers: their arguments, the checks made before anything is
sent, and the outcome. Pure: the protocol layer turns a command into an OCPP CALL and
the service layer routes it to the charger's live connection.

Limits come from the OCPP 1.6 schemas (CiString20 idTag, CiString50 key, CiString500
value) and the rules from OCPP 1.6 §4.2 (nothing but configuration while Pending) and
errata 3.40 (no TriggerMessage BootNotification after an Accepted boot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from voltaro.domain.certificates import (
    CertificateError,
    CertificateHashData,
    CertificateUse,
    load_certificates,
)
from voltaro.domain.charging_profiles import ChargingProfile, ProfilePurpose, RateUnit
from voltaro.domain.local_list import ListEntry, UpdateType
from voltaro.domain.model import (
    AuthorizationStatus,
    Availability,
    IdTagInfo,
    RegistrationStatus,
)


class CommandErrorCode(StrEnum):
    BAD_ARGUMENTS = "bad_arguments"  # nothing was sent
    # An unknown charger is "not_found", the one code for anything unknown on every
    # interface (control socket, ctl, HTTP API); UNKNOWN_CHARGER is kept as its alias.
    NOT_FOUND = "not_found"
    UNKNOWN_CHARGER = "not_found"
    OFFLINE = "offline"
    NOT_ALLOWED = "not_allowed"  # the spec forbids it in the charger's current state
    FORBIDDEN = "forbidden"  # the caller's role may not run it
    TIMEOUT = "timeout"  # the charger did not answer in time
    CALL_ERROR = "call_error"  # the charger answered with a CALLERROR
    DISCONNECTED = "disconnected"  # the connection dropped while we waited
    BUSY = "busy"  # earlier commands held the charger too long: nothing was sent
    UNAVAILABLE = "unavailable"  # the database could not record it: nothing was sent
    # Several nodes (issue 18): the node that holds the charger did not take the command
    # within the routing acknowledgement time (1 s); nothing was sent.
    OWNER_UNREACHABLE = "owner_unreachable"
    INTERNAL = "internal"


class CommandError(Exception):
    """A command that was not carried out; ``code`` says why, the message says it plainly."""

    def __init__(self, code: CommandErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ResetType(StrEnum):
    SOFT = "Soft"
    HARD = "Hard"


class TriggerableMessage(StrEnum):
    """MessageTrigger (OCPP 1.6 §7.38)."""

    BOOT_NOTIFICATION = "BootNotification"
    DIAGNOSTICS_STATUS_NOTIFICATION = "DiagnosticsStatusNotification"
    FIRMWARE_STATUS_NOTIFICATION = "FirmwareStatusNotification"
    HEARTBEAT = "Heartbeat"
    METER_VALUES = "MeterValues"
    STATUS_NOTIFICATION = "StatusNotification"


class ExtendedTriggerableMessage(StrEnum):
    """MessageTriggerEnumType of ExtendedTriggerMessage.req (1.6 security extension,
    whitepaper edition 3 §4.x): TriggerMessage's list without DiagnosticsStatusNotification,
    plus LogStatusNotification and SignChargePointCertificate (a certificate renewal)."""

    BOOT_NOTIFICATION = "BootNotification"
    LOG_STATUS_NOTIFICATION = "LogStatusNotification"
    FIRMWARE_STATUS_NOTIFICATION = "FirmwareStatusNotification"
    HEARTBEAT = "Heartbeat"
    METER_VALUES = "MeterValues"
    SIGN_CHARGE_POINT_CERTIFICATE = "SignChargePointCertificate"
    STATUS_NOTIFICATION = "StatusNotification"


class LogType(StrEnum):
    """LogEnumType of GetLog.req (1.6 security extension)."""

    DIAGNOSTICS_LOG = "DiagnosticsLog"
    SECURITY_LOG = "SecurityLog"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteStart:
    id_tag: str
    connector_id: int | None = None
    # Send even when the tag would not be allowed to charge (see check_remote_start_tag);
    # never part of the CALL, kept in the audit.
    force: bool = False
    # A TxProfile for the session it starts (§5.11; Smart Charging profile).
    charging_profile: ChargingProfile | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteStop:
    transaction_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeAvailability:
    connector_id: int
    type: Availability


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset:
    type: ResetType = ResetType.SOFT


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlockConnector:
    connector_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeConfiguration:
    key: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetConfiguration:
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClearCache:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class DataTransfer:
    vendor_id: str
    message_id: str | None = None
    data: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerMessage:
    requested_message: TriggerableMessage
    connector_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateFirmware:
    """UpdateFirmware.req (OCPP 1.6 §5.19): the charger fetches ``location`` at or after
    ``retrieve_date`` and reports progress in FirmwareStatusNotification."""

    location: str
    retrieve_date: datetime
    retries: int | None = None
    retry_interval: int | None = None
    # Not sent: what the audit shows instead of a location holding a URL token (a file
    # Voltaro serves), e.g. "voltaro firmware #3 fw-2.1.bin".
    served: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetDiagnostics:
    """GetDiagnostics.req (OCPP 1.6 §5.9): the charger uploads a diagnostics file to
    ``location`` (a directory URL) and reports progress in DiagnosticsStatusNotification."""

    location: str
    retries: int | None = None
    retry_interval: int | None = None
    start_time: datetime | None = None
    stop_time: datetime | None = None
    served: str | None = None  # as UpdateFirmware.served


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedTriggerMessage:
    """ExtendedTriggerMessage.req (1.6 security extension): answered Accepted, Rejected
    or NotImplemented; the charger then sends the requested message."""

    requested_message: ExtendedTriggerableMessage
    connector_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetLog:
    """GetLog.req (1.6 security extension): the charger uploads its diagnostics or
    security log to ``remote_location`` and reports LogStatusNotification with
    ``request_id``."""

    log_type: LogType
    request_id: int
    remote_location: str
    oldest_timestamp: datetime | None = None
    latest_timestamp: datetime | None = None
    retries: int | None = None
    retry_interval: int | None = None
    served: str | None = None  # as UpdateFirmware.served


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedUpdateFirmware:
    """SignedUpdateFirmware.req (1.6 security extension): the charger fetches
    ``location``, checks ``signature`` (base64) over the image with the public key of
    ``signing_certificate`` (PEM) and reports SignedFirmwareStatusNotification with
    ``request_id``."""

    request_id: int
    location: str
    retrieve_date: datetime
    signing_certificate: str
    signature: str
    install_date: datetime | None = None
    retries: int | None = None
    retry_interval: int | None = None
    served: str | None = None  # as UpdateFirmware.served


@dataclass(frozen=True, slots=True, kw_only=True)
class GetLocalListVersion:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SendLocalList:
    """One SendLocalList (OCPP 1.6 §5.15); built by the local list sync, never by hand."""

    list_version: int
    update_type: UpdateType
    entries: tuple[ListEntry, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveNow:
    """ReserveNow (OCPP 1.6 §5.13); the reservation id is the stored reservation's."""

    connector_id: int
    expiry_date: datetime
    id_tag: str
    reservation_id: int
    parent_id_tag: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReservation:
    reservation_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetChargingProfile:
    """SetChargingProfile (§5.16); checked by charging_profiles.check_profile first."""

    connector_id: int
    profile: ChargingProfile


@dataclass(frozen=True, slots=True, kw_only=True)
class ClearChargingProfile:
    """ClearChargingProfile (§5.5): by id, or by any of connector, purpose, stack level."""

    profile_id: int | None = None
    connector_id: int | None = None
    purpose: ProfilePurpose | None = None
    stack_level: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetCompositeSchedule:
    """GetCompositeSchedule (§5.7): the schedule a connector (0: the grid connection)
    will follow over ``duration`` seconds."""

    connector_id: int
    duration: int
    rate_unit: RateUnit | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallCertificate:
    """InstallCertificate.req (1.6 security extension): a root certificate (PEM) the
    charger trusts from now on for the Central System or for firmware signatures."""

    certificate_type: CertificateUse
    certificate: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetInstalledCertificateIds:
    certificate_type: CertificateUse


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteCertificate:
    certificate_hash_data: CertificateHashData


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateSigned:
    """CertificateSigned.req: the chain signed for the charger's SignCertificate CSR.
    Sent by Voltaro itself (voltaro.service.certificates), never as a bare command."""

    certificate_chain: str
    # Not sent: what the audit keeps instead of the PEM ("CN=CP-1 serial 1f.. until ..").
    summary: str | None = None


Command = (
    RemoteStart
    | RemoteStop
    | ChangeAvailability
    | Reset
    | UnlockConnector
    | ChangeConfiguration
    | GetConfiguration
    | ClearCache
    | DataTransfer
    | TriggerMessage
    | UpdateFirmware
    | GetDiagnostics
    | GetLocalListVersion
    | SendLocalList
    | ReserveNow
    | CancelReservation
    | SetChargingProfile
    | ClearChargingProfile
    | GetCompositeSchedule
    | InstallCertificate
    | GetInstalledCertificateIds
    | DeleteCertificate
    | CertificateSigned
    | ExtendedTriggerMessage
    | GetLog
    | SignedUpdateFirmware
)

# The OCPP action each command becomes, also its name on the control socket and the API.
ACTION_OF: dict[type[Any], str] = {
    RemoteStart: "RemoteStartTransaction",
    RemoteStop: "RemoteStopTransaction",
    ChangeAvailability: "ChangeAvailability",
    Reset: "Reset",
    UnlockConnector: "UnlockConnector",
    ChangeConfiguration: "ChangeConfiguration",
    GetConfiguration: "GetConfiguration",
    ClearCache: "ClearCache",
    DataTransfer: "DataTransfer",
    TriggerMessage: "TriggerMessage",
    UpdateFirmware: "UpdateFirmware",
    GetDiagnostics: "GetDiagnostics",
    GetLocalListVersion: "GetLocalListVersion",
    SendLocalList: "SendLocalList",
    ReserveNow: "ReserveNow",
    CancelReservation: "CancelReservation",
    SetChargingProfile: "SetChargingProfile",
    ClearChargingProfile: "ClearChargingProfile",
    GetCompositeSchedule: "GetCompositeSchedule",
    InstallCertificate: "InstallCertificate",
    GetInstalledCertificateIds: "GetInstalledCertificateIds",
    DeleteCertificate: "DeleteCertificate",
    CertificateSigned: "CertificateSigned",
    ExtendedTriggerMessage: "ExtendedTriggerMessage",
    GetLog: "GetLog",
    SignedUpdateFirmware: "SignedUpdateFirmware",
}

# Location schemes a charger may be given (SupportedFileTransferProtocols, errata 3.90).
TRANSFER_SCHEMES = ("http", "https", "ftp", "ftps")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigurationEntry:
    key: str
    readonly: bool
    value: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutcome:
    """The charger's answer. ``status`` is its status field (Accepted, Rejected, ...)."""

    action: str
    status: str
    configuration: tuple[ConfigurationEntry, ...] = ()
    unknown_keys: tuple[str, ...] = ()
    data: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # False: the charger carried it out but what it changes could not be stored
    # (issue 10 §2.10); ``warning`` says so in one line.
    applied: bool = True
    warning: str | None = None


def _bad(message: str) -> CommandError:
    return CommandError(CommandErrorCode.BAD_ARGUMENTS, message)


def _check_text(name: str, value: str | None, limit: int, *, required: bool = True) -> None:
    if value is None:
        if required:
            raise _bad(f"{name} is required")
        return
    if required and not value:
        raise _bad(f"{name} must not be empty")
    if len(value) > limit:
        raise _bad(f"{name} is {len(value)} characters; OCPP 1.6 allows at most {limit}")
    if not value.isprintable() or not value.isascii():
        raise _bad(f"{name} must be printable ASCII (OCPP 1.6 CiString)")


def _check_connector(value: int | None, *, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad("connector id must be an integer")
    if value < minimum:
        raise _bad(f"connector id must be at least {minimum}")


def _check_location(location: str, limit: int = 2000) -> None:
    if not isinstance(location, str) or not location:
        raise _bad("location is required")
    if len(location) > limit or not location.isascii() or not location.isprintable():
        raise _bad(f"location must be a URL of printable ASCII (at most {limit} characters)")
    parts = urlsplit(location)
    if parts.scheme.lower() not in TRANSFER_SCHEMES or not parts.netloc:
        raise _bad(
            f"location must be an absolute {', '.join(TRANSFER_SCHEMES)} URL, got {location!r}"
        )


def _check_count(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{name} must be a whole number, 0 or more")


def _check_request_id(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise _bad("request id must be a whole number below 2^31")


_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def check_signature(value: str) -> None:
    """FirmwareType.signature: base64, at most 800 characters."""
    if not isinstance(value, str) or not value:
        raise _bad("signature is required (base64)")
    if len(value) > 800:
        raise _bad(f"signature is {len(value)} characters; OCPP allows at most 800")
    if not set(value) <= _BASE64 or len(value) % 4:
        raise _bad("signature must be base64")


def _check_time(name: str, value: datetime | None, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise _bad(f"{name} is required")
        return
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise _bad(f"{name} must be a time with its UTC offset")


def _check_use(use: CertificateUse) -> None:
    if use not in tuple(CertificateUse):
        raise _bad("certificate type must be one of " + ", ".join(u.value for u in CertificateUse))


def _check_pem(name: str, pem: str, limit: int, *, single: bool) -> None:
    """PEM text within the schema's maxLength (5500 for InstallCertificate.req,
    10000 for CertificateSigned.req), holding one certificate (or a chain)."""
    if not isinstance(pem, str) or not pem.strip():
        raise _bad(f"{name} (PEM) is required")
    if len(pem) > limit:
        raise _bad(f"{name} is {len(pem)} characters; OCPP 1.6 allows at most {limit}")
    try:
        found = load_certificates(pem)
    except CertificateError as exc:
        raise _bad(f"{name}: {exc}") from None
    if single and len(found) != 1:
        raise _bad(f"{name} must hold exactly one certificate, found {len(found)}")


def validate(command: Command) -> None:
    """Check a command's arguments against the OCPP 1.6 schemas before anything is sent.

    Raises:
        CommandError: with code BAD_ARGUMENTS and a one-line reason.
    """
    match command:
        case RemoteStart(id_tag=tag, connector_id=cid, force=force, charging_profile=profile):
            _check_text("id tag", tag, 20)
            _check_connector(cid, minimum=1)
            if not isinstance(force, bool):
                raise _bad("force must be true or false")
            if profile is not None and profile.purpose is not ProfilePurpose.TX:
                # §5.11: the profile given with a remote start is the session's TxProfile.
                raise _bad("the charging profile of a remote start must be a TxProfile")
            if profile is not None and profile.transaction_id is not None:
                raise _bad("the charging profile of a remote start names no transaction yet")
        case RemoteStop(transaction_id=tx):
            if isinstance(tx, bool) or not isinstance(tx, int):
                raise _bad("transaction id must be an integer")
        case ChangeAvailability(connector_id=cid, type=kind):
            _check_connector(cid, minimum=0)
            if kind not in tuple(Availability):
                raise _bad("availability must be Operative or Inoperative")
        case Reset(type=kind):
            if kind not in tuple(ResetType):
                raise _bad("reset type must be Soft or Hard")
        case UnlockConnector(connector_id=cid):
            _check_connector(cid, minimum=1)
        case ChangeConfiguration(key=key, value=value):
            _check_text("configuration key", key, 50)
            if value is None or len(value) > 500:
                raise _bad("configuration value must be a string of at most 500 characters")
        case GetConfiguration(keys=keys):
            for key in keys:
                _check_text("configuration key", key, 50)
        case ClearCache():
            pass
        case DataTransfer(vendor_id=vendor, message_id=message_id):
            _check_text("vendor id", vendor, 255)
            _check_text("message id", message_id, 50, required=False)
        case TriggerMessage(requested_message=message, connector_id=cid):
            if message not in tuple(TriggerableMessage):
                raise _bad(
                    "message must be one of " + ", ".join(m.value for m in TriggerableMessage)
                )
            _check_connector(cid, minimum=0)
        case UpdateFirmware(location=location, retrieve_date=at, retries=n, retry_interval=gap):
            _check_location(location)
            _check_time("retrieve date", at, required=True)
            _check_count("retries", n)
            _check_count("retry interval", gap)
        case GetDiagnostics(
            location=location, retries=n, retry_interval=gap, start_time=start, stop_time=stop
        ):
            _check_location(location)
            _check_count("retries", n)
            _check_count("retry interval", gap)
            _check_time("start time", start)
            _check_time("stop time", stop)
            if start is not None and stop is not None and stop < start:
                raise _bad("stop time is before start time")
        case ExtendedTriggerMessage(requested_message=message, connector_id=cid):
            if message not in tuple(ExtendedTriggerableMessage):
                raise _bad(
                    "message must be one of "
                    + ", ".join(m.value for m in ExtendedTriggerableMessage)
                )
            _check_connector(cid, minimum=0)
        case GetLog(
            log_type=kind,
            request_id=rid,
            remote_location=location,
            oldest_timestamp=oldest,
            latest_timestamp=latest,
            retries=n,
            retry_interval=gap,
        ):
            if kind not in tuple(LogType):
                raise _bad("log type must be DiagnosticsLog or SecurityLog")
            _check_request_id(rid)
            _check_location(location, 512)  # LogParametersType.remoteLocation: 512
            _check_count("retries", n)
            _check_count("retry interval", gap)
            _check_time("oldest timestamp", oldest)
            _check_time("latest timestamp", latest)
            if oldest is not None and latest is not None and latest < oldest:
                raise _bad("latest timestamp is before oldest timestamp")
        case SignedUpdateFirmware(
            request_id=rid,
            location=location,
            retrieve_date=at,
            install_date=install,
            signing_certificate=cert,
            signature=signature,
            retries=n,
            retry_interval=gap,
        ):
            _check_request_id(rid)
            _check_location(location, 512)  # FirmwareType.location: 512
            _check_time("retrieve date", at, required=True)
            _check_time("install date", install)
            if install is not None and install < at:
                raise _bad("install date is before retrieve date")
            _check_count("retries", n)
            _check_count("retry interval", gap)
            if not isinstance(cert, str) or "-----BEGIN CERTIFICATE-----" not in cert:
                raise _bad("signing certificate must be a PEM certificate")
            if len(cert) > 5500:  # FirmwareType.signingCertificate: 5500
                raise _bad(f"signing certificate is {len(cert)} characters; at most 5500")
            check_signature(signature)
        case GetLocalListVersion():
            pass
        case SendLocalList(list_version=version, update_type=kind, entries=entries):
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise _bad("list version must be a positive integer")
            if kind not in tuple(UpdateType):
                raise _bad("update type must be Full or Differential")
            for entry in entries:
                _check_text("id tag", entry.id_tag, 20)
                if entry.info is None and kind is UpdateType.FULL:
                    # §5.15: in a Full update every entry carries its idTagInfo.
                    raise _bad(f"a Full update cannot remove {entry.id_tag}")
        case ReserveNow(connector_id=cid, id_tag=tag, reservation_id=rid, parent_id_tag=parent):
            _check_connector(cid, minimum=0)
            _check_text("id tag", tag, 20)
            _check_text("parent id tag", parent, 20, required=False)
            if isinstance(rid, bool) or not isinstance(rid, int):
                raise _bad("reservation id must be an integer")
        case CancelReservation(reservation_id=rid):
            if isinstance(rid, bool) or not isinstance(rid, int):
                raise _bad("reservation id must be an integer")
        case SetChargingProfile(connector_id=cid):
            _check_connector(cid, minimum=0)
        case ClearChargingProfile(connector_id=cid, stack_level=level):
            _check_connector(cid, minimum=0)
            if level is not None and (not isinstance(level, int) or level < 0):
                raise _bad("stack level must be 0 or more")
        case GetCompositeSchedule(connector_id=cid, duration=duration):
            _check_connector(cid, minimum=0)
            if isinstance(duration, bool) or not isinstance(duration, int) or duration < 1:
                raise _bad("duration must be a positive number of seconds")
        case InstallCertificate(certificate_type=use, certificate=pem):
            _check_use(use)
            _check_pem("certificate", pem, 5500, single=True)
        case GetInstalledCertificateIds(certificate_type=use):
            _check_use(use)
        case DeleteCertificate(certificate_hash_data=data):
            if not isinstance(data, CertificateHashData):
                raise _bad("certificate hash data is required")
        case CertificateSigned(certificate_chain=chain):
            _check_pem("certificate chain", chain, 10000, single=False)


def check_allowed(command: Command, registration: RegistrationStatus) -> None:
    """Apply the spec's rules on what may be sent in the charger's registration state.

    - Pending: the Central System SHALL NOT send RemoteStart/RemoteStopTransaction
      (OCPP 1.6 §4.2); configuration and information requests are fine. ReserveNow is
      neither and holds a connector for a charger not yet let in: refused too.
    - Rejected: the Central System SHOULD NOT initiate any message (§4.2).
    - Accepted: no TriggerMessage(BootNotification) until the charger boots again
      (errata 3.40, R42).

    Raises:
        CommandError: with code NOT_ALLOWED.
    """
    action = ACTION_OF[type(command)]
    if registration is RegistrationStatus.REJECTED:
        raise CommandError(
            CommandErrorCode.NOT_ALLOWED,
            f"{action} not sent: the charger's registration is Rejected (OCPP 1.6 §4.2)",
        )
    if registration is RegistrationStatus.PENDING and isinstance(
        command, RemoteStart | RemoteStop | ReserveNow
    ):
        raise CommandError(
            CommandErrorCode.NOT_ALLOWED,
            f"{action} not sent: the charger is Pending (OCPP 1.6 §4.2)",
        )
    if (
        registration is RegistrationStatus.ACCEPTED
        and isinstance(command, TriggerMessage | ExtendedTriggerMessage)
        and command.requested_message == TriggerableMessage.BOOT_NOTIFICATION.value
    ):
        # The same rule holds for the security extension's ExtendedTriggerMessage.
        raise CommandError(
            CommandErrorCode.NOT_ALLOWED,
            f"{action} BootNotification not sent: the charger's boot was already "
            "Accepted (OCPP 1.6 errata 3.40)",
        )


def check_remote_start_tag(
    id_tag: str,
    info: IdTagInfo,
    live_sessions: Sequence[tuple[int, str]],
    *,
    allow_concurrent: bool,
) -> None:
    """Refuse a remote start that the charger's StartTransaction would be refused for.

    ``info`` is what an Authorize for the tag answers now; ``live_sessions`` the
    (transaction id, charger id) of the tag's plausibly live transactions. Sending it
    anyway only yields a session the Central System answers Invalid, which the charger
    stops with DeAuthorized (OCPP 1.6 §5.11, §4.10): an empty transaction row.

    Raises:
        CommandError: BAD_ARGUMENTS with a one-line reason naming ``--force``.
    """
    hint = '; use --force (API: "force": true) to send it anyway'
    if info.status is not AuthorizationStatus.ACCEPTED:
        reason = {
            AuthorizationStatus.INVALID: "is unknown or invalid",
            AuthorizationStatus.BLOCKED: "is blocked",
            AuthorizationStatus.EXPIRED: "has expired",
        }.get(info.status, f"is {info.status.value}")
        raise _bad(f"remote start refused: tag {id_tag} {reason}{hint}")
    if live_sessions and not allow_concurrent:
        tx, charger = live_sessions[0]
        raise _bad(
            f"remote start refused: tag {id_tag} is already in transaction {tx} on {charger} "
            f"and concurrent sessions are not allowed{hint}"
        )
