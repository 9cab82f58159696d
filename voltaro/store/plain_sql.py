"""Multi-row INSERTs as plain SQL on the hot write paths (issue 14).

What SQLAlchemy does per statement and per row (execution context, parameter
construction, type processing) was most of a stored message's CPU in the latency phase;
on PostgreSQL an executemany is also a psycopg pipeline that sends every row as a
statement of its own (one socket write each: with psycopg's executemany, 9-24 sample
rows cost 26-35 % more CPU than the same rows in pages of a few, measured on loopback).
So these writes go through ``Connection.exec_driver_sql``, which keeps SQLAlchemy's
error wrapping (classification, invalidation of a dead connection) but skips the rest,
with each column's own bind processor applied (the stored values are the same).

PostgreSQL: rows go in pages of a fixed size (a page's parameters stay at most 50, the
statements psycopg caches the conversion of), full pages as one executemany, the rest as
one statement: a handful of statement texts, each prepared by psycopg after a few uses.
SQLite: one single-row statement as executemany (sqlite3 steps it per row in C).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table

# psycopg caches the parsing of a query of at most 50 parameters (psycopg._queries).
_MAX_PAGE_PARAMS = 50

Processors = tuple[tuple[int, Any], ...]


def processors(table: Table, names: Sequence[str], dialect: Any) -> Processors:
    """(position, bind processor) of the columns of ``names`` that have one."""
    found = []
    for i, name in enumerate(names):
        process = table.c[name].type._cached_bind_processor(dialect)
        if process is not None:
            found.append((i, process))
    return tuple(found)


def processed(rows: list[tuple[Any, ...]], procs: Processors) -> list[tuple[Any, ...]]:
    """``rows`` with each column's bind processor applied (None stays None)."""
    if not procs:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for i, process in procs:
            if values[i] is not None:
                values[i] = process(values[i])
        out.append(tuple(values))
    return out


class MultiRowInsert:
    """``INSERT INTO table (names) VALUES (...), ... [suffix]`` for one dialect."""

    __slots__ = ("_head", "_one", "_page", "_postgres", "_procs", "_suffix", "_texts")

    def __init__(self, table: Table, names: Sequence[str], dialect: Any, suffix: str = "") -> None:
        self._postgres = dialect.name == "postgresql"
        mark = "%s" if self._postgres else "?"
        self._head = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "
        self._one = "(" + ", ".join(mark for _ in names) + ")"
        self._suffix = suffix
        self._procs = processors(table, names, dialect)
        self._page = max(1, _MAX_PAGE_PARAMS // len(names))
        self._texts: dict[int, str] = {}

    @property
    def page(self) -> int:
        """Rows per statement on PostgreSQL."""
        return self._page

    def _text(self, rows: int) -> str:
        text = self._texts.get(rows)
        if text is None:
            text = self._texts[rows] = (
                self._head + ", ".join(self._one for _ in range(rows)) + self._suffix
            )
        return text

    def run(self, connection: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (values in ``names`` order, unprocessed) on ``connection``."""
        if not rows:
            return
        rows = processed(rows, self._procs)
        if not self._postgres:
            connection.exec_driver_sql(self._text(1), rows)
            return
        page = self._page
        full = len(rows) - len(rows) % page
        if full:
            pages = [
                tuple(value for row in rows[i : i + page] for value in row)
                for i in range(0, full, page)
            ]
            connection.exec_driver_sql(self._text(page), pages if len(pages) > 1 else pages[0])
        if full < len(rows):
            rest = rows[full:]
            flat = tuple(value for row in rest for value in row)
            connection.exec_driver_sql(self._text(len(rest)), flat)
