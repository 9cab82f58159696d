"""Units of work for the Local Authorization List (OCPP 1.6 §5.15): the list derived from
the tag table, and what each charger last accepted."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voltaro.domain.local_list import KEY_ENABLED, ListEntry, desired_list
from voltaro.domain.model import AuthorizationStatus, IdTagInfo, RegistrationStatus
from voltaro.domain.timestamps import format_utc, parse_timestamp, utc_now
from voltaro.store.schema import ChargePointRow, ConfigurationRow, IdTagRow, LocalListStateRow
from voltaro.store.tags import list_tags


def desired(s: Session, now: datetime, charger_id: str | None = None) -> dict[str, ListEntry]:
    """The list a charger should hold: the tags of its group (charger None or in no
    group: the all-chargers list)."""
    row = s.get(ChargePointRow, charger_id) if charger_id is not None else None
    return desired_list(list_tags(s), now, row.list_group if row is not None else None)


def _encode(entries: dict[str, ListEntry]) -> str:
    out: dict[str, Any] = {}
    for key, entry in entries.items():
        info = entry.info
        assert info is not None
        out[key] = {
            "id_tag": entry.id_tag,
            "status": info.status.value,
            "expiry_date": format_utc(info.expiry_date) if info.expiry_date else None,
            "parent_id_tag": info.parent_id_tag,
        }
    return json.dumps(out, sort_keys=True)


def _decode(text: str) -> dict[str, ListEntry]:
    out: dict[str, ListEntry] = {}
    for key, item in json.loads(text).items():
        expiry = item.get("expiry_date")
        out[key] = ListEntry(
            id_tag=item["id_tag"],
            info=IdTagInfo(
                status=AuthorizationStatus(item["status"]),
                expiry_date=parse_timestamp(expiry) if expiry else None,
                parent_id_tag=item.get("parent_id_tag"),
            ),
        )
    return out


def known_state(s: Session, charger_id: str) -> tuple[int | None, dict[str, ListEntry] | None]:
    """(version, entries) the charger last accepted; (None, None) when unknown."""
    row = s.get(LocalListStateRow, charger_id)
    if row is None or row.version is None or row.entries is None:
        return None, None
    return row.version, _decode(row.entries)


def _row(s: Session, charger_id: str) -> LocalListStateRow | None:
    if s.get(ChargePointRow, charger_id) is None:
        return None
    row = s.get(LocalListStateRow, charger_id)
    if row is None:
        row = LocalListStateRow(charger_id=charger_id)
        s.add(row)
    return row


def save_accepted(s: Session, charger_id: str, version: int, entries: dict[str, ListEntry]) -> None:
    """The charger answered Accepted: it now holds ``entries`` at ``version``."""
    row = _row(s, charger_id)
    if row is not None:
        row.version, row.entries = version, _encode(entries)
        row.synced_at, row.result, row.error = utc_now(), "Accepted", None


def record_result(
    s: Session, charger_id: str, result: str, error: str | None = None, *, forget: bool = False
) -> None:
    """The last sync's outcome; ``forget``: what the charger holds is unknown now (it
    answered Failed), so the next sync sends a Full update."""
    row = _row(s, charger_id)
    if row is not None:
        row.synced_at, row.result, row.error = utc_now(), result, error
        if forget:
            row.version, row.entries = None, None


def list_state(s: Session, charger_id: str) -> dict[str, Any] | None:
    row = s.get(LocalListStateRow, charger_id)
    if row is None:
        return None
    return {
        "version": row.version,
        "entries": len(json.loads(row.entries)) if row.entries else None,
        "synced_at": format_utc(row.synced_at) if row.synced_at else None,
        "result": row.result,
        "error": row.error,
    }


@dataclass(frozen=True, slots=True)
class Arrival:
    """What a sync on connect needs to know before asking the charger anything."""

    registration: RegistrationStatus
    # Its last reported LocalAuthListEnabled: True, False (also: reported as an unknown
    # key), or None (never reported, or a value that is neither).
    list_enabled: bool | None


def arrival(s: Session, charger_id: str) -> Arrival | None:
    """The charger's registration and last reported LocalAuthListEnabled; None when the
    charger is not registered."""
    return arrivals(s, [charger_id]).get(charger_id)


def arrivals(s: Session, charger_ids: list[str]) -> dict[str, Arrival]:
    """:func:`arrival` for many chargers in two queries (the registered ones only)."""
    out: dict[str, Arrival] = {}
    for start in range(0, len(charger_ids), 500):
        ids = charger_ids[start : start + 500]
        registered = dict(
            s.execute(
                select(ChargePointRow.charger_id, ChargePointRow.registration).where(
                    ChargePointRow.charger_id.in_(ids)
                )
            ).all()
        )
        reported = {
            row.charger_id: row
            for row in s.execute(
                select(
                    ConfigurationRow.charger_id, ConfigurationRow.value, ConfigurationRow.unknown
                ).where(
                    ConfigurationRow.charger_id.in_(ids),
                    func.lower(ConfigurationRow.key) == KEY_ENABLED.lower(),
                )
            )
        }
        for charger_id, registration in registered.items():
            out[charger_id] = Arrival(
                RegistrationStatus(registration), _enabled(reported.get(charger_id))
            )
    return out


def _enabled(reported: Any) -> bool | None:
    if reported is None:
        return None
    if reported.unknown:
        # LocalAuthListEnabled is required with the Local Auth List Management profile
        # (OCPP 1.6 §9.3): a charger that does not know the key has no local list.
        return False
    if reported.value is None:
        return None
    value = reported.value.strip().lower()
    return True if value == "true" else False if value == "false" else None


def chargers_to_push(s: Session) -> list[str]:
    """Chargers whose last reported LocalAuthListEnabled is true (OCPP 1.6 §9.3)."""
    rows = s.scalars(
        select(ConfigurationRow.charger_id).where(
            func.lower(ConfigurationRow.key) == KEY_ENABLED.lower(),
            func.lower(func.trim(ConfigurationRow.value)) == "true",
        )
    )
    return sorted(set(rows))


def next_expiry(s: Session, now: datetime) -> datetime | None:
    """The next time a tag's expiry date passes: its list entry turns Expired then."""
    found: datetime | None = s.scalar(
        select(func.min(IdTagRow.expiry_date)).where(IdTagRow.expiry_date > now)
    )
    return found
