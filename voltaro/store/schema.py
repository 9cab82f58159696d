"""The database schema: SQLAlchemy 2 typed models. Migrations live in migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC on every backend, returned as aware UTC datetimes."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class ChargePointRow(Base):
    __tablename__ = "charge_points"

    charger_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    registration: Mapped[str] = mapped_column(String(16))
    vendor: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    serial_number: Mapped[str | None] = mapped_column(Text)
    charge_box_serial_number: Mapped[str | None] = mapped_column(Text)
    firmware_version: Mapped[str | None] = mapped_column(Text)
    iccid: Mapped[str | None] = mapped_column(Text)
    imsi: Mapped[str | None] = mapped_column(Text)
    meter_type: Mapped[str | None] = mapped_column(Text)
    meter_serial_number: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str | None] = mapped_column(Text)
    # Hashes of passwords sent in ChangeConfiguration AuthorizationKey and not settled
    # yet (a JSON list, newest last): valid next to password_hash until the charger logs
    # in with one of them (TC_073; a lost answer must not lock the charger out).
    pending_password_hashes: Mapped[str | None] = mapped_column(Text)
    # OCPP 1.6 security profile (whitepaper §2): 0 none, 1 Basic auth, 2 TLS + Basic
    # auth, 3 TLS with a client certificate. Enforced at the handshake (no downgrade).
    security_profile: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    allow_no_subprotocol: Mapped[bool] = mapped_column(Boolean, default=False)
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    rebooting: Mapped[bool] = mapped_column(Boolean, default=False)
    # The HeartbeatInterval an operator set (ChangeConfiguration accepted); answered in
    # the charger's BootNotification instead of the global default (issue 23.1).
    heartbeat_interval: Mapped[int | None] = mapped_column(Integer)
    # The group whose local list it gets (issue 16); None: the all-chargers list.
    list_group: Mapped[str | None] = mapped_column(String(64))
    last_seen: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_boot: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ConnectorRow(Base):
    __tablename__ = "connectors"

    charger_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.charger_id", ondelete="CASCADE"), primary_key=True
    )
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(Text)
    info: Mapped[str | None] = mapped_column(Text)
    vendor_id: Mapped[str | None] = mapped_column(Text)
    vendor_error_code: Mapped[str | None] = mapped_column(Text)
    availability: Mapped[str] = mapped_column(String(16), default="Operative")
    # A ChangeAvailability answered Scheduled (OCPP 1.6 §5.2): the availability the
    # connector takes once its StatusNotification shows it (issue 23.2).
    scheduled_availability: Mapped[str | None] = mapped_column(String(16))
    status_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status_received_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class StatusHistoryRow(Base):
    __tablename__ = "status_history"
    __table_args__ = (Index("ix_status_history_charger", "charger_id", "connector_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    connector_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(Text)
    info: Mapped[str | None] = mapped_column(Text)
    vendor_id: Mapped[str | None] = mapped_column(Text)
    vendor_error_code: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)  # the charger's time, or receipt
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdTagRow(Base):
    __tablename__ = "id_tags"

    # IdToken is CiString20: compared case-insensitively (OCPP 1.6 §7.28).
    tag_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    id_tag: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    expiry_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    parent_id_tag: Mapped[str | None] = mapped_column(String(64))
    # Comma-separated charger groups whose local lists carry the tag; None: every list.
    list_groups: Mapped[str | None] = mapped_column(Text)


class TransactionRow(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        # A retried StartTransaction is found by this key (R60, RT12); it is not unique:
        # identical starts are different sessions once the first closed (issue 10 §2.1).
        Index("ix_transactions_retry", "charger_id", "connector_id", "start_time"),
        # A new start on a connector supersedes the one active there: at most one.
        Index(
            "uq_transactions_active_connector",
            "charger_id",
            "connector_id",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
        Index("ix_transactions_tag_state", "tag_key", "state"),
        Index("ix_transactions_charger_state", "charger_id", "state"),
        Index("ix_transactions_start", "start_time"),
    )

    transaction_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # No foreign key to charge_points: billing data outlives a removed charger.
    charger_id: Mapped[str] = mapped_column(String(255))
    connector_id: Mapped[int] = mapped_column(Integer)
    # Charger-supplied strings are Text: stored as received, whatever their length
    # (issue 10 §2.3; validation is lenient, so the columns must be too).
    id_tag: Mapped[str] = mapped_column(Text)
    tag_key: Mapped[str] = mapped_column(Text)
    id_tag_status: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[datetime] = mapped_column(UtcDateTime)
    meter_start: Mapped[int] = mapped_column(BigInteger)
    reservation_id: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    stop_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    meter_stop: Mapped[int | None] = mapped_column(BigInteger)
    stop_reason: Mapped[str | None] = mapped_column(Text)
    stop_id_tag: Mapped[str | None] = mapped_column(Text)
    energy_wh: Mapped[int | None] = mapped_column(BigInteger)
    last_meter_wh: Mapped[float | None] = mapped_column(Float)
    last_power_w: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_meter_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    end_reason: Mapped[str | None] = mapped_column(Text)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by: Mapped[str | None] = mapped_column(Text)
    energy_flag: Mapped[str | None] = mapped_column(String(32))


class OrphanStopRow(Base):
    """StopTransaction for an unknown, 0, -1 or another charger's id (errata 3.18)."""

    __tablename__ = "orphan_stops"
    __table_args__ = (
        UniqueConstraint(
            "charger_id", "transaction_id", "meter_stop", "stop_time", name="uq_orphan_stops_retry"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # "unknown" | "foreign" | "conflict"
    meter_stop: Mapped[int] = mapped_column(BigInteger)
    stop_time: Mapped[datetime] = mapped_column(UtcDateTime)
    id_tag: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


# What makes a stored sample unique (the idempotency key of meter values).
METER_VALUE_KEY = (
    "charger_id",
    "connector_id",
    "reported_transaction_id",
    "at",
    "measurand",
    "phase",
    "location",
    "context",
    "format",
    "unit",
)


class MeterValueRow(Base):
    __tablename__ = "meter_values"
    __table_args__ = (
        # A retried MeterValues/StopTransaction stores each sample once.
        UniqueConstraint(*METER_VALUE_KEY, name="uq_meter_values_retry"),
        Index("ix_meter_values_tx", "transaction_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    connector_id: Mapped[int] = mapped_column(Integer)
    # What the charger said, and the transaction it is linked to (only the charger's own).
    reported_transaction_id: Mapped[int] = mapped_column(BigInteger, default=0)
    transaction_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    value: Mapped[str] = mapped_column(Text)
    # Text: chargers send units, measurands, phases... outside the spec's lists
    # (e.g. unit "kWh-Import-Register-Total"); they are kept as sent (issue 10 §2.3).
    context: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(Text)
    measurand: Mapped[str] = mapped_column(Text)
    phase: Mapped[str] = mapped_column(Text, default="")  # "" = none (unique key)
    location: Mapped[str] = mapped_column(Text)
    unit: Mapped[str] = mapped_column(Text)


class ConfigurationRow(Base):
    __tablename__ = "charger_configuration"

    charger_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.charger_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    readonly: Mapped[bool] = mapped_column(Boolean, default=False)
    unknown: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DataTransferRow(Base):
    __tablename__ = "data_transfers"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    vendor_id: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CommandRow(Base):
    """The audit of every command sent to a charger: who, when, what, and the answer."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_charger", "charger_id", "requested_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    request: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str | None] = mapped_column(Text)  # as the charger answered
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class FrameRow(Base):
    __tablename__ = "frames"
    __table_args__ = (
        Index("ix_frames_charger_at", "charger_id", "at"),
        Index("ix_frames_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    direction: Mapped[str] = mapped_column(String(3))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    action: Mapped[str | None] = mapped_column(Text)  # a charger may send any string
    unique_id: Mapped[str | None] = mapped_column(Text)
    message_type: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)


class QuarantineRow(Base):
    """A charger message kept as its raw frame for an operator. ``kind`` ``refused``: the
    database refused it for good (issue 10 §2.3), the charger was answered so that its
    queue moves on. ``repaired``: it was stored, with U+FFFD in place of text no column
    can hold (NUL, lone surrogates); the frame holds the original, losslessly."""

    __tablename__ = "quarantine"
    __table_args__ = (
        Index("ix_quarantine_at", "at"),
        Index("ix_quarantine_charger", "charger_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(Text)
    unique_id: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(Text)
    frame: Mapped[str] = mapped_column(Text)  # the raw text frame, exactly as received
    error: Mapped[str] = mapped_column(Text)
    # The id the charger was given (a quarantined StartTransaction) or referred to.
    transaction_id: Mapped[int | None] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(Text, server_default="refused")


class TransferStatusRow(Base):
    """FirmwareStatusNotification and DiagnosticsStatusNotification, as history per
    charger (OCPP 1.6 §4.4, §4.5): the last row of a kind is the charger's current state."""

    __tablename__ = "transfer_status_history"
    __table_args__ = (Index("ix_transfer_status_charger", "charger_id", "kind", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # firmware | diagnostics | log | ...
    status: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The requestId the 1.6 security extension's notifications carry (issue 15).
    request_id: Mapped[int | None] = mapped_column(BigInteger)


class TransferRequestRow(Base):
    """A GetLog or SignedUpdateFirmware this server sent: its id is the requestId the
    charger's LogStatusNotification / SignedFirmwareStatusNotification refer to."""

    __tablename__ = "transfer_requests"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # log | signed_firmware
    detail: Mapped[str | None] = mapped_column(Text)  # the log type, the firmware
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class StoredFileRow(Base):
    """A file Voltaro keeps under its data directory: a firmware image an admin added,
    or a file a charger uploaded (diagnostics; other kinds reuse the same table)."""

    __tablename__ = "stored_files"
    __table_args__ = (Index("ix_stored_files_kind", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # firmware | diagnostics | ...
    name: Mapped[str] = mapped_column(Text)  # the name shown and served
    path: Mapped[str] = mapped_column(Text)  # relative to the data directory
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    charger_id: Mapped[str | None] = mapped_column(String(255))  # the uploader, if a charger
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class FileTokenRow(Base):
    """A URL token handed to one charger: to download one file, or to upload one.

    Only the token's SHA-256 is stored (the URL is the credential). ``used_at`` is set by
    the first complete transfer; a used or expired token is refused.
    """

    __tablename__ = "file_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))  # download | upload
    purpose: Mapped[str] = mapped_column(String(32))  # firmware | diagnostics | ...
    charger_id: Mapped[str] = mapped_column(String(255))
    file_id: Mapped[int | None] = mapped_column(BigInteger)  # download: the file served
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result_file_id: Mapped[int | None] = mapped_column(BigInteger)  # upload: what arrived


class CampaignRow(Base):
    """A firmware update across many chargers (issue 16)."""

    __tablename__ = "firmware_campaigns"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    location: Mapped[str | None] = mapped_column(Text)  # an operator's URL, or
    file_id: Mapped[int | None] = mapped_column(BigInteger)  # a firmware file we serve
    retrieve_at: Mapped[datetime] = mapped_column(UtcDateTime)
    retries: Mapped[int | None] = mapped_column(Integer)
    retry_interval: Mapped[int | None] = mapped_column(Integer)
    max_parallel: Mapped[int] = mapped_column(Integer)
    pattern: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CampaignTargetRow(Base):
    __tablename__ = "firmware_campaign_targets"

    campaign_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("firmware_campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    charger_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LocalListStateRow(Base):
    """What a charger last accepted of the Local Authorization List (OCPP 1.6 §5.15):
    its version and entries, so that the next sync sends only the differences."""

    __tablename__ = "local_list_state"

    charger_id: Mapped[str] = mapped_column(
        ForeignKey("charge_points.charger_id", ondelete="CASCADE"), primary_key=True
    )
    # None: unknown (never sent, or the charger answered Failed): the next sync is Full.
    version: Mapped[int | None] = mapped_column(Integer)
    entries: Mapped[str | None] = mapped_column(Text)  # JSON {tag_key: AuthorizationData}
    # The last sync: when, its outcome (Accepted, Failed, NotSupported, ...), its error.
    synced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class ReservationRow(Base):
    """A reservation sent with ReserveNow (OCPP 1.6 §5.13); its id is the reservationId."""

    __tablename__ = "reservations"
    __table_args__ = (
        Index("ix_reservations_charger", "charger_id", "state"),
        Index("ix_reservations_expiry", "expiry_date"),
    )

    reservation_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    connector_id: Mapped[int] = mapped_column(Integer)
    id_tag: Mapped[str] = mapped_column(Text)
    parent_id_tag: Mapped[str | None] = mapped_column(Text)
    expiry_date: Mapped[datetime] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16))
    answer: Mapped[str | None] = mapped_column(Text)  # the charger's last answer
    error: Mapped[str | None] = mapped_column(Text)
    transaction_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ChargingProfileRow(Base):
    """A SetChargingProfile sent to a charger (OCPP 1.6 §5.16) with its answer; cleared
    when a ClearChargingProfile that matches it was accepted (§5.5)."""

    __tablename__ = "charging_profiles"
    __table_args__ = (Index("ix_charging_profiles_charger", "charger_id", "cleared_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    connector_id: Mapped[int] = mapped_column(Integer)
    profile_id: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(32))
    stack_level: Mapped[int] = mapped_column(Integer)
    profile: Mapped[str] = mapped_column(Text)  # csChargingProfiles as sent (JSON)
    status: Mapped[str | None] = mapped_column(Text)  # Accepted, Rejected, NotSupported
    error: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ChargerSecurityEventRow(Base):
    """SecurityEventNotification from chargers (the 1.6 security extension, whitepaper
    §2.4): the charger's own security log, kept with the time it gave and receipt."""

    __tablename__ = "charger_security_events"
    __table_args__ = (Index("ix_charger_security_events", "charger_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(Text)
    tech_info: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CircuitRow(Base):
    """A circuit of the site's tree (issue 17, docs/load-management.md): a breaker's
    limit per phase in A and/or over all phases in kW; parent None is the root."""

    __tablename__ = "circuits"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(255))
    limit_amps: Mapped[float | None] = mapped_column(Float)
    limit_kw: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CircuitChargerRow(Base):
    """Where a charger hangs off the circuit tree: the site phases its L1, L2, L3 are
    wired to ("L2,L3,L1"), its rating and fallback limit per phase, its priority."""

    __tablename__ = "circuit_chargers"

    charger_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    circuit: Mapped[str] = mapped_column(String(255))
    phases: Mapped[str] = mapped_column(String(16))
    max_amps: Mapped[float] = mapped_column(Float)
    fallback_amps: Mapped[float] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LoadTagPriorityRow(Base):
    """An id tag's priority for load management (issue 17): a session it starts gets the
    higher of this and its charger's. Any tag, known to the id tag list or not."""

    __tablename__ = "load_tag_priorities"

    tag_key: Mapped[str] = mapped_column(String(64), primary_key=True)  # tag_key(id_tag)
    id_tag: Mapped[str] = mapped_column(String(64))  # as given
    priority: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ChargerCertificateRow(Base):
    """The certificates a charger holds, as it last reported them (GetInstalledCertificateIds,
    source ``reported``) or as Voltaro installed them since (InstallCertificate Accepted,
    source ``installed``); a DeleteCertificate the charger accepted removes the row."""

    __tablename__ = "charger_certificates"
    __table_args__ = (Index("ix_charger_certificates", "charger_id", "certificate_type"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    certificate_type: Mapped[str] = mapped_column(String(64))
    hash_algorithm: Mapped[str] = mapped_column(String(16))
    issuer_name_hash: Mapped[str] = mapped_column(String(128))
    issuer_key_hash: Mapped[str] = mapped_column(String(128))
    serial_number: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class CertificateSigningRow(Base):
    """One SignCertificate from a charger and what became of it: rejected (the reason),
    signed and delivered (CertificateSigned answered), or failed (CA, hook, charger)."""

    __tablename__ = "certificate_signings"
    __table_args__ = (Index("ix_certificate_signings", "charger_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    serial_number: Mapped[str | None] = mapped_column(String(40))
    not_after: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ChargerHealthRow(Base):
    """Per-charger health counters, one row per clock hour (UTC), kept 48 hours
    (voltaro/domain/charger_health.py; issue 19). Charger ids are not foreign keys: the
    counters of a removed charger age out with the others."""

    __tablename__ = "charger_health"
    __table_args__ = (Index("ix_charger_health_hour", "hour"),)

    charger_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    connects: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    online_s: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    command_timeouts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    call_errors_sent: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    call_errors_received: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    clock_samples: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    min_lag_s: Mapped[float | None] = mapped_column(Float)
    heartbeat_intervals: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    heartbeat_sum_s: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    heartbeat_sumsq_s: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))


# Several nodes on one PostgreSQL (issue 18; ../docs/scaling.md). SQLite is single-node:
# the tables exist there too (one migration chain) but stay empty.


class ClusterNodeRow(Base):
    """A running Voltaro node and its lease. The lease is renewed against the database
    clock (PostgreSQL ``now()``), never the node's own, so clock skew between nodes does
    not matter; a node that cannot renew in time fences itself."""

    __tablename__ = "cluster_nodes"

    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incarnation: Mapped[str] = mapped_column(String(36))  # a new uuid4 per process start
    address: Mapped[str | None] = mapped_column(Text)  # where chargers/peers reach it
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[datetime] = mapped_column(UtcDateTime)


class ChargerOwnerRow(Base):
    """Which node holds a charger's connection. ``epoch`` is the fencing token: every
    takeover bumps it, and commands or writes carrying an older epoch are refused."""

    __tablename__ = "charger_owners"
    __table_args__ = (Index("ix_charger_owners_node", "node_id"),)

    charger_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64))
    incarnation: Mapped[str] = mapped_column(String(36))
    epoch: Mapped[int] = mapped_column(BigInteger)
    connected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    remote_addr: Mapped[str | None] = mapped_column(Text)


class RoutedCommandRow(Base):
    """A command sent from one node to the node that owns the charger. ``id`` is the
    request id: a retry with the same id never executes twice (RemoteStartTransaction is
    not idempotent). status: queued | routed | sent | answered | timeout | offline | error."""

    __tablename__ = "routed_commands"
    __table_args__ = (Index("ix_routed_commands_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    charger_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # JSON
    origin_node: Mapped[str] = mapped_column(String(64))
    owner_node: Mapped[str | None] = mapped_column(String(64))
    owner_epoch: Mapped[int | None] = mapped_column(BigInteger)
    requested_by: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[str | None] = mapped_column(Text)  # JSON
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ClusterEventRow(Base):
    """The event outbox: every node writes the events its chargers cause, and every
    node's consoles read them by id, gap-free and in order (NOTIFY only wakes readers)."""

    __tablename__ = "cluster_events"
    __table_args__ = (Index("ix_cluster_events_at", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    origin_node: Mapped[str] = mapped_column(String(64))
    charger_id: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # JSON, the event as the console wire sends it
