"""Units of work for transactions and meter values (OCPP 1.6 §3.7, §4.7, §4.8, §4.10).

Billing data rules: never refuse, never lose, never count twice.
- StartTransaction always gets a positive 31-bit id and a row, whatever the tag (R55-R57);
  a retry (same charger, connector, tag, timestamp, meterStart) gets the same id (R60).
- StopTransaction closes once; a repeated stop is answered without counting again; an
  unknown, 0, -1 or another charger's id is answered and kept as an orphan (errata 3.18).
- Meter values are stored once per sample even when a message is retried.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from voltaro.domain.authorization import decide, decide_start, tag_key
from voltaro.domain.metering import MeterSummary, summarize
from voltaro.domain.model import (
    AuthorizationStatus,
    IdTagInfo,
    MeterValue,
    MeterValuesRequest,
    SampledValue,
    StartTransactionRequest,
    StartTransactionResult,
    StopReason,
    StopTransactionRequest,
    StopTransactionResult,
    Transaction,
    TransactionState,
)
from voltaro.store.schema import (
    METER_VALUE_KEY,
    MeterValueRow,
    OrphanStopRow,
    TransactionRow,
)
from voltaro.store.tags import get_tag

MAX_TRANSACTION_ID = 2**31 - 1  # chargers commonly store int32 (R56)


def _transaction(row: TransactionRow) -> Transaction:
    return Transaction(
        transaction_id=row.transaction_id,
        charger_id=row.charger_id,
        connector_id=row.connector_id,
        id_tag=row.id_tag,
        id_tag_status=AuthorizationStatus(row.id_tag_status),
        start_time=row.start_time,
        meter_start=row.meter_start,
        state=TransactionState(row.state),
        stop_time=row.stop_time,
        meter_stop=row.meter_stop,
        stop_reason=StopReason(row.stop_reason) if row.stop_reason else None,
        stop_id_tag=row.stop_id_tag,
        energy_wh=row.energy_wh,
        last_meter_wh=row.last_meter_wh,
        last_power_w=row.last_power_w,
        reservation_id=row.reservation_id,
    )


def authorize(s: Session, charger_id: str, id_tag: str, now: datetime) -> IdTagInfo:
    return decide(get_tag(s, id_tag), now)


def _new_id(s: Session) -> int:
    # Random rather than sequential: ids are not guessable across chargers (steve#1296).
    while True:
        candidate = secrets.randbelow(MAX_TRANSACTION_ID) + 1
        if s.get(TransactionRow, candidate) is None:
            return candidate


def start_transaction(
    s: Session, req: StartTransactionRequest, *, allow_concurrent: bool
) -> StartTransactionResult:
    key = tag_key(req.id_tag)
    existing = s.scalars(
        select(TransactionRow).where(
            TransactionRow.charger_id == req.charger_id,
            TransactionRow.connector_id == req.connector_id,
            TransactionRow.start_time == req.timestamp,
            TransactionRow.meter_start == req.meter_start,
            TransactionRow.tag_key == key,
        )
    ).first()
    if existing is not None:
        tag = get_tag(s, req.id_tag)
        info = decide(tag, req.received_at)
        if existing.id_tag_status == AuthorizationStatus.CONCURRENT_TX.value:
            info = IdTagInfo(
                status=AuthorizationStatus.CONCURRENT_TX,
                expiry_date=info.expiry_date,
                parent_id_tag=info.parent_id_tag,
            )
        return StartTransactionResult(
            transaction_id=existing.transaction_id, id_tag_info=info, duplicate=True
        )
    busy = s.scalar(
        select(func.count())
        .select_from(TransactionRow)
        .where(TransactionRow.tag_key == key, TransactionRow.state == TransactionState.ACTIVE.value)
    )
    info = decide_start(
        get_tag(s, req.id_tag),
        req.received_at,
        busy_elsewhere=bool(busy),
        allow_concurrent=allow_concurrent,
    )
    row = TransactionRow(
        transaction_id=_new_id(s),
        charger_id=req.charger_id,
        connector_id=req.connector_id,
        id_tag=req.id_tag,
        tag_key=key,
        id_tag_status=info.status.value,
        start_time=req.timestamp,
        meter_start=req.meter_start,
        reservation_id=req.reservation_id,
        state=TransactionState.ACTIVE.value,
        last_meter_wh=float(req.meter_start),
        created_at=req.received_at,
    )
    s.add(row)
    s.flush()
    return StartTransactionResult(transaction_id=row.transaction_id, id_tag_info=info)


def stop_transaction(s: Session, req: StopTransactionRequest) -> StopTransactionResult:
    info = decide(get_tag(s, req.id_tag), req.received_at) if req.id_tag else None
    row = (
        s.get(TransactionRow, req.transaction_id)
        if 0 < req.transaction_id <= MAX_TRANSACTION_ID
        else None
    )
    if row is None or row.charger_id != req.charger_id:
        # Answer as if valid so the charger is not blocked (errata 3.18); keep it for
        # reconciliation. Another charger's transaction stays untouched (RT8).
        kind = "unknown" if row is None else "foreign"
        _insert_ignore(
            s,
            OrphanStopRow,
            [
                {
                    "charger_id": req.charger_id,
                    "transaction_id": req.transaction_id,
                    "kind": kind,
                    "meter_stop": req.meter_stop,
                    "stop_time": req.timestamp,
                    "id_tag": req.id_tag,
                    "reason": req.reason.value,
                    "received_at": req.received_at,
                }
            ],
            ["charger_id", "transaction_id", "meter_stop", "stop_time"],
        )
        _store_samples(s, req.charger_id, 0, req.transaction_id, None, req.transaction_data)
        return StopTransactionResult(id_tag_info=info, outcome="foreign" if row else "orphan")
    _store_samples(
        s,
        req.charger_id,
        row.connector_id,
        row.transaction_id,
        row.transaction_id,
        req.transaction_data,
    )
    if row.state == TransactionState.COMPLETED.value:
        return StopTransactionResult(
            id_tag_info=info, outcome="duplicate", transaction=_transaction(row)
        )
    row.state = TransactionState.COMPLETED.value
    row.stop_time = req.timestamp
    row.meter_stop = req.meter_stop
    row.stop_reason = req.reason.value
    row.stop_id_tag = req.id_tag
    row.energy_wh = req.meter_stop - row.meter_start
    row.last_meter_wh = float(req.meter_stop)
    s.flush()
    return StopTransactionResult(id_tag_info=info, outcome="stopped", transaction=_transaction(row))


def record_meter_values(s: Session, req: MeterValuesRequest) -> MeterSummary:
    linked: int | None = None
    row = None
    tx = req.transaction_id
    if tx is not None and 0 < tx <= MAX_TRANSACTION_ID:
        row = s.get(TransactionRow, tx)
        if row is not None and row.charger_id == req.charger_id:
            linked = tx  # only the charger's own transaction (RT8)
        else:
            row = None
    _store_samples(s, req.charger_id, req.connector_id, tx or 0, linked, req.meter_values)
    summary = summarize(req.meter_values)
    if row is not None and row.state == TransactionState.ACTIVE.value:
        if summary.energy_wh is not None:
            row.last_meter_wh = summary.energy_wh
        if summary.power_w is not None:
            row.last_power_w = summary.power_w
    return summary


def _store_samples(
    s: Session,
    charger_id: str,
    connector_id: int,
    reported: int,
    linked: int | None,
    values: Sequence[MeterValue],
) -> None:
    rows = [
        {
            "charger_id": charger_id,
            "connector_id": connector_id,
            "reported_transaction_id": reported,
            "transaction_id": linked,
            "at": mv.timestamp,
            "value": sv.value,
            "context": sv.context,
            "format": sv.format,
            "measurand": sv.measurand,
            "phase": sv.phase or "",
            "location": sv.location,
            "unit": sv.unit,
        }
        for mv in values
        for sv in mv.sampled_values
    ]
    if rows:
        _insert_ignore(s, MeterValueRow, rows, list(METER_VALUE_KEY))


def _insert_ignore(
    s: Session, model: type, rows: Sequence[Mapping[str, object]], keys: list[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: a retried message stores nothing twice."""
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    s.execute(insert(model).values(list(rows)).on_conflict_do_nothing(index_elements=keys))


