"""Units of work for charge points, connectors and their status (OCPP 1.6 §4.2, §4.9)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from voltaro.domain.credentials import hash_password
from voltaro.domain.local_list import KEY_ENABLED
from voltaro.domain.model import (
    Availability,
    BootDecision,
    BootRequest,
    Charger,
    ChargerIdentity,
    Connector,
    ConnectorStatus,
    RegistrationStatus,
    StatusNotificationRequest,
    Transaction,
    TransactionState,
)
from voltaro.domain.timestamps import utc_now
from voltaro.store import transactions
from voltaro.store.errors import AlreadyExists
from voltaro.store.group_commit import BATCHED, BatchHooks, flush_kept
from voltaro.store.schema import (
    ChargePointRow,
    ConfigurationRow,
    ConnectorRow,
    StatusHistoryRow,
    TransactionRow,
)

# The OCPP 1.6 §9.1.10 configuration key (CiString, the spec's spelling).
HEARTBEAT_INTERVAL = "HeartbeatInterval"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerAuth:
    """What the listener needs at the handshake."""

    charger_id: str
    registration: RegistrationStatus
    password_hash: str | None
    allow_no_subprotocol: bool
    security_profile: int = 0
    pending_password_hashes: tuple[str, ...] = ()
    # chargePointSerialNumber from its last BootNotification: a profile 3 certificate's
    # CN may hold it instead of the id (voltaro.domain.certificates.identity_matches).
    serial_number: str | None = None


# How many unsettled provisioned passwords a charger may have: each lost answer to
# ChangeConfiguration AuthorizationKey adds one; the oldest is forgotten beyond this.
MAX_PENDING_PASSWORDS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRecorded:
    """What storing a StatusNotification changed: the connector, and the transactions
    it ended (interrupted: Available after a reboot, issue 10 §2.2)."""

    connector: Connector
    interrupted: tuple[Transaction, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusEntry:
    connector_id: int
    status: str
    error_code: str | None
    info: str | None
    at: datetime


def _connector(row: ConnectorRow) -> Connector:
    status = None
    if row.status is not None:
        try:
            status = ConnectorStatus(row.status)
        except ValueError:
            status = None
    return Connector(
        charger_id=row.charger_id,
        connector_id=row.connector_id,
        status=status,
        error_code=row.error_code,
        info=row.info,
        vendor_id=row.vendor_id,
        vendor_error_code=row.vendor_error_code,
        availability=Availability(row.availability),
        status_at=row.status_at,
        scheduled_availability=(
            Availability(row.scheduled_availability) if row.scheduled_availability else None
        ),
    )


def _charger(row: ChargePointRow, connectors: Iterable[ConnectorRow] = ()) -> Charger:
    identity = None
    if row.vendor is not None or row.model is not None:
        identity = ChargerIdentity(
            vendor=row.vendor or "",
            model=row.model or "",
            serial_number=row.serial_number,
            charge_box_serial_number=row.charge_box_serial_number,
            firmware_version=row.firmware_version,
            iccid=row.iccid,
            imsi=row.imsi,
            meter_type=row.meter_type,
            meter_serial_number=row.meter_serial_number,
        )
    return Charger(
        charger_id=row.charger_id,
        registration=RegistrationStatus(row.registration),
        identity=identity,
        has_password=row.password_hash is not None,
        allow_no_subprotocol=row.allow_no_subprotocol,
        security_profile=row.security_profile or 0,
        password_pending=bool(_pending(row)),
        connected=row.connected,
        last_seen=row.last_seen,
        last_boot=row.last_boot,
        created_at=row.created_at,
        connectors=tuple(_connector(c) for c in sorted(connectors, key=lambda c: c.connector_id)),
        heartbeat_interval=row.heartbeat_interval,
        list_group=row.list_group,
    )


def get_charger(s: Session, charger_id: str) -> Charger | None:
    row = s.get(ChargePointRow, charger_id)
    if row is None:
        return None
    connectors = s.scalars(select(ConnectorRow).where(ConnectorRow.charger_id == charger_id))
    return _charger(row, connectors)


def list_chargers(s: Session) -> list[Charger]:
    rows = s.scalars(select(ChargePointRow).order_by(ChargePointRow.charger_id)).all()
    by_charger: dict[str, list[ConnectorRow]] = {}
    for c in s.scalars(select(ConnectorRow)):
        by_charger.setdefault(c.charger_id, []).append(c)
    return [_charger(r, by_charger.get(r.charger_id, ())) for r in rows]


def add_charger(
    s: Session,
    charger_id: str,
    *,
    password: bytes | None = None,
    allow_no_subprotocol: bool = False,
    registration: RegistrationStatus = RegistrationStatus.ACCEPTED,
    security_profile: int | None = None,
) -> Charger:
    """``security_profile`` None: 1 with a password, else 0."""
    if s.get(ChargePointRow, charger_id) is not None:
        raise AlreadyExists(f"charger {charger_id} exists already")
    row = ChargePointRow(
        charger_id=charger_id,
        registration=registration.value,
        password_hash=hash_password(password) if password is not None else None,
        allow_no_subprotocol=allow_no_subprotocol,
        security_profile=(
            security_profile if security_profile is not None else (1 if password is not None else 0)
        ),
        connected=False,
        rebooting=False,
        created_at=utc_now(),
    )
    s.add(row)
    s.flush()
    return _charger(row)


def remove_charger(s: Session, charger_id: str) -> bool:
    row = s.get(ChargePointRow, charger_id)
    if row is None:
        return False
    s.delete(row)  # connectors and configuration cascade; transactions are kept (billing)
    return True


def set_registration(s: Session, charger_id: str, status: RegistrationStatus) -> Charger | None:
    row = s.get(ChargePointRow, charger_id)
    if row is None:
        return None
    row.registration = status.value
    s.flush()
    return get_charger(s, charger_id)


def set_password(s: Session, charger_id: str, password: bytes | None) -> bool:
    row = s.get(ChargePointRow, charger_id)
    if row is None:
        return False
    row.password_hash = hash_password(password) if password is not None else None
    row.pending_password_hashes = None
    return True


def _pending(row: ChargePointRow) -> tuple[str, ...]:
    return _pending_of(row.pending_password_hashes)


def _pending_of(stored: str | None) -> tuple[str, ...]:
    if not stored:
        return ()
    try:
        hashes = json.loads(stored)
    except ValueError:
        return ()
    return tuple(h for h in hashes if isinstance(h, str))


def set_security_profile(s: Session, charger_id: str, profile: int) -> Charger | None:
    row = s.get(ChargePointRow, charger_id)
    if row is None:
        return None
    row.security_profile = profile
    s.flush()
    return get_charger(s, charger_id)


def set_list_group(s: Session, charger_id: str, group: str | None) -> Charger | None:
    """The group whose local list the charger gets (None: the all-chargers list)."""
    row = s.get(ChargePointRow, charger_id)
    if row is None:
        return None
    row.list_group = group
    s.flush()
    return get_charger(s, charger_id)


def add_pending_password(s: Session, charger_id: str, secret: bytes) -> str | None:
    """A password about to be sent in ChangeConfiguration AuthorizationKey: valid from
    now on next to the current one, because the charger may take it even if its answer
    is lost (TC_073). Returns its hash (None: unknown charger)."""
    row = s.get(ChargePointRow, charger_id)
    if row is None:
        return None
    password_hash = hash_password(secret)
    hashes = [*_pending(row), password_hash][-MAX_PENDING_PASSWORDS:]
    row.pending_password_hashes = json.dumps(hashes)
    return password_hash


def drop_pending_password(s: Session, charger_id: str, password_hash: str) -> None:
    """The charger refused the new password (Rejected/NotSupported): it keeps its old."""
    row = s.get(ChargePointRow, charger_id)
    if row is None:
        return
    hashes = [h for h in _pending(row) if h != password_hash]
    row.pending_password_hashes = json.dumps(hashes) if hashes else None


def confirm_password(s: Session, charger_id: str, password_hash: str) -> bool:
    """The charger logged in with a provisioned password: it becomes the only valid one
    (the old password and other unsettled ones stop working)."""
    row = s.get(ChargePointRow, charger_id)
    if row is None or password_hash not in _pending(row):
        return False
    row.password_hash = password_hash
    row.pending_password_hashes = None
    if row.security_profile == 0:
        row.security_profile = 1  # from now on it must send its password
    return True


def charger_auth(s: Session, charger_id: str) -> ChargerAuth | None:
    # Every handshake asks (a reconnect storm asks thousands of times): one cached Core
    # SELECT, no ORM identity map (issue 14 step 4).
    row = s.connection().execute(_SELECT_AUTH, {"cid": charger_id}).one_or_none()
    return None if row is None else _auth(row)


def charger_auths(s: Session, charger_ids: list[str]) -> dict[str, ChargerAuth]:
    """:func:`charger_auth` for the handshakes of one round of a connect storm (the
    registered ones only), 500 ids per query."""
    out: dict[str, ChargerAuth] = {}
    c = s.connection()
    for start in range(0, len(charger_ids), 500):
        rows = c.execute(_SELECT_AUTHS, {"cids": charger_ids[start : start + 500]})
        out.update((row.charger_id, _auth(row)) for row in rows)
    return out


def _auth(row: Any) -> ChargerAuth:
    return ChargerAuth(
        charger_id=row.charger_id,
        registration=RegistrationStatus(row.registration),
        password_hash=row.password_hash,
        allow_no_subprotocol=row.allow_no_subprotocol,
        security_profile=row.security_profile or 0,
        pending_password_hashes=_pending_of(row.pending_password_hashes),
        serial_number=row.serial_number,
    )


def register_unknown(s: Session, charger_id: str, registration: RegistrationStatus) -> Charger:
    existing = s.get(ChargePointRow, charger_id)
    if existing is not None:
        return _charger(existing)
    return add_charger(s, charger_id, registration=registration)


def register_unknowns(s: Session, wanted: Mapping[str, RegistrationStatus]) -> None:
    """:func:`register_unknown` for the first contacts of one round of a connect storm:
    one INSERT of those not registered meanwhile (another round, an operator)."""
    ids = sorted(wanted)
    c = s.connection()
    present: set[str] = set()
    for start in range(0, len(ids), 500):
        present.update(
            c.execute(
                select(_CP.c.charger_id).where(_CP.c.charger_id.in_(ids[start : start + 500]))
            )
            .scalars()
            .all()
        )
    now = utc_now()
    rows = [
        {
            "charger_id": charger_id,
            "registration": wanted[charger_id].value,
            "allow_no_subprotocol": False,
            "security_profile": 0,
            "connected": False,
            "rebooting": False,
            "created_at": now,
        }
        for charger_id in ids
        if charger_id not in present
    ]
    if rows:
        c.execute(_CP.insert(), rows)


def mark_connected(s: Session, charger_id: str, connected: bool, at: datetime) -> None:
    s.execute(
        update(ChargePointRow)
        .where(ChargePointRow.charger_id == charger_id)
        .values(connected=connected, last_seen=at)
    )


def touch(s: Session, seen: Mapping[str, datetime]) -> None:
    """Batched sign of life: every PDU counts (OCPP 1.6 §4.6, R49). Each charger gets
    its own latest time (issue 10 §2.11), never the batch's latest."""
    if not seen:
        return
    table = cast(Table, ChargePointRow.__table__)
    statement = (
        update(table)
        .where(table.c.charger_id == bindparam("seen_id"))
        .values(last_seen=bindparam("seen_at"))
    )
    s.connection().execute(
        statement,
        [{"seen_id": charger_id, "seen_at": at} for charger_id, at in sorted(seen.items())],
    )


