"""SecurityEventNotifications chargers sent (the 1.6 security extension)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from voltaro.domain.model import ChargerSecurityEvent
from voltaro.store.schema import ChargerSecurityEventRow


def record_security_event(s: Session, event: ChargerSecurityEvent) -> None:
    s.add(
        ChargerSecurityEventRow(
            charger_id=event.charger_id,
            type=event.type,
            tech_info=event.tech_info,
            at=event.at,
            received_at=event.received_at,
        )
    )


def recent_security_events(
    s: Session, charger_id: str, limit: int = 20
) -> list[ChargerSecurityEvent]:
    rows = s.scalars(
        select(ChargerSecurityEventRow)
        .where(ChargerSecurityEventRow.charger_id == charger_id)
        .order_by(ChargerSecurityEventRow.received_at.desc(), ChargerSecurityEventRow.id.desc())
        .limit(limit)
    )
    return [
        ChargerSecurityEvent(
            charger_id=r.charger_id,
            type=r.type,
            tech_info=r.tech_info,
            at=r.at,
            received_at=r.received_at,
        )
        for r in rows
    ]
