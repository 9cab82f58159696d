"""The raw OCPP frame log, written in batches, purged after the retention period."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from voltaro.domain.model import FrameRecord
from voltaro.store.plain_sql import MultiRowInsert
from voltaro.store.schema import FrameRow

_COLUMNS = ("charger_id", "direction", "at", "action", "unique_id", "message_type", "payload")
# Plain multi-row INSERTs (voltaro.store.plain_sql), built once per dialect: the rows are
# plain values already, and SQLAlchemy's per-row work on an executemany was 4-8 % of a
# busy server's CPU (issue 14); on PostgreSQL the pages also spare psycopg's pipeline a
# statement per frame.
_INSERTS: dict[str, MultiRowInsert] = {}


def append_frames(s: Session, frames: Sequence[FrameRecord]) -> None:
    if not frames:
        return
    connection = s.connection()
    dialect = connection.dialect
    insert = _INSERTS.get(dialect.name)
    if insert is None:
        insert = _INSERTS[dialect.name] = MultiRowInsert(
            cast(Table, FrameRow.__table__), _COLUMNS, dialect
        )
    insert.run(
        connection,
        [
            (
                f.charger_id,
                f.direction,
                f.at,
                f.action[:64] if f.action else None,
                f.unique_id[:64] if f.unique_id else None,
                f.message_type,
                f.payload,
            )
            for f in frames
        ],
    )


def recent_frames(
    s: Session, charger_id: str, *, limit: int = 100, action: str | None = None
) -> list[FrameRecord]:
    query = select(FrameRow).where(FrameRow.charger_id == charger_id)
    if action:
        query = query.where(FrameRow.action == action)
    rows = s.scalars(query.order_by(FrameRow.at.desc(), FrameRow.id.desc()).limit(limit))
    return [
        FrameRecord(
            charger_id=r.charger_id,
            direction=r.direction,
            at=r.at,
            payload=r.payload,
            action=r.action,
            unique_id=r.unique_id,
            message_type=r.message_type,
        )
        for r in rows
    ]


def purge_frames(s: Session, older_than: datetime, limit: int) -> int:
    """Delete at most ``limit`` of the oldest frames older than ``older_than``.

    Bounded so that one unit of work never holds SQLite's single writer, or row locks
    and a PostgreSQL statement_timeout, for a whole retention period's rows (issue 10
    §2.7): the caller repeats it until fewer than ``limit`` are deleted. The oldest go
    first, found through ``ix_frames_at``.
    """
    oldest = select(FrameRow.id).where(FrameRow.at < older_than).order_by(FrameRow.at).limit(limit)
    result = s.execute(delete(FrameRow).where(FrameRow.id.in_(oldest.scalar_subquery())))
    return int(getattr(result, "rowcount", 0) or 0)


def evict_oldest(s: Session, keep: int, chunk: int) -> int:
    """Delete up to ``chunk`` of the oldest rows beyond the newest ``keep``.

    Ids only grow, so "beyond the newest ``keep``" is ``id <= max(id) - keep``: two index
    lookups, no count of the table.
    """
    newest = s.scalar(select(func.max(FrameRow.id)))
    oldest = s.scalar(select(func.min(FrameRow.id)))
    if newest is None or oldest is None:
        return 0
    cutoff = min(newest - keep, oldest + chunk - 1)
    if cutoff < oldest:
        return 0
    result = s.execute(delete(FrameRow).where(FrameRow.id <= cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
