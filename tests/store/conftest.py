"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from voltaro.store.db import Database


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    """A migrated database on a fresh PostgreSQL database, four connections."""
    database = Database(postgres_url, pool_size=4)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()
