"""Process logging: one line per event on stderr, UTC timestamps.

The ``ocpp`` library logs every frame with its full payload (idTags included) at INFO
(trio-and-the-ocpp-library §7.8); it is kept at WARNING unless DEBUG is asked for.

Log forging (issue 11.4): chargers choose many strings we log (vendorId, messageId, ids,
error descriptions). A newline or an ANSI escape in one of them could forge a line such
as "security: ..." or rewrite the operator's terminal. The formatter escapes every
control character, line separator, bidi control and lone surrogate in the *message*
(``\n`` becomes ``\\n``, ESC becomes ``\\x1b``), so one event is always one line. A
traceback appended after the message is ours and keeps its line breaks.

SQLAlchemy's "(Background on this error at: ...)" links are dropped from messages, so a
database warning is one short line. ``log_format = "json"``: one JSON object per line
(``time``, ``level``, ``logger``, ``message``, and ``exception`` when there is one), for
log shippers; the message is escaped the same way.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from voltaro.domain.secrets import redact_text

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` on one line: control characters and the like shown as escapes."""
    return _UNSAFE.sub(_escape_char, text)


_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


def one_line(text: str) -> str:
    """The message as logged: secrets hidden (voltaro.domain.secrets: Basic and Bearer
    credentials, AuthorizationKey values, password/token fields, PEM private keys; the
    ``ocpp`` library logs whole frames at DEBUG), no SQLAlchemy background link,
    control characters escaped. Every log line passes here (issue 15)."""
    return escape_controls(redact_text(_BACKGROUND.sub("", text)))


def _utc(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class SafeFormatter(logging.Formatter):
    """UTC timestamps; the message with its control characters escaped (one line)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``log_format = "json"``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _utc(record),
            "level": record.levelname,
            "logger": record.name,
            "message": one_line(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else safe_formatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for noisy in ("ocpp", "trio-websocket", "hypercorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(quiet)


def safe_formatter() -> SafeFormatter:
    return SafeFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
