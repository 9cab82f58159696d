"""The one secrets policy (voltaro.domain.secrets): what is hidden and what is kept."""

from __future__ import annotations

import json

from voltaro.domain.secrets import REDACTED, redact_frame, redact_text, redact_value
from voltaro.logs import one_line

KEY = "00112233445566778899aabbccddeeff00112233"


def test_change_configuration_and_get_configuration_frames() -> None:
    call = json.dumps([2, "1", "ChangeConfiguration", {"key": "authorizationKEY", "value": KEY}])
    assert KEY not in redact_frame(call)
    assert json.loads(redact_frame(call))[3] == {"key": "authorizationKEY", "value": REDACTED}
    conf = json.dumps(
        [3, "2", {"configurationKey": [{"key": "AuthorizationKey", "value": KEY}, {"key": "A"}]}]
    )
    assert json.loads(redact_frame(conf))[2]["configurationKey"] == [
        {"key": "AuthorizationKey", "value": REDACTED},
        {"key": "A"},
    ]
    # Cut short (truncated, malformed): still hidden, as free text.
    assert KEY not in redact_frame(call[:-3])


def test_ordinary_frames_are_returned_untouched() -> None:
    frame = '[2,"9","MeterValues",{"connectorId":1,"meterValue":[]}]'
    assert redact_frame(frame) is frame
    heartbeat = '[2,"9","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60"}]'
    assert redact_frame(heartbeat) is heartbeat


def test_fields_named_like_secrets() -> None:
    args = {"charger_id": "CP", "password": "hunter2", "args": {"api_token": "t0k"}, "n": 1}
    assert redact_value(args) == {
        "charger_id": "CP",
        "password": REDACTED,
        "args": {"api_token": REDACTED},
        "n": 1,
    }


def test_free_text_and_log_lines() -> None:
    line = (
        "headers=[(b'authorization', b'Basic Q1AtMTpzM2NyZXQtczNjcmV0LTE2')] "
        "Authorization: Bearer 9f8e7d6c5b4a39281706 password=hunter2hunter2 "
        "-----BEGIN PRIVATE KEY-----\nMIIEv...\n-----END PRIVATE KEY----- "
        f"{{'key': 'AuthorizationKey', 'value': '{KEY}'}}"
    )
    out = one_line(line)
    for secret in ("Q1AtMTpzM2NyZXQtczNjcmV0LTE2", "9f8e7d6c5b4a39281706", "hunter2", "MIIEv", KEY):
        assert secret not in out
    # English words after "Basic" are not credentials.
    words = "security: Basic authentication failed for charge point 'CP-1'"
    assert redact_text(words) == words
