"""What counts as a secret, and how it is hidden (issue 15, "Secrets").

One policy, applied before anything is stored, logged, published or printed:

- the value of a secret configuration key: ``AuthorizationKey`` is the charger's
  Basic-auth password (OCPP 1.6 security whitepaper, edition 3, §2.3 and the
  configuration key list). It appears as ``{"key": "AuthorizationKey", "value": ...}``
  in ChangeConfiguration.req and in GetConfiguration.conf's configurationKey list, and
  in the command audit row built from the same arguments;
- fields named like a secret (``password``, ``token``, ``authorization_key``,
  ``private_key``, ...) in any JSON object (control and API arguments);
- in free text (log lines, unparsable frames): ``Authorization: Basic ...`` and
  ``Bearer ...`` credentials, PEM private key blocks, and the two shapes above;
- anywhere in text: the one-time URL tokens of the file URLs Voltaro hands to chargers
  (``/files/firmware/<token>/...``, ``/files/upload/<token>/``: whoever holds one may
  fetch that firmware or upload in that charger's name; service/files.py), and the
  password of a URL's user info (``ftp://user:password@host/``), both as they travel in
  UpdateFirmware, GetDiagnostics, GetLog and SignedUpdateFirmware.

The frame log, the command audit, the configuration table, the event stream and the
log formatter all call these functions; nothing else decides what a secret is.
"""

from __future__ import annotations

import json
import re
from typing import Any

REDACTED = "•••• (hidden)"

# Configuration keys whose values are secrets (compared case-insensitively, CiString).
SECRET_CONFIG_KEYS = frozenset({"authorizationkey"})

# JSON field names whose values are secrets, compared without case, '_' or '-'.
_SECRET_FIELDS = frozenset(
    {
        "password",
        "newpassword",
        "authorizationkey",
        "token",
        "apitoken",
        "secret",
        "privatekey",
        "basicauthpassword",
    }
)

# A cheap first look: text without any of these needs no parsing (the frame log's hot
# path is MeterValues and StatusNotification, which never match).
_MAYBE_SECRET = re.compile(
    r"authorization|password|token|secret|private|basic\s|bearer\s|/files/|://[^/\s]*@",
    re.IGNORECASE,
)


# The same first look for ASCII text, an order of magnitude cheaper than the pattern
# above (a case-insensitive alternation is tried at every position: ~40 µs for one
# MeterValues frame, twice per charger message in the frame log; issue 14). Each word
# is a part of one alternative of ``_MAYBE_SECRET`` (or of "PRIVATE KEY"), so ASCII text
# holding none of them cannot match: a superset, and every later step checks again.
# Only for ASCII: with IGNORECASE the pattern also matches non-ASCII letters whose case
# folds to ASCII (the long s, the Kelvin sign), which ``str.lower`` does not map.
def _maybe_secret(text: str) -> bool:
    """Whether ``text`` may hold a secret (false: it certainly holds none)."""
    if "_" in text or "-" in text:
        # Field names are compared without '_' or '-' (``is_secret_field``): "pass_word"
        # is a secret field, so the first look reads the text without them too. None of
        # the words below holds either character, so this only adds matches.
        text = text.replace("_", "").replace("-", "")
    if text.isascii():
        low = text.lower()
        return (
            "authorization" in low
            or "password" in low
            or "token" in low
            or "secret" in low
            or "private" in low
            or "basic" in low
            or "bearer" in low
            or "/files/" in low
            or "://" in low
        )
    return _MAYBE_SECRET.search(text) is not None or "PRIVATE KEY" in text


# A file URL's one-time token (service/files.py: secrets.token_urlsafe, 32 characters).
_FILE_URL_TOKEN = re.compile(r"(/files/(?:firmware|upload)/)([A-Za-z0-9_-]{8,})")
# scheme://user:password@host: the password (the user name is kept, it says who).
# A scheme starts only where a run of scheme characters starts (not \b: "a-a-a-..."
# rescanned its run from every letter, quadratic in a charger's unparsable frame).
_URL_PASSWORD = re.compile(
    r"((?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]*:)([^/\s@'\"]+)(@)"
)