def set_connected(s: Session, flags: Mapping[str, bool], at: datetime) -> None:
    """Write each charger's connected flag (and last_seen: a change is a sign of life)."""
    table = cast(Table, ChargePointRow.__table__)
    statement = (
        update(table)
        .where(table.c.charger_id == bindparam("flag_id"))
        .values(connected=bindparam("flag_on"), last_seen=bindparam("flag_at"))
    )
    rows = [{"flag_id": cid, "flag_on": on, "flag_at": at} for cid, on in sorted(flags.items())]
    if rows:
        s.connection().execute(statement, rows)


def reconcile_connected(s: Session, held: set[str], at: datetime) -> tuple[int, int]:
    """Make the flags equal to ``held`` (the chargers connected to this node); returns
    how many flags were cleared and how many set."""
    flagged = set(s.scalars(select(ChargePointRow.charger_id).where(ChargePointRow.connected)))
    stale, missing = flagged - held, held - flagged
    # One row at a time in charger id order, set and cleared ones together: the order
    # the group commit locks charger rows in on PostgreSQL (an IN list is locked in scan
    # order: a deadlock with a batch holding a row this wants; store/charger_owners.py).
    table = cast(Table, ChargePointRow.__table__)
    statement = (
        update(table)
        .where(table.c.charger_id == bindparam("flag_id"))
        .values(connected=bindparam("flag_on"))
    )
    rows = [{"flag_id": cid, "flag_on": cid in missing} for cid in sorted(stale | missing)]
    if rows:
        s.connection().execute(statement, rows)
    return len(stale), len(missing)


