"""Process logging: one line per event on stderr, UTC timestamps.

The ``ocpp`` library logs every frame with its full payload (idTags included) at INFO
(trio-and-the-ocpp-library §7.8); it is kept at WARNING unless DEBUG is asked for.
"""

from __future__ import annotations

import logging
import sys
import time


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for noisy in ("ocpp", "trio-websocket", "hypercorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(quiet)
