"""The raw OCPP frame log, written in batches, purged after the retention period."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, func, insert, select
from sqlalchemy.orm import Session

from voltaro.domain.model import FrameRecord
from voltaro.store.plain_sql import MultiRowInsert
from voltaro.store.schema import FrameRow

_COLUMNS = ("charger_id", "direction", "at", "action", "unique_id", "message_type", "payload")
# PostgreSQL: plain multi-row INSERTs in pages (voltaro.store.plain_sql), built once:
# psycopg's executemany sent one statement per frame. SQLite: a Core INSERT on the
# table, not the ORM entity (``insert(FrameRow)`` with a list takes the ORM bulk path,
# which visits every row's dict again; issue 14: 4-8 % of a busy server's CPU); the
# plain form was not measurably cheaper there in the server (session 10: 11 runs).
_INSERT = insert(cast(Table, FrameRow.__table__))
_PAGES: list[MultiRowInsert] = []


def append_frames(s: Session, frames: Sequence[FrameRecord]) -> None:
    if not frames:
        return
    rows = [
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
    ]
    connection = s.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql":
        connection.execute(_INSERT, [dict(zip(_COLUMNS, row, strict=True)) for row in rows])
        return
    if not _PAGES:
        _PAGES.append(MultiRowInsert(cast(Table, FrameRow.__table__), _COLUMNS, dialect))
    _PAGES[0].run(connection, rows)


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
