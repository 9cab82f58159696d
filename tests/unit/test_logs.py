"""Log lines: one per event, also for SQLAlchemy's multi-line errors."""

from __future__ import annotations

import io
import json
import logging

import pytest
import sqlalchemy
from sqlalchemy.exc import OperationalError

from voltaro import logs


def _sqlalchemy_error() -> OperationalError:
    engine = sqlalchemy.create_engine("sqlite://")
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT * FROM missing"))
    except OperationalError as exc:
        return exc
    raise AssertionError("the query should fail")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_database_warning_is_one_line(log_format: str, monkeypatch: pytest.MonkeyPatch) -> None:
    error = _sqlalchemy_error()
    assert len(str(error).splitlines()) >= 3  # what SQLAlchemy gives: SQL and a link
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.configure_logging("INFO", log_format)
    try:
        logging.getLogger("voltaro.test").warning("database error, retrying: %s", error)
    finally:
        logs.configure_logging("WARNING")
    (line,) = stream.getvalue().splitlines()
    message = json.loads(line)["message"] if log_format == "json" else line
    assert "no such table: missing" in message
    assert "sqlalche.me" not in message
