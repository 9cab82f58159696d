"""SQLite's WAL checkpoints run beside the writer, not inside a charger's commit
(voltaro.store.wal_checkpoints, issue 14: a commit that crossed SQLite's automatic
threshold copied the log back itself, 23-28 ms instead of ~2 ms for three MeterValues).

Real SQLite files; the log's state is read with a checkpoint of the test's own."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from sqlalchemy import text
from sqlalchemy.orm import Session

from voltaro.store.db import Database
from voltaro.store.wal_checkpoints import AUTOCHECKPOINT_PAGES, WalCheckpointer

from .test_retention import until

ROWS = 60  # per commit: a little over one 4 KiB page of log with its index


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'voltaro.db'}")
    database.upgrade()
    database.run_sync(
        lambda s: s.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT)"))
    )
    try:
        yield database
    finally:
        database.dispose()


def fill(s: Session, n: int) -> None:
    s.execute(text("INSERT INTO filler (v) VALUES (:v)"), [{"v": "x" * 60}] * n)


def log_state(path: str) -> tuple[int, int]:
    """(pages in the log, pages copied back) by a PASSIVE checkpoint of our own."""
    with contextlib.closing(sqlite3.connect(path)) as c:
        _busy, in_log, copied = c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(in_log), int(copied)


async def test_a_commit_does_not_checkpoint_the_log_itself(sqlite_db: Database) -> None:
    """Past SQLite's default threshold (1,000 pages) the log is still whole: no commit
    copied it back (on a default connection the log restarts after each automatic
    checkpoint and never holds much more than 1,000 pages)."""
    assert sqlite_db.checkpointer is not None
    for _ in range(1_500):
        await sqlite_db.run(fill, ROWS)
    in_log, _copied = log_state(sqlite_db.checkpointer._path)
    assert 1_500 < in_log < AUTOCHECKPOINT_PAGES, in_log


async def test_the_checkpointer_copies_the_log_back_without_a_database_slot(
    sqlite_db: Database,
) -> None:
    checkpointer = sqlite_db.checkpointer
    assert checkpointer is not None
    checkpointer.interval = 0.05
    for _ in range(50):
        await sqlite_db.run(fill, ROWS)
    held = threading.Event()
    release = threading.Event()

    def hold(_session: Session) -> None:
        held.set()
        release.wait(30)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sqlite_db.run, hold)  # the one slot: a charger write would wait
        await trio.to_thread.run_sync(held.wait, 30)
        await nursery.start(checkpointer.run)
        await until(lambda: checkpointer.pages > 0, "checkpointed while the slot is held")
        release.set()
        await until(lambda: sqlite_db.limiter.borrowed_tokens == 0, "released")
        # Writes go on; the next rounds copy them back too.
        before = checkpointer.pages
        for _ in range(20):
            await sqlite_db.run(fill, ROWS)
        await until(lambda: checkpointer.pages > before, "later writes checkpointed")
        nursery.cancel_scope.cancel()
    assert (
        sqlite_db.run_sync(lambda s: s.execute(text("SELECT count(*) FROM filler")).scalar_one())
        == 70 * ROWS
    )


def test_postgresql_has_no_checkpointer(postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        assert database.checkpointer is None
    finally:
        database.dispose()


async def test_a_file_it_cannot_open_is_retried_quietly_and_then_checkpointed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of descriptors, or the file not there yet: no traceback in the log (the
    writers report an outage), retried every round, checkpointed once it can be."""
    path = tmp_path / "later" / "voltaro.db"
    checkpointer = WalCheckpointer(str(path), interval=0.02)
    async with trio.open_nursery() as nursery:
        await nursery.start(checkpointer.run)
        await until(lambda: checkpointer._guard.outage_retries >= 2, "retried")
        path.parent.mkdir()
        database = Database(f"sqlite:///{path}")
        try:
            database.upgrade()
            database.run_sync(
                lambda s: s.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, v TEXT)"))
            )
            for _ in range(10):
                await database.run(fill, ROWS)
            await until(lambda: checkpointer.pages > 0, "checkpointed")
        finally:
            nursery.cancel_scope.cancel()
            database.dispose()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
