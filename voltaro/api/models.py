"""Response and request bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from voltaro.domain.local_list import GROUP_NAME

# A charger group (local list per group, issue 16).
GroupName = Annotated[str, Field(pattern=f"^{GROUP_NAME.pattern}$")]


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
    # OCPP security profile the charger must use: 0 none, 1 Basic auth, 2 TLS + Basic
    # auth, 3 TLS client certificate (docs/security.md).
    security_profile: int = 0
    # A new password was sent (AuthorizationKey) and not used by the charger yet.
    password_pending: bool = False
    allow_no_subprotocol: bool
    # The group whose local list it gets; null: the all-chargers list.
    list_group: str | None = None
    connectors: list[Connector]
    active_transactions: list[Session] = Field(default_factory=list)


class ListGroup(BaseModel):
    group: GroupName | None = None  # null: no group (the all-chargers list)


class SecurityEvent(BaseModel):
    kind: str  # auth_failed, downgrade, certificate_cn_mismatch, ... (docs/security.md)
    charger_id: str | None
    remote: str | None
    detail: str
    at: float  # Unix time


class SecurityEvents(BaseModel):
    counts: dict[str, int]
    recent: list[SecurityEvent]


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


class CommandEntry(BaseModel):
    """One command of the audit: who sent what to which charger, when, and the outcome."""

    id: int
    charger_id: str
    action: str = Field(description="the OCPP action (or transactions.close for an operator close)")
    request: dict[str, Any] = Field(description="the arguments sent, secrets hidden")
    actor: str = Field(description="Unix user on the control socket, or api:<token name>")
    requested_at: str | None
    finished_at: str | None = Field(description="empty while the command is in progress")
    status: str | None = Field(description="the charger's answer (Accepted, Rejected, ...)")
    error: str | None = Field(description="why it failed (timeout, CALLERROR, ...)")


class CommandPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[CommandEntry]


class HeartbeatRegularity(BaseModel):
    expected_s: int | None = Field(description="the HeartbeatInterval the charger should keep")
    intervals_24h: int = Field(description="intervals measured (two heartbeats, one connection)")
    mean_s: float | None
    spread_s: float | None = Field(description="standard deviation of the intervals")
    regularity: Literal["unknown", "regular", "irregular"]


class HealthFlag(BaseModel):
    flag: Literal["flapping", "drifting"]
    reason: str


class ChargerHealth(BaseModel):
    """A charge point's health over the current clock hour and the 23 before it."""

    charger_id: str
    connected: bool
    window_start: str
    connects_last_hour: int = Field(description="this clock hour or the one before, the higher")
    connects_24h: int
    max_connects_per_hour: int
    online_s_24h: float
    online_share_24h: float = Field(description="online time / time since window_start, 0-1")
    command_timeouts_24h: int
    call_errors_sent_24h: int
    call_errors_received_24h: int = Field(
        description="commands answered with a CALLERROR (or an answer that is not valid OCPP)"
    )
    clock_drift_s: float | None = Field(
        description="charger clock minus server clock, from the smallest lag of the latest "
        "hour with samples; positive: ahead"
    )
    clock_measured_hour: str | None
    clock_samples_24h: int
    heartbeat: HeartbeatRegularity
    last_boot: str | None
    last_boot_reason: str | None = Field(
        description="inferred: a Reset accepted or a firmware installation around the boot, "
        "else not requested (power loss, crash, watchdog)"
    )
    firmware_version: str | None
    vendor: str | None
    model: str | None
    flags: list[HealthFlag]


class OrphanStop(BaseModel):
    """A StopTransaction that closed nothing, kept for reconciliation."""

    charger_id: str
    transaction_id: int | None = Field(description="the id the charger sent (0, -1, unknown)")
    kind: str = Field(
        description="unknown (an orphan stop: no such id), foreign (another charger's "
        "transaction, left untouched) or conflict (a second stop with another meterStop)"
    )
    meter_stop: int | None
    stop_time: str | None
    reason: str | None
    id_tag: str | None
    received_at: str | None


