"""One frozen settings object, loaded once: defaults < TOML file < VOLTARO_* env < flags.

Every setting has one name used everywhere: the dataclass field, the TOML key, the
environment variable (``VOLTARO_`` + upper case) and the CLI flag (``--`` + dashes).
A bad value raises :class:`SettingsError` naming the setting; the CLI prints it as one
line and exits non-zero.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from voltaro.domain.circuits import CircuitConfig, CircuitError, config_from_toml
from voltaro.domain.load_allocation import PolicyMode
from voltaro.domain.site_limits import ScheduleEntry, schedule_from_toml

ENV_PREFIX = "VOLTARO_"


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the setting.

    ``setting`` is the setting's name (when there is one), so that the loader can add
    where the value came from (flag, environment variable or TOML file).
    """

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


def _choices(enum: type[StrEnum], raw: object) -> StrEnum:
    text = str(raw).strip().lower()
    for member in enum:
        if member.value.lower() == text:
            return member
    raise ValueError(f"{raw!r} is not one of {', '.join(m.value for m in enum)}")


class UnknownChargers(StrEnum):
    """What to do with a charge point id that is not registered (see docs/operations.md)."""

    REJECT = "reject"  # HTTP 404 at the handshake (OCPP-J 1.6 §3.2, errata 3.68)
    PENDING = "pending"  # register it and answer BootNotification Pending until accepted
    ACCEPT = "accept"  # register and accept (lab and test benches only)


class ApiScope(StrEnum):
    """HTTP API token scopes, the same split as the control socket's roles."""

    # GET /metrics and nothing else: the token a Prometheus server keeps in its
    # configuration reads no id tags, sessions or charger data (docs/metrics.md).
    METRICS = "metrics"
    READ = "read"  # GETs (viewer); /metrics too
    OPERATE = "operate"  # id tags, commands, closing sessions (operator)
    ADMIN = "admin"  # also hard reset and ChangeConfiguration (admin)

    @property
    def rank(self) -> int:
        return {"metrics": -1, "read": 0, "operate": 1, "admin": 2}[self.value]


class LogFormat(StrEnum):
    TEXT = "text"  # one line per event: time, level, logger, message [charger context]
    KV = "kv"  # logfmt: key=value pairs (time, level, logger, charger_id, message_id, msg)
    JSON = "json"  # one JSON object per line, for log shippers


@dataclass(frozen=True, slots=True)
class ApiToken:
    token: str
    scope: ApiScope
    name: str = ""


SYSTEM_CONTROL_DIR = Path("/run/voltaro")


