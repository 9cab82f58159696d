"""The last-seen flush (service/ingest.py ``Liveness``) in slices (issue 14).

With 1,000 chargers one flush held SQLite's one writer for ~64 ms every 5 s, and every
charger message waiting to be stored waited behind it. A flush now writes at most
``PRESENCE_SLICE`` chargers (their last-seen times and health counts) per unit of work,
and other work queued meanwhile runs between the slices. Observed on the real database:
each transaction's statements are recorded with an SQLAlchemy event listener.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from tests.support.outage import database_outage
from voltaro.control.wire import Event
from voltaro.domain.timestamps import format_utc, utc_now
from voltaro.service import ingest
from voltaro.service.charger_health import HealthRecorder, health_report
from voltaro.service.hub import EventHub, HubEvent
from voltaro.service.ingest import (
    ONLINE_SLICE,
    PRESENCE_SLICE,
    PRESENCE_SLICE_POSTGRESQL,
    Liveness,
)
from voltaro.service.metrics import EventTally
from voltaro.settings import Settings
from voltaro.store import charger_health, chargers
from voltaro.store.db import Database

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
# Two and a half slices: a full slice, another, and a partial one.
N = 2 * PRESENCE_SLICE + PRESENCE_SLICE // 2


def ids(n: int = N) -> list[str]:
    return [f"CP-{i:04d}" for i in range(n)]


def seen_at(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


def everyone_seen_and_counted(
    liveness: Liveness, health: HealthRecorder, everyone: list[str] | None = None
) -> None:
    """Each charger seen (at ``seen_at`` of its place) and one CALLERROR counted."""
    for i, charger_id in enumerate(ids() if everyone is None else everyone):
        liveness.seen(charger_id, seen_at(i))
        health.call_error_sent(charger_id)


@pytest.fixture
def small_db(database_url: str) -> Iterator[Database]:
    """One connection (so one unit of work at a time on PostgreSQL too, like SQLite's
    one writer: the order of units is the limiter's FIFO order), short lock waits."""
    database = Database(database_url, pool_size=1, lock_timeout=1.0)
    database.upgrade()

    def register(s: Session) -> None:
        for charger_id in ids():
            chargers.add_charger(s, charger_id)

    database.run_sync(register)
    try:
        yield database
    finally:
        database.dispose()


class Transactions:
    """What each committed transaction did, in commit order: the chargers whose last
    seen it wrote, those whose health counts it added, prunes, and a marker unit."""

    def __init__(self, db: Database) -> None:
        self.committed: list[dict[str, Any]] = []
        self._current = self._fresh()
        event.listen(db.engine, "before_cursor_execute", self._statement)
        event.listen(db.engine, "commit", self._commit)
        event.listen(db.engine, "rollback", self._rollback)

    @staticmethod
    def _fresh() -> dict[str, Any]:
        return {"touched": [], "counted": [], "pruned": 0, "marker": False}

    def _statement(
        self, _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, _many: bool
    ) -> None:
        if statement.startswith("UPDATE charge_points") and "last_seen" in statement:
            self._current["touched"].extend(_charger_ids(params))
        elif statement.startswith("INSERT INTO charger_health"):
            self._current["counted"].extend(_charger_ids(params))
        elif statement.startswith("DELETE FROM charger_health"):
            self._current["pruned"] += 1
        elif "'marker'" in statement:
            self._current["marker"] = True

    def _commit(self, _conn: Any) -> None:
        self.committed.append(self._current)
        self._current = self._fresh()

    def _rollback(self, _conn: Any) -> None:
        self._current = self._fresh()

    def writing(self) -> list[dict[str, Any]]:
        return [t for t in self.committed if t["touched"] or t["counted"] or t["pruned"]]


def _charger_ids(params: Any) -> list[str]:
    """The charger ids among a statement's parameters (one row, or executemany rows)."""
    if isinstance(params, dict):
        params = list(params.values())
    out: list[str] = []
    for value in params:
        if isinstance(value, str) and value.startswith("CP-"):
            out.append(value)
        elif isinstance(value, list | tuple | dict):
            out.extend(_charger_ids(value))
    return out


def _marker(s: Session) -> None:
    s.execute(text("SELECT 'marker'"))


async def _wait_queued(db: Database, waiting: int) -> None:
    while db.limiter.statistics().tasks_waiting < waiting:
        await trio.lowlevel.checkpoint()


async def test_a_flush_is_written_in_slices_and_other_work_runs_between_them(
    small_db: Database,
) -> None:
    db = small_db
    health = HealthRecorder()
    liveness = Liveness(db, slice_size=PRESENCE_SLICE, health=health)
    everyone_seen_and_counted(liveness, health)
    recorded = Transactions(db)
    # Hold the database while the flush and then another unit of work queue for it:
    # the limiter is FIFO, so the flush's first slice goes first, the other unit next.
    await db.limiter.acquire()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(liveness.flush)
        await _wait_queued(db, 1)
        nursery.start_soon(db.run, _marker)
        await _wait_queued(db, 2)
        db.limiter.release()

    writes = recorded.writing()
    assert len(writes) == -(-N // PRESENCE_SLICE)  # ceil: one transaction per slice
    for t in writes:
        assert 0 < len(set(t["touched"]) | set(t["counted"])) <= PRESENCE_SLICE
        assert set(t["counted"]) == set(t["touched"])  # each charger's counts with its time
    # Every charger once, in charger id order within and across slices (the lock order
    # of PostgreSQL's writers: chargers.touch, group_commit.lock_order).
    assert [cid for t in writes for cid in t["touched"]] == ids()
    assert [t["pruned"] for t in writes] == [1] + [0] * (len(writes) - 1)  # once a flush
    # The unit queued behind the first slice ran before the next one.
    order = [("marker" if t["marker"] else "slice") for t in recorded.committed]
    assert order.index("marker") == 1, order

    assert liveness.pending == 0
    assert health.unwritten == 0
    assert db.run_sync(chargers.get_charger, ids()[-1]).last_seen == seen_at(N - 1)
    assert errors_stored(db) == dict.fromkeys(ids(), 1)


class FailsOnce:
    """The database as the flush sees it, unavailable (really: locked SQLite file,
    PostgreSQL refusing connections) for its ``n``-th unit of work only."""

    def __init__(self, db: Database, n: int) -> None:
        self._db = db
        self._n = n
        self.calls = 0

    async def run(self, fn: Any, *args: Any) -> Any:
        self.calls += 1
        if self.calls == self._n:
            with database_outage(self._db.url):
                return await self._db.run(fn, *args)
        return await self._db.run(fn, *args)


async def test_a_transient_failure_keeps_the_unwritten_slices_for_the_next_flush(
    small_db: Database,
) -> None:
    db = small_db
    health = HealthRecorder()
    flaky = FailsOnce(db, 2)  # the second slice
    liveness = Liveness(flaky, slice_size=PRESENCE_SLICE, health=health)  # type: ignore[arg-type]
    everyone = ids()
    everyone_seen_and_counted(liveness, health, everyone)

    await liveness.flush()

    written, kept = everyone[:PRESENCE_SLICE], everyone[PRESENCE_SLICE:]
    assert flaky.calls == 2  # the third slice is not tried against a database that failed
    assert liveness.pending == len(kept)
    assert set(health.pending_all()) == set(kept)
    times = db.run_sync(_last_seen)
    assert {cid for cid, at in times.items() if at is not None} == set(written)
    assert all(times[cid] == seen_at(i) for i, cid in enumerate(written))

    # Meanwhile: a newer time wins over the kept one, an older one does not.
    newer, older = kept[0], kept[-1]
    liveness.seen(newer, seen_at(10_000))
    liveness.seen(older, T0 - timedelta(days=1))
    await liveness.flush()
    assert liveness.pending == 0
    assert health.unwritten == 0
    times = db.run_sync(_last_seen)
    expected = {cid: seen_at(i) for i, cid in enumerate(everyone)} | {newer: seen_at(10_000)}
    assert times == expected
    # Each charger's count written once: neither lost nor added twice.
    assert errors_stored(db) == dict.fromkeys(everyone, 1)


async def test_a_flush_cancelled_between_slices_keeps_the_rest_for_the_final_flush(
    small_db: Database,
) -> None:
    """Shutdown cancels the writer's loop, maybe in the middle of a flush; its final
    flush must still write everything (``Liveness.run``)."""
    db = small_db
    health = HealthRecorder()
    liveness = Liveness(db, slice_size=PRESENCE_SLICE, health=health)
    everyone = ids()
    everyone_seen_and_counted(liveness, health, everyone)

    async def flush_until_cancelled(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await liveness.flush()

    async def cancel_after_first_slice(scope: trio.CancelScope) -> None:
        await db.limiter.acquire()  # queued behind the first slice: it has committed
        scope.cancel()
        await trio.lowlevel.checkpoint()
        db.limiter.release()

    await db.limiter.acquire()
    async with trio.open_nursery() as nursery:
        scope = await nursery.start(flush_until_cancelled)
        await _wait_queued(db, 1)
        nursery.start_soon(cancel_after_first_slice, scope)
        await _wait_queued(db, 2)
        db.limiter.release()

    kept = everyone[PRESENCE_SLICE:]
    assert liveness.pending == len(kept)
    assert set(health.pending_all()) == set(kept)
    await liveness.flush(final=True)
    assert db.run_sync(_last_seen) == {cid: seen_at(i) for i, cid in enumerate(everyone)}
    assert errors_stored(db) == dict.fromkeys(everyone, 1)


def errors_stored(db: Database) -> dict[str, int]:
    """The health counts (CALLERRORs sent) stored per charger (in whichever hour: the
    test may run across an hour's change)."""
    stored = db.run_sync(charger_health.buckets, None, utc_now() - timedelta(hours=3))
    return {cid: sum(b.call_errors_sent for b in bs) for cid, bs in stored.items()}


def _last_seen(s: Session) -> dict[str, datetime | None]:
    return {cid: chargers.get_charger(s, cid).last_seen for cid in ids()}  # type: ignore[union-attr]


async def test_the_seen_event_is_built_only_when_someone_takes_it(
    small_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chargers.seen formats a time per charger (~19 ms for 1,000 on a loaded box, on the
    trio thread): built only for a subscriber whose filter may take it or for the
    cluster's other nodes; still counted for /metrics either way."""
    formatted: list[datetime] = []

    def counting(moment: datetime) -> str:
        formatted.append(moment)
        return format_utc(moment)

    monkeypatch.setattr(ingest, "format_utc", counting)
    hub = EventHub(16)
    tally = EventTally()
    hub.tap = tally
    liveness = Liveness(small_db, publish=hub.publish_lazy)

    async def flush_one(charger_id: str, i: int) -> None:
        liveness.seen(charger_id, seen_at(i))
        await liveness.flush()

    # Nobody but a service that follows other events (the local-list service).
    async with hub.subscribe(kinds=("charger.connected", "charger.boot")) as follower:
        await flush_one("CP-0000", 0)
        assert formatted == []
        assert hub.statistics().published == 0
        with pytest.raises(trio.WouldBlock):
            follower._receive.receive_nowait()
    assert tally.counts.get(Event.CHARGERS_SEEN) == 1  # counted all the same

    # A console (no filter), and one that follows a single charger.
    async with hub.subscribe(remote=True) as console, hub.subscribe(charger_id="CP-0001") as one:
        await flush_one("CP-0001", 1)
        for sub in (console, one):
            item = sub._receive.receive_nowait()
            assert isinstance(item, HubEvent)
            assert item.name == Event.CHARGERS_SEEN
            assert item.data == {"chargers": {"CP-0001": format_utc(seen_at(1))}}
    assert formatted == [seen_at(1)]

    # Several nodes: another node's console may take it (through the event outbox).
    exported: list[tuple[str, dict[str, Any]]] = []
    hub.export = lambda name, data: exported.append((name, data))
    await flush_one("CP-0002", 2)
    assert exported == [(Event.CHARGERS_SEEN, {"chargers": {"CP-0002": format_utc(seen_at(2))}})]
    assert tally.counts.get(Event.CHARGERS_SEEN) == 3


def test_postgresql_writes_larger_slices(database_url: str) -> None:
    """SQLite has one writer, so a slice holds every other unit: 100 chargers. PostgreSQL
    runs units side by side and pays round trips per unit: 1,000."""
    database = Database(database_url)
    try:
        expected = PRESENCE_SLICE if database.backend == "sqlite" else PRESENCE_SLICE_POSTGRESQL
        assert Liveness(database).slice_size == expected
    finally:
        database.dispose()


async def test_a_health_report_during_a_flush_counts_every_charger_once(
    small_db: Database,
) -> None:
    """Reads add the counts not written yet to the stored ones (charger_health.
    health_report). A flush takes every count out of memory at its start and writes
    them slice by slice: a report that ran between two slices missed the counts of the
    slices still to come (in neither memory nor the database; review of session 8)."""
    db = small_db
    health = HealthRecorder()
    liveness = Liveness(db, slice_size=PRESENCE_SLICE, health=health)
    everyone_seen_and_counted(liveness, health)
    settings = Settings()
    during: list[dict[str, int]] = []
    flushing = True

    async def flush() -> None:
        nonlocal flushing
        await liveness.flush()
        flushing = False

    async def report_while_flushing() -> None:
        # One database connection, first come first served: each report queues
        # behind the slice that is writing, so reports and slices take turns.
        while flushing:
            views = await health_report(db, health, settings)
            if flushing:
                during.append({v["charger_id"]: v["call_errors_sent_24h"] for v in views})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flush)
        nursery.start_soon(report_while_flushing)

    assert during, "no report ran while the flush was writing"
    for counts in during:
        assert counts == dict.fromkeys(ids(), 1)
    views = await health_report(db, health, settings)
    assert {v["charger_id"]: v["call_errors_sent_24h"] for v in views} == dict.fromkeys(ids(), 1)
    assert errors_stored(db) == dict.fromkeys(ids(), 1)


async def test_seconds_online_are_counted_in_steps_giving_way_between(
    small_db: Database,
) -> None:
    """Every charger connected a minute ago is due at the same flush: counting them all
    at once held the trio thread 7.5 ms per 1,000 chargers (every charger waited). The
    flush counts ``ONLINE_SLICE`` at a time and lets other tasks run between."""
    db = small_db
    steps: list[int | str] = []

    class Recorder(HealthRecorder):
        def count_online(self, due: list[tuple[str, datetime]], now: datetime) -> None:
            steps.append(len(due))
            super().count_online(due, now)

    health = Recorder()
    connected_at = utc_now() - timedelta(minutes=2)
    everyone = [f"CP-{i:05d}" for i in range(2 * ONLINE_SLICE + 1)]
    for charger_id in everyone:
        health.connected(charger_id, connected_at)
    liveness = Liveness(db, health=health)
    done = False

    async def other_task() -> None:
        while not done:
            steps.append("other")
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()
        await liveness.flush()
        done = True

    at = [i for i, s in enumerate(steps) if s != "other"]
    assert [steps[i] for i in at][:3] == [ONLINE_SLICE, ONLINE_SLICE, 1]
    # Between two steps the flush gives way (a checkpoint): the other task, runnable,
    # gets its turn in the next scheduling batch (in either order with the flush's next
    # step), so before the third step at the latest.
    assert "other" in steps[at[0] + 1 : at[2]]
    # Each charger's time counted once, stored: 2 minutes and a bit, in 1 or 2 hours.
    stored = db.run_sync(charger_health.buckets, None, utc_now() - timedelta(hours=3))
    online = {cid: sum(b.online_s for b in bs) for cid, bs in stored.items()}
    assert set(online) == set(everyone)
    assert all(120 <= s < 130 for s in online.values())


async def test_a_flush_failing_with_a_bug_leaves_no_count_readable_but_unstored(
    small_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush that fails with a bug (not the database's failure) drops its batch, as
    the writer's loop says (the chargers' next messages bring newer times). Its health
    counts used to stay readable as "not written yet" for good (review): reads showed
    counts that were never stored, and ``unwritten`` never went back to 0."""
    db = small_db
    health = HealthRecorder()
    liveness = Liveness(db, slice_size=PRESENCE_SLICE, health=health)
    everyone_seen_and_counted(liveness, health)
    real = ingest._write_presence
    calls = 0

    def second_slice_has_a_bug(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyError("a bug")
        return real(*args)

    monkeypatch.setattr(ingest, "_write_presence", second_slice_has_a_bug)
    with pytest.raises(KeyError):
        await liveness.flush()

    written = ids()[:PRESENCE_SLICE]
    assert health.unwritten == 0
    views = await health_report(db, health, Settings())
    shown = {v["charger_id"]: v["call_errors_sent_24h"] for v in views}
    assert shown == {cid: int(cid in written) for cid in ids()}  # what was stored
    assert errors_stored(db) == dict.fromkeys(written, 1)
