"""The routed_commands units of work against the real PostgreSQL (issue 18): a request
is claimed once, a request nobody claimed cannot be claimed after the origin gave up or
readdressed it, and the retention trims only old rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.support.databases import migrated
from voltaro.domain.timestamps import utc_now
from voltaro.store import routed_commands as routed
from voltaro.store.db import Database

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    yield from migrated(postgres_url, pool_size=2)


def _owned_by(s: Session, charger_id: str, node: str, *, live: bool = True) -> None:
    lease = "interval '1 hour'" if live else "interval '-1 second'"
    s.execute(
        text(
            "INSERT INTO cluster_nodes (node_id, incarnation, started_at, lease_until) "
            f"VALUES (:n, :inc, now() AT TIME ZONE 'UTC', "
            f"(now() AT TIME ZONE 'UTC') + {lease}) ON CONFLICT (node_id) DO NOTHING"
        ),
        {"n": node, "inc": f"i-{node}"},
    )
    s.execute(
        text(
            "INSERT INTO charger_owners (charger_id, node_id, incarnation, epoch, connected_at) "
            "VALUES (:c, :n, :inc, 3, now() AT TIME ZONE 'UTC') "
            "ON CONFLICT (charger_id) DO UPDATE SET node_id = EXCLUDED.node_id, "
            "incarnation = EXCLUDED.incarnation"
        ),
        {"c": charger_id, "n": node, "inc": f"i-{node}"},
    )


def _start(pg: Database, request_id: str, charger_id: str = "CP-1") -> routed.Owner | None:
    existing, owner = pg.run_sync(
        routed.start,
        request_id=request_id,
        charger_id=charger_id,
        action="ClearCache",
        payload={"action": "ClearCache", "args": {}},
        origin_node="n1",
        requested_by="alice",
    )
    assert existing is None
    return owner


def test_a_request_is_claimed_once(pg: Database) -> None:
    pg.run_sync(_owned_by, "CP-1", "n2")
    assert _start(pg, "r1") == routed.Owner("n2", 3)
    assert pg.run_sync(routed.claim, "r1", "n3") is None  # not addressed to n3
    first = pg.run_sync(routed.claim, "r1", "n2")
    assert first is not None
    assert (first.status, first.owner_epoch) == ("routed", 3)
    assert pg.run_sync(routed.claim, "r1", "n2") is None
    # A second start with the same id is the first request, not a new one.
    existing, owner = pg.run_sync(
        routed.start,
        request_id="r1",
        charger_id="CP-1",
        action="ClearCache",
        payload={},
        origin_node="n1",
        requested_by="alice",
    )
    assert existing is not None
    assert (existing.status, owner) == ("routed", None)


def test_no_live_owner_is_offline_at_once(pg: Database) -> None:
    pg.run_sync(_owned_by, "CP-1", "dead", live=False)
    assert _start(pg, "r1") is None
    row = pg.run_sync(routed.get, "r1")
    assert row is not None
    assert row.status == "offline"


def test_given_up_or_readdressed_requests_cannot_be_claimed_by_the_old_owner(
    pg: Database,
) -> None:
    pg.run_sync(_owned_by, "CP-1", "n2")
    _start(pg, "gone")
    error = {"error": {"code": "owner_unreachable", "message": "m"}}
    assert pg.run_sync(routed.give_up, "gone", "error", error)
    assert pg.run_sync(routed.claim, "gone", "n2") is None
    assert not pg.run_sync(routed.give_up, "gone", "error", error)
    _start(pg, "moved")
    assert pg.run_sync(routed.readdress, "moved", "n2", routed.Owner("n3", 4), "n1")
    assert pg.run_sync(routed.claim, "moved", "n2") is None
    assert pg.run_sync(routed.claim, "moved", "n3") is not None
    assert not pg.run_sync(routed.readdress, "moved", "n3", routed.Owner("n2", 5), "n1")


def test_the_retention_trims_only_old_rows(pg: Database) -> None:
    pg.run_sync(_owned_by, "CP-1", "n2")
    for i in range(5):
        _start(pg, f"old-{i}")
    _start(pg, "new")
    pg.run_sync(
        lambda s: s.execute(
            text("UPDATE routed_commands SET created_at = :t WHERE id LIKE 'old-%'"),
            {"t": (utc_now() - timedelta(hours=25)).replace(tzinfo=None)},
        )
    )
    assert pg.run_sync(routed.trim, timedelta(hours=24), 2) == 2
    assert pg.run_sync(routed.trim, timedelta(hours=24)) == 3
    assert pg.run_sync(routed.trim, timedelta(hours=24)) == 0
    assert pg.run_sync(routed.get, "new") is not None


def test_a_retry_blocked_by_a_concurrent_retry_of_an_unsent_request_follows_it(
    postgres_url: str,
) -> None:
    """Two retries of a request that ended unsent (owner unreachable): the first locks the
    row, replaces it with a new queued request and commits while the second waits for its
    lock. The second must follow the first (never send again, never "offline": the
    command is being carried out), not find "no row" and report the charger offline."""
    import threading

    from voltaro.store.errors import TransientStorageError

    pg = Database(postgres_url, pool_size=3)
    pg.upgrade()
    try:
        pg.run_sync(_owned_by, "CP-1", "n2")
        assert _start(pg, "r9") == routed.Owner("n2", 3)
        unreachable = {"error": {"code": "owner_unreachable", "message": "not sent"}}
        assert pg.run_sync(routed.give_up, "r9", "error", unreachable)

        outcome: list[object] = []

        def second_retry() -> None:
            try:
                outcome.append(
                    pg.run_sync(
                        routed.start,
                        request_id="r9",
                        charger_id="CP-1",
                        action="ClearCache",
                        payload={"action": "ClearCache", "args": {}},
                        origin_node="n1",
                        requested_by="bob",
                    )
                )
            except TransientStorageError as exc:  # pragma: no cover - shown by the assert
                outcome.append(exc)

        # The first retry, step by step as routed.start takes them: the row is locked...
        with Session(pg.engine) as first:
            first.begin()
            first.execute(text("SELECT id FROM routed_commands WHERE id = 'r9' FOR UPDATE"))
            waiting = threading.Thread(target=second_retry)
            waiting.start()
            # ...the second retry now waits for that lock (its INSERT found the old row).
            with Session(pg.engine) as probe:
                for _ in range(500):
                    blocked = probe.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'"
                        )
                    ).scalar()
                    if blocked:
                        break
                    probe.rollback()
                    threading.Event().wait(0.01)
                assert blocked, "the second retry never waited for the first one's lock"
            # ...then replaced by the new attempt, committed.
            first.execute(text("DELETE FROM routed_commands WHERE id = 'r9'"))
            first.execute(
                text(
                    "INSERT INTO routed_commands (id, charger_id, action, payload, origin_node, "
                    "owner_node, owner_epoch, requested_by, status, created_at) VALUES "
                    "('r9', 'CP-1', 'ClearCache', '{}', 'n1', 'n2', 3, 'alice', 'queued', "
                    "now() AT TIME ZONE 'UTC')"
                )
            )
            first.commit()
        waiting.join(10)
        (result,) = outcome
        assert isinstance(result, tuple), result
        existing, owner = result
        assert existing is not None, "the second retry lost the first one: reported offline"
        assert (existing.status, owner) == ("queued", None)
    finally:
        pg.dispose()
