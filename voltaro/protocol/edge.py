"""What a charger's parsed frame must satisfy before anything else sees it.

Hostile or broken chargers send values JSON allows but the rest of the server cannot
hold (issue 11 items 1-2): lone surrogates (``"\\ud800"`` parses to a str that no UTF-8
encoder, database driver or terminal accepts), NUL (PostgreSQL text refuses it),
integers beyond 64 bits, ``1e400`` (parses to infinity), absurd nesting. The rules:

- text that cannot be encoded is *repaired*, never refused: each lone surrogate and NUL
  becomes U+FFFD. A transaction message must not be refused for an informational string
  (design: "transaction messages are never refused for data reasons");
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


def checked_payload(value: Any, *, where: str = "payload") -> Any:
    """A copy of a parsed payload that every layer below can hold.

    Raises:
        OcppError: TypeConstraintViolation for a number beyond 64 bits or not finite,
            FormationViolation for nesting deeper than ``MAX_DEPTH``.
    """
    return _walk(value, where, 0)


def _walk(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise OcppError("FormationViolation", f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return repair_text(value) if needs_repair(value) else value
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
        return {
            repair_text(key): _walk(item, f"{where}/{repair_text(key)}"[:200], depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_walk(item, f"{where}/{i}"[:200], depth + 1) for i, item in enumerate(value)]
    return value