def default_control_socket() -> str:
    """The control socket lives in a runtime directory owned by the service user.

    The system server's (root, or the systemd unit's RuntimeDirectory=voltaro) is
    /run/voltaro; when that directory exists every user looks there, so operators in
    the control group find the system server without --socket. Otherwise a per-user
    server: $XDG_RUNTIME_DIR/voltaro, else /tmp/voltaro-UID (checked: ours, 0750).
    """
    if os.geteuid() == 0 or SYSTEM_CONTROL_DIR.is_dir():
        return str(SYSTEM_CONTROL_DIR / "control.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return str(Path(runtime) / "voltaro" / "control.sock")
    return f"/tmp/voltaro-{os.geteuid()}/control.sock"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    # --- OCPP listener -------------------------------------------------------------
    host: str = "0.0.0.0"
    port: int = 9000
    # wss:// (security profiles 2 and 3, docs/security.md): off unless tls_port is set.
    # It listens on ``host`` next to ws:// on ``port``; SIGHUP reloads the files.
    tls_port: int | None = None
    tls_certfile: str = ""  # PEM: the server certificate (and its chain)
    tls_keyfile: str = ""  # PEM private key; empty: it is in tls_certfile
    tls_client_ca: str = ""  # PEM CA bundle for client certificates (profile 3)
    # Charger certificates (SignCertificate, docs/security.md): a local CA (its PEM
    # certificate and key, `voltaro ca init`) or a hook command that signs (CSR on
    # stdin, the chain in PEM on stdout) within ca_hook_timeout seconds.
    ca_certfile: str = ""
    ca_keyfile: str = ""
    ca_hook: str = ""
    ca_hook_timeout: float = 30.0
    certificate_days: int = 365  # validity of a certificate the local CA signs
    # The O (organisation) a profile 3 client certificate and a CSR must carry; empty:
    # not checked (the whitepaper has the CPO's name there).
    certificate_organization: str = ""
    unknown_chargers: UnknownChargers = UnknownChargers.REJECT
    # Accept a WebSocket upgrade without Sec-WebSocket-Protocol for every charger
    # (quirk Q1); per-charger opt-in is the charger's allow_no_subprotocol flag.
    allow_missing_subprotocol: bool = False
    max_message_size: int = 65536
    handshake_timeout: float = 10.0
    ping_interval: float = 60.0  # 0 disables server pings
    ping_timeout: float = 30.0
    max_connections: int = 20000  # lowered at start to fit the open-file limit
    max_pending_per_ip: int = 20  # sockets per source address not yet upgraded
    call_timeout: float = 30.0  # how long we wait for a charger to answer our CALL
    send_timeout: float = 10.0  # a send blocked longer: the charger stopped reading
    # A command waiting longer for the charger's earlier commands is given up, unsent.
    command_queue_timeout: float = 30.0
    # Abuse limits (docs/security.md): protocol errors per window before a 1008 close,
    # and how long that identity is then refused (HTTP 429).
    protocol_error_limit: int = 100  # 0 disables
    protocol_error_window: float = 60.0
    abuse_backoff: float = 60.0
    # Failed Basic-auth attempts allowed per minute (burst), per (id, source address)
    # and per source address; beyond them HTTP 429 without running the KDF.
    auth_failures_per_identity: int = 5
    auth_failures_per_source: int = 20
    heartbeat_interval: int = 300  # BootNotification.conf interval when Accepted
    boot_retry_interval: int = 60  # BootNotification.conf interval when Pending/Rejected
    # --- Per-charger health (issue 19; docs/operations.md "Charger health") -----------
    # Flagged in the console's attention list: more connections than this in a clock
    # hour (this one or the one before) is flapping; a clock further off than this
    # many seconds is drifting; heartbeats whose mean or spread is off the interval by
    # more than this share are irregular.
    health_flapping_connects_per_hour: int = 6
    health_drift_seconds: float = 120.0
    health_heartbeat_tolerance: float = 0.5
    allow_concurrent_tx: bool = False  # False: ConcurrentTx for a tag already charging
    # --- Database ------------------------------------------------------------------
    database_url: str = "sqlite:///voltaro.db"
    db_pool_size: int = 8
    # How long a charger message may wait to be committed (queue wait and retries
    # together) before the charger gets a CALLERROR it retries; never a CALLRESULT.
    db_retry_seconds: float = 5.0
    # Group commit (issue 14): charger messages arriving within this window (or up to
    # db_batch_max of them) share one database transaction; each is answered after it.
    db_batch_window: float = 0.002
    db_batch_max: int = 64
    db_outage_log_interval: float = 30.0  # one summary line per interval during an outage
    connection_reconcile_interval: float = 60.0  # connected flags vs. live connections
    frame_log: bool = True
    frame_log_retention_days: int = 30
    # Per-charger frame-log budget (10 s of burst); beyond the rate frames are dropped,
    # beyond the bytes they are stored truncated. 0 disables the budget.
    frame_log_rate: float = 20.0
    frame_log_bytes_per_second: int = 32768
    frame_log_max_rows: int = 2_000_000  # global cap, oldest evicted first; 0 = no cap
    # --- DataTransfer from chargers: vendorId -> accepted messageIds ("*" = any) ---
    data_transfer_vendors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # --- Control socket (console and `voltaro ctl`) ---------------------------------
    control_socket: str = field(default_factory=default_control_socket)
    control_max_clients: int = 32
    control_queue_size: int = 1024
    viewer_groups: tuple[str, ...] = ("voltaro-view",)
    operator_groups: tuple[str, ...] = ("voltaro-ops",)
    admin_groups: tuple[str, ...] = ("voltaro-admin",)
    # The group that owns the control socket (so its members may connect); empty: the
    # server's own group. The roles still come from the *_groups settings above.
    control_group: str = ""
    # Raw OCPP frames (chargers.frames, subscribe with frames) are for operators and
    # admins; true lets the viewer role read them too (issue 15: secrets are hidden
    # in frames anyway, but frames carry id tags and everything a charger says).
    viewer_frames: bool = False
    # --- HTTP API ------------------------------------------------------------------
    http_enabled: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    api_tokens: tuple[ApiToken, ...] = ()
    # --- Files served to and received from chargers (docs/firmware.md) ----------------
    # The base URL chargers reach this server's HTTP port at, e.g. http://192.0.2.10:8080.
    # Empty: http://http_host:http_port (refused when http_host is a wildcard address;
    # 127.0.0.1 reaches only chargers on this machine).
    http_public_base: str = ""
    data_dir: str = "voltaro-data"  # firmware images and uploaded files live here
    firmware_max_bytes: int = 256 * 1024 * 1024
    upload_max_bytes: int = 64 * 1024 * 1024
    # All files under data_dir together; an upload that would pass it is refused like
    # one that meets a full disk (HTTP 507, nothing kept). 0: no quota but the disk's.
    data_dir_max_bytes: int = 0
    # Files chargers uploaded (diagnostics, security logs) older than this many days are
    # deleted, from disk and from the list; 0 keeps them. Firmware images are never
    # deleted by age: `voltaro ctl firmware remove` does that.
    upload_retention_days: int = 90
    # How long a file URL handed to a charger stays valid (a download's from its
    # retrieveDate); a URL is also spent by the first complete transfer.
    file_url_ttl: float = 86400.0
    # Firmware campaigns: how often the runner looks (it also wakes when one is made),
    # and how long a charger may stay without a final firmware status before it is
    # given up (its slot goes to the next charger).
    campaign_poll: float = 5.0
    campaign_target_timeout: float = 7200.0
    # --- Site load management (issue 17, docs/load-management.md) -------------------
    # [[circuits]] tables: the circuit tree and the chargers on it, written to the
    # database at start (ctl circuits changes the rest). No circuits: no load management.
    circuits: CircuitConfig = field(default_factory=CircuitConfig)
    load_policy: PolicyMode = PolicyMode.EQUAL  # equal | priority
    load_min_amps: float = 6.0  # below it a session is parked at 0 A (IEC 61851-1)
    load_rotation_seconds: float = 900.0  # a parked session's turn comes after this
    load_headroom_amps: float = 2.0  # above a car's draw, so it can ramp up
    load_interval: float = 15.0  # recompute at least this often (seconds)
    load_hysteresis_amps: float = 1.0  # a limit is sent again only when it moves more
    load_voltage: float = 230.0  # nominal phase-to-neutral voltage for kW limits
    # [[load_schedule]] tables (circuit, days, from, to local time, limit_amps): a
    # circuit's limit while an entry is in force is the lower of its own and the entry's.
    load_schedule: tuple[ScheduleEntry, ...] = ()
    # The building's other load (PUT /site/external-load): once a pushed value is older
    # than its validity it is assumed to be the higher of that value and this, per
    # phase; circuits in external_load_circuits assume this before their first value.
    external_load_fallback_amps: float = 0.0
    external_load_circuits: tuple[str, ...] = ()
    # The lease of each charger's ChargePointMaxProfile: its rating for this long from
    # each renewal (every third of it while connected), then its fallback limit, on its
    # own. An offline charger keeps its sessions' last limits at most this long.
    load_fallback_lease_seconds: int = 120
    # id tag -> priority ([load_tag_priorities] "FLEET-01" = 2): a session gets the
    # higher of its tag's and its charger's; written to the database at start.
    load_tag_priorities: Mapping[str, int] = field(default_factory=dict)
    # --- Local Authorization Lists (docs/local-lists-and-reservations.md) -------------
    # A charger that connects or boots (Accepted) is asked GetLocalListVersion this many
    # seconds later and, when LocalAuthListEnabled is true and it is behind, sent the
    # update (Differential when it holds what we last gave it, else Full).
    local_list_sync_on_connect: bool = True
    local_list_sync_delay: float = 2.0
    # --- Several nodes on one PostgreSQL (issue 18, docs/scaling.md) -----------------
    # cluster = true: this process is one node of several sharing database_url (which
    # must be PostgreSQL). Each node has a unique node_id and a lease renewed every
    # node_lease_seconds / 3 against the database clock; a node that cannot renew in time
    # fences itself (sends no more commands, closes its chargers with 1012).
    cluster: bool = False
    node_id: str = ""  # unique per node; empty: the host name (cluster = true only)
    node_lease_seconds: float = 15.0
    node_address: str = ""  # how operators reach this node (shown by ctl status)
    # Consoles on every node see every charger's events through the cluster_events
    # outbox (docs/scaling.md): rows older than cluster_events_retention seconds are
    # trimmed; up to cluster_events_buffer events wait while the database is away (then
    # the newest are dropped and consoles on other nodes resync); each node reads the
    # outbox on every NOTIFY and at least every cluster_events_poll seconds.
    cluster_events_retention: float = 3600.0
    cluster_events_buffer: int = 10000
    cluster_events_poll: float = 5.0
    # --- Process -------------------------------------------------------------------
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.TEXT
    shutdown_grace: float = 5.0


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _coerce(name: str, kind: Any, raw: object) -> object:
    """Turn a TOML/env/flag value into the field's type, or raise naming the setting."""
    try:
        if kind in (bool, "bool"):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {raw!r}")
        if kind in (int, "int"):
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
            text = str(raw).strip()
            if isinstance(raw, bool) or not text.lstrip("+-").isdigit():
                raise ValueError(f"expected a whole number, got {raw!r}")
            return int(text)
        if kind in ("int | None",):
            if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "off")):
                return None
            return _coerce(name, "int", raw)
        if kind in (float, "float"):
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return float(raw)
            try:
                if isinstance(raw, bool):
                    raise ValueError
                return float(str(raw).strip())
            except ValueError:
                raise ValueError(f"expected a number of seconds, got {raw!r}") from None
        if kind in (str, "str"):
            if not isinstance(raw, str):
                raise ValueError(f"expected a string, got {raw!r}")
            return raw
        if kind in ("UnknownChargers",):
            return _choices(UnknownChargers, raw)
        if kind in ("LogFormat",):
            return _choices(LogFormat, raw)
        if kind in ("PolicyMode",):
            return _choices(PolicyMode, raw)
        if kind in ("CircuitConfig",):
            if isinstance(raw, CircuitConfig):
                return raw
            try:
                return config_from_toml(raw)
            except CircuitError as exc:
                raise ValueError(str(exc)) from None
        if kind in ("tuple[ScheduleEntry, ...]",):
            try:
                return schedule_from_toml(raw)
            except CircuitError as exc:
                raise ValueError(str(exc)) from None
        if kind in ("tuple[str, ...]",):
            if isinstance(raw, str):
                return tuple(p.strip() for p in raw.split(",") if p.strip())
            if isinstance(raw, list | tuple) and all(isinstance(x, str) for x in raw):
                return tuple(raw)
            raise ValueError(f"expected a list of strings, got {raw!r}")
        if kind in ("Mapping[str, int]",):
            return _tag_priorities(raw)
        if kind in ("Mapping[str, tuple[str, ...]]",):
            return _vendors(raw)
        if kind in ("tuple[ApiToken, ...]",):
            return _tokens(raw)
    except ValueError as exc:
        raise SettingsError(f"setting {name}: {exc}", name) from None
    raise SettingsError(f"setting {name}: unsupported type {kind!r}", name)


