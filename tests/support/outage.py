"""Make the test's database unavailable and bring it back, without touching the shared
PostgreSQL server: SQLite is write-locked by a second connection (BEGIN EXCLUSIVE);
a PostgreSQL test database refuses new connections and its sessions are terminated."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


class Outage:
    def __init__(self, url: str) -> None:
        self.url = url
        self._lock: sqlite3.Connection | None = None
        self._admin: Any = None

    @property
    def sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def start(self) -> None:
        if self.sqlite:
            self._lock = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self._lock.execute("BEGIN EXCLUSIVE")
            return
        name = self.url.rsplit("/", 1)[-1]
        base = self.url.rsplit("/", 1)[0].replace("+psycopg", "")
        self._admin = psycopg.connect(base + "/test", autocommit=True)
        self._admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        self._admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )

    def end(self) -> None:
        if self._lock is not None:
            self._lock.execute("ROLLBACK")
            self._lock.close()
            self._lock = None
        if self._admin is not None:
            name = self.url.rsplit("/", 1)[-1]
            self._admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            self._admin.close()
            self._admin = None

    @property
    def is_sqlite(self) -> bool:
        return self.sqlite


@contextmanager
def database_outage(database_url: str) -> Iterator[Outage]:
    """The database unavailable for the body of a ``with`` block."""
    outage = Outage(database_url)
    outage.start()
    try:
        yield outage
    finally:
        outage.end()
