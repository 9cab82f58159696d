"""What PostgreSQL's sessions are waiting for (tests that interleave transactions)."""

from __future__ import annotations

from sqlalchemy import text

from voltaro.store.db import Database


def lock_waiters(db: Database) -> int:
    """How many sessions of ``db``'s database wait for a lock now."""
    with db.engine.connect() as c:
        return int(
            c.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )
