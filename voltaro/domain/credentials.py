"""Charger passwords for OCPP security profile 1/2 (HTTP Basic auth at the handshake).

The 1.6 security whitepaper defines the password as 16-20 *bytes*; the configuration
key AuthorizationKey carries it as up to 40 hex digits, and the Basic header carries the
raw bytes, which need not be UTF-8 (R30, quirk Q20). We store only a salted scrypt hash
of those bytes and compare in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import string

_SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1
_HEX = set(string.hexdigits)


def password_bytes(configured: str) -> bytes:
    """The bytes a charger sends for an operator-configured password.

    32-40 hex digits are an AuthorizationKey in its hex form (OCTT TC_085 note): the
    charger puts the decoded bytes on the wire. Anything else is UTF-8 text.
    """
    text = configured.strip()
    if 32 <= len(text) <= 40 and len(text) % 2 == 0 and set(text) <= _HEX:
        return bytes.fromhex(text)
    return configured.encode()


def hash_password(secret: bytes) -> str:
    """A salted scrypt hash, self-describing: ``scrypt$N$r$p$salt$hash`` (base64)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret, salt=salt, n=_N, r=_R, p=_P, dklen=32)
    enc = base64.b64encode
    return f"{_SCHEME}${_N}${_R}${_P}${enc(salt).decode()}${enc(digest).decode()}"


def verify_password(secret: bytes, stored: str) -> bool:
    """Check ``secret`` against a stored hash in constant time (CPU-heavy: run in a thread).

    A charger that sends the hex text of its AuthorizationKey instead of the raw bytes
    (seen in the field, quirk Q20) is accepted too.
    """
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != _SCHEME:
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        params = {"n": int(n), "r": int(r), "p": int(p), "dklen": len(expected)}
    except ValueError:
        return False
    candidates = [secret]
    try:
        text = secret.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if 32 <= len(text) <= 40 and len(text) % 2 == 0 and set(text) <= _HEX:
        candidates.append(bytes.fromhex(text))
    matched = False
    for candidate in candidates:
        digest = hashlib.scrypt(candidate, salt=salt, **params)
        matched |= hmac.compare_digest(digest, expected)
    return matched
