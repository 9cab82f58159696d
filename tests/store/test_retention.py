"""Frame-log retention in bounded batches (issue 10 §2.7), on SQLite and PostgreSQL.

The old sweep was one DELETE of a whole retention period's frames: on SQLite it held
the single writer, on PostgreSQL it ran into statement_timeout, and its error ended the
server. Here every DELETE is counted as the database ran it (SQLAlchemy cursor events
on the real engine), a charger's StatusNotification is stored by the real ingest while
the purge is under way, and the sweep survives the database going away.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import event, func, select

from tests.e2e.conftest import server_settings, start_server
from tests.support.outage import database_outage
from voltaro.domain.model import ConnectorStatus, FrameRecord, StatusNotificationRequest
from voltaro.domain.timestamps import utc_now
from voltaro.service.ingest import ChargerIngest
from voltaro.service.retention import Retention
from voltaro.settings import Settings
from voltaro.store import chargers, frames
from voltaro.store.db import Database
from voltaro.store.schema import FrameRow

OLD, RECENT, BATCH = 1000, 5, 100


def seed(db: Database) -> None:
    db.run_sync(chargers.add_charger, "CP-1")
    now = utc_now()
    old = [
        FrameRecord(
            charger_id="CP-1", direction="in", at=now - timedelta(days=40, seconds=n), payload="[2]"
        )
        for n in range(OLD)
    ]
    new = [
        FrameRecord(charger_id="CP-1", direction="in", at=now - timedelta(minutes=n), payload="[3]")
        for n in range(RECENT)
    ]
    db.run_sync(frames.append_frames, old + new)


def frames_left(db: Database) -> int:
    return int(db.run_sync(lambda s: s.scalar(select(func.count()).select_from(FrameRow))))


async def until(check: Any, what: str) -> None:
    with trio.fail_after(30):
        while not check():  # noqa: ASYNC110 - state changed by worker threads
            await trio.sleep(0.01)


@pytest.fixture
def quick_db(database_url: str) -> Iterator[Database]:
    """The server's Database, with a short SQLite busy wait (the server derives its own
    from db_retry_seconds)."""
    database = Database(database_url, pool_size=4, lock_timeout=0.5)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()


async def test_purge_runs_in_bounded_batches_and_charger_writes_go_between(
    quick_db: Database,
) -> None:
    db = quick_db
    seed(db)
    statements: list[str] = []  # in the order the database ran them
    deleted: list[int] = []
    first_batch_held, release = threading.Event(), threading.Event()

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("DELETE FROM frames"):
            statements.append("purge")
            if not first_batch_held.is_set():
                # Hold the first batch in its worker thread (holding SQLite's writer)
                # until the charger's message waits for the database.
                first_batch_held.set()
                assert release.wait(30)
        elif statement.startswith("INSERT INTO status_history"):
            statements.append("status")

    def after(
        conn: Any, clause: Any, multiparams: Any, params: Any, opts: Any, result: Any
    ) -> None:
        if str(clause).startswith("DELETE FROM frames"):
            deleted.append(result.rowcount)

    def commit(conn: Any) -> None:
        statements.append("commit")

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_execute", after)
    event.listen(db.engine, "commit", commit)
    ingest = ChargerIngest(
        "CP-1", db=db, settings=Settings(db_retry_seconds=30), publish=lambda *a: None
    )
    status = StatusNotificationRequest(
        charger_id="CP-1",
        connector_id=1,
        status=ConnectorStatus.CHARGING,
        error_code="NoError",
        received_at=utc_now(),
    )
    retention = Retention(db, days=30, batch=BATCH)
    purged: list[int] = []

    async def sweep() -> None:
        purged.append(await retention.sweep())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sweep)
        await trio.to_thread.run_sync(first_batch_held.wait, 30)
        nursery.start_soon(ingest.status_notification, status)
        if db.backend == "sqlite":
            # One writer: the charger's write queues behind the held batch...
            await until(lambda: db.limiter.statistics().tasks_waiting == 1, "write queued")
        else:
            # ...on PostgreSQL it is not held up at all.
            await until(lambda: "status" in statements, "status stored")
        release.set()
    assert purged == [OLD]
    assert frames_left(db) == RECENT  # the recent ones are kept
    # Bounded: no DELETE removed more than one batch, each in its own transaction.
    assert len(deleted) == OLD // BATCH + 1, deleted
    assert max(deleted) <= BATCH
    assert sum(deleted) == OLD
    purges = [i for i, s in enumerate(statements) if s == "purge"]
    for here, there in itertools.pairwise(purges):
        assert "commit" in statements[here:there], statements
    # The charger's write ran while the purge was under way, not after all of it.
    assert purges[0] < statements.index("status") < purges[-1], statements
    assert db.run_sync(chargers.get_charger, "CP-1").connectors[0].status is (
        ConnectorStatus.CHARGING
    )


async def test_sweep_survives_an_outage_and_finishes_afterwards(quick_db: Database) -> None:
    db = quick_db
    seed(db)
    retention = Retention(db, days=30, batch=BATCH, interval=0.2)
    async with trio.open_nursery() as nursery:
        with database_outage(db.url):
            await nursery.start(retention.run)
            await until(lambda: retention.failed_sweeps >= 2, "failed sweeps")
            assert retention.purged == 0
        await until(lambda: retention.purged == OLD, "purge after the outage")
        nursery.cancel_scope.cancel()
    assert frames_left(db) == RECENT


async def test_the_server_purges_at_start(database_url: str, tmp_path: Path) -> None:
    """Wiring: the running server sweeps at start (and then every hour)."""
    db = Database(database_url)
    db.upgrade()
    seed(db)
    db.dispose()
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, server_settings(database_url, tmp_path))
        try:
            await until(lambda: frames_left(server.db) <= RECENT, "the purge at start")
        finally:
            stop.set()
    assert frames_left(server.db) == RECENT
    server.db.dispose()
