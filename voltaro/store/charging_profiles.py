"""Units of work for charging profiles (OCPP 1.6 §5.16 SetChargingProfile, §5.5
ClearChargingProfile)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from voltaro.domain.charging_profiles import ChargingProfile, ProfilePurpose, profile_to_wire
from voltaro.domain.timestamps import format_utc, utc_now
from voltaro.store.schema import ChargingProfileRow


def record(
    s: Session,
    *,
    charger_id: str,
    connector_id: int,
    profile: ChargingProfile,
    status: str | None,
    error: str | None,
    actor: str,
) -> int:
    """One SetChargingProfile and its answer. An accepted profile replaces the charger's
    profile with the same id (§5.16), so earlier rows with that id are marked cleared."""
    now = utc_now()
    if status == "Accepted":
        for row in _installed(s, charger_id):
            if row.profile_id == profile.profile_id:
                row.cleared_at = now
    row = ChargingProfileRow(
        charger_id=charger_id,
        connector_id=connector_id,
        profile_id=profile.profile_id,
        purpose=profile.purpose.value,
        stack_level=profile.stack_level,
        profile=json.dumps(profile_to_wire(profile), sort_keys=True),
        status=status,
        error=error,
        actor=actor,
        sent_at=now,
    )
    s.add(row)
    s.flush()
    return row.id


def _installed(s: Session, charger_id: str) -> list[ChargingProfileRow]:
    return list(
        s.scalars(
            select(ChargingProfileRow).where(
                ChargingProfileRow.charger_id == charger_id,
                ChargingProfileRow.status == "Accepted",
                ChargingProfileRow.cleared_at.is_(None),
            )
        )
    )


def installed_ids(s: Session, charger_id: str) -> list[int]:
    """Ids of the profiles the charger accepted and nobody cleared since."""
    return sorted({row.profile_id for row in _installed(s, charger_id)})


def clear_matching(
    s: Session,
    charger_id: str,
    *,
    profile_id: int | None,
    connector_id: int | None,
    purpose: ProfilePurpose | None,
    stack_level: int | None,
) -> int:
    """A ClearChargingProfile the charger accepted: by id, or by every criterion given
    (§5.5; no criteria clears every profile). Returns how many stored profiles it cleared."""
    now = utc_now()
    cleared = 0
    for row in _installed(s, charger_id):
        if profile_id is not None:
            match = row.profile_id == profile_id
        else:
            match = (
                (connector_id is None or row.connector_id == connector_id)
                and (purpose is None or row.purpose == purpose.value)
                and (stack_level is None or row.stack_level == stack_level)
            )
        if match:
            row.cleared_at = now
            cleared += 1
    return cleared


def list_profiles(s: Session, charger_id: str, *, all_rows: bool = False) -> list[dict[str, Any]]:
    query = select(ChargingProfileRow).where(ChargingProfileRow.charger_id == charger_id)
    if not all_rows:
        query = query.where(
            ChargingProfileRow.status == "Accepted", ChargingProfileRow.cleared_at.is_(None)
        )
    rows = s.scalars(query.order_by(ChargingProfileRow.id.desc()).limit(200))
    return [
        {
            "profile_id": r.profile_id,
            "connector_id": r.connector_id,
            "purpose": r.purpose,
            "stack_level": r.stack_level,
            "status": r.status,
            "error": r.error,
            "actor": r.actor,
            "sent_at": format_utc(r.sent_at),
            "cleared_at": format_utc(r.cleared_at) if r.cleared_at else None,
            "profile": json.loads(r.profile),
        }
        for r in rows
    ]
