"""The charge point identity a charger presents in its connection URL.

OCPP-J 1.6 §3.1.1: the charger connects to the endpoint URL followed by ``/`` and its
identity, percent-encoded (``RDAM 123`` arrives as ``/ocppj/RDAM%20123``). Only the last
path segment is the identity: chargers append it to whatever URL they were given (R2).

Look-alike identities (issue 11.11): ``Å`` composed and decomposed, a Cyrillic Es (U+0421), a
trailing space or NBSP would otherwise register as separate chargers. The decoded id is
normalised to NFC and must then consist of the documented safe set: ASCII letters and
digits, ``- _ . : * = + | @`` (OCPP 2.0.1 identifierString, which real 1.6 chargers
also fit: serial numbers, MAC addresses ``00:1A:..``, ``CBI-...``) and single spaces
between other characters (the 1.6 spec's own example is ``RDAM 123``). Anything else is
refused with HTTP 400 before any lookup.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

# OCPP 2.0.1 Part 4 caps the identity at 48 characters; we apply the same to 1.6
# (scale-and-security B4): an id is a database key and a log field, never unbounded.
MAX_IDENTITY_LENGTH = 48
SAFE_IDENTITY = re.compile(r"[A-Za-z0-9\-_.:*=+|@]+( [A-Za-z0-9\-_.:*=+|@]+)*")


class InvalidIdentity(ValueError):
    """The URL carries no usable charge point identity (answered with HTTP 400)."""


def charger_id_from_path(target: str) -> str:
    """The percent-decoded last path segment of a request target; the query is ignored.

    Raises:
        InvalidIdentity: empty, longer than 48 characters, not UTF-8 once decoded, or
            containing control characters (they would corrupt logs and consoles), or
            outside the safe set once normalised to NFC.
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    segment = path.rsplit("/", 1)[-1]
    try:
        identity = unquote(segment, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidIdentity("the charge point id is not valid UTF-8") from None
    problem = identity_problem(identity)
    if problem is not None:
        raise InvalidIdentity(problem)
    return unicodedata.normalize("NFC", identity)


def identity_problem(identity: str) -> str | None:
    """Why ``identity`` is not a usable charge point id, or None when it is.

    The same rule for the handshake and for operators adding chargers, so that no
    charger can be registered under an id it could never connect with.
    """
    if not identity:
        return "the URL ends without a charge point id"
    if len(identity) > MAX_IDENTITY_LENGTH:
        return f"the charge point id is longer than {MAX_IDENTITY_LENGTH} characters"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") for ch in identity):
        return "the charge point id contains control characters"
    if SAFE_IDENTITY.fullmatch(unicodedata.normalize("NFC", identity)) is None:
        return (
            "the charge point id may hold only ASCII letters, digits, - _ . : * = + | @ "
            "and single inner spaces"
        )
    return None