def reset_connected(s: Session) -> None:
    """At start nobody is connected (a crash may have left flags set)."""
    s.execute(update(ChargePointRow).values(connected=False))


def boot(
    s: Session, request: BootRequest, *, heartbeat_interval: int, retry_interval: int
) -> BootDecision:
    """Store a BootNotification's metadata and answer per registration (§4.2, R37-R43).

    Cached Core statements, no ORM objects: every charger of a reconnect storm boots
    (issue 14 step 4).
    """
    return _boot(s, request, heartbeat_interval, retry_interval, None)


def boot_unit(
    s: Session, request: BootRequest, heartbeat_interval: int, retry_interval: int
) -> BootDecision:
    """:func:`boot` as a group-commit unit: batch-aware (``BATCHED``).

    In a batch, the boots' charge point rows are read in one query and their writes go
    out as one executemany per statement when the batch flushes, instead of three round
    trips per charger: a reconnect storm boots every charger, and on PostgreSQL those
    round trips (each a send, a wait and a GIL hand-over) were most of the boot's cost
    (issue 14). Alone (``Database.run``, a batch's one-by-one fallback) it is
    :func:`boot`.
    """
    return _boot(s, request, heartbeat_interval, retry_interval, s.info.get(_BOOT_BATCH))


def _boot(
    s: Session,
    request: BootRequest,
    heartbeat_interval: int,
    retry_interval: int,
    batch: _BootBatch | None,
) -> BootDecision:
    c = s.connection()
    now = request.received_at
    cid = request.charger_id
    row: _BootRow | None
    if batch is not None and (cid in batch.rows or cid in batch.absent):
        row = batch.rows.get(cid)
    else:
        found = c.execute(_SELECT_BOOT, {"cid": cid}).one_or_none()
        row = None if found is None else _BootRow(*found)
        if batch is not None:
            batch.remember(cid, row)
    if row is None:
        # Removed while connected: it may not register itself again by booting.
        return BootDecision(
            status=RegistrationStatus.REJECTED, interval=retry_interval, current_time=now
        )
    ident = request.identity
    writes = _BootBatch() if batch is None else batch
    writes.updates.append(
        {
            "cid": cid,
            "b_vendor": ident.vendor,
            "b_model": ident.model,
            "b_serial_number": ident.serial_number,
            "b_charge_box_serial_number": ident.charge_box_serial_number,
            "b_firmware_version": ident.firmware_version,
            "b_iccid": ident.iccid,
            "b_imsi": ident.imsi,
            "b_meter_type": ident.meter_type,
            "b_meter_serial_number": ident.meter_serial_number,
            "now": now,
        }
    )
    status = RegistrationStatus(row.registration)
    same = (row.vendor, row.model, row.firmware_version) == (
        ident.vendor,
        ident.model,
        ident.firmware_version,
    )
    # A second boot of this charger in the same batch sees what this one stored.
    row.vendor, row.model, row.firmware_version = (
        ident.vendor,
        ident.model,
        ident.firmware_version,
    )
    if not same:
        # Other firmware (or a first boot): a LocalAuthListEnabled false or unknown that
        # it reported before may not hold now. Forgotten here, in the boot's commit, not
        # in memory: the sync on connect that would ask again can miss the charger (it
        # dropped off before the sync was due, a restart, a Pending boot), and a later
        # boot as this same firmware must still ask (issue 14, OCPP 1.6 §9.3).
        writes.forgets.append({"cid": cid, "now": now})
    interval = retry_interval
    if status is RegistrationStatus.ACCEPTED:
        # The interval an operator set on this charger survives its reboots (issue
        # 23.1).
        interval = row.heartbeat_interval or heartbeat_interval
        # An Accepted charger adopts the answer's interval (OCPP 1.6 §4.2): what we know
        # it runs now, until a GetConfiguration reports otherwise (only a key we already
        # know).
        writes.adopts.append(
            {"cid": cid, "b_key": HEARTBEAT_INTERVAL, "b_value": str(interval), "now": now}
        )
    if batch is None:
        writes.write(s)
    return BootDecision(status=status, interval=interval, current_time=now, same_identity=same)