class QuarantinedFrame(BaseModel):
    """A charger message kept as its raw frame (docs/reconciliation.md, "Quarantined")."""

    id: int
    kind: str = Field(description="refused (not stored) or repaired (stored with U+FFFD)")
    charger_id: str
    unique_id: str | None
    action: str | None
    transaction_id: int | None
    error: str
    frame: str = Field(description="the frame as received, secrets hidden")
    at: str


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
    # Only on the local lists of chargers in these groups; empty: on every list.
    groups: list[str] = Field(default_factory=list)


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
    groups: list[GroupName] = Field(default_factory=list)


class IdTagUpdate(BaseModel):
    status: TagStatus | None = None
    expiry_date: datetime | None = None
    parent_id_tag: str | None = Field(default=None, min_length=1, max_length=20)
    groups: list[GroupName] | None = None  # []: on every charger's list again


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
    # Several nodes (issue 18): "fenced" while this node holds no valid lease (it
    # refuses chargers until it has joined again: a load balancer should skip it).
    cluster: Literal["ok", "fenced"] | None = None


class DatabaseState(BaseModel):
    ok: bool
    backend: str


class ChargerCounts(BaseModel):
    total: int
    connected: int
    by_registration: dict[str, int]


class ClusterNodeState(BaseModel):
    """One node of the cluster as the database sees it (issue 18, docs/scaling.md)."""

    node_id: str
    address: str | None
    incarnation: str
    started_at: str
    lease_until: str  # UTC, the database clock
    lease_left_s: float  # negative: expired that long ago
    live: bool
    chargers: int  # charger_owners rows this node holds


class ClusterState(BaseModel):
    """This node (the one answering) and every node: cluster = true only."""

    node_id: str
    incarnation: str
    fenced: bool  # the lease is not known valid: no CALL sent, chargers refused (503)
    lease_s: float
    lease_left_s: float
    fences: int  # times this process fenced itself
    evicted: int  # sockets closed because another node took their charger
    reaped: int  # chargers of expired nodes this node released
    nodes: list[ClusterNodeState]


class Status(BaseModel):
    version: str
    uptime_s: float
    database: DatabaseState
    connected_chargers: int
    chargers: ChargerCounts | None = None
    connectors_by_status: dict[str, int] | None = None
    active_transactions: int | None = None
    cluster: ClusterState | None = None  # several nodes on one PostgreSQL (issue 18)


# --- Command bodies: one typed body per command, unknown fields refused (422) -------------


class TransferStatus(BaseModel):
    status: str
    at: str
    request_id: int | None = None  # GetLog / SignedUpdateFirmware reports (issue 15)


class TransferReport(BaseModel):
    kind: Literal["firmware", "diagnostics", "log", "signed_firmware"]
    status: str
    at: str
    request_id: int | None = None


class FirmwareState(BaseModel):
    """What the charger last reported in FirmwareStatusNotification,
    DiagnosticsStatusNotification and the security extension's LogStatusNotification and
    SignedFirmwareStatusNotification (null: never), and its recent reports, newest first."""

    charger_id: str
    firmware_status: TransferStatus | None
    diagnostics_status: TransferStatus | None
    log_status: TransferStatus | None = None
    signed_firmware_status: TransferStatus | None = None
    transfer_history: list[TransferReport]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoredFile(BaseModel):
    id: int
    kind: str
    name: str
    size: int
    sha256: str
    charger_id: str | None
    created_by: str
    created_at: str


class FirmwareUpdateBody(_Strict):
    """Exactly one of ``location`` and ``file``."""

    location: str | None = Field(
        default=None, description="a URL the charger fetches (http, https, ftp, ftps)"
    )
    file: str | None = Field(
        default=None, description="a firmware image this server serves (name or id)"
    )
    retrieve_date: datetime | None = Field(default=None, description="absent: now")
    retries: int | None = Field(default=None, ge=0)
    retry_interval: int | None = Field(default=None, ge=0)