def _vendors(raw: object) -> Mapping[str, tuple[str, ...]]:
    # TOML: [data_transfer_vendors] com.acme = ["Ping", "Stats"]   env: "com.acme:Ping|Stats,x:*"
    if isinstance(raw, str):
        out: dict[str, tuple[str, ...]] = {}
        for part in filter(None, (p.strip() for p in raw.split(","))):
            vendor, _, ids = part.partition(":")
            out[vendor.strip()] = tuple(i for i in ids.split("|") if i) or ("*",)
        return out
    if isinstance(raw, Mapping):
        result: dict[str, tuple[str, ...]] = {}
        for vendor, ids in raw.items():
            if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
                raise ValueError(f"vendor {vendor!r} needs a list of message ids")
            result[str(vendor)] = tuple(ids) or ("*",)
        return result
    raise ValueError(f"expected a table of vendorId = [messageIds], got {raw!r}")


def _tag_priorities(raw: object) -> Mapping[str, int]:
    # TOML: [load_tag_priorities] "FLEET-01" = 2     env: "FLEET-01:2,BOSS:3"
    pairs: list[tuple[str, object]]
    if isinstance(raw, str):
        pairs = []
        for part in filter(None, (p.strip() for p in raw.split(","))):
            name, sep, number = part.rpartition(":")
            if not sep or not name.strip():
                raise ValueError("expected TAG:PRIORITY, separated by commas")
            pairs.append((name.strip(), number.strip()))
    elif isinstance(raw, Mapping):
        pairs = [(str(k), v) for k, v in raw.items()]
    else:
        raise ValueError(f"expected a table of id tag = priority, got {raw!r}")
    out: dict[str, int] = {}
    for tag, given in pairs:
        text = str(given).strip()
        if isinstance(given, bool) or not text.lstrip("+-").isdigit():
            raise ValueError(f"id tag {tag}: priority must be a whole number")
        if not tag.strip() or len(tag.strip()) > 64:
            raise ValueError("an id tag is 1 to 64 characters")
        out[tag.strip()] = int(text)
    return out


