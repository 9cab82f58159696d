"""LISTEN/NOTIFY under trio against the real PostgreSQL (issue 18): delivery at commit,
nothing on rollback, a resync after the listener's connection is cut or a subscriber
falls behind, and payloads PostgreSQL would refuse are refused before sending."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import trio
from sqlalchemy.orm import Session

from voltaro.store.db import Database
from voltaro.store.notify import (
    MAX_PAYLOAD_BYTES,
    Notification,
    PgListener,
    channel_name,
    libpq_url,
    notify,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url, pool_size=2)
    try:
        yield database
    finally:
        database.dispose()


async def _receive(channel: trio.MemoryReceiveChannel[Notification]) -> Notification:
    with trio.fail_after(5):
        return await channel.receive()


def test_channel_names_are_plain_identifiers() -> None:
    assert channel_name("events") == "voltaro_events"
    assert channel_name("node", "Site-B.2") == "voltaro_node_site_b_2"
    with pytest.raises(ValueError):
        channel_name("node", "x" * 60)


async def test_a_notification_arrives_at_commit_and_not_on_rollback(pg: Database) -> None:
    listener = PgListener(pg.url)
    events = listener.subscribe(channel_name("events"))
    other = listener.subscribe(channel_name("node", "n2"))

    def rolled_back(session: Session) -> None:
        notify(session, channel_name("events"), "never")
        session.rollback()

    async with trio.open_nursery() as nursery:
        await nursery.start(listener.run)
        await pg.run(rolled_back)
        await pg.run(lambda s: notify(s, channel_name("events"), "one"))
        await pg.run(lambda s: notify(s, channel_name("node", "n2"), "for n2"))
        assert await _receive(events) == Notification("voltaro_events", "one")
        assert await _receive(other) == Notification("voltaro_node_n2", "for n2")
        nursery.cancel_scope.cancel()


async def test_a_cut_connection_is_made_again_and_subscribers_resync(pg: Database) -> None:
    listener = PgListener(pg.url, reconnect_delay=0.1)
    events = listener.subscribe(channel_name("events"))
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.run)

        def cut() -> None:  # the listener's own backend only: the server stays up
            with psycopg.connect(libpq_url(pg.url), autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
                )

        await trio.to_thread.run_sync(cut)
        assert await _receive(events) == Notification("voltaro_events", None)  # resync
        # The resync is sent when the connection is lost and again once it is back;
        # notify until one arrives after it is back (until then they are lost: NOTIFY
        # is at-most-once, the reason for the resync).
        with trio.fail_after(5):
            while True:
                await pg.run(lambda s: notify(s, channel_name("events"), "after"))
                with trio.move_on_after(0.2):
                    while (got := await events.receive()).payload is None:
                        pass
                    break
        assert got == Notification("voltaro_events", "after")
        assert listener.connects == 2
        nursery.cancel_scope.cancel()


async def test_a_subscriber_that_falls_behind_gets_a_resync_not_a_silent_gap(
    pg: Database,
) -> None:
    listener = PgListener(pg.url)
    slow = listener.subscribe(channel_name("events"), buffer=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.run)

        def five(session: Session) -> None:
            for i in range(5):
                notify(session, channel_name("events"), str(i))

        await pg.run(five)
        await trio.sleep(0.5)  # all five delivered (or dropped) while nobody reads
        await pg.run(lambda s: notify(s, channel_name("events"), "unread"))
        await trio.sleep(0.5)
        got: list[Any] = [(await _receive(slow)).payload for _ in range(3)]
        # Two fitted; the last slot says "resync" in place of the rest, which were dropped.
        assert got == ["0", "1", None]
        await pg.run(lambda s: notify(s, channel_name("events"), "later"))
        assert (await _receive(slow)).payload == "later"
        with trio.move_on_after(0.3):
            extra = await slow.receive()
            raise AssertionError(f"nothing else was sent, got {extra}")
        nursery.cancel_scope.cancel()


async def test_an_unreachable_database_fails_the_start(tmp_path: Any) -> None:
    listener = PgListener("postgresql+psycopg://postgres@127.0.0.1:1/none", connect_timeout=1)
    listener.subscribe(channel_name("events"))
    with pytest.raises(ExceptionGroup) as raised:
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
    assert raised.group_contains(psycopg.OperationalError, match="Connection refused")


def test_a_payload_postgresql_would_refuse_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="store the data in a table"):
        notify(None, "voltaro_events", "x" * (MAX_PAYLOAD_BYTES + 1))  # type: ignore[arg-type]