class CampaignCreate(_Strict):
    """A firmware campaign: exactly one of ``charge_point_pattern`` and
    ``charge_point_ids``, and of ``location`` and ``file``."""

    charge_point_pattern: str | None = Field(
        default=None,
        min_length=1,
        description="shell-style, several separated by commas: `ACME-*,CP-7`",
        examples=["ACME-*"],
    )
    charge_point_ids: list[str] | None = Field(
        default=None, min_length=1, description="these registered charge points"
    )
    location: str | None = Field(
        default=None, description="a URL the chargers fetch (http, https, ftp, ftps)"
    )
    file: str | None = Field(
        default=None, description="a firmware image this server serves (name or id)"
    )
    retrieve_date: datetime | None = Field(
        default=None, description="nothing is sent before; absent: now"
    )
    max_parallel: int = Field(default=5, ge=1, le=10000, description="chargers updating at once")
    retries: int | None = Field(default=None, ge=0)
    retry_interval: int | None = Field(default=None, ge=0)


class CampaignTarget(BaseModel):
    charger_id: str
    state: str = Field(
        description="waiting, sent, Downloading, Downloaded, Installing, Installed, "
        "DownloadFailed, InstallationFailed, send_failed, timed_out or cancelled"
    )
    detail: str | None = None
    updated_at: str


class CampaignSummary(BaseModel):
    id: int
    pattern: str = Field(description="the pattern, or the charge point ids joined by commas")
    firmware: str | None = Field(description="`file #ID` or the location URL")
    retrieve_at: str
    max_parallel: int
    created_by: str
    created_at: str
    finished_at: str | None
    chargers: int
    counts: dict[str, int] = Field(description="chargers per state")


class Campaign(CampaignSummary):
    targets: list[CampaignTarget] = Field(description="every charge point's progress")


class DiagnosticsBody(_Strict):
    location: str | None = Field(
        default=None, description="absent: an upload URL of this server (one upload)"
    )
    start_time: datetime | None = None
    stop_time: datetime | None = None
    retries: int | None = Field(default=None, ge=0)
    retry_interval: int | None = Field(default=None, ge=0)


class RemoteStartBody(_Strict):
    id_tag: str = Field(min_length=1, max_length=20)
    connector_id: int | None = Field(default=None, ge=1)
    force: StrictBool = Field(
        default=False, description="send even if the server does not know the tag"
    )


class RemoteStopBody(_Strict):
    transaction_id: int


class ResetBody(_Strict):
    type: Literal["Soft", "Hard", "soft", "hard"] = Field(
        default="Soft", description="Hard needs a token with the admin scope"
    )


class UnlockBody(_Strict):
    connector_id: int = Field(ge=1)


class AvailabilityBody(_Strict):
    connector_id: int = Field(ge=0, description="0: the whole charger")
    type: Literal["Operative", "Inoperative", "operative", "inoperative"]


class GetConfigBody(_Strict):
    keys: list[str] = Field(default_factory=list, description="empty: every key")


class SetConfigBody(_Strict):
    key: str = Field(min_length=1, max_length=50)
    value: str = Field(max_length=500)


class ClearCacheBody(_Strict):
    pass


class DataTransferBody(_Strict):
    vendor_id: str = Field(min_length=1, max_length=255)
    message_id: str | None = Field(default=None, max_length=50)
    data: str | None = None


class TriggerBody(_Strict):
    requested_message: Literal[
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    ]
    connector_id: int | None = Field(default=None, ge=1)


class InstallCertificateBody(_Strict):
    certificate_type: Literal[
        "CentralSystemRootCertificate", "ManufacturerRootCertificate", "central", "manufacturer"
    ]
    certificate: str = Field(description="the root certificate, PEM", max_length=5500)


class InstalledCertificatesBody(_Strict):
    certificate_type: Literal[
        "CentralSystemRootCertificate", "ManufacturerRootCertificate", "central", "manufacturer"
    ]


class DeleteCertificateBody(_Strict):
    """CertificateHashData: hashes of the issuer's DER name and public key, serial in hex
    (`voltaro ctl certificates hash FILE` computes them)."""

    hash_algorithm: Literal["SHA256", "SHA384", "SHA512"] = "SHA256"
    issuer_name_hash: str = Field(max_length=128)
    issuer_key_hash: str = Field(max_length=128)
    serial_number: str = Field(max_length=40)


