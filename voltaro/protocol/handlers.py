"""The Central System's answers to charger-initiated Core messages (OCPP 1.6 §4).

Handlers are thin: translate the (already normalised and validated) payload into a
domain request, ask the ChargerBackend, translate the decision into the library's
call_result dataclass. No rules live here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from voltaro.domain.firmware import TransferKind, TransferStatusReport
from voltaro.domain.model import (
    BootRequest,
    ChargerIdentity,
    ChargerSecurityEvent,
    ConnectorStatus,
    DataTransferRequest,
    IdTagInfo,
    MeterValue,
    MeterValuesRequest,
    SampledValue,
    StartTransactionRequest,
    StatusNotificationRequest,
    StopReason,
    StopTransactionRequest,
)
from voltaro.domain.ports import ChargerBackend
from voltaro.domain.timestamps import format_utc, parse_timestamp, utc_now
from voltaro.protocol.errors import OcppError

_ENERGY_DEFAULT_UNIT = "Wh"


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise OcppError("TypeConstraintViolation", f"{field} must be a date-time string")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise OcppError("PropertyConstraintViolation", f"{field} is not a date-time") from None


def _optional_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None  # an informational timestamp we cannot read: use time of receipt


def id_tag_info(info: IdTagInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"status": info.status.value}
    if info.expiry_date is not None:
        out["expiryDate"] = format_utc(info.expiry_date)
    if info.parent_id_tag is not None:
        out["parentIdTag"] = info.parent_id_tag
    return out


def sampled_value(raw: dict[str, Any]) -> SampledValue:
    """A SampledValue with the OCPP 1.6 §7.43 defaults for every absent field."""
    measurand = raw.get("measurand") or "Energy.Active.Import.Register"
    unit = raw.get("unit")
    if unit is None:
        unit = _ENERGY_DEFAULT_UNIT if measurand.startswith("Energy") else ""
    return SampledValue(
        value=str(raw.get("value", "")),
        context=raw.get("context") or "Sample.Periodic",
        format=raw.get("format") or "Raw",
        measurand=measurand,
        phase=raw.get("phase"),
        location=raw.get("location") or "Outlet",
        unit=unit,
    )


def meter_values(raw: Any, received_at: datetime) -> tuple[MeterValue, ...]:
    out = []
    for entry in raw or ():
        samples = tuple(sampled_value(sv) for sv in entry.get("sampled_value") or ())
        if not samples:
            continue
        stamp = _optional_time(entry.get("timestamp")) or received_at
        out.append(MeterValue(timestamp=stamp, sampled_values=samples))
    return tuple(out)


class CentralSystemHandlers:
    """Mixin with the @on handlers; expects ``charger_id`` and ``backend`` on self."""

    charger_id: str
    backend: ChargerBackend

    @on(Action.boot_notification)
    async def on_boot_notification(self, **kw: Any) -> Any:
        identity = ChargerIdentity(
            vendor=kw["charge_point_vendor"],
            model=kw["charge_point_model"],
            serial_number=kw.get("charge_point_serial_number"),
            charge_box_serial_number=kw.get("charge_box_serial_number"),
            firmware_version=kw.get("firmware_version"),
            iccid=kw.get("iccid"),
            imsi=kw.get("imsi"),
            meter_type=kw.get("meter_type"),
            meter_serial_number=kw.get("meter_serial_number"),
        )
        decision = await self.backend.boot_notification(
            BootRequest(charger_id=self.charger_id, identity=identity, received_at=utc_now())
        )
        return call_result.BootNotification(
            current_time=format_utc(decision.current_time),
            interval=decision.interval,
            status=decision.status.value,
        )

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kw: Any) -> Any:
        now = utc_now()
        await self.backend.heartbeat(self.charger_id, now)
        return call_result.Heartbeat(current_time=format_utc(now))

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **kw: Any) -> Any:
        info = await self.backend.authorize(self.charger_id, id_tag, utc_now())
        return call_result.Authorize(id_tag_info=id_tag_info(info))

    @on(Action.start_transaction)
    async def on_start_transaction(self, **kw: Any) -> Any:
        now = utc_now()
        result = await self.backend.start_transaction(
            StartTransactionRequest(
                charger_id=self.charger_id,
                connector_id=kw["connector_id"],
                id_tag=kw["id_tag"],
                meter_start=kw["meter_start"],
                timestamp=_optional_time(kw.get("timestamp")) or now,
                reservation_id=kw.get("reservation_id"),
                received_at=now,
            )
        )
        return call_result.StartTransaction(
            transaction_id=result.transaction_id, id_tag_info=id_tag_info(result.id_tag_info)
        )

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, **kw: Any) -> Any:
        now = utc_now()
        try:
            reason = StopReason(kw.get("reason") or "Local")  # absent means Local (§4.10)
        except ValueError:
            reason = StopReason.OTHER
        result = await self.backend.stop_transaction(
            StopTransactionRequest(
                charger_id=self.charger_id,
                transaction_id=kw["transaction_id"],
                meter_stop=kw["meter_stop"],
                timestamp=_optional_time(kw.get("timestamp")) or now,
                id_tag=kw.get("id_tag"),
                reason=reason,
                transaction_data=meter_values(kw.get("transaction_data"), now),
                received_at=now,
            )
        )
        info = id_tag_info(result.id_tag_info) if result.id_tag_info is not None else None
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.meter_values)
    async def on_meter_values(self, **kw: Any) -> Any:
        now = utc_now()
        values = meter_values(kw.get("meter_value"), now)
        tx = kw.get("transaction_id")
        if values:
            await self.backend.meter_values(
                MeterValuesRequest(
                    charger_id=self.charger_id,
                    connector_id=kw["connector_id"],
                    transaction_id=tx,
                    meter_values=values,
                    received_at=now,
                )
            )
        return call_result.MeterValues()

    @on(Action.status_notification)
    async def on_status_notification(self, **kw: Any) -> Any:
        now = utc_now()
        await self.backend.status_notification(
            StatusNotificationRequest(
                charger_id=self.charger_id,
                connector_id=kw["connector_id"],
                status=ConnectorStatus(kw["status"]),
                error_code=kw["error_code"],
                info=kw.get("info"),
                timestamp=_optional_time(kw.get("timestamp")),
                vendor_id=kw.get("vendor_id"),
                vendor_error_code=kw.get("vendor_error_code"),
                received_at=now,
            )
        )
        return call_result.StatusNotification()

    @on(Action.security_event_notification)
    async def on_security_event_notification(self, type: str, **kw: Any) -> Any:  # noqa: A002 - OCPP field name
        """The charger's own security log (1.6 security whitepaper §2.4; the 1.6
        security extension): stored, then answered; shown in the console's alerts."""
        now = utc_now()
        await self.backend.security_event(
            ChargerSecurityEvent(
                charger_id=self.charger_id,
                type=type,
                tech_info=kw.get("tech_info"),
                at=_optional_time(kw.get("timestamp")) or now,
                received_at=now,
            )
        )
        return call_result.SecurityEventNotification()

    # SignCertificate (1.6 security extension; whitepaper ed. 3 A02/A03): the CSR is
    # checked before the answer; signing and CertificateSigned follow the answer.
    @on(Action.sign_certificate)
    async def on_sign_certificate(self, csr: str, **kw: Any) -> Any:
        accepted = await self.backend.sign_certificate(csr, utc_now())
        return call_result.SignCertificate(status="Accepted" if accepted else "Rejected")

    @after(Action.sign_certificate)
    async def after_sign_certificate(self, csr: str, **kw: Any) -> None:
        await self.backend.certificate_request_answered(csr)

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kw: Any) -> Any:
        result = await self.backend.data_transfer(
            DataTransferRequest(
                charger_id=self.charger_id,
                vendor_id=vendor_id,
                message_id=kw.get("message_id"),
                data=kw.get("data"),
                received_at=utc_now(),
            )
        )
        return call_result.DataTransfer(status=result.status.value, data=result.data)

    # Firmware Management (OCPP 1.6 §4.4, §4.5): the answers are empty; the status is
    # stored as history before the answer, like every other message.
    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, status: str, **kw: Any) -> Any:
        await self.backend.transfer_status(
            TransferStatusReport(
                charger_id=self.charger_id,
                kind=TransferKind.FIRMWARE,
                status=status,
                received_at=utc_now(),
            )
        )
        return call_result.FirmwareStatusNotification()

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(self, status: str, **kw: Any) -> Any:
        await self.backend.transfer_status(
            TransferStatusReport(
                charger_id=self.charger_id,
                kind=TransferKind.DIAGNOSTICS,
                status=status,
                received_at=utc_now(),
            )
        )
        return call_result.DiagnosticsStatusNotification()

    # The 1.6 security extension's status reports (whitepaper edition 3): the same
    # history as above, with the requestId of the GetLog / SignedUpdateFirmware.
    @on(Action.log_status_notification)
    async def on_log_status_notification(self, status: str, **kw: Any) -> Any:
        await self.backend.transfer_status(
            TransferStatusReport(
                charger_id=self.charger_id,
                kind=TransferKind.LOG,
                status=status,
                received_at=utc_now(),
                request_id=_request_id(kw.get("request_id")),
            )
        )
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    async def on_signed_firmware_status_notification(self, status: str, **kw: Any) -> Any:
        await self.backend.transfer_status(
            TransferStatusReport(
                charger_id=self.charger_id,
                kind=TransferKind.SIGNED_FIRMWARE,
                status=status,
                received_at=utc_now(),
                request_id=_request_id(kw.get("request_id")),
            )
        )
        return call_result.SignedFirmwareStatusNotification()


def _request_id(value: Any) -> int | None:
    """requestId is an integer in the schema; one too large for a BIGINT is not ours."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None
