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
log shippers; the message is escaped the same way. ``log_format = "kv"``: logfmt,
``key=value`` pairs (``time level logger charger_id message_id action msg``), values with
spaces or quotes quoted, for grep and for log shippers that parse logfmt.

Every line of a charger's work carries its charger id and, inside the answer to one of
its messages (or our CALL to it), that message's unique id and action (issue 19). They
come from context variables set where the work starts: the listener sets the charger id
once it has read it from the path (the handshake task; the connection's tasks inherit
it), the protocol layer sets the message id and action for each frame read, each CALL
answered and each CALL we send. A log call needs no extra arguments: ``ChargerContext``
(a filter on the handler) copies them onto every record. Setting a context variable costs
about 50 ns, so this is paid per message, not per line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextvars import ContextVar

from voltaro.domain.secrets import redact_text

# The charger whose work this task does, and the message being handled (see above).
CHARGER_ID: ContextVar[str | None] = ContextVar("voltaro_log_charger_id", default=None)
MESSAGE_ID: ContextVar[str | None] = ContextVar("voltaro_log_message_id", default=None)
ACTION: ContextVar[str | None] = ContextVar("voltaro_log_action", default=None)

# Record attributes ChargerContext sets, in the order the formatters write them.
CONTEXT_FIELDS = ("charger_id", "message_id", "action")

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


class ChargerContext(logging.Filter):
    """Copies the charger id, message id and action of the current task onto each
    record (None outside a charger's work). A record that already has them (passed
    with ``extra=``) keeps its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "charger_id"):
            record.charger_id = CHARGER_ID.get()
        if not hasattr(record, "message_id"):
            record.message_id = MESSAGE_ID.get()
        if not hasattr(record, "action"):
            record.action = ACTION.get()
        return True


def _context(record: logging.LogRecord) -> list[tuple[str, str]]:
    pairs = []
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            pairs.append((name, one_line(str(value))))
    return pairs


class SafeFormatter(logging.Formatter):
    """UTC timestamps; the message with its control characters escaped (one line),
    then the charger context as ``key=value`` pairs when there is one."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        line = super().formatMessage(record)
        context = _context(record)
        if context:
            line += " [" + " ".join(f"{k}={_kv_value(v)}" for k, v in context) + "]"
        return line

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``log_format = "json"``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _utc(record),
            "level": record.levelname,
            "logger": record.name,
            **dict(_context(record)),
            "message": one_line(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_KV_BARE = re.compile(r"[^\s=\"\\]+")


def _kv_value(value: str) -> str:
    """A logfmt value: bare when it is one plain word, else double-quoted with ``"``
    and ``\\`` escaped (control characters are already escaped by one_line)."""
    if _KV_BARE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class KeyValueFormatter(logging.Formatter):
    """logfmt: one line of ``key=value`` pairs per event (``log_format = "kv"``)."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = [("time", _utc(record)), ("level", record.levelname), ("logger", record.name)]
        pairs += _context(record)
        pairs.append(("msg", one_line(record.getMessage())))
        if record.exc_info:
            # The traceback on the same line: its line breaks escaped like the message's.
            pairs.append(("exception", escape_controls(self.formatException(record.exc_info))))
        return " ".join(f"{key}={_kv_value(value)}" for key, value in pairs)


def formatter_for(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "kv":
        return KeyValueFormatter()
    return safe_formatter()


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(str(log_format)))
    handler.addFilter(ChargerContext())
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
