"""The hot path's shortcuts give exactly what the library's slow path gives (issue 14
step 3): cached key conversion, and no per-message validation of empty answers."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from ocpp.charge_point import camel_to_snake_case
from ocpp.v16.enums import Action

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