_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
# "Basic <base64>" and "Bearer <token>" wherever they appear (headers, repr of headers).
# A credential has a capital, a digit or a base64/token sign; English words do not.
_AUTH_SCHEME = re.compile(
    r"(?i)\b(basic|bearer)(\s+)(?-i:(?=[A-Za-z0-9+/=._~-]*[A-Z0-9+/=_~.-])[A-Za-z0-9+/=._~-]{8,})"
)
# {"key": "AuthorizationKey", "value": "..."} in JSON or a Python repr, either order.
_KEY_THEN_VALUE = re.compile(
    r"""(?ix)
    (['"]key['"]\s*:\s*['"]authorizationkey['"]\s*,\s*['"]value['"]\s*:\s*['"])
    ([^'"]*)
    """
)
_VALUE_THEN_KEY = re.compile(
    r"""(?ix)
    (['"]value['"]\s*:\s*['"])
    ([^'"]*)
    (['"]\s*,\s*['"]key['"]\s*:\s*['"]authorizationkey['"])
    """
)
# What a secret field's name ends with, compared as is_secret_field compares.
_SECRET_NAME_ENDINGS = ("password", "token", "secret", "privatekey", "authorizationkey")
# password=..., "token": "...", basic_auth_password='...', "pass_word": ... in free text:
# a name that ends with one of those words (a '_' or '-' allowed between any two of its
# letters, as is_secret_field ignores them), then its value. Only such names are matched,
# so an ordinary name's value never swallows a secret pair after it (``a=1&password=x``)
# and the scan is linear: a match starts only where a run of name characters starts.
_ANY_SEPARATOR = "[_-]?"
_NAMED_SECRET = re.compile(
    r"""(?ix)
    ((?<![\w-])([\w-]*?(?:"""
    + "|".join(_ANY_SEPARATOR.join(map(re.escape, word)) for word in _SECRET_NAME_ENDINGS)
    + r"""))['"]?\s*[:=]\s*['"]?)
    ([^\s'",}\]]+)
    """
)


def _secret_name(name: str) -> bool:
    # casefold, not lower: "pa\u017fsword" (a long s) reads as "password", as the
    # first look's case-insensitive pattern reads it.
    plain = name.replace("_", "").replace("-", "").casefold()
    return plain in _SECRET_FIELDS or plain.endswith(_SECRET_NAME_ENDINGS)


def _hide_named_secret(m: re.Match[str]) -> str:
    return f"{m.group(1)}{REDACTED}" if _secret_name(m.group(2)) else m.group(0)


# A JSON string escape (RFC 8259 §7), read back in text json.loads refused.
_JSON_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_JSON_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


def _unescaped(text: str) -> str:
    return _JSON_ESCAPE.sub(
        lambda m: chr(int(m.group(1), 16)) if m.group(1) else _JSON_SIMPLE_ESCAPES[m.group(2)],
        text,
    )


def is_secret_field(name: str) -> bool:
    return name.replace("_", "").replace("-", "").lower() in _SECRET_FIELDS


def is_secret_config_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_CONFIG_KEYS


def redact_value(value: Any) -> Any:
    """A copy of a JSON value with every secret hidden, whatever the nesting."""
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact_text(value) if _maybe_secret(value) else value
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    for k, v in value.items():
        if isinstance(k, str) and is_secret_field(k) and v is not None and v != "":
            out[k] = REDACTED
        else:
            out[k] = redact_value(v)
    if is_secret_config_key(out.get("key")) and out.get("value") not in (None, ""):
        out["value"] = REDACTED
    return out


def redact_text(text: str) -> str:
    """Free text (a log line, an unparsable frame) with secrets hidden."""
    if not _maybe_secret(text):
        return text
    text = _FILE_URL_TOKEN.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
    text = _PEM_PRIVATE_KEY.sub(f"-----{REDACTED} PRIVATE KEY-----", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _KEY_THEN_VALUE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _VALUE_THEN_KEY.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
    return _NAMED_SECRET.sub(_hide_named_secret, text)


def redact_frame(payload: str) -> str:
    """A raw OCPP-J frame (JSON text) with secrets hidden.

    Unchanged text is returned as it is (the same object), so the common case costs a
    few substring searches. Text that is not JSON is redacted as free text.
    """
    # A backslash may be an escape (RFC 8259 §7: "\u0073" is "s", "\/" is "/") that hides
    # a secret's name from the first look: such a frame is parsed and its strings
    # looked at as they read.
    if "\\" not in payload and not _maybe_secret(payload):
        return payload
    duplicates = False

    def pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json.loads keeps the last of duplicate names (RFC 8259 §4 leaves them to the
        # parser): {"value": "<key>", "value": ""} would be checked as its empty value
        # and the frame, first value and all, returned as it came.
        nonlocal duplicates
        out = dict(pairs)
        if len(out) != len(pairs):
            duplicates = True
        return out

    try:
        parsed = json.loads(payload, object_pairs_hook=pairs_to_dict)
        redacted = redact_value(parsed)
        if redacted == parsed and not duplicates:
            return payload
        # With duplicate names only the parsed form is safe: the earlier values go.
        return json.dumps(redacted, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        # Not JSON, or nested deeper than the walk above can follow: json.loads takes
        # several hundred levels more than redact_value's recursion, and a charger may
        # send such a frame (the protocol layer refuses it after the frame log saw it).
        # Both are redacted as free text, never raised; its escapes are read first
        # ("pa\u0073sword" is "password"), and the text read is what is kept when it
        # held a secret.
        if "\\" in payload:
            plain = _unescaped(payload)
            hidden = redact_text(plain)
            if hidden != plain:
                return hidden
        return redact_text(payload)
