"""Operator commands as OCPP 1.6 CALLs (OCPP 1.6 §5) and their answers as outcomes."""

from __future__ import annotations

from typing import Any

from ocpp.v16 import call

from voltaro.domain.certificates import CertificateError, parse_hash_data
from voltaro.domain.charging_profiles import profile_to_wire
from voltaro.domain.commands import (
    ACTION_OF,
    CancelReservation,
    CertificateSigned,
    ChangeAvailability,
    ChangeConfiguration,
    ClearCache,
    ClearChargingProfile,
    Command,
    CommandOutcome,
    ConfigurationEntry,
    DataTransfer,
    DeleteCertificate,
    ExtendedTriggerMessage,
    GetCompositeSchedule,
    GetConfiguration,
    GetDiagnostics,
    GetInstalledCertificateIds,
    GetLocalListVersion,
    GetLog,
    InstallCertificate,
    RemoteStart,
    RemoteStop,
    ReserveNow,
    Reset,
    SendLocalList,
    SetChargingProfile,
    SignedUpdateFirmware,
    TriggerMessage,
    UnlockConnector,
    UpdateFirmware,
)
from voltaro.domain.local_list import ListEntry
from voltaro.domain.model import IdTagInfo
from voltaro.domain.timestamps import format_utc


def to_call(command: Command) -> Any:
    """The library's request dataclass for a domain command."""
    match command:
        case RemoteStart(id_tag=tag, connector_id=cid, charging_profile=profile):
            return call.RemoteStartTransaction(
                id_tag=tag,
                connector_id=cid,
                charging_profile=None if profile is None else profile_to_wire(profile),
            )
        case RemoteStop(transaction_id=tx):
            return call.RemoteStopTransaction(transaction_id=tx)
        case ChangeAvailability(connector_id=cid, type=kind):
            return call.ChangeAvailability(connector_id=cid, type=kind.value)
        case Reset(type=kind):
            return call.Reset(type=kind.value)
        case UnlockConnector(connector_id=cid):
            return call.UnlockConnector(connector_id=cid)
        case ChangeConfiguration(key=key, value=value):
            return call.ChangeConfiguration(key=key, value=value)
        case GetConfiguration(keys=keys):
            # An absent key list asks for every key (OCPP 1.6 §5.8).
            return call.GetConfiguration(key=list(keys) if keys else None)
        case ClearCache():
            return call.ClearCache()
        case DataTransfer(vendor_id=vendor, message_id=message_id, data=data):
            return call.DataTransfer(vendor_id=vendor, message_id=message_id, data=data)
        case TriggerMessage(requested_message=message, connector_id=cid):
            return call.TriggerMessage(requested_message=message.value, connector_id=cid)
        case UpdateFirmware(location=location, retrieve_date=at, retries=n, retry_interval=gap):
            return call.UpdateFirmware(
                location=location, retrieve_date=format_utc(at), retries=n, retry_interval=gap
            )
        case GetDiagnostics(
            location=location, retries=n, retry_interval=gap, start_time=start, stop_time=stop
        ):
            return call.GetDiagnostics(
                location=location,
                retries=n,
                retry_interval=gap,
                start_time=None if start is None else format_utc(start),
                stop_time=None if stop is None else format_utc(stop),
            )
        case GetLocalListVersion():
            return call.GetLocalListVersion()
        case SendLocalList(list_version=version, update_type=kind, entries=entries):
            return call.SendLocalList(
                list_version=version,
                update_type=kind.value,
                local_authorization_list=[_authorization_data(e) for e in entries],
            )
        case ReserveNow(
            connector_id=cid,
            expiry_date=expiry,
            id_tag=tag,
            reservation_id=rid,
            parent_id_tag=parent,
        ):
            return call.ReserveNow(
                connector_id=cid,
                expiry_date=format_utc(expiry),
                id_tag=tag,
                reservation_id=rid,
                parent_id_tag=parent,
            )
        case CancelReservation(reservation_id=rid):
            return call.CancelReservation(reservation_id=rid)
        case SetChargingProfile(connector_id=cid, profile=profile):
            return call.SetChargingProfile(
                connector_id=cid, cs_charging_profiles=profile_to_wire(profile)
            )
        case ClearChargingProfile(
            profile_id=pid, connector_id=cid, purpose=purpose, stack_level=level
        ):
            return call.ClearChargingProfile(
                id=pid,
                connector_id=cid,
                charging_profile_purpose=None if purpose is None else purpose.value,
                stack_level=level,
            )
        case GetCompositeSchedule(connector_id=cid, duration=duration, rate_unit=unit):
            return call.GetCompositeSchedule(
                connector_id=cid,
                duration=duration,
                charging_rate_unit=None if unit is None else unit.value,
            )
        case InstallCertificate(certificate_type=use, certificate=pem):
            return call.InstallCertificate(certificate_type=use.value, certificate=pem)
        case GetInstalledCertificateIds(certificate_type=use):
            return call.GetInstalledCertificateIds(certificate_type=use.value)
        case DeleteCertificate(certificate_hash_data=data):
            return call.DeleteCertificate(certificate_hash_data=data.to_wire())
        case CertificateSigned(certificate_chain=chain):
            return call.CertificateSigned(certificate_chain=chain)
        case ExtendedTriggerMessage(requested_message=message, connector_id=cid):
            return call.ExtendedTriggerMessage(requested_message=message.value, connector_id=cid)
        case GetLog():
            return _get_log(command)
        case SignedUpdateFirmware():
            return _signed_update_firmware(command)
    raise TypeError(f"not a command: {command!r}")