class HeldCertificate(BaseModel):
    index: int
    certificate_type: str
    hash_algorithm: str
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    source: Literal["reported", "installed"]
    at: str


class CertificateSigning(BaseModel):
    id: int
    received_at: str
    status: str
    detail: str | None
    subject: str | None
    serial_number: str | None
    not_after: str | None
    updated_at: str


class ChargerCertificates(BaseModel):
    charger_id: str
    installed: list[HeldCertificate]
    signings: list[CertificateSigning]


class ExtendedTriggerBody(_Strict):
    """ExtendedTriggerMessage (1.6 security extension)."""

    requested_message: Literal[
        "BootNotification",
        "LogStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "SignChargePointCertificate",
        "StatusNotification",
    ]
    connector_id: int | None = Field(default=None, ge=0)


class GetLogBody(_Strict):
    """GetLog (1.6 security extension)."""

    log_type: Literal["DiagnosticsLog", "SecurityLog"] = "SecurityLog"
    location: str | None = Field(
        default=None, description="absent: an upload URL of this server (one upload)"
    )
    oldest_timestamp: datetime | None = None
    latest_timestamp: datetime | None = None
    retries: int | None = Field(default=None, ge=0)
    retry_interval: int | None = Field(default=None, ge=0)


class SignedFirmwareUpdateBody(_Strict):
    """SignedUpdateFirmware (1.6 security extension): exactly one of ``location`` and
    ``file``, exactly one of ``signature`` and ``private_key`` (the key needs ``file``:
    the server signs an image it serves, uses the key once and keeps it nowhere)."""

    location: str | None = Field(default=None, description="a URL the charger fetches")
    file: str | None = Field(
        default=None, description="a firmware image this server serves (name or id)"
    )
    signing_certificate: str = Field(description="PEM certificate of the signing key")
    signature: str | None = Field(default=None, description="base64 signature of the image")
    private_key: str | None = Field(
        default=None, description="PEM private key (RSA or EC): the server signs SHA-256"
    )
    retrieve_date: datetime | None = Field(default=None, description="absent: now")
    install_date: datetime | None = None
    retries: int | None = Field(default=None, ge=0)
    retry_interval: int | None = Field(default=None, ge=0)


class LocalListVersionBody(_Strict):
    pass


class LocalListSync(_Strict):
    charge_point_ids: list[str] | None = Field(
        default=None, description="absent: every connected charge point"
    )
    full: StrictBool = Field(default=False, description="send a Full update, not the differences")


class LocalListSyncResult(BaseModel):
    charger_id: str
    result: str = Field(
        description="Accepted, up-to-date, NotSupported, Failed, VersionMismatch, refused, "
        "skipped or error"
    )
    ok: bool
    version: int | None = None
    update_type: str | None = None
    messages: int = 0
    entries: int | None = None
    detail: str = ""
    error_code: str | None = None


MAX_RESERVATION_MINUTES = 60 * 24 * 366  # a year: longer is a typo, not a reservation
MAX_INTEGER = 2**31 - 1  # OCPP integer fields are 32-bit


class ReservationCreate(_Strict):
    charge_point_id: str = Field(min_length=1)
    id_tag: str = Field(min_length=1, max_length=20)
    connector_id: int = Field(default=0, ge=0, description="0: any connector")
    expiry_date: datetime | None = None
    minutes: float | None = Field(
        default=None, gt=0, le=MAX_RESERVATION_MINUTES, description="instead of expiry_date"
    )


class ChargingProfileSet(_Strict):
    connector_id: int = Field(ge=0, le=MAX_INTEGER, description="0: the whole charger")
    profile: dict[str, Any] = Field(
        description="csChargingProfiles as in OCPP 1.6 (chargingProfileId, stackLevel, "
        "chargingProfilePurpose, chargingProfileKind, chargingSchedule, ...)"
    )


class ChargingProfileClear(_Strict):
    profile_id: int | None = Field(default=None, ge=0, le=MAX_INTEGER)
    connector_id: int | None = Field(default=None, ge=0, le=MAX_INTEGER)
    purpose: Literal["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"] | None = None
    stack_level: int | None = Field(default=None, ge=0, le=MAX_INTEGER)