def _filters(
    active: bool | None, charger_id: str | None, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if active is not None:
        state = TransactionState.ACTIVE if active else TransactionState.COMPLETED
        conditions.append(TransactionRow.state == state.value)
    if charger_id is not None:
        conditions.append(TransactionRow.charger_id == charger_id)
    if since is not None:
        conditions.append(TransactionRow.start_time >= since)
    if until is not None:
        conditions.append(TransactionRow.start_time < until)
    return conditions


def list_transactions(
    s: Session,
    *,
    active: bool | None = None,
    charger_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Transaction]:
    query = (
        select(TransactionRow)
        .where(*_filters(active, charger_id, since, until))
        .order_by(TransactionRow.start_time.desc(), TransactionRow.transaction_id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_transaction(r) for r in s.scalars(query)]


def count_transactions(
    s: Session,
    *,
    active: bool | None = None,
    charger_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    query = (
        select(func.count())
        .select_from(TransactionRow)
        .where(*_filters(active, charger_id, since, until))
    )
    return s.scalar(query) or 0


def get_transaction(s: Session, transaction_id: int) -> Transaction | None:
    if not 0 < transaction_id <= MAX_TRANSACTION_ID:
        return None
    row = s.get(TransactionRow, transaction_id)
    return _transaction(row) if row is not None else None


def transaction_meter_values(s: Session, transaction_id: int) -> list[MeterValue]:
    rows = s.scalars(
        select(MeterValueRow)
        .where(MeterValueRow.transaction_id == transaction_id)
        .order_by(MeterValueRow.at, MeterValueRow.id)
    )
    grouped: dict[datetime, list[SampledValue]] = {}
    for r in rows:
        grouped.setdefault(r.at, []).append(
            SampledValue(
                value=r.value,
                context=r.context,
                format=r.format,
                measurand=r.measurand,
                phase=r.phase or None,
                location=r.location,
                unit=r.unit,
            )
        )
    return [MeterValue(timestamp=at, sampled_values=tuple(v)) for at, v in grouped.items()]


def orphan_stops(s: Session, charger_id: str | None = None) -> list[dict[str, object]]:
    query = select(OrphanStopRow).order_by(OrphanStopRow.received_at.desc())
    if charger_id is not None:
        query = query.where(OrphanStopRow.charger_id == charger_id)
    return [
        {
            "charger_id": r.charger_id,
            "transaction_id": r.transaction_id,
            "kind": r.kind,
            "meter_stop": r.meter_stop,
            "stop_time": r.stop_time,
            "reason": r.reason,
        }
        for r in s.scalars(query)
    ]