def _get_log(command: GetLog) -> Any:
    """GetLog.req: LogParametersType holds the location and the time window."""
    log: dict[str, Any] = {"remoteLocation": command.remote_location}
    if command.oldest_timestamp is not None:
        log["oldestTimestamp"] = format_utc(command.oldest_timestamp)
    if command.latest_timestamp is not None:
        log["latestTimestamp"] = format_utc(command.latest_timestamp)
    return call.GetLog(
        log=log,
        log_type=command.log_type.value,
        request_id=command.request_id,
        retries=command.retries,
        retry_interval=command.retry_interval,
    )


def _signed_update_firmware(command: SignedUpdateFirmware) -> Any:
    """SignedUpdateFirmware.req: FirmwareType holds location, times, certificate and
    signature (camelCase: the library converts only the top level's snake_case)."""
    firmware: dict[str, Any] = {
        "location": command.location,
        "retrieveDateTime": format_utc(command.retrieve_date),
        "signingCertificate": command.signing_certificate,
        "signature": command.signature,
    }
    if command.install_date is not None:
        firmware["installDateTime"] = format_utc(command.install_date)
    return call.SignedUpdateFirmware(
        request_id=command.request_id,
        firmware=firmware,
        retries=command.retries,
        retry_interval=command.retry_interval,
    )


def _id_tag_info(info: IdTagInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"status": info.status.value}
    if info.expiry_date is not None:
        out["expiryDate"] = format_utc(info.expiry_date)
    if info.parent_id_tag is not None:
        out["parentIdTag"] = info.parent_id_tag
    return out


def _authorization_data(entry: ListEntry) -> dict[str, Any]:
    """AuthorizationData (§7.3); without idTagInfo it removes the tag (Differential)."""
    data: dict[str, Any] = {"idTag": entry.id_tag}
    if entry.info is not None:
        data["idTagInfo"] = _id_tag_info(entry.info)
    return data


def _entries(raw: Any) -> tuple[ConfigurationEntry, ...]:
    entries = []
    for item in raw or ():
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        value = item.get("value")
        entries.append(
            ConfigurationEntry(
                key=item["key"],
                readonly=bool(item.get("readonly", False)),
                value=None if value is None else str(value),
            )
        )
    return tuple(entries)


def _hash_data_list(result: Any) -> list[dict[str, str]]:
    """certificateHashData as the charger reported it (validated by the schema), in the
    wire's camelCase; entries that do not parse are left out."""
    out = []
    for item in getattr(result, "certificate_hash_data", None) or ():
        if isinstance(item, dict):
            # The library turns the answer's keys to snake_case.
            try:
                out.append(parse_hash_data(item).to_wire())
            except CertificateError:
                continue
    return out


def to_outcome(command: Command, result: Any) -> CommandOutcome:
    """The charger's answer (a call_result dataclass) as a CommandOutcome."""
    action = ACTION_OF[type(command)]
    if isinstance(command, GetConfiguration):
        return CommandOutcome(
            action=action,
            status="Accepted",
            configuration=_entries(getattr(result, "configuration_key", None)),
            unknown_keys=tuple(str(k) for k in getattr(result, "unknown_key", None) or ()),
        )
    if isinstance(command, GetDiagnostics):
        # GetDiagnostics.conf has no status: fileName, or nothing when the charger has
        # no diagnostics to upload (§6.x GetDiagnostics.conf).
        name = getattr(result, "file_name", None)
        return CommandOutcome(
            action=action,
            status="Accepted" if name else "NoDiagnostics",
            details={"file_name": None if name is None else str(name)},
        )
    if isinstance(command, GetLog):
        # GetLog.conf: status and, when there is a log, the name of the file it uploads.
        name = getattr(result, "filename", None)
        return CommandOutcome(
            action=action,
            status=str(getattr(result, "status", "Rejected")),
            details={
                "request_id": command.request_id,
                "filename": None if name is None else str(name),
            },
        )
    if isinstance(command, SignedUpdateFirmware):
        return CommandOutcome(
            action=action,
            status=str(getattr(result, "status", "Rejected")),
            details={"request_id": command.request_id},
        )
    if isinstance(command, GetCompositeSchedule):
        # The schedule as the charger sent it (snake_case keys, §6.x GetCompositeSchedule).
        return CommandOutcome(
            action=action,
            status=str(getattr(result, "status", "Rejected")),
            details={
                "connector_id": getattr(result, "connector_id", None),
                "schedule_start": getattr(result, "schedule_start", None),
                "charging_schedule": getattr(result, "charging_schedule", None),
            },
        )
    if isinstance(command, GetLocalListVersion):
        version = getattr(result, "list_version", None)
        return CommandOutcome(
            action=action,
            status="Accepted",
            details={"list_version": version if isinstance(version, int) else None},
        )
    if isinstance(command, GetInstalledCertificateIds):
        return CommandOutcome(
            action=action,
            status=str(getattr(result, "status", "NotFound")),
            details={"certificates": _hash_data_list(result)},
        )
    status = getattr(result, "status", None)
    data = getattr(result, "data", None)
    return CommandOutcome(
        action=action,
        status=str(status) if status is not None else "Accepted",
        data=None if data is None else str(data),
    )