class Reservation(BaseModel):
    reservation_id: int
    charger_id: str
    connector_id: int
    id_tag: str
    parent_id_tag: str | None = None
    expiry_date: str
    state: str = Field(
        description="requested, accepted, refused, failed, cancelled, used or expired"
    )
    answer: str | None = None
    error: str | None = None
    transaction_id: int | None = None
    actor: str | None = None
    created_at: str | None = None
    ended_at: str | None = None


class CircuitCharger(BaseModel):
    charger_id: str
    circuit: str
    phases: str = Field(description="charger phase=site phase, e.g. L1=L2,L2=L3,L3=L1")
    max_amps: float = Field(description="rating per phase, all connectors together")
    fallback_amps: float = Field(description="the limit it keeps offline (ChargePointMaxProfile)")
    priority: int


class Circuit(BaseModel):
    name: str
    parent: str | None = Field(description="the circuit it hangs off; null: a root (the site)")
    limit_amps: float | None = Field(description="limit per phase in A")
    limit_kw: float | None = Field(description="limit over all phases in kW")
    chargers: list[CircuitCharger]


class Circuits(BaseModel):
    circuits: list[Circuit]
    tag_priorities: dict[str, int] = Field(
        default_factory=dict, description="id tag -> priority for load management"
    )
    live: dict[str, Any] | None = Field(
        None, description="the load manager's latest allocation (docs/load-management.md)"
    )


class ExternalLoadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    circuit: str | None = Field(None, description="default: the root circuit (the site)")
    amps: float | list[float] = Field(
        description="the building's other load in A: one number (every phase) or [L1, L2, L3]"
    )
    valid_for_s: float = Field(
        300.0, description="seconds the value holds; then the fallback assumption applies"
    )


class ExternalLoad(BaseModel):
    circuit: str
    amps: list[float] | None = Field(description="the last value pushed, L1-L3")
    at: str | None
    valid_until: str | None
    state: str = Field(description="live, stale (out of date), missing (none yet) or none")
    assumed_amps: list[float] | None = Field(
        description="what the load manager subtracts from the circuit's limit, L1-L3"
    )


class ExternalLoads(BaseModel):
    external_loads: list[ExternalLoad]


# path name -> (body, OCPP action, one-line description)
COMMANDS: dict[str, tuple[type[BaseModel], str, str]] = {
    "remote-start": (RemoteStartBody, "RemoteStartTransaction", "start a session for a tag"),
    "remote-stop": (RemoteStopBody, "RemoteStopTransaction", "stop a session"),
    "reset": (ResetBody, "Reset", "reboot the charger (Hard needs the admin scope)"),
    "unlock": (UnlockBody, "UnlockConnector", "unlock a connector"),
    "availability": (AvailabilityBody, "ChangeAvailability", "make a connector (in)operative"),
    "get-config": (GetConfigBody, "GetConfiguration", "read configuration keys"),
    "set-config": (
        SetConfigBody,
        "ChangeConfiguration",
        "change a configuration key (needs the admin scope)",
    ),
    "clear-cache": (ClearCacheBody, "ClearCache", "clear the charger's authorization cache"),
    "data-transfer": (DataTransferBody, "DataTransfer", "vendor-specific data"),
    "trigger": (TriggerBody, "TriggerMessage", "ask the charger to send a message"),
    "trigger-ext": (
        ExtendedTriggerBody,
        "ExtendedTriggerMessage",
        "ask the charger to send a message, e.g. SignChargePointCertificate",
    ),
    "local-list-version": (
        LocalListVersionBody,
        "GetLocalListVersion",
        "the version of the charger's local authorization list",
    ),
    "install-certificate": (
        InstallCertificateBody,
        "InstallCertificate",
        "install a root certificate on the charger (needs the admin scope)",
    ),
    "installed-certificates": (
        InstalledCertificatesBody,
        "GetInstalledCertificateIds",
        "the root certificates the charger holds of one type (stored for GET certificates)",
    ),
    "delete-certificate": (
        DeleteCertificateBody,
        "DeleteCertificate",
        "delete a certificate on the charger by its hash data (needs the admin scope)",
    ),
}
