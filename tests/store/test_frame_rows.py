"""The frame log's rows as the database holds them, on SQLite and PostgreSQL.

``append_frames`` went from the ORM bulk insert to a Core executemany (issue 14): the
rows, their columns, their timestamps (naive UTC), the 64-character caps on the action
and the unique id, and their order (ids in the order the frames were buffered) must be
what the ORM path stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from voltaro.domain.model import FrameRecord
from voltaro.store import frames
from voltaro.store.db import Database

AT = datetime(2026, 12, 6, 4, 0, 0, 123456, tzinfo=UTC)


def test_rows_columns_timestamps_caps_and_order(db: Database) -> None:
    batch = [
        FrameRecord(
            charger_id="CP-1",
            direction="in",
            at=AT,
            payload='[2,"a","Heartbeat",{}]',
            action="Heartbeat",
            unique_id="a",
            message_type=2,
        ),
        # Another offset: stored as the same instant in UTC.
        FrameRecord(
            charger_id="CP-1",
            direction="out",
            at=AT.astimezone(timezone(timedelta(hours=2))),
            payload='[3,"a",{"currentTime":"x"}]',
            action="H" * 70,
            unique_id="u" * 70,
            message_type=3,
        ),
        # Empty action and id are stored as NULL, as the ORM path did.
        FrameRecord(
            charger_id="CP-2", direction="in", at=AT, payload="é ☃", action="", unique_id=""
        ),
        FrameRecord(charger_id="CP-2", direction="in", at=AT, payload="not json"),
    ]
    many = [
        FrameRecord(charger_id="CP-3", direction="in", at=AT, payload=str(i), message_type=2)
        for i in range(1200)
    ]
    db.run_sync(frames.append_frames, batch)
    db.run_sync(frames.append_frames, [])
    db.run_sync(frames.append_frames, many)

    def rows(s: Session) -> list[tuple[Any, ...]]:
        result = s.execute(
            text(
                "SELECT id, charger_id, direction, at, action, unique_id, message_type, "
                "payload FROM frames ORDER BY id"
            )
        )
        return [tuple(r) for r in result]

    stored = db.run_sync(rows)
    assert len(stored) == 4 + 1200
    naive = AT.replace(tzinfo=None)
    got = [r[1:] for r in stored[:4]]
    for row in got:
        at = row[2]
        if isinstance(at, str):  # SQLite hands the text back
            at = datetime.fromisoformat(at)
        assert at == naive
    assert [(r[0], r[1], r[3], r[4], r[5], r[6]) for r in got] == [
        ("CP-1", "in", "Heartbeat", "a", 2, '[2,"a","Heartbeat",{}]'),
        ("CP-1", "out", "H" * 64, "u" * 64, 3, '[3,"a",{"currentTime":"x"}]'),
        ("CP-2", "in", None, None, None, "é ☃"),
        ("CP-2", "in", None, None, None, "not json"),
    ]
    assert [r[7] for r in stored[4:]] == [str(i) for i in range(1200)]
    ids = [r[0] for r in stored]
    assert ids == sorted(set(ids))
    # And read back through the store as the console reads it.
    recent = db.run_sync(frames.recent_frames, "CP-1", limit=10)
    assert [(f.at, f.action) for f in recent] == [(AT, "H" * 64), (AT, "Heartbeat")]