def _scope(raw: object) -> ApiScope:
    scope = _choices(ApiScope, raw)
    assert isinstance(scope, ApiScope)
    return scope


def _tokens(raw: object) -> tuple[ApiToken, ...]:
    # TOML: api_tokens = [{token = "...", scope = "read", name = "billing"}]
    # env:  VOLTARO_API_TOKENS="billing:read:TOKEN1,operate:TOKEN2" (NAME:SCOPE:TOKEN or
    # SCOPE:TOKEN; an unnamed token is named by its scope and a fingerprint in the audit)
    items: list[ApiToken] = []
    if isinstance(raw, str):
        scopes = {s.value for s in ApiScope}
        for part in filter(None, (p.strip() for p in raw.split(","))):
            fields_ = part.split(":", 2)
            if len(fields_) == 3 and fields_[1].lower() in scopes and fields_[0]:
                name, scope, token = fields_
            elif len(fields_) >= 2:
                name, (scope, token) = "", part.split(":", 1)
            else:
                raise ValueError("expected NAME:SCOPE:TOKEN or SCOPE:TOKEN, separated by commas")
            if not token:
                raise ValueError("expected NAME:SCOPE:TOKEN or SCOPE:TOKEN, separated by commas")
            items.append(ApiToken(token=token, scope=_scope(scope), name=name))
    elif isinstance(raw, list | tuple):
        for entry in raw:
            if isinstance(entry, ApiToken):
                items.append(entry)
                continue
            if not isinstance(entry, Mapping) or "token" not in entry:
                raise ValueError("each API token needs a token and a scope")
            items.append(
                ApiToken(
                    token=str(entry["token"]),
                    scope=_scope(entry.get("scope", "read")),
                    name=str(entry.get("name", "")),
                )
            )
    else:
        raise ValueError(f"expected a list of tokens, got {raw!r}")
    for item in items:
        if len(item.token) < 16:
            raise ValueError("API tokens must be at least 16 characters long")
    return tuple(items)


