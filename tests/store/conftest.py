"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import migrated
from voltaro.store.db import Database


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    """A migrated database on a fresh PostgreSQL database, four connections."""
    yield from migrated(postgres_url)