class _BootRow:
    """What a boot reads of its charge point row (mutable: a batch's later boot of the
    same charger sees the earlier one's identity)."""

    __slots__ = ("firmware_version", "heartbeat_interval", "model", "registration", "vendor")

    def __init__(
        self,
        registration: Any,
        heartbeat_interval: int | None,
        vendor: str | None,
        model: str | None,
        firmware_version: str | None,
    ) -> None:
        self.registration = registration
        self.heartbeat_interval = heartbeat_interval
        self.vendor = vendor
        self.model = model
        self.firmware_version = firmware_version


class _BootBatch:
    """The charge point rows a batch's boots read, and their pending writes."""

    __slots__ = ("absent", "adopts", "forgets", "rows", "updates")

    def __init__(self) -> None:
        self.rows: dict[str, _BootRow] = {}
        self.absent: set[str] = set()  # looked up: no such charger
        self.updates: list[dict[str, Any]] = []
        self.forgets: list[dict[str, Any]] = []
        self.adopts: list[dict[str, Any]] = []

    def remember(self, charger_id: str, row: _BootRow | None) -> None:
        if row is None:
            self.absent.add(charger_id)
        else:
            self.rows[charger_id] = row

    def read(self, s: Session, charger_ids: list[str]) -> None:
        c = s.connection()
        for start in range(0, len(charger_ids), 500):
            chunk = charger_ids[start : start + 500]
            for found in c.execute(_SELECT_BOOTS, {"cids": chunk}):
                self.rows[found.charger_id] = _BootRow(*found[1:])
            self.absent.update(cid for cid in chunk if cid not in self.rows)

    def write(self, s: Session) -> None:
        """The pending writes, in the order one boot makes them (charger order within
        each: the batch's units run in charger order)."""
        c = s.connection()
        for statement, rows in (
            (_UPDATE_BOOT, self.updates),
            (_FORGET_LIST_DISABLED, self.forgets),
            (_ADOPT_INTERVAL, self.adopts),
        ):
            if rows:
                c.execute(statement, rows)
        self.updates, self.forgets, self.adopts = [], [], []

    def forget(self, charger_id: str) -> None:
        """Forget what was read of ``charger_id``'s row ("": every row): another kind of
        unit may change it."""
        if not charger_id:
            self.rows.clear()
            self.absent.clear()
            return
        self.rows.pop(charger_id, None)
        self.absent.discard(charger_id)


