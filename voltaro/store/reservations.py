"""Units of work for reservations (OCPP 1.6 §5.13, §5.1, §4.8)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from voltaro.domain.reservations import OPEN_STATES, Reservation, ReservationState, may_use
from voltaro.domain.timestamps import utc_now
from voltaro.store.schema import ConfigurationRow, ReservationRow
from voltaro.store.tags import get_tag


def _reservation(row: ReservationRow) -> Reservation:
    return Reservation(
        reservation_id=row.reservation_id,
        charger_id=row.charger_id,
        connector_id=row.connector_id,
        id_tag=row.id_tag,
        parent_id_tag=row.parent_id_tag,
        expiry_date=row.expiry_date,
        state=ReservationState(row.state),
        answer=row.answer,
        transaction_id=row.transaction_id,
        created_at=row.created_at,
        ended_at=row.ended_at,
        actor=row.actor,
        error=row.error,
    )


def create(
    s: Session,
    *,
    charger_id: str,
    connector_id: int,
    id_tag: str,
    parent_id_tag: str | None,
    expiry_date: datetime,
    actor: str,
) -> Reservation:
    """Stored before ReserveNow is sent: its id is the reservationId the charger gets."""
    row = ReservationRow(
        charger_id=charger_id,
        connector_id=connector_id,
        id_tag=id_tag,
        parent_id_tag=parent_id_tag,
        expiry_date=expiry_date,
        state=ReservationState.REQUESTED.value,
        actor=actor,
        created_at=utc_now(),
    )
    s.add(row)
    s.flush()
    return _reservation(row)


def get(s: Session, reservation_id: int) -> Reservation | None:
    row = s.get(ReservationRow, reservation_id)
    return _reservation(row) if row is not None else None


def discard(s: Session, reservation_id: int) -> None:
    """ReserveNow was never sent (charger offline, busy, database): no reservation."""
    row = s.get(ReservationRow, reservation_id)
    if row is not None:
        s.delete(row)


def set_state(
    s: Session,
    reservation_id: int,
    state: ReservationState,
    *,
    answer: str | None = None,
    error: str | None = None,
) -> Reservation | None:
    row = s.get(ReservationRow, reservation_id)
    if row is None:
        return None
    row.state = state.value
    if answer is not None:
        row.answer = answer
    row.error = error
    if state not in OPEN_STATES and state is not ReservationState.FAILED:
        row.ended_at = utc_now()
    return _reservation(row)


def close_by_start(
    s: Session,
    charger_id: str,
    reservation_id: int,
    transaction_id: int,
    id_tag: str,
    at: datetime,
) -> Reservation | None:
    """A StartTransaction carried this reservationId: the reservation ends (§4.8, R59).
    Only the charger's own reservations; an unknown id is ignored (never a refusal: a
    transaction message is never refused for data reasons, R97). A tag that is neither
    the reserved one nor one with its parent (§5.13) is noted on the reservation."""
    row = s.get(ReservationRow, reservation_id)
    if row is None or row.charger_id != charger_id:
        return None
    if row.state == ReservationState.USED.value:
        return _reservation(row)  # a retried StartTransaction
    reservation = _reservation(row)
    tag = get_tag(s, id_tag)
    if not may_use(reservation, id_tag, tag.parent_id_tag if tag else None):
        row.error = f"used by {id_tag}: neither the reserved tag nor one with its parent"
    row.state = ReservationState.USED.value
    row.transaction_id = transaction_id
    row.ended_at = at
    return _reservation(row)


def list_reservations(
    s: Session, *, charger_id: str | None = None, open_only: bool = False, limit: int = 100
) -> list[Reservation]:
    query = select(ReservationRow)
    if charger_id is not None:
        query = query.where(ReservationRow.charger_id == charger_id)
    if open_only:
        query = query.where(
            ReservationRow.state.in_([st.value for st in OPEN_STATES]),
            ReservationRow.expiry_date > utc_now(),
        )
    query = query.order_by(ReservationRow.reservation_id.desc()).limit(limit)
    return [_reservation(r) for r in s.scalars(query)]


def configuration_value(s: Session, charger_id: str, key: str) -> tuple[bool, str | None]:
    """(whether the charger's configuration was ever read, the key's value or None)."""
    rows = list(
        s.scalars(select(ConfigurationRow).where(ConfigurationRow.charger_id == charger_id))
    )
    known = any(not r.unknown for r in rows)
    for r in rows:
        if r.key.lower() == key.lower() and not r.unknown:
            return known, r.value
    return known, None


def expire_due(s: Session, now: datetime) -> list[Reservation]:
    """Mark open reservations whose expiry date passed as expired (§5.13)."""
    rows = list(
        s.scalars(
            select(ReservationRow).where(
                ReservationRow.state.in_([st.value for st in OPEN_STATES]),
                ReservationRow.expiry_date <= now,
            )
        )
    )
    for row in rows:
        row.state, row.ended_at = ReservationState.EXPIRED.value, row.expiry_date
    return [_reservation(r) for r in rows]
