"""Response and request bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Connector(BaseModel):
    connector_id: int
    status: str | None
    error_code: str | None
    info: str | None
    vendor_id: str | None
    vendor_error_code: str | None
    availability: str
    status_at: str | None


class ChargePoint(BaseModel):
    charger_id: str
    registration: str
    connected: bool
    last_seen: str | None
    last_boot: str | None
    created_at: str | None
    vendor: str | None
    model: str | None
    serial_number: str | None
    charge_box_serial_number: str | None
    firmware_version: str | None
    iccid: str | None
    imsi: str | None
    meter_type: str | None
    meter_serial_number: str | None
    has_password: bool
    allow_no_subprotocol: bool
    connectors: list[Connector]


class SampledValue(BaseModel):
    value: str
    context: str
    format: str
    measurand: str
    phase: str | None
    location: str
    unit: str


class MeterValue(BaseModel):
    timestamp: str | None
    sampled_values: list[SampledValue]


class Session(BaseModel):
    transaction_id: int
    charger_id: str
    connector_id: int
    id_tag: str
    id_tag_status: str
    state: str
    start_time: str | None
    stop_time: str | None
    meter_start: int
    meter_stop: int | None
    energy_wh: int | None
    stop_reason: str | None
    stop_id_tag: str | None
    last_meter_wh: float | None
    last_power_w: float | None
    # Ended other than by the charger's stop (interrupted, refused, closed by an
    # operator): why, when, by whom; "estimated" / "meter_decreased" energy flags.
    end_reason: str | None = None
    ended_at: str | None = None
    closed_by: str | None = None
    energy_flag: str | None = None


class SessionDetail(Session):
    meter_values: list[MeterValue]


class SessionPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[Session]


class IdTag(BaseModel):
    id_tag: str
    status: str
    expiry_date: str | None
    parent_id_tag: str | None


TagStatus = Literal["Accepted", "Blocked", "Expired", "Invalid"]


class SessionClose(BaseModel):
    """Close a session whose StopTransaction never came (reconciliation, audited)."""

    meter_stop: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="final reading in Wh; default: last one"
    )
    reason: str | None = Field(default=None, max_length=500)


class IdTagCreate(BaseModel):
    id_tag: str = Field(min_length=1, max_length=20, pattern=r"^[\x20-\x7e]+$")
    status: TagStatus = "Accepted"
    expiry_date: datetime | None = None
    parent_id_tag: str | None = Field(default=None, min_length=1, max_length=20)


class IdTagUpdate(BaseModel):
    status: TagStatus | None = None
    expiry_date: datetime | None = None
    parent_id_tag: str | None = Field(default=None, min_length=1, max_length=20)


class ConfigurationEntry(BaseModel):
    key: str
    readonly: bool
    value: str | None


class CommandResult(BaseModel):
    action: str
    status: str
    configuration: list[ConfigurationEntry] | None = None
    unknown_keys: list[str] | None = None
    data: str | None = None
    details: dict[str, Any] | None = None
    applied: bool | None = None  # false: carried out, but what it changes was not stored
    warning: str | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"] | None = None


class DatabaseState(BaseModel):
    ok: bool
    backend: str


class ChargerCounts(BaseModel):
    total: int
    connected: int
    by_registration: dict[str, int]


class Status(BaseModel):
    version: str
    uptime_s: float
    database: DatabaseState
    connected_chargers: int
    chargers: ChargerCounts | None = None
    connectors_by_status: dict[str, int] | None = None
    active_transactions: int | None = None
