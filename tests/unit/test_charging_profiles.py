"""Charging profile rules (domain/charging_profiles.py; OCPP 1.6 §3.13, §5.16, §7.7)."""

from __future__ import annotations

from typing import Any

import pytest

from voltaro.domain.charging_profiles import (
    ProfileError,
    ProfileKind,
    ProfileLimits,
    ProfilePurpose,
    RateUnit,
    check_profile,
    limits_from_configuration,
    parse_profile,
    profile_to_wire,
)


def wire(**changes: Any) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "chargingProfileId": 7,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": "2026-01-01T00:00:00Z",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16.0},
                {"startPeriod": 3600, "limit": 8.0, "numberPhases": 1},
            ],
        },
    }
    profile.update(changes)
    return profile


def check(data: dict[str, Any], connector: int = 1, **kwargs: Any) -> None:
    values: dict[str, Any] = {"limits": ProfileLimits(), "running_transactions": ()}
    values.update(kwargs)
    check_profile(parse_profile(data), connector_id=connector, **values)


def test_parse_and_back_to_the_wire() -> None:
    data = wire()
    profile = parse_profile(data)
    assert profile.purpose is ProfilePurpose.TX_DEFAULT
    assert profile.kind is ProfileKind.ABSOLUTE
    assert profile.schedule.rate_unit is RateUnit.AMPS
    assert [p.start_period for p in profile.schedule.periods] == [0, 3600]
    assert profile_to_wire(profile) == data
    snake = parse_profile(
        {
            "id": 1,
            "stack_level": 0,
            "purpose": "chargepointmaxprofile",
            "kind": "relative",
            "charging_schedule": {
                "charging_rate_unit": "W",
                "charging_schedule_period": [{"start_period": 0, "limit": 11000}],
            },
        }
    )
    assert snake.purpose is ProfilePurpose.CHARGE_POINT_MAX
    assert snake.schedule.rate_unit is RateUnit.WATTS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"chargingProfilePurpose": "Max"}, "purpose must be one of"),
        ({"chargingSchedule": None}, "chargingSchedule is required"),
        ({"stackLevel": "high"}, "stackLevel must be a whole number"),
    ],
)
def test_parse_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(wire(**data))


def test_each_purpose_and_kind() -> None:
    check(wire())  # TxDefaultProfile, Absolute, on connector 1
    check(wire(chargingProfilePurpose="ChargePointMaxProfile"), connector=0)
    with pytest.raises(ProfileError, match="connector 0 only"):
        check(wire(chargingProfilePurpose="ChargePointMaxProfile"), connector=1)
    with pytest.raises(ProfileError, match="needs a running transaction on connector 1"):
        check(wire(chargingProfilePurpose="TxProfile"))
    check(wire(chargingProfilePurpose="TxProfile", transactionId=5), running_transactions=[5])
    with pytest.raises(ProfileError, match="transaction 6 is not running"):
        check(wire(chargingProfilePurpose="TxProfile", transactionId=6), running_transactions=[5])
    with pytest.raises(ProfileError, match="only a TxProfile"):
        check(wire(transactionId=5))
    recurring = wire(chargingProfileKind="Recurring", recurrencyKind="Daily")
    check(recurring)
    with pytest.raises(ProfileError, match="needs recurrencyKind"):
        check(wire(chargingProfileKind="Recurring"))
    relative = wire(chargingProfileKind="Relative")
    with pytest.raises(ProfileError, match="Relative profile has no startSchedule"):
        check(relative)
    del relative["chargingSchedule"]["startSchedule"]
    check(relative)


def test_periods_must_ascend_from_zero() -> None:
    data = wire()
    data["chargingSchedule"]["chargingSchedulePeriod"] = [
        {"startPeriod": 0, "limit": 16},
        {"startPeriod": 0, "limit": 8},
    ]
    with pytest.raises(ProfileError, match="ascending order"):
        check(data)
    data["chargingSchedule"]["chargingSchedulePeriod"] = [{"startPeriod": 60, "limit": 16}]
    with pytest.raises(ProfileError, match="must start at 0"):
        check(data)


def test_the_chargers_configuration_limits() -> None:
    limits = limits_from_configuration(
        {
            "ChargeProfileMaxStackLevel": "1",
            "ChargingScheduleAllowedChargingRateUnit": "Power",
            "ChargingScheduleMaxPeriods": "1",
            "MaxChargingProfilesInstalled": "2",
        }
    )
    assert limits == ProfileLimits(
        max_stack_level=1,
        allowed_units=frozenset({RateUnit.WATTS}),
        max_periods=1,
        max_profiles=2,
    )
    with pytest.raises(ProfileError, match="ChargeProfileMaxStackLevel"):
        check(wire(stackLevel=2), limits=ProfileLimits(max_stack_level=1))
    with pytest.raises(ProfileError, match="does not take schedules in A"):
        check(wire(), limits=ProfileLimits(allowed_units=frozenset({RateUnit.WATTS})))
    with pytest.raises(ProfileError, match="at most 1"):
        check(wire(), limits=ProfileLimits(max_periods=1))
    with pytest.raises(ProfileError, match="holds 2 profiles already"):
        check(wire(), limits=ProfileLimits(max_profiles=2), installed=[1, 2])
    check(wire(), limits=ProfileLimits(max_profiles=2), installed=[7, 2])  # replaces 7
