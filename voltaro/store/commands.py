"""Command audit, the configuration chargers report, and DataTransfer messages."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.orm import Session

from voltaro.domain.commands import ConfigurationEntry
from voltaro.domain.model import DataTransferRequest, DataTransferStatus
from voltaro.domain.secrets import REDACTED, is_secret_config_key, redact_value
from voltaro.domain.timestamps import utc_now
from voltaro.store.schema import ChargePointRow, CommandRow, ConfigurationRow, DataTransferRow


def record_command(
    s: Session, *, charger_id: str, action: str, request: dict[str, Any], actor: str
) -> int:
    # One INSERT (a Core statement: the ORM's unit of work costs more CPU than the
    # statement itself on this path, which every command takes).
    written = s.connection().execute(
        insert(CommandRow).values(
            charger_id=charger_id,
            action=action,
            # Already redacted by the caller; again here so no caller can store a secret.
            request=json.dumps(redact_value(request), default=str, sort_keys=True),
            actor=actor,
            requested_at=utc_now(),
        )
    )
    key = written.inserted_primary_key
    assert key is not None  # an INSERT of one row always has it
    return int(key[0])


def finish_command(s: Session, command_id: int, *, status: str | None, error: str | None) -> None:
    # On the connection: the ORM's bulk UPDATE would first work out which loaded objects
    # to synchronise (none are: every unit of work has its own session).
    s.connection().execute(
        update(CommandRow)
        .where(CommandRow.id == command_id)
        .values(status=status, error=error, finished_at=utc_now())
    )


def list_commands(s: Session, charger_id: str, limit: int = 50) -> list[dict[str, Any]]:
    return command_log(s, charger_id=charger_id, limit=limit)


def _audit_filters(
    charger_id: str | None,
    since: datetime | None,
    actor: str | None,
    action: str | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if charger_id is not None:
        conditions.append(CommandRow.charger_id == charger_id)
    if since is not None:
        conditions.append(CommandRow.requested_at >= since)
    if actor is not None:
        conditions.append(CommandRow.actor == actor)
    if action is not None:
        # OCPP action names are CamelCase ("Reset"); operators type them as they like.
        conditions.append(func.lower(CommandRow.action) == action.lower())
    return conditions


def command_log(
    s: Session,
    *,
    charger_id: str | None = None,
    since: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The command audit, newest first: every command sent, who sent it, the outcome.

    ``actor`` is who sent it as stored: the Unix user on the control socket, or
    ``api:<token name>`` over HTTP."""
    query = select(CommandRow).where(*_audit_filters(charger_id, since, actor, action))
    rows = s.scalars(
        query.order_by(CommandRow.requested_at.desc(), CommandRow.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [
        {
            "id": r.id,
            "charger_id": r.charger_id,
            "action": r.action,
            "request": json.loads(r.request),
            "actor": r.actor,
            "requested_at": r.requested_at,
            "status": r.status,
            "error": r.error,
            "finished_at": r.finished_at,
        }
        for r in rows
    ]


def count_commands(
    s: Session,
    *,
    charger_id: str | None = None,
    since: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
) -> int:
    query = (
        select(func.count())
        .select_from(CommandRow)
        .where(*_audit_filters(charger_id, since, actor, action))
    )
    return int(s.scalar(query) or 0)


def store_configuration(
    s: Session,
    charger_id: str,
    entries: Sequence[ConfigurationEntry],
    unknown_keys: Sequence[str] = (),
    *,
    replace_all: bool = False,
) -> None:
    """Keep what GetConfiguration reported (OCPP 1.6 §5.8); a full listing replaces."""
    if s.get(ChargePointRow, charger_id) is None:
        return
    now = utc_now()
    if replace_all:
        s.execute(delete(ConfigurationRow).where(ConfigurationRow.charger_id == charger_id))
        s.flush()
    for entry in entries:
        row = s.get(ConfigurationRow, (charger_id, entry.key))
        if row is None:
            row = ConfigurationRow(charger_id=charger_id, key=entry.key)
            s.add(row)
        row.value, row.readonly, row.unknown, row.updated_at = (
            _storable_value(entry.key, entry.value),
            entry.readonly,
            False,
            now,
        )
    for key in unknown_keys:
        row = s.get(ConfigurationRow, (charger_id, key))
        if row is None:
            row = ConfigurationRow(charger_id=charger_id, key=key)
            s.add(row)
        row.value, row.readonly, row.unknown, row.updated_at = None, False, True, now


def set_configuration_value(s: Session, charger_id: str, key: str, value: str) -> None:
    """A ChangeConfiguration the charger accepted. HeartbeatInterval is also kept as the
    operator's setting, answered in the charger's BootNotification (issue 23.1): the boot
    answer would otherwise put the charger back on the global default."""
    charger = s.get(ChargePointRow, charger_id)
    if charger is None:
        return
    if key.lower() == "heartbeatinterval":
        interval = _positive_int(value)
        if interval is not None:
            charger.heartbeat_interval = interval
    row = s.get(ConfigurationRow, (charger_id, key))
    if row is None:
        row = ConfigurationRow(charger_id=charger_id, key=key, readonly=False)
        s.add(row)
    row.value, row.unknown, row.updated_at = _storable_value(key, value), False, utc_now()


def _storable_value(key: str, value: str | None) -> str | None:
    """A secret key's value is never stored: that it is set is all we keep (issue 15)."""
    return REDACTED if is_secret_config_key(key) and value else value


def _positive_int(value: str) -> int | None:
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number > 0 else None


def heartbeat_interval_state(s: Session, charger_id: str) -> tuple[int | None, int | None]:
    """(what an operator set, what the charger last reported or was told at boot)."""
    charger = s.get(ChargePointRow, charger_id)
    known = s.scalars(
        select(ConfigurationRow).where(
            ConfigurationRow.charger_id == charger_id,
            func.lower(ConfigurationRow.key) == "heartbeatinterval",
            ConfigurationRow.unknown.is_(False),
        )
    ).first()
    reported = None
    if known is not None and known.value is not None:
        try:
            reported = int(known.value.strip())
        except ValueError:
            reported = None
    return (charger.heartbeat_interval if charger is not None else None), reported


def get_configuration(s: Session, charger_id: str) -> list[ConfigurationEntry]:
    rows = s.scalars(
        select(ConfigurationRow)
        .where(ConfigurationRow.charger_id == charger_id, ConfigurationRow.unknown.is_(False))
        .order_by(ConfigurationRow.key)
    )
    return [ConfigurationEntry(key=r.key, readonly=r.readonly, value=r.value) for r in rows]


def record_data_transfer(s: Session, req: DataTransferRequest, status: DataTransferStatus) -> None:
    s.add(
        DataTransferRow(
            charger_id=req.charger_id,
            vendor_id=req.vendor_id,
            message_id=req.message_id,
            data=req.data,
            status=status.value,
            received_at=req.received_at,
        )
    )
