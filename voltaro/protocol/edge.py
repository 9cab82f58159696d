"""What a charger's parsed frame must satisfy before anything else sees it.

Hostile or broken chargers send values JSON allows but the rest of the server cannot
hold (issue 11 items 1-2): lone surrogates (``"\\ud800"`` parses to a str that no UTF-8
encoder, database driver or terminal accepts), NUL (PostgreSQL text refuses it),
integers beyond 64 bits, ``1e400`` (parses to infinity), absurd nesting. The rules:

- text that cannot be encoded is *repaired*, never refused: each lone surrogate and NUL
  becomes U+FFFD. A transaction message must not be refused for an informational string
  (design: "transaction messages are never refused for data reasons"). Repairing is not
  losing: the paths of the repaired strings are reported (``repaired``), and the server
  keeps the message's raw frame, which holds the original as JSON escapes, durably
  before it answers (quarantine, kind ``repaired``; docs/security.md);
- a number no OCPP 1.6 field can hold (beyond signed 64 bits, or not finite) is refused
  with TypeConstraintViolation (OCPP-J 1.6 §4.2.3 Table 7: "a field violates data type
  constraints"); the charger gets a well-defined CALLERROR, the store never sees it;
- nesting deeper than any 1.6 PDU (the deepest, StopTransaction.transactionData, is 4
  levels) is refused with FormationViolation.
"""

from __future__ import annotations

import math
import re
from typing import Any

from voltaro.protocol.errors import OcppError

# Signed 64-bit: the widest integer column of any store we support (BIGINT).
INT_LIMIT = 2**63
# Deepest legitimate 1.6 payload is 4; leave generous room for vendor DataTransfer.
MAX_DEPTH = 16
REPLACEMENT = "\ufffd"
_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")


def repair_text(text: str) -> str:
    """``text`` with every lone surrogate and NUL replaced by U+FFFD."""
    return _UNENCODABLE.sub(REPLACEMENT, text)


def needs_repair(text: str) -> bool:
    return _UNENCODABLE.search(text) is not None


def checked_payload(
    value: Any, *, where: str = "payload", repaired: list[str] | None = None
) -> Any:
    """A parsed payload that every layer below can hold: ``value`` itself when it is
    fine as it is (the usual case; callers pass a frame they just parsed and own), else
    a repaired copy.

    ``repaired``, when given, receives the path of every string (or key) that was
    repaired, e.g. ``payload/info``.

    Raises:
        OcppError: TypeConstraintViolation for a number beyond 64 bits or not finite,
            FormationViolation for nesting deeper than ``MAX_DEPTH``.
    """
    if _clean(value, 0):
        # Issue 14: the walk below builds a path string per value for messages that are
        # almost never needed; this check builds nothing, and anything it does not
        # accept takes the walk, which repairs or refuses exactly as before.
        return value
    return _walk(value, where, 0, repaired if repaired is not None else [])


def _clean_text(text: str) -> bool:
    # Pure ASCII without NUL holds no lone surrogate: no regex needed.
    return (text.isascii() and "\x00" not in text) or not needs_repair(text)


def _clean(value: Any, depth: int) -> bool:
    """True when ``_walk`` would return ``value`` unchanged, repair nothing, raise
    nothing. Exact types only: anything else is left to ``_walk``."""
    if depth > MAX_DEPTH:
        return False
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _clean_text(key) or not _clean_item(item, depth):
                return False
        return True
    if kind is list:
        for item in value:  # noqa: SIM110 - cheaper than all() over a generator
            if not _clean_item(item, depth):
                return False
        return True
    return _clean_item(value, depth - 1)


def _clean_item(item: Any, depth: int) -> bool:
    """``_clean(item, depth + 1)``, leaves checked without a further call."""
    kind = type(item)
    if kind is str:
        return depth < MAX_DEPTH and _clean_text(item)
    if kind is dict or kind is list:
        return _clean(item, depth + 1)
    if depth >= MAX_DEPTH:
        return False
    if kind is bool or item is None:
        return True
    if kind is int:
        return bool(-INT_LIMIT <= item < INT_LIMIT)
    if kind is float:
        return math.isfinite(item) and abs(item) < INT_LIMIT
    return False


def _walk(value: Any, where: str, depth: int, repaired: list[str]) -> Any:
    if depth > MAX_DEPTH:
        raise OcppError("FormationViolation", f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if needs_repair(value):
            repaired.append(where)
            return repair_text(value)
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not -INT_LIMIT <= value < INT_LIMIT:
            raise OcppError("TypeConstraintViolation", f"{where}: integer out of 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= INT_LIMIT:
            raise OcppError("TypeConstraintViolation", f"{where}: number out of range")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = key
            if needs_repair(key):
                name = repair_text(key)
                repaired.append(f"{where}/{name}"[:200])
            out[name] = _walk(item, f"{where}/{name}"[:200], depth + 1, repaired)
        return out
    if isinstance(value, list):
        return [
            _walk(item, f"{where}/{i}"[:200], depth + 1, repaired) for i, item in enumerate(value)
        ]
    return value
