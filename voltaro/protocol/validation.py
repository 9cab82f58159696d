"""Schema validation with OCPP-J 1.6 error codes, strict outward and lenient inward.

The library's own `_validate_payload` answers with 2.0.1 spellings (FormatViolation) and
maps enum/minItems violations to the wrong codes (requirements R21, library gotcha 2), so
we drive its cached Draft4 validators ourselves and map each failing keyword to the code
OCPP-J 1.6 Table 7 defines. Validation runs inline: the library's default thread-pool
validation does not work under trio and costs more than it saves (reference §9.8).
"""

from __future__ import annotations

import functools
from typing import Any

import ocpp.messages
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import best_match
from ocpp.v16.enums import Action

from voltaro.protocol.errors import OcppError

_rs: Any
try:
    import jsonschema_rs as _rs
except ImportError:  # an environment installed before the dependency: the slow path only
    _rs = None

# The process-wide switch must be off under trio (reference §2); we validate inline.
ocpp.messages.ASYNC_VALIDATION = False

_VERSION = "1.6"
_CALL, _RESULT = 2, 3

# Keywords whose violation we tolerate in what chargers send (quirks Q7, Q9, Q10, R47,
# R81): over-long informational strings are kept, unknown enum values of informational
# fields are kept raw. Enum values that steer behaviour (status, reason, ...) stay strict.
_LENIENT_ENUM_FIELDS = frozenset(
    {"errorCode", "unit", "measurand", "phase", "location", "context", "format"}
)


def _code_for(error: SchemaError) -> str:
    match error.validator:
        case "type" | "maxLength":
            return "TypeConstraintViolation"
        case "required":
            return "ProtocolError"
        case "minItems" | "maxItems":
            return "OccurenceConstraintViolation"
        case "enum" | "minimum" | "maximum" | "multipleOf":
            return "PropertyConstraintViolation"
        case _:
            return "FormationViolation"


def _tolerated(error: SchemaError) -> bool:
    if error.validator == "maxLength":
        return True
    field = error.path[-1] if error.path else None
    if error.validator == "enum":
        return field in _LENIENT_ENUM_FIELDS
    # Q6: an empty meterValue/sampledValue array is dropped and answered with {}.
    return error.validator == "minItems" and field in ("meterValue", "sampledValue")


def _validator(message_type: int, action: str) -> Any:
    try:
        return ocpp.messages.get_validator(message_type, action, _VERSION)
    except (OSError, ValueError) as exc:
        raise OcppError("NotSupported", f"no schema for {action}") from exc


@functools.cache
def _fast(message_type: int, action: str) -> Any:
    """The same schema compiled by jsonschema-rs (None if it cannot take it).

    Only its "valid" is trusted: it is at least as strict as jsonschema's Draft4 (it also
    checks ``format``), so a payload it accepts has no error for jsonschema either, and
    anything it rejects is validated by jsonschema below for the exact error and code.
    """
    if _rs is None:
        return None
    try:
        schema = _validator(message_type, action).schema
        return _rs.Draft4Validator(schema)
    except Exception:  # any schema it cannot compile: the slow path validates
        return None


def _check(message_type: int, action: str, payload: Any, *, lenient: bool) -> None:
    fast = _fast(message_type, action)
    if fast is not None and fast.is_valid(payload):
        return
    errors = [
        e
        for e in _validator(message_type, action).iter_errors(payload)
        if not (lenient and _tolerated(e))
    ]
    if errors:
        worst = best_match(errors)
        where = "/".join(str(p) for p in worst.path) or "payload"
        raise OcppError(_code_for(worst), f"{action} {where}: {worst.message}"[:500])


def validate_incoming_call(action: str, payload: Any) -> None:
    """Validate a charger's CALL payload, tolerating the field quirks listed above.

    Raises:
        OcppError: with the OCPP-J 1.6 error code for the first real violation.
    """
    _check(_CALL, action, payload, lenient=True)


def validate_outgoing_call(action: str, payload: Any) -> None:
    """What we send is strict: exact schema, no extra fields (R83)."""
    _check(_CALL, action, payload, lenient=False)


def validate_outgoing_result(action: str, payload: Any) -> None:
    _check(_RESULT, action, payload, lenient=False)


def validate_incoming_result(action: str, payload: Any) -> None:
    """A charger's answer to our CALL: lenient on lengths and informational enums."""
    _check(_RESULT, action, payload, lenient=True)


@functools.cache
def empty_result_allowed(action: str) -> bool:
    """True when ``{}`` is a valid answer to ``action`` (its result has no required
    field): such answers need no validation per message."""
    try:
        return not any(True for _ in _validator(_RESULT, action).iter_errors({}))
    except OcppError:
        return False


def warm_up() -> int:
    """Load every 1.6 schema (requests and responses) now, not on the first message.

    Returns the number of validators loaded.
    """
    loaded = 0
    for action in Action:
        for message_type in (_CALL, _RESULT):
            try:
                ocpp.messages.get_validator(message_type, action.value, _VERSION)
                _fast(message_type, action.value)
                loaded += 1
            except (OSError, ValueError):
                continue
    return loaded
