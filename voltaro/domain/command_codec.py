"""Commands, their outcomes and their errors as JSON, for the node-to-node hop (issue 18).

A command routed to the node that owns the charger is stored in ``routed_commands`` and
rebuilt there; the answer travels back the same way. Unlike the audit's arguments
(``voltaro.service.commands.command_args``) this is the whole command, secrets included:
the owner must send exactly what the operator asked. The routed row keeps it only until
the answer is stored (the owner then replaces it with the audit's redacted arguments).

The encoding follows the dataclasses' own type hints, so a command type added later is
routed without a change here: enums as their values, datetimes as ISO 8601 UTC, tuples
and nested dataclasses (ChargingProfile, ListEntry, CertificateHashData) recursively.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

from voltaro.domain.commands import (
    ACTION_OF,
    Command,
    CommandError,
    CommandErrorCode,
    CommandOutcome,
)
from voltaro.domain.timestamps import format_utc, parse_timestamp

_TYPE_OF = {action: cls for cls, action in ACTION_OF.items()}


class CodecError(ValueError):
    """A stored command or answer that does not decode (another version wrote it?)."""


def encode_command(command: Command) -> dict[str, Any]:
    """``{"action": <OCPP action>, "args": {...}}``, JSON-ready."""
    return {"action": ACTION_OF[type(command)], "args": _encode(command)}


def decode_command(data: dict[str, Any]) -> Command:
    try:
        cls = _TYPE_OF[data["action"]]
        return _decode(cls, data["args"])  # type: ignore[no-any-return]
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"cannot decode the routed command: {exc!r}") from None


def encode_outcome(outcome: CommandOutcome) -> dict[str, Any]:
    return {"outcome": _encode(outcome)}


def encode_error(error: CommandError) -> dict[str, Any]:
    return {"error": {"code": str(error.code), "message": error.message}}


def decode_result(data: dict[str, Any]) -> CommandOutcome | CommandError:
    """What :func:`encode_outcome` or :func:`encode_error` made."""
    try:
        if "error" in data:
            raw = data["error"]
            return CommandError(CommandErrorCode(raw["code"]), str(raw["message"]))
        return _decode(CommandOutcome, data["outcome"])  # type: ignore[no-any-return]
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"cannot decode the routed answer: {exc!r}") from None


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, tuple | list | frozenset | set):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


@functools.cache
def _fields_of(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A dataclass's resolved type hints and field names, worked out once per class
    (get_type_hints evaluates every annotation string: it dominated decoding)."""
    return typing.get_type_hints(cls), frozenset(f.name for f in dataclasses.fields(cls))


def _decode(hint: Any, value: Any) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(option, value)
            except (TypeError, ValueError, KeyError) as exc:
                errors.append(exc)
        raise ValueError(f"{value!r} fits none of {hint}: {errors}")
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value, strict=True))
    if origin in (frozenset, set):
        (item,) = typing.get_args(hint)
        return origin(_decode(item, v) for v in value)
    if origin is dict:
        _, item = typing.get_args(hint)
        return {k: _decode(item, v) for k, v in value.items()}
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise TypeError(f"{hint.__name__} needs an object, got {value!r}")
            hints, known = _fields_of(hint)
            unknown = set(value) - known
            if unknown:
                raise ValueError(f"{hint.__name__} has no field {sorted(unknown)}")
            return hint(**{k: _decode(hints[k], v) for k, v in value.items()})
        if issubclass(hint, Enum):
            return hint(value)
        if hint is datetime:
            if not isinstance(value, str):
                raise TypeError(f"a time needs a string, got {value!r}")
            return parse_timestamp(value)
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if hint in (str, int, float, bool):
            if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
                raise TypeError(f"{hint.__name__} expected, got {value!r}")
            return value
    raise TypeError(f"cannot decode {value!r} as {hint}")


__all__ = [
    "CodecError",
    "decode_command",
    "decode_result",
    "encode_command",
    "encode_error",
    "encode_outcome",
]
