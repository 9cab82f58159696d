"""OCPP-J 1.6 RPC errors with the exact 1.6 spellings (OCPP-J 1.6 §4.2.3, Table 7).

The 1.6 errata keep `FormationViolation` and `OccurenceConstraintViolation` (one "r");
the `ocpp` library emits the 2.0.1 spellings in places, so everything we send goes
through `spec_code()`.
"""

from __future__ import annotations

from typing import Any

ERROR_CODES = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)

_RESPELL = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}


def spec_code(code: str) -> str:
    """The OCPP-J 1.6 spelling of an error code; anything unknown is GenericError."""
    code = _RESPELL.get(code, code)
    return code if code in ERROR_CODES else "GenericError"


class OcppError(Exception):
    """An error to answer a CALL with: a CALLERROR carrying ``code`` and ``description``."""

    def __init__(self, code: str, description: str = "", details: dict[str, Any] | None = None):
        super().__init__(f"{code}: {description}")
        self.code = spec_code(code)
        self.description = description
        self.details = details or {}


class CallTimeoutError(TimeoutError):
    """The charger did not answer our CALL within the response timeout."""


class CallQueueTimeout(TimeoutError):
    """Our CALL waited too long for the charger's earlier CALLs to finish; not sent."""


class ConnectionLostError(ConnectionError):
    """The connection ended before the charger answered (or before we could send)."""


class CallErrorReceived(Exception):
    """The charger answered our CALL with a CALLERROR."""

    def __init__(self, code: str, description: str, details: Any) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.details = details


class InvalidRequestError(ValueError):
    """A CALL we were about to send fails its schema; nothing was sent (R83)."""
