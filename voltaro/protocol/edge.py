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
    """A copy of a parsed payload that every layer below can hold.

    ``repaired``, when given, receives the path of every string (or key) that was
    repaired, e.g. ``payload/info``.

    Raises:
        OcppError: TypeConstraintViolation for a number beyond 64 bits or not finite,
            FormationViolation for nesting deeper than ``MAX_DEPTH``.
    """
    return _walk(value, where, 0, repaired if repaired is not None else [])


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