def _validate(s: Settings) -> None:
    def bad(name: str, why: str) -> SettingsError:
        return SettingsError(f"setting {name}: {why}", name.split("/")[0])

    for name in ("port", "http_port", "tls_port"):
        value = getattr(s, name)
        if value is not None and not 0 <= value <= 65535:
            raise bad(name, f"{value} is not a TCP port (0-65535)")
    if s.tls_port is not None and not s.tls_certfile:
        raise bad("tls_certfile", "tls_port is set: the server certificate (PEM) is required")
    if bool(s.ca_certfile) != bool(s.ca_keyfile):
        raise bad("ca_keyfile" if s.ca_certfile else "ca_certfile", "set both CA files or neither")
    if s.ca_hook and s.ca_certfile:
        raise bad("ca_hook", "use either the local CA (ca_certfile, ca_keyfile) or ca_hook")
    if s.ca_hook_timeout <= 0:
        raise bad("ca_hook_timeout", "must be greater than 0")
    if s.certificate_days < 1:
        raise bad("certificate_days", "must be at least 1")
    if s.max_message_size < 1024:
        raise bad("max_message_size", "must be at least 1024 bytes")
    for name in ("protocol_error_limit", "abuse_backoff"):
        if getattr(s, name) < 0:
            raise bad(name, "must not be negative")
    for name in ("auth_failures_per_identity", "auth_failures_per_source"):
        if getattr(s, name) < 1:
            raise bad(name, "must be at least 1")
    for name in (
        "handshake_timeout",
        "call_timeout",
        "ping_timeout",
        "shutdown_grace",
        "send_timeout",
        "command_queue_timeout",
        "protocol_error_window",
        "db_outage_log_interval",
        "connection_reconcile_interval",
        "health_drift_seconds",
        "health_heartbeat_tolerance",
    ):
        if getattr(s, name) <= 0:
            raise bad(name, "must be greater than 0")
    for name in ("ping_interval", "db_retry_seconds", "db_batch_window"):
        if getattr(s, name) < 0:
            raise bad(name, "must not be negative")
    for name in (
        "heartbeat_interval",
        "health_flapping_connects_per_hour",
        "max_connections",
        "db_pool_size",
        "max_pending_per_ip",
        "db_batch_max",
    ):
        if getattr(s, name) < 1:
            raise bad(name, "must be at least 1")
    for name in ("frame_log_rate", "frame_log_bytes_per_second", "frame_log_max_rows"):
        if getattr(s, name) < 0:
            raise bad(name, "must not be negative")
    if s.boot_retry_interval < 0 or s.frame_log_retention_days < 0:
        raise bad("boot_retry_interval/frame_log_retention_days", "must not be negative")
    if s.control_max_clients < 1 or s.control_queue_size < 16:
        raise bad("control_max_clients/control_queue_size", "too small")
    if s.log_level.upper() not in _LOG_LEVELS:
        raise bad("log_level", f"{s.log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
    if s.control_group and not all(c.isalnum() or c in "-_." for c in s.control_group):
        raise bad("control_group", f"{s.control_group!r} is not a Unix group name")
    for name in ("firmware_max_bytes", "upload_max_bytes"):
        if getattr(s, name) < 1:
            raise bad(name, "must be at least 1")
    if s.data_dir_max_bytes < 0:
        raise bad("data_dir_max_bytes", "must not be negative (0: no quota)")
    if s.upload_retention_days < 0:
        raise bad("upload_retention_days", "must not be negative (0 keeps uploads)")
    for name in ("file_url_ttl", "campaign_poll", "campaign_target_timeout"):
        if getattr(s, name) <= 0:
            raise bad(name, "must be greater than 0")
    for name in ("load_interval", "load_voltage", "load_rotation_seconds"):
        if getattr(s, name) <= 0:
            raise bad(name, "must be greater than 0")
    if s.load_fallback_lease_seconds < 3:
        raise bad("load_fallback_lease_seconds", "must be at least 3 (renewed every third)")
    for name in (
        "load_min_amps",
        "load_headroom_amps",
        "load_hysteresis_amps",
        "external_load_fallback_amps",
    ):
        if getattr(s, name) < 0:
            raise bad(name, "must not be negative")
    if s.local_list_sync_delay < 0:
        raise bad("local_list_sync_delay", "must not be negative")
    if s.http_public_base and not s.http_public_base.startswith(("http://", "https://")):
        raise bad("http_public_base", "must start with http:// or https://")
    if not s.database_url.startswith(("sqlite://", "postgresql")):
        raise bad("database_url", "must start with sqlite:// or postgresql://")
    if s.node_lease_seconds < 3:
        raise bad("node_lease_seconds", "must be at least 3 (renewed every third of it)")
    if s.cluster_events_retention < 60:
        raise bad("cluster_events_retention", "must be at least 60 seconds")
    if s.cluster_events_buffer < 100:
        raise bad("cluster_events_buffer", "must be at least 100")
    if s.cluster_events_poll <= 0:
        raise bad("cluster_events_poll", "must be greater than 0")
    if s.node_id and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", s.node_id):
        raise bad("node_id", f"{s.node_id!r}: letters, digits, _ . - only, at most 63")
    if s.cluster and not s.database_url.startswith("postgresql"):
        raise bad(
            "cluster",
            "several nodes need a shared PostgreSQL database (database_url = "
            "postgresql+psycopg://...); SQLite is single-node",
        )
    if len(s.control_socket.encode()) > 100:
        raise bad("control_socket", "path too long for a Unix socket (max 100 bytes)")


def _field_kinds() -> dict[str, Any]:
    return {f.name: f.type for f in fields(Settings)}


def load_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Build the settings: defaults, then the TOML file, then VOLTARO_* variables, then flags.

    Raises:
        SettingsError: a file that cannot be read, an unknown key, or a bad value.
    """
    kinds = _field_kinds()
    values: dict[str, object] = {}
    origins: dict[str, str] = {}
    env = os.environ if environ is None else environ
    try:
        return _load(kinds, values, origins, env, config_file, overrides)
    except SettingsError as exc:
        origin = origins.get(exc.setting or "")
        if origin is None:
            raise
        raise SettingsError(f"{exc} (from {origin})", exc.setting) from None


def _load(
    kinds: dict[str, Any],
    values: dict[str, object],
    origins: dict[str, str],
    env: Mapping[str, str],
    config_file: str | Path | None,
    overrides: Mapping[str, object] | None,
) -> Settings:
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(f"setting config: cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"setting config: {path} is not valid TOML: {exc}") from None
        section = data.get("voltaro", data)
        if not isinstance(section, dict):
            raise SettingsError("setting config: [voltaro] must be a table")
        for table in ("circuits", "load_schedule", "load_tag_priorities"):
            if section is not data and table in data:
                # [[circuits]] next to a [voltaro] table (TOML cannot nest it easily there).
                section = {**section, table: data[table]}
        for key, raw in section.items():
            if key not in kinds:
                raise SettingsError(
                    f"setting {key}: unknown setting in {path} (the settings table is in "
                    "README.md, Configuration)"
                )
            origins[key] = f"{path}"
            values[key] = _coerce(key, kinds[key], raw)
    for key, kind in kinds.items():
        raw_env = env.get(ENV_PREFIX + key.upper())
        if raw_env is not None:
            origins[key] = f"environment variable {ENV_PREFIX}{key.upper()}"
            values[key] = _coerce(key, kind, raw_env)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in kinds:
            raise SettingsError(f"setting {key}: unknown setting")
        origins[key] = f"flag --{key.replace('_', '-')}"
        values[key] = _coerce(key, kinds[key], raw)
    if "log_level" in values:
        values["log_level"] = str(values["log_level"]).upper()
    settings = Settings(**values)  # type: ignore[arg-type]
    _validate(settings)
    return settings


def replace(settings: Settings, **changes: object) -> Settings:
    """A validated copy with some settings changed (tests and the composition root)."""
    new = dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    _validate(new)
    return new
