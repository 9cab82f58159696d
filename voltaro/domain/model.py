"""Plain data shared by every layer: frozen dataclasses and StrEnums, no IO.

Names follow OCPP 1.6 (edition 2) where a concept comes from the spec; values of the
StrEnums are the exact 1.6 spellings so they can travel to and from the wire unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # domain/reservations.py imports this module
    from voltaro.domain.reservations import Reservation


class RegistrationStatus(StrEnum):
    """BootNotification.conf status (OCPP 1.6 §7.36 RegistrationStatus)."""

    ACCEPTED = "Accepted"
    PENDING = "Pending"
    REJECTED = "Rejected"


class AuthorizationStatus(StrEnum):
    """IdTagInfo.status (OCPP 1.6 §7.2)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


class ConnectorStatus(StrEnum):
    """ChargePointStatus (OCPP 1.6 §7.7)."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EVSE = "SuspendedEVSE"
    SUSPENDED_EV = "SuspendedEV"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class ChargePointErrorCode(StrEnum):
    """ChargePointErrorCode (OCPP 1.6 §7.6). Unknown codes map to OTHER_ERROR (quirk Q10)."""

    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    INTERNAL_ERROR = "InternalError"
    LOCAL_LIST_CONFLICT = "LocalListConflict"
    NO_ERROR = "NoError"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    OVER_VOLTAGE = "OverVoltage"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    RESET_FAILURE = "ResetFailure"
    UNDER_VOLTAGE = "UnderVoltage"
    WEAK_SIGNAL = "WeakSignal"


class StopReason(StrEnum):
    """StopTransaction reason (OCPP 1.6 §7.36 Reason); absent means Local (§4.10)."""

    EMERGENCY_STOP = "EmergencyStop"
    EV_DISCONNECTED = "EVDisconnected"
    HARD_RESET = "HardReset"
    LOCAL = "Local"
    OTHER = "Other"
    POWER_LOSS = "PowerLoss"
    REBOOT = "Reboot"
    REMOTE = "Remote"
    SOFT_RESET = "SoftReset"
    UNLOCK_COMMAND = "UnlockCommand"
    DE_AUTHORIZED = "DeAuthorized"


class TransactionState(StrEnum):
    """Where a transaction is in its lifecycle (see domain/transaction_lifecycle.py).

    ``active``: running. ``completed``: the charger's StopTransaction closed it.
    ``interrupted``: superseded (a new start on its connector, or the connector reported
    Available after a reboot) without a StopTransaction; kept with its best-known energy,
    listed for reconciliation, and still completed by a late StopTransaction.
    ``refused``: the StartTransaction was answered other than Accepted; closed at once.
    ``closed``: closed by an operator (``transactions close``).
    """

    ACTIVE = "active"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    REFUSED = "refused"
    CLOSED = "closed"


class Availability(StrEnum):
    """AvailabilityType (OCPP 1.6 §7.4)."""

    OPERATIVE = "Operative"
    INOPERATIVE = "Inoperative"


class DataTransferStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_MESSAGE_ID = "UnknownMessageId"
    UNKNOWN_VENDOR_ID = "UnknownVendorId"


# --- Records returned by the store ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IdTag:
    id_tag: str  # as registered; lookups are case-insensitive (CiString20, §7.28)
    status: AuthorizationStatus = AuthorizationStatus.ACCEPTED
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None
    # The charger groups whose local lists carry this tag; empty: every charger's.
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class IdTagInfo:
    """What we answer in Authorize/StartTransaction/StopTransaction (§7.27)."""

    status: AuthorizationStatus
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerIdentity:
    """The metadata a charger reports in BootNotification (§6.3); fields kept untruncated."""

    vendor: str
    model: str
    serial_number: str | None = None
    charge_box_serial_number: str | None = None
    firmware_version: str | None = None
    iccid: str | None = None
    imsi: str | None = None
    meter_type: str | None = None
    meter_serial_number: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Connector:
    charger_id: str
    connector_id: int  # 0 is the whole charger (§4.9)
    status: ConnectorStatus | None = None
    error_code: str | None = None  # raw value as sent (may be outside the enum)
    info: str | None = None
    vendor_id: str | None = None
    vendor_error_code: str | None = None
    availability: Availability = Availability.OPERATIVE
    status_at: datetime | None = None  # the charger's timestamp, or time of receipt
    # Accepted as Scheduled (OCPP 1.6 §5.2): becomes ``availability`` once the charger's
    # StatusNotification shows it (Unavailable for Inoperative, else Operative).
    scheduled_availability: Availability | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Charger:
    charger_id: str
    registration: RegistrationStatus
    identity: ChargerIdentity | None = None
    has_password: bool = False
    allow_no_subprotocol: bool = False
    # OCPP 1.6 security profile (0 none, 1 Basic, 2 TLS + Basic, 3 TLS client cert).
    security_profile: int = 0
    # A new password was sent (ChangeConfiguration AuthorizationKey) and the charger
    # has not logged in with it yet: the old one stays valid until it does.
    password_pending: bool = False
    connected: bool = False
    last_seen: datetime | None = None
    last_boot: datetime | None = None
    created_at: datetime | None = None
    connectors: tuple[Connector, ...] = ()
    heartbeat_interval: int | None = None  # set by an operator; None: the global default
    list_group: str | None = None  # its local list's group (None: the all-chargers list)


@dataclass(frozen=True, slots=True, kw_only=True)
class SampledValue:
    """One sampled value with the spec defaults filled in (§7.43): value stays a string."""

    value: str
    context: str = "Sample.Periodic"
    format: str = "Raw"
    measurand: str = "Energy.Active.Import.Register"
    phase: str | None = None
    location: str = "Outlet"
    unit: str = "Wh"


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterValue:
    timestamp: datetime
    sampled_values: tuple[SampledValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    transaction_id: int
    charger_id: str
    connector_id: int
    id_tag: str
    id_tag_status: AuthorizationStatus
    start_time: datetime
    meter_start: int  # Wh
    state: TransactionState = TransactionState.ACTIVE
    stop_time: datetime | None = None
    meter_stop: int | None = None
    stop_reason: StopReason | None = None
    stop_id_tag: str | None = None
    energy_wh: int | None = None  # meter_stop - meter_start once stopped
    last_meter_wh: float | None = None  # latest energy register seen (live sessions)
    last_power_w: float | None = None
    reservation_id: int | None = None
    last_meter_at: datetime | None = None  # the timestamp of last_meter_wh's reading
    # Why the transaction ended other than by its StopTransaction (interrupted, refused,
    # closed by an operator), when, and by whom (operator closes are audited).
    end_reason: str | None = None
    ended_at: datetime | None = None
    closed_by: str | None = None
    # "estimated": energy_wh is the best-known figure (last reading), not a final meter
    # stop; "meter_decreased": the meter went backwards (rollover, replaced meter) and
    # energy_wh is not billed. Both are listed for reconciliation.
    energy_flag: str | None = None
    created_at: datetime | None = None  # server time the StartTransaction was stored


# --- Requests from chargers (after the protocol layer translated the payload) ---------


@dataclass(frozen=True, slots=True, kw_only=True)
class BootRequest:
    charger_id: str
    identity: ChargerIdentity
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class BootDecision:
    status: RegistrationStatus
    interval: int  # heartbeat interval when Accepted, retry wait otherwise (§4.2)
    current_time: datetime
    # It booted before with this vendor, model and firmware version: what it last
    # reported about its configuration still holds (a power cut, not new firmware).
    same_identity: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTransactionRequest:
    charger_id: str
    connector_id: int
    id_tag: str
    meter_start: int
    timestamp: datetime
    reservation_id: int | None = None
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTransactionResult:
    transaction_id: int
    id_tag_info: IdTagInfo
    duplicate: bool = False  # a retried StartTransaction we had already stored
    transaction: Transaction | None = None
    interrupted: tuple[Transaction, ...] = ()  # older transactions this start superseded
    # The reservation this start ended (its reservationId, §4.8), to be announced.
    reservation: Reservation | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopTransactionRequest:
    charger_id: str
    transaction_id: int
    meter_stop: int
    timestamp: datetime
    id_tag: str | None = None
    reason: StopReason = StopReason.LOCAL
    transaction_data: tuple[MeterValue, ...] = ()
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StopTransactionResult:
    id_tag_info: IdTagInfo | None
    outcome: str  # "stopped" | "duplicate" | "conflict" | "orphan" | "foreign"
    transaction: Transaction | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterValuesRequest:
    charger_id: str
    connector_id: int
    transaction_id: int | None
    meter_values: tuple[MeterValue, ...]
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusNotificationRequest:
    charger_id: str
    connector_id: int
    status: ConnectorStatus
    error_code: str  # raw; ChargePointErrorCode value when known
    info: str | None = None
    timestamp: datetime | None = None  # None: use received_at (§6.47)
    vendor_id: str | None = None
    vendor_error_code: str | None = None
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DataTransferRequest:
    charger_id: str
    vendor_id: str
    message_id: str | None = None
    data: str | None = None
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DataTransferResult:
    status: DataTransferStatus
    data: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameRecord:
    """One raw OCPP frame as it crossed the wire, for the frame log."""

    charger_id: str
    direction: str  # "in" | "out"
    at: datetime
    payload: str
    action: str | None = None
    unique_id: str | None = None
    message_type: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerSecurityEvent:
    """A SecurityEventNotification (OCPP 1.6 security whitepaper §2.4, the 1.6 security
    extension): the charger's own security log, e.g. ``FirmwareUpdated``,
    ``InvalidCentralSystemCertificate``, ``TamperDetectionActivated``."""

    charger_id: str
    type: str  # CiString50
    tech_info: str | None  # CiString255
    at: datetime  # the charger's timestamp, or receipt when unreadable
    received_at: datetime
