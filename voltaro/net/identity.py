"""The charge point identity a charger presents in its connection URL.

OCPP-J 1.6 §3.1.1: the charger connects to the endpoint URL followed by ``/`` and its
identity, percent-encoded (``RDAM 123`` arrives as ``/ocppj/RDAM%20123``). Only the last
path segment is the identity: chargers append it to whatever URL they were given (R2).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

# OCPP 2.0.1 Part 4 caps the identity at 48 characters; we apply the same to 1.6
# (scale-and-security B4): an id is a database key and a log field, never unbounded.
MAX_IDENTITY_LENGTH = 48


class InvalidIdentity(ValueError):
    """The URL carries no usable charge point identity (answered with HTTP 400)."""


def charger_id_from_path(target: str) -> str:
    """The percent-decoded last path segment of a request target; the query is ignored.

    Raises:
        InvalidIdentity: empty, longer than 48 characters, not UTF-8 once decoded, or
            containing control characters (they would corrupt logs and consoles).
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    segment = path.rsplit("/", 1)[-1]
    try:
        identity = unquote(segment, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidIdentity("the charge point id is not valid UTF-8") from None
    if not identity:
        raise InvalidIdentity("the URL ends without a charge point id")
    if len(identity) > MAX_IDENTITY_LENGTH:
        raise InvalidIdentity(
            f"the charge point id is longer than {MAX_IDENTITY_LENGTH} characters"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in identity):
        raise InvalidIdentity("the charge point id contains control characters")
    return identity
