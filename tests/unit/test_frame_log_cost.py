"""The frame log's fast paths (issue 14) change nothing that is stored or shown.

Every CALL and answer passes through ``storable`` (redaction, escaping) and is offered to
the event hub. Three shortcuts keep that cheap; each must give exactly what the slow
path gave:

- the "may this hold a secret?" first look of voltaro.domain.secrets is a plain
  substring test for ASCII text instead of a case-insensitive regex: it must say yes
  whenever the regex (or "PRIVATE KEY") would, or a secret would be stored;
- printable ASCII skips the escaping regexes of ``storable``;
- a frame event is built only when a subscriber takes frames.

No action is exempt from redaction: a charger may put anything in any frame (a secret in
a MeterValues sampled value is hidden like one in ChangeConfiguration).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from voltaro.domain import secrets
from voltaro.domain.model import FrameRecord
from voltaro.domain.secrets import REDACTED, redact_frame, redact_text
from voltaro.service import frame_log
from voltaro.service.frame_log import FrameSink, storable, storable_field, storable_payload
from voltaro.service.hub import EventHub
from voltaro.settings import Settings

# Pieces that make the patterns match or nearly match, in every case, with the
# non-ASCII letters that IGNORECASE folds to ASCII (long s, Kelvin sign, dotted I).
_PIECES = [
    "authorization",
    "AuthorizationKey",
    "password",
    "PassWord",
    "pa\u017fsword",
    "to\u212aen",
    "token",
    "TOKEN",
    "secret",
    "private",
    "PRIVATE KEY",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
    "basic ",
    "Basic dXNlcjpwYXNzd29yZA==",
    "BEARER abc.DEF-123",
    "bearer",
    "/files/",
    "/files/firmware/AbCdEfGh12345678/fw.bin",
    "ftp://user:pw@host/",
    "://",
    "@",
    "=",
    ":",
    '"',
    "'",
    ",",
    " ",
    "\n",
    "\x00",
    "\x1b",
    "\u2028",
    "\ud800",
    "\u00e9",
    "key",
    "value",
    "1",
    "x",
]
_texts = st.lists(st.sampled_from(_PIECES) | st.text(max_size=4), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(_texts)
def test_the_ascii_first_look_never_misses_what_the_pattern_sees(text: str) -> None:
    if secrets._MAYBE_SECRET.search(text) or "PRIVATE KEY" in text:
        assert secrets._maybe_secret(text)


def _unfiltered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redaction with no first look at all: every text takes the full path."""
    monkeypatch.setattr(secrets, "_maybe_secret", lambda _text: True)


@settings(max_examples=300, deadline=None)
@given(_texts, st.booleans())
def test_redaction_gives_what_the_full_path_gives(text: str, ascii_only: bool) -> None:
    frame = json.dumps([2, "1", "DataTransfer", {"data": text}], ensure_ascii=ascii_only)
    got_text, got_frame = redact_text(text), redact_frame(frame)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _unfiltered(monkeypatch)
        assert redact_text(text) == got_text
        assert redact_frame(frame) == got_frame


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | _texts)
def test_printable_ascii_shortcut_escapes_like_the_patterns(text: str) -> None:
    assert storable_payload(text) == frame_log._PAYLOAD_UNSAFE.sub(frame_log._escape, text)
    assert storable_field(text, 16) == frame_log._FIELD_UNSAFE.sub(frame_log._escape, text)[:16]


def _frame(payload: str, action: str | None = "MeterValues") -> FrameRecord:
    return FrameRecord(
        charger_id="CP-1",
        direction="in",
        at=datetime(2026, 12, 6, 4, 0, 0, 123000, tzinfo=UTC),
        payload=payload,
        action=action,
        unique_id="42",
        message_type=2,
    )


def test_an_ordinary_frame_is_stored_as_it_came_without_a_copy() -> None:
    frame = _frame(
        '[2,"42","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":'
        '"2026-12-06T04:00:00Z","sampledValue":[{"value":"12.5","unit":"kWh"}]}]}]'
    )
    assert storable(frame) is frame


@pytest.mark.parametrize("secret_at", ["password=hunter2", "pa\u017fsword=hunter2"])
def test_a_secret_in_a_meter_value_is_still_hidden(secret_at: str) -> None:
    payload = json.dumps(
        [
            2,
            "42",
            "MeterValues",
            {"connectorId": 1, "meterValue": [{"sampledValue": [{"value": secret_at}]}]},
        ],
        ensure_ascii=False,
    )
    stored = storable(_frame(payload))
    assert "hunter2" not in stored.payload
    assert REDACTED in stored.payload


def test_control_characters_in_the_action_are_still_escaped() -> None:
    stored = storable(_frame('[2,"42","X\\u0001",{}]', action="X\x01\u2028"))
    assert stored.action == "X\\u0001\\u2028"


async def test_a_frame_event_is_built_only_for_a_frame_subscriber(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    formatted: list[datetime] = []
    real = frame_log.format_utc

    def counting(moment: datetime) -> str:
        formatted.append(moment)
        return real(moment)

    monkeypatch.setattr(frame_log, "format_utc", counting)
    hub = EventHub(16)
    settings_ = Settings(frame_log=False)  # publishing only: nothing to write
    sink = FrameSink(
        db=object(),  # type: ignore[arg-type]  # never used: frame_log=False
        settings=settings_,
        publish=hub.publish,
        wants_frames=hub.wants_frames,
    )
    async with hub.subscribe(kinds=("charger.connected",)):
        sink.record(_frame("[2]"))
        assert formatted == []
        async with hub.subscribe(frames=True) as watcher:
            assert hub.wants_frames()
            sink.record(_frame('[2,"42","Heartbeat",{}]', action="Heartbeat"))
            with trio.fail_after(5):
                item = await watcher.receive()
        assert not hub.wants_frames()
        sink.record(_frame("[2]"))
    assert len(formatted) == 1
    assert not isinstance(item, str)
    assert item.data == {
        "charger_id": "CP-1",
        "direction": "in",
        "action": "Heartbeat",
        "unique_id": "42",
        "payload": '[2,"42","Heartbeat",{}]',
        "at": "2026-12-06T04:00:00.123Z",
    }


@pytest.mark.parametrize(
    ("frame", "secret"),
    [
        # JSON may spell any character as \uXXXX, and "/" as "\/" (RFC 8259 §7): the
        # raw text then holds none of the words the first look searches for.
        ('[2,"1","DataTransfer",{"data":"pa\\u0073sword=hunter2"}]', "hunter2"),
        (
            '[3,"1",{"configurationKey":[{"key":"\\u0041uthorizationKey",'
            '"readonly":false,"value":"s3cretKey"}]}]',
            "s3cretKey",
        ),
        (
            '[2,"1","DataTransfer",{"data":"https:\\/\\/cs\\/files\\/firmware\\/'
            'AbCdEfGh12345678\\/fw.bin"}]',
            "AbCdEfGh12345678",
        ),
    ],
)
def test_a_secret_spelled_with_json_escapes_is_hidden(frame: str, secret: str) -> None:
    assert secret in json.dumps(json.loads(frame))  # the frame does hold it
    stored = storable(_frame(frame))
    assert secret not in stored.payload
    assert REDACTED in stored.payload
