"""Multi-row INSERTs in pages (voltaro.store.plain_sql), on SQLite and PostgreSQL.

Every row arrives once, with its values processed by its column's type (aware datetimes
stored as naive UTC), in order, at every count around the page size; the conflict suffix
drops repeats; on PostgreSQL the server receives one statement per page, not one per
row (issue 14: psycopg's executemany pipelines a statement per parameter set).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from voltaro.store.db import Database
from voltaro.store.plain_sql import MultiRowInsert
from voltaro.store.schema import METER_VALUE_KEY, FrameRow, MeterValueRow

AT = datetime(2026, 12, 6, 9, 30, 0, 250000, tzinfo=UTC)
FRAME_COLUMNS = ("charger_id", "direction", "at", "action", "unique_id", "message_type", "payload")


def _frame(i: int) -> tuple[Any, ...]:
    # Every other row in another offset: the same instant in UTC once stored.
    at = AT + timedelta(seconds=i)
    if i % 2:
        at = at.astimezone(timezone(timedelta(hours=-5)))
    return (f"CP-{i % 3}", "in", at, "Heartbeat" if i % 4 else None, str(i), 2, f"p{i}")


@pytest.fixture
def statements(db: Database) -> Iterator[list[int]]:
    """The number of statements each cursor call sends (executemany: one per set)."""
    sent: list[int] = []

    def count(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if sql.startswith("INSERT"):
            sent.append(len(params) if many else 1)

    event.listen(db.engine, "before_cursor_execute", count)
    yield sent
    event.remove(db.engine, "before_cursor_execute", count)


def _insert(db: Database, insert: MultiRowInsert, rows: list[tuple[Any, ...]]) -> None:
    def write(s: Session) -> None:
        insert.run(s.connection(), rows)

    db.run_sync(write)


def _stored(db: Database) -> list[tuple[Any, ...]]:
    def read(s: Session) -> list[tuple[Any, ...]]:
        result = s.execute(
            text(
                "SELECT charger_id, direction, at, action, unique_id, message_type, payload "
                "FROM frames ORDER BY id"
            )
        )
        return [tuple(row) for row in result]

    return db.run_sync(read)


def _naive_utc(row: tuple[Any, ...]) -> tuple[Any, ...]:
    at = row[2].astimezone(UTC).replace(tzinfo=None)
    return (*row[:2], at, *row[3:])


def _as_datetime(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def test_every_count_around_the_page_arrives_once_in_order(
    db: Database, statements: list[int]
) -> None:
    insert = MultiRowInsert(FrameRow.__table__, FRAME_COLUMNS, db.engine.dialect)  # type: ignore[arg-type]
    page = insert.page
    counts = [1, page - 1, page, page + 1, 2 * page, 3 * page + 2]
    expected: list[tuple[Any, ...]] = []
    first = 0
    for n in counts:
        rows = [_frame(i) for i in range(first, first + n)]
        first += n
        _insert(db, insert, rows)
        expected.extend(_naive_utc(row) for row in rows)
    _insert(db, insert, [])
    stored = [(*row[:2], _as_datetime(row[2]), *row[3:]) for row in _stored(db)]
    assert stored == expected
    if db.backend == "postgresql":
        # One statement per page, and one for the rest.
        assert page == 50 // len(FRAME_COLUMNS)
        assert sum(statements) == sum(-(-n // page) for n in counts), statements
    else:
        assert sum(statements) == sum(counts)


def test_the_conflict_suffix_drops_repeats_within_and_across_pages(db: Database) -> None:
    from voltaro.store.transactions import _SAMPLE_COLUMNS

    suffix = " ON CONFLICT (" + ", ".join(METER_VALUE_KEY) + ") DO NOTHING"
    insert = MultiRowInsert(MeterValueRow.__table__, _SAMPLE_COLUMNS, db.engine.dialect, suffix)  # type: ignore[arg-type]

    def sample(i: int, value: str) -> tuple[Any, ...]:
        at = AT + timedelta(seconds=i)
        return ("CP-1", 1, 0, None, at, value, "Sample.Periodic", "Raw", "Energy", "", "", "Wh")

    rows = [sample(i, "first") for i in range(insert.page * 2 + 1)]
    # A repeat inside the first page (one statement): stored once, the first one.
    rows.insert(1, sample(0, "repeat"))
    _insert(db, insert, rows)
    # A retry of the same samples (the charger did not get the answer), with new ones.
    retry = [sample(i, "second") for i in range(insert.page * 3)]
    _insert(db, insert, retry)

    def read(s: Session) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in s.execute(text("SELECT value FROM meter_values ORDER BY at"))]

    values = [v for (v,) in db.run_sync(read)]
    first = insert.page * 2 + 1
    assert values == ["first"] * first + ["second"] * (len(retry) - first)


def test_the_frame_log_sends_pages_on_postgresql(db: Database, statements: list[int]) -> None:
    from voltaro.domain.model import FrameRecord
    from voltaro.store import frames

    batch = [
        FrameRecord(charger_id="CP-1", direction="in", at=AT, payload=str(i), message_type=2)
        for i in range(100)
    ]
    db.run_sync(frames.append_frames, batch)
    assert [row[-1] for row in _stored(db)] == [str(i) for i in range(100)]
    per_page = 50 // len(FRAME_COLUMNS)
    assert sum(statements) == (-(-100 // per_page) if db.backend == "postgresql" else 100)