_BOOT_BATCH = "voltaro.boot_batch"


def _prepare_boots(s: Session, units: list[tuple[Any, ...]]) -> None:
    batch = _BootBatch()
    batch.read(s, sorted({request.charger_id for request, *_ in units}))
    s.info[_BOOT_BATCH] = batch


BATCHED[boot_unit] = BatchHooks(_prepare_boots, flush_kept(_BOOT_BATCH))


_CP: Table = ChargePointRow.__table__  # type: ignore[assignment]
_CONFIG: Table = ConfigurationRow.__table__  # type: ignore[assignment]
_AUTH_COLUMNS = (
    _CP.c.charger_id,
    _CP.c.registration,
    _CP.c.password_hash,
    _CP.c.allow_no_subprotocol,
    _CP.c.security_profile,
    _CP.c.pending_password_hashes,
    _CP.c.serial_number,
)
_SELECT_AUTH = select(*_AUTH_COLUMNS).where(_CP.c.charger_id == bindparam("cid"))
_SELECT_AUTHS = select(*_AUTH_COLUMNS).where(
    _CP.c.charger_id.in_(bindparam("cids", expanding=True))
)
# A boot's answer is decided from the row it reads, so the read locks it (PostgreSQL;
# SQLite has one writer): a removal or a registration change committed between the read
# and the boot's write was answered from the old row (Accepted for a removed charger).
# Locked in charger id order, the group commit's (group_commit.lock_order), FOR NO KEY
# UPDATE: the lock the boot's UPDATE takes anyway; FOR UPDATE would also block foreign
# keys' KEY SHARE locks (a connector row inserted for this charger by another writer).
_SELECT_BOOT = (
    select(
        _CP.c.registration,
        _CP.c.heartbeat_interval,
        _CP.c.vendor,
        _CP.c.model,
        _CP.c.firmware_version,
    )
    .where(_CP.c.charger_id == bindparam("cid"))
    .with_for_update(key_share=True)
)
_SELECT_BOOTS = (
    select(
        _CP.c.charger_id,
        _CP.c.registration,
        _CP.c.heartbeat_interval,
        _CP.c.vendor,
        _CP.c.model,
        _CP.c.firmware_version,
    )
    .where(_CP.c.charger_id.in_(bindparam("cids", expanding=True)))
    .order_by(_CP.c.charger_id)
    .with_for_update(key_share=True)
)
_UPDATE_BOOT = (
    update(_CP)
    .where(_CP.c.charger_id == bindparam("cid"))
    .values(
        {
            name: bindparam(f"b_{name}", type_=_CP.c[name].type)
            for name in (
                "vendor",
                "model",
                "serial_number",
                "charge_box_serial_number",
                "firmware_version",
                "iccid",
                "imsi",
                "meter_type",
                "meter_serial_number",
            )
        }
        | {
            "last_boot": bindparam("now", type_=_CP.c.last_boot.type),
            "last_seen": bindparam("now", type_=_CP.c.last_seen.type),
            "rebooting": False,
        }
    )
)
_ADOPT_INTERVAL = (
    update(_CONFIG)
    .where(
        _CONFIG.c.charger_id == bindparam("cid"),
        _CONFIG.c.key == bindparam("b_key"),
        # NULL counts as different: IS DISTINCT FROM on both dialects.
        _CONFIG.c.value.is_distinct_from(bindparam("b_value")),
    )
    .values(
        value=bindparam("b_value"), updated_at=bindparam("now", type_=_CONFIG.c.updated_at.type)
    )
)


