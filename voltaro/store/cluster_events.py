"""The cluster event outbox table (issue 18): rows written in id order, read by id.

Writers append under one transaction-scoped advisory lock, so ids are assigned and
committed in the same order: a reader that has seen id N has seen every committed row
below N, and ``WHERE id > last_id`` never skips a row that commits later with a lower id
(a bigserial alone does not promise this: two transactions take ids 10 and 11, 11 commits
first, a reader moves past 11, then 10 appears behind it). The lock is held from before
``nextval`` until after the commit is visible (PostgreSQL releases locks after the commit
is recorded), for a few milliseconds per batch, once per batch window per node; the NOTIFY
at commit takes a global lock anyway (A2, "Known scaling ceiling").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import case, delete, func, insert, select, text
from sqlalchemy.orm import Session

from voltaro.domain.timestamps import format_utc
from voltaro.store.notify import channel_name, notify
from voltaro.store.schema import ClusterEventRow

# pg_advisory_xact_lock key of the outbox writers: "volt" "evnt" in ASCII.
WRITE_LOCK = 0x766F6C74_65766E74
CHANNEL = channel_name("events")
# The kind of a row that stands for events a node could not write (its buffer was full
# while the database was away): readers resync instead of showing a silent gap.
GAP = "cluster.gap"


class OutboxEvent(NamedTuple):
    """One event as a node published it: name, time (seconds since the epoch) and data.
    A tuple: built on the publishing path of every charger message (a frozen dataclass
    cost 2.7 us there, this 0.5 us)."""

    name: str
    at: float
    data: dict[str, Any]

    @property
    def charger_id(self) -> str | None:
        charger = self.data.get("charger_id")
        return charger[:255] if isinstance(charger, str) else None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    origin_node: str
    kind: str
    at: str
    data: dict[str, Any] | None  # None: this node's own row (its body is not read)


def append(session: Session, origin_node: str, events: list[OutboxEvent]) -> int:
    """Write ``events`` in order and NOTIFY the highest id at commit; returns that id."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
    rows = [
        {
            "at": datetime.fromtimestamp(event.at, UTC),
            "origin_node": origin_node,
            "charger_id": event.charger_id,
            "kind": event.name[:64],
            "body": json.dumps(
                {
                    "event": event.name,
                    "at": format_utc(datetime.fromtimestamp(event.at, UTC)),
                    "data": event.data,
                },
                separators=(",", ":"),
                ensure_ascii=False,
                default=str,  # an odd value becomes text: never a lost batch
            ),
        }
        for event in events
    ]
    ids = session.execute(insert(ClusterEventRow).returning(ClusterEventRow.id), rows).scalars()
    last = max(ids)
    notify(session, CHANNEL, str(last))
    return last


def latest_id(session: Session) -> int:
    """The highest id written so far (0: none)."""
    return int(session.scalar(select(func.coalesce(func.max(ClusterEventRow.id), 0))) or 0)


def read_after(session: Session, last_id: int, me: str, limit: int) -> list[StoredEvent]:
    """Up to ``limit`` rows after ``last_id`` in id order; this node's own rows come
    without their body (it published them itself: only their ids move the reader on)."""
    rows = session.execute(
        select(
            ClusterEventRow.id,
            ClusterEventRow.origin_node,
            ClusterEventRow.kind,
            case((ClusterEventRow.origin_node == me, None), else_=ClusterEventRow.body),
        )
        .where(ClusterEventRow.id > last_id)
        .order_by(ClusterEventRow.id)
        .limit(limit)
    ).all()
    out: list[StoredEvent] = []
    for row_id, origin, kind, raw in rows:
        if origin == me or raw is None:
            out.append(StoredEvent(row_id, origin, kind, "", None))
            continue
        parsed = json.loads(raw)
        data = parsed.get("data")
        out.append(
            StoredEvent(
                row_id,
                origin,
                kind,
                str(parsed.get("at", "")),
                data if isinstance(data, dict) else {},
            )
        )
    return out


def trim(session: Session, before: datetime) -> int:
    """Delete the rows written before ``before``; returns how many."""
    result = session.execute(delete(ClusterEventRow).where(ClusterEventRow.at < before))
    return int(getattr(result, "rowcount", 0) or 0)
