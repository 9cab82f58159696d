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


def test_key_value_lines_quote_what_a_charger_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """logfmt: a value with spaces, quotes, = or a newline is quoted and stays on the line;
    the charger context comes from the context variables set at the message boundary."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.configure_logging("INFO", "kv")
    charger = logs.CHARGER_ID.set('CP "7" =x')
    message = logs.MESSAGE_ID.set("m-1")
    try:
        logging.getLogger("voltaro.test").warning('vendor said "hi"\nsecurity: forged')
        logs.MESSAGE_ID.reset(message)
        logs.CHARGER_ID.reset(charger)
        logging.getLogger("voltaro.test").info("no charger here")
    finally:
        logs.configure_logging("WARNING")
    first, second = stream.getvalue().splitlines()
    assert ' charger_id="CP \\"7\\" =x" message_id=m-1 ' in first
    assert first.endswith(' msg="vendor said \\"hi\\"\\\\nsecurity: forged"')
    assert first.startswith("time=")
    assert " level=WARNING logger=voltaro.test " in first
    assert "charger_id" not in second
    assert second.endswith(' msg="no charger here"')


def test_text_and_json_lines_carry_the_charger_context(monkeypatch: pytest.MonkeyPatch) -> None:
    for log_format in ("text", "json"):
        stream = io.StringIO()
        monkeypatch.setattr("sys.stderr", stream)
        logs.configure_logging("INFO", log_format)
        token = logs.CHARGER_ID.set("CP-1")
        try:
            logging.getLogger("voltaro.test").info("stored")
        finally:
            logs.CHARGER_ID.reset(token)
            logs.configure_logging("WARNING")
        (line,) = stream.getvalue().splitlines()
        if log_format == "json":
            assert json.loads(line)["charger_id"] == "CP-1"
            assert "message_id" not in json.loads(line)
        else:
            assert line.endswith("voltaro.test: stored [charger_id=CP-1]")