# A reported "true" stays: a push or sync asks GetConfiguration before it sends anything.
_FORGET_LIST_DISABLED = (
    update(_CONFIG)
    .where(
        _CONFIG.c.charger_id == bindparam("cid"),
        func.lower(_CONFIG.c.key) == KEY_ENABLED.lower(),
        or_(
            _CONFIG.c.unknown.is_(True),
            func.coalesce(func.lower(func.trim(_CONFIG.c.value)), "") != "true",
        ),
    )
    .values(value=None, unknown=False, updated_at=bindparam("now", type_=_CONFIG.c.updated_at.type))
)


def record_status(s: Session, request: StatusNotificationRequest) -> StatusRecorded:
    """Current state and history per connector; nothing is refused (R75-R81).

    History is kept in the charger's time order (R80): an older notification delivered
    late goes into the history without overwriting a newer current state.
    """
    at = request.timestamp or request.received_at
    s.add(
        StatusHistoryRow(
            charger_id=request.charger_id,
            connector_id=request.connector_id,
            status=request.status.value,
            error_code=request.error_code,
            info=request.info,
            vendor_id=request.vendor_id,
            vendor_error_code=request.vendor_error_code,
            at=at,
            received_at=request.received_at,
        )
    )
    row = s.get(ConnectorRow, (request.charger_id, request.connector_id))
    if row is None:
        if s.get(ChargePointRow, request.charger_id) is None:
            return StatusRecorded(
                connector=Connector(
                    charger_id=request.charger_id,
                    connector_id=request.connector_id,
                    status=request.status,
                    error_code=request.error_code,
                )
            )
        row = ConnectorRow(
            charger_id=request.charger_id,
            connector_id=request.connector_id,
            availability=Availability.OPERATIVE.value,
        )
        s.add(row)
    if row.status_at is None or at >= row.status_at:
        _settle_scheduled_availability(row, request.status)
        row.status = request.status.value
        row.error_code = request.error_code
        row.info = request.info
        row.vendor_id = request.vendor_id
        row.vendor_error_code = request.vendor_error_code
        row.status_at = at
        row.status_received_at = request.received_at
    s.flush()
    # Available after a reboot ends a transaction whose stop was lost (issue 10 §2.2);
    # the caller announces what ended (event and log line).
    ended = transactions.apply_status(s, request)
    return StatusRecorded(connector=_connector(row), interrupted=tuple(ended))


