"""Units of work for the per-charger health counters (one row per charger and hour).

Written by the last-seen batch (service/ingest.py ``Liveness``), never per message: the
counts of a few seconds are added to their hour's row in one statement, an upsert that
adds (two nodes, or a batch retried after a failure, add up rather than overwrite).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Table, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from voltaro.domain.charger_health import HourBucket, ResetRequest
from voltaro.store.schema import (
    ChargePointRow,
    ChargerHealthRow,
    CommandRow,
    ConfigurationRow,
    TransferStatusRow,
)

_TABLE: Table = ChargerHealthRow.__table__  # type: ignore[assignment]
_ADDED = (
    "connects",
    "online_s",
    "command_timeouts",
    "call_errors_sent",
    "call_errors_received",
    "clock_samples",
    "heartbeat_intervals",
    "heartbeat_sum_s",
    "heartbeat_sumsq_s",
)


def add_counts(s: Session, counts: Sequence[tuple[str, HourBucket]]) -> None:
    """Add (charger id, bucket) counts to the stored hours."""
    if not counts:
        return
    dialect = s.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_TABLE)
    excluded = statement.excluded
    current = _TABLE.c
    smaller_lag: ColumnElement[object] = case(
        (current.min_lag_s.is_(None), excluded.min_lag_s),
        (excluded.min_lag_s.is_(None), current.min_lag_s),
        (excluded.min_lag_s < current.min_lag_s, excluded.min_lag_s),
        else_=current.min_lag_s,
    )
    updates: dict[str, ColumnElement[object]] = {
        name: current[name] + excluded[name] for name in _ADDED
    }
    updates["min_lag_s"] = smaller_lag
    statement = statement.on_conflict_do_update(
        index_elements=[current.charger_id, current.hour], set_=updates
    )
    # Sorted: two writers take row locks in the same order (PostgreSQL).
    rows = [
        {
            "charger_id": charger_id,
            "hour": b.hour,
            "min_lag_s": b.min_lag_s,
            **{name: getattr(b, name) for name in _ADDED},
        }
        for charger_id, b in sorted(counts, key=lambda item: (item[0], item[1].hour))
    ]
    s.execute(statement, rows)


def buckets(
    s: Session, charger_ids: Iterable[str] | None, since: datetime
) -> dict[str, list[HourBucket]]:
    """Stored hours since ``since`` per charger (every charger when ``charger_ids`` is
    None), oldest first."""
    query = select(ChargerHealthRow).where(ChargerHealthRow.hour >= since)
    if charger_ids is not None:
        query = query.where(ChargerHealthRow.charger_id.in_(list(charger_ids)))
    out: dict[str, list[HourBucket]] = {}
    for row in s.scalars(query.order_by(ChargerHealthRow.charger_id, ChargerHealthRow.hour)):
        out.setdefault(row.charger_id, []).append(
            HourBucket(
                hour=row.hour,
                min_lag_s=row.min_lag_s,
                **{name: getattr(row, name) for name in _ADDED},
            )
        )
    return out


def prune(s: Session, before: datetime) -> int:
    """Delete the hours before ``before``; how many rows went."""
    result = s.execute(delete(ChargerHealthRow).where(ChargerHealthRow.hour < before))
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerFacts:
    """What a health report needs besides the counters, read in one unit of work."""

    charger_id: str
    vendor: str | None
    model: str | None
    firmware_version: str | None
    last_boot: datetime | None
    heartbeat_set: int | None  # by an operator (answered at boot)
    heartbeat_reported: int | None  # the charger's own HeartbeatInterval, last read
    reset: ResetRequest | None  # the latest accepted Reset before the last boot
    firmware_at: datetime | None  # the FirmwareStatusNotification Installing/Installed nearest it


def charger_facts(
    s: Session, charger_ids: Iterable[str] | None, since: datetime
) -> dict[str, ChargerFacts]:
    """Identity, last boot, heartbeat interval and what may have caused the last boot, for
    the chargers named (every registered one when None). Resets and firmware reports are
    read from ``since`` on (a boot older than that has no inferred cause)."""
    ids = None if charger_ids is None else list(charger_ids)
    query = select(ChargePointRow)
    if ids is not None:
        query = query.where(ChargePointRow.charger_id.in_(ids))
    chargers = list(s.scalars(query.order_by(ChargePointRow.charger_id)))
    reported: dict[str, int] = {}
    config = select(ConfigurationRow).where(
        func.lower(ConfigurationRow.key) == "heartbeatinterval",
        ConfigurationRow.unknown.is_(False),
    )
    if ids is not None:
        config = config.where(ConfigurationRow.charger_id.in_(ids))
    for row in s.scalars(config):
        try:
            reported[row.charger_id] = int((row.value or "").strip())
        except ValueError:
            continue
    boots = {c.charger_id: c.last_boot for c in chargers}
    resets: dict[str, ResetRequest] = {}
    reset_rows = select(CommandRow).where(
        CommandRow.action == "Reset",
        CommandRow.status == "Accepted",
        CommandRow.requested_at >= since,
    )
    if ids is not None:
        reset_rows = reset_rows.where(CommandRow.charger_id.in_(ids))
    for command in s.scalars(reset_rows.order_by(CommandRow.requested_at)):
        boot = boots.get(command.charger_id)
        if boot is not None and command.requested_at <= boot:
            kind = json.loads(command.request).get("type", "Soft")
            resets[command.charger_id] = ResetRequest(
                at=command.requested_at, type=str(kind), actor=command.actor
            )
    firmware_at: dict[str, datetime] = {}
    reports = select(TransferStatusRow).where(
        TransferStatusRow.kind == "firmware",
        TransferStatusRow.status.in_(("Installing", "Installed")),
        TransferStatusRow.at >= since,
    )
    if ids is not None:
        reports = reports.where(TransferStatusRow.charger_id.in_(ids))
    for report in s.scalars(reports):
        boot = boots.get(report.charger_id)
        if boot is None:
            continue
        best = firmware_at.get(report.charger_id)
        if best is None or abs(report.at - boot) < abs(best - boot):
            firmware_at[report.charger_id] = report.at
    return {
        c.charger_id: ChargerFacts(
            charger_id=c.charger_id,
            vendor=c.vendor,
            model=c.model,
            firmware_version=c.firmware_version,
            last_boot=c.last_boot,
            heartbeat_set=c.heartbeat_interval,
            heartbeat_reported=reported.get(c.charger_id),
            reset=resets.get(c.charger_id),
            firmware_at=firmware_at.get(c.charger_id),
        )
        for c in chargers
    }
