"""A migrated database for a fixture's life (SQLite file or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voltaro.store.db import Database


def migrated(url: str, pool_size: int = 4) -> Iterator[Database]:
    """A migrated ``Database`` on ``url`` for a fixture's life (disposed after)."""
    # Imported here, as the root conftest did: conftest is read before the test run's
    # environment is complete.
    from voltaro.store.db import Database

    database = Database(url, pool_size=pool_size)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()