def _settle_scheduled_availability(row: ConnectorRow, status: ConnectorStatus) -> None:
    """A Scheduled change takes effect when the charger's status shows it (§5.2, §4.9):
    Unavailable for Inoperative; any working state for Operative (Faulted says nothing)."""
    scheduled = row.scheduled_availability
    if scheduled is None:
        return
    unavailable = status is ConnectorStatus.UNAVAILABLE
    working = status not in (ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED)
    if (scheduled == Availability.INOPERATIVE.value and unavailable) or (
        scheduled == Availability.OPERATIVE.value and working
    ):
        row.availability, row.scheduled_availability = scheduled, None


def set_availability(
    s: Session,
    charger_id: str,
    connector_id: int,
    availability: Availability,
    *,
    scheduled: bool = False,
) -> None:
    """Record the availability an operator set (connector 0: the charger and all).

    ``scheduled``: the charger answered Scheduled (a transaction is running, §5.2); the
    change is kept as pending and the current availability stays until the charger's
    StatusNotification shows the new one.
    """
    targets = [connector_id]
    if connector_id == 0:
        targets += [
            c.connector_id
            for c in s.scalars(select(ConnectorRow).where(ConnectorRow.charger_id == charger_id))
        ]
    for cid in set(targets):
        row = s.get(ConnectorRow, (charger_id, cid))
        if row is None:
            if s.get(ChargePointRow, charger_id) is None:
                return
            row = ConnectorRow(
                charger_id=charger_id,
                connector_id=cid,
                availability=Availability.OPERATIVE.value,
            )
            s.add(row)
        if scheduled and row.availability != availability.value:
            row.scheduled_availability = availability.value
        else:
            row.availability, row.scheduled_availability = availability.value, None


def mark_rebooting(s: Session, charger_id: str) -> None:
    s.execute(
        update(ChargePointRow).where(ChargePointRow.charger_id == charger_id).values(rebooting=True)
    )


def status_history(
    s: Session, charger_id: str, connector_id: int | None = None, limit: int = 50
) -> list[StatusEntry]:
    query = select(StatusHistoryRow).where(StatusHistoryRow.charger_id == charger_id)
    if connector_id is not None:
        query = query.where(StatusHistoryRow.connector_id == connector_id)
    rows = s.scalars(query.order_by(StatusHistoryRow.at.desc()).limit(limit))
    return [
        StatusEntry(
            connector_id=r.connector_id,
            status=r.status,
            error_code=r.error_code,
            info=r.info,
            at=r.at,
        )
        for r in rows
    ]


def status_counts(s: Session) -> dict[str, Any]:
    total = s.scalar(select(func.count()).select_from(ChargePointRow)) or 0
    connected = (
        s.scalar(select(func.count()).select_from(ChargePointRow).where(ChargePointRow.connected))
        or 0
    )
    by_registration = dict(
        s.execute(
            select(ChargePointRow.registration, func.count()).group_by(ChargePointRow.registration)
        ).all()
    )
    by_status = dict(
        s.execute(
            select(ConnectorRow.status, func.count())
            .where(ConnectorRow.connector_id > 0, ConnectorRow.status.is_not(None))
            .group_by(ConnectorRow.status)
        ).all()
    )
    active = (
        s.scalar(
            select(func.count())
            .select_from(TransactionRow)
            .where(TransactionRow.state == TransactionState.ACTIVE.value)
        )
        or 0
    )
    return {
        "chargers": {"total": total, "connected": connected, "by_registration": by_registration},
        "connectors_by_status": by_status,
        "active_transactions": active,
    }
