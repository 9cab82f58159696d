"""The hot path's shortcuts give exactly what the library's slow path gives (issue 14
step 3): cached key conversion, and no per-message validation of empty answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from ocpp.charge_point import camel_to_snake_case
from ocpp.v16.enums import Action

from voltaro.domain.timestamps import format_utc
from voltaro.protocol import edge
from voltaro.protocol.errors import OcppError
from voltaro.protocol.rpc import to_snake_case
from voltaro.protocol.validation import (
    _fast,
    _validator,
    empty_result_allowed,
    validate_outgoing_result,
)

keys = st.one_of(
    st.sampled_from(
        [
            "meterValue",
            "sampledValue",
            "transactionId",
            "connectorId",
            "idTag",
            "V2XMode",
            "ocppCSMSURL",
            "SoC",
            "URLValue",
            "a",
            "",
        ]
    ),
    st.text(max_size=12),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(keys, json_values, max_size=6))
def test_cached_key_conversion_equals_the_library(payload: dict[str, Any]) -> None:
    assert to_snake_case(payload) == camel_to_snake_case(payload)


def test_an_empty_answer_is_skipped_only_where_the_schema_allows_it() -> None:
    for action in Action:
        try:
            validate_outgoing_result(action.value, {})
            valid = True
        except OcppError:
            valid = False
        assert empty_result_allowed(action.value) is valid, action
    assert empty_result_allowed("MeterValues")
    assert not empty_result_allowed("BootNotification")


fields = st.sampled_from(
    [
        "connectorId",
        "transactionId",
        "meterValue",
        "timestamp",
        "sampledValue",
        "value",
        "unit",
        "measurand",
        "status",
        "errorCode",
        "idTag",
        "meterStart",
        "chargePointVendor",
        "chargePointModel",
        "reason",
        "meterStop",
        "vendorId",
        "data",
        "phase",
        "extra",
    ]
)
loose = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.sampled_from(
        [
            "Wh",
            "kWh",
            "bogus",
            "Charging",
            "NoError",
            "2026-01-01T00:00:00Z",
            "not a time",
            "x" * 30,
            "Accepted",
            "Energy.Active.Import.Register",
        ]
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(fields, children, max_size=5),
    max_leaves=25,
)


@given(
    st.sampled_from([a.value for a in Action]),
    st.sampled_from([2, 3]),
    st.dictionaries(fields, loose, max_size=6),
)
def test_the_compiled_validator_never_accepts_what_jsonschema_refuses(
    action: str, message_type: int, payload: dict[str, Any]
) -> None:
    """The fast path trusts only jsonschema-rs's "valid"; it must imply jsonschema's."""
    fast = _fast(message_type, action)
    if fast is None or not fast.is_valid(payload):
        return
    assert not list(_validator(message_type, action).iter_errors(payload))


# The edge's clean-payload shortcut (issue 14): every value a charger can send, with
# the awkward ones (NUL, lone surrogates, numbers beyond 64 bits or not finite, deep
# nesting) mixed in.
edgy_text = st.text(max_size=6) | st.sampled_from(["a\x00b", "\ud800", "x\udfffy", "é", ""])
edgy = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.sampled_from([2**63 - 1, -(2**63), 2**63, 1e19, -1e19, float("inf")])
    | edgy_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(edgy_text, children, max_size=3)
    ),
    max_leaves=20,
)


def _nested(depth: int, leaf: Any) -> Any:
    for i in range(depth):
        leaf = [leaf] if i % 2 else {"k": leaf}
    return leaf


def _slow_walk(value: Any) -> tuple[str, Any, list[str]]:
    repaired: list[str] = []
    try:
        return "ok", edge._walk(value, "payload", 0, repaired), repaired
    except OcppError as exc:
        return "error", (exc.code, exc.description), repaired


def _checked(value: Any) -> tuple[str, Any, list[str]]:
    repaired: list[str] = []
    try:
        return "ok", edge.checked_payload(value, repaired=repaired), repaired
    except OcppError as exc:
        return "error", (exc.code, exc.description), repaired


@given(st.dictionaries(edgy_text, edgy, max_size=5))
def test_the_clean_payload_shortcut_equals_the_walk(payload: dict[str, Any]) -> None:
    slow, fast = _slow_walk(payload), _checked(payload)
    # repr: NaN != NaN, but both must hold the same NaN-free or NaN-refusing result.
    assert repr(fast) == repr(slow)


def test_the_clean_payload_shortcut_refuses_depth_as_the_walk_does() -> None:
    for depth in range(edge.MAX_DEPTH - 2, edge.MAX_DEPTH + 3):
        for leaf in (1, "x", None, {}, []):
            value = _nested(depth, leaf)
            assert repr(_checked(value)) == repr(_slow_walk(value)), (depth, leaf)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [None, UTC, timezone(timedelta(0)), timezone(timedelta(hours=-5))]
        ),
    )
)
def test_format_utc_equals_strftime(moment: datetime) -> None:
    """format_utc's isoformat shortcut renders exactly what strftime did."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    expected = (
        utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
        if utc.microsecond
        else utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert format_utc(moment) == expected
