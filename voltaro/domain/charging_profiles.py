"""Charging profiles (OCPP 1.6 §3.13 Smart Charging, §5.16 SetChargingProfile, §7.7-§7.9,
§7.12-§7.13, §9.4 configuration keys): the data, parsing from the wire's JSON form, and
the checks made before a profile is sent. Pure; issue 17 (site load management) builds
on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from voltaro.domain.timestamps import format_utc, parse_timestamp

KEY_MAX_STACK_LEVEL = "ChargeProfileMaxStackLevel"
KEY_ALLOWED_UNITS = "ChargingScheduleAllowedChargingRateUnit"
KEY_MAX_PERIODS = "ChargingScheduleMaxPeriods"
KEY_MAX_PROFILES = "MaxChargingProfilesInstalled"
CONFIGURATION_KEYS = (KEY_MAX_STACK_LEVEL, KEY_ALLOWED_UNITS, KEY_MAX_PERIODS, KEY_MAX_PROFILES)


class ProfilePurpose(StrEnum):
    """ChargingProfilePurposeType (§7.9)."""

    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


class ProfileKind(StrEnum):
    """ChargingProfileKindType (§7.8)."""

    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"


class RecurrencyKind(StrEnum):
    """RecurrencyKindType (§7.30)."""

    DAILY = "Daily"
    WEEKLY = "Weekly"


class RateUnit(StrEnum):
    """ChargingRateUnitType (§7.12): A or W."""

    AMPS = "A"
    WATTS = "W"


# ChargingScheduleAllowedChargingRateUnit lists Current and/or Power (errata 3.88).
_UNIT_OF_KEY_VALUE = {"current": RateUnit.AMPS, "power": RateUnit.WATTS}


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulePeriod:
    """ChargingSchedulePeriod (§7.13): from ``start_period`` seconds on, at most ``limit``."""

    start_period: int
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """ChargingSchedule (§7.11)."""

    rate_unit: RateUnit
    periods: tuple[SchedulePeriod, ...]
    duration: int | None = None
    start_schedule: datetime | None = None
    min_charging_rate: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargingProfile:
    """ChargingProfile (§7.7)."""

    profile_id: int
    stack_level: int
    purpose: ProfilePurpose
    kind: ProfileKind
    schedule: Schedule
    transaction_id: int | None = None
    recurrency_kind: RecurrencyKind | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileLimits:
    """What the charger's configuration says (None: unknown, not checked)."""

    max_stack_level: int | None = None
    allowed_units: frozenset[RateUnit] | None = None
    max_periods: int | None = None
    max_profiles: int | None = None


class ProfileError(ValueError):
    """A profile that is not sent; the message says why in one line."""


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def limits_from_configuration(values: Mapping[str, str | None]) -> ProfileLimits:
    """Read the Smart Charging keys leniently (R95)."""
    lowered = {k.lower(): v for k, v in values.items()}
    units_text = lowered.get(KEY_ALLOWED_UNITS.lower())
    units = None
    if units_text is not None:
        units = frozenset(
            _UNIT_OF_KEY_VALUE[u.strip().lower()]
            for u in units_text.split(",")
            if u.strip().lower() in _UNIT_OF_KEY_VALUE
        )
    return ProfileLimits(
        max_stack_level=_int(lowered.get(KEY_MAX_STACK_LEVEL.lower())),
        allowed_units=units,
        max_periods=_int(lowered.get(KEY_MAX_PERIODS.lower())),
        max_profiles=_int(lowered.get(KEY_MAX_PROFILES.lower())),
    )


def _field(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in data:
            return data[name]
    return None


def _choice(enum: type[StrEnum], value: Any, what: str) -> Any:
    for member in enum:
        if isinstance(value, str) and value.lower() == member.value.lower():
            return member
    raise ProfileError(f"{what} must be one of {', '.join(m.value for m in enum)}")


def _whole(value: Any, what: str, *, required: bool = True) -> int | None:
    if value is None:
        if required:
            raise ProfileError(f"{what} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(f"{what} must be a whole number")
    return value


def _time(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(str(value))
    except ValueError:
        raise ProfileError(f"{what} must be an ISO 8601 time") from None


def parse_profile(data: Mapping[str, Any]) -> ChargingProfile:
    """A profile from JSON: the OCPP field names (csChargingProfiles: chargingProfileId,
    chargingSchedule, ...) or their snake_case forms.

    Raises:
        ProfileError: with a one-line reason.
    """
    if not isinstance(data, Mapping):
        raise ProfileError("a charging profile must be a JSON object")
    raw_schedule = _field(data, "chargingSchedule", "charging_schedule", "schedule")
    if not isinstance(raw_schedule, Mapping):
        raise ProfileError("chargingSchedule is required")
    raw_periods = _field(raw_schedule, "chargingSchedulePeriod", "charging_schedule_period")
    if not isinstance(raw_periods, Sequence) or isinstance(raw_periods, str):
        raise ProfileError("chargingSchedulePeriod must be a list of periods")
    periods = []
    for raw in raw_periods:
        if not isinstance(raw, Mapping):
            raise ProfileError("each period must be an object")
        limit = _field(raw, "limit")
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise ProfileError("each period needs a numeric limit")
        periods.append(
            SchedulePeriod(
                start_period=_whole(_field(raw, "startPeriod", "start_period"), "startPeriod") or 0,
                limit=float(limit),
                number_phases=_whole(
                    _field(raw, "numberPhases", "number_phases"), "numberPhases", required=False
                ),
            )
        )
    min_rate = _field(raw_schedule, "minChargingRate", "min_charging_rate")
    schedule = Schedule(
        rate_unit=_choice(
            RateUnit, _field(raw_schedule, "chargingRateUnit", "charging_rate_unit"), "unit"
        ),
        periods=tuple(periods),
        duration=_whole(_field(raw_schedule, "duration"), "duration", required=False),
        start_schedule=_time(
            _field(raw_schedule, "startSchedule", "start_schedule"), "startSchedule"
        ),
        min_charging_rate=None if min_rate is None else float(min_rate),
    )
    recurrency = _field(data, "recurrencyKind", "recurrency_kind")
    return ChargingProfile(
        profile_id=_whole(_field(data, "chargingProfileId", "charging_profile_id", "id"), "id")
        or 0,
        stack_level=_whole(_field(data, "stackLevel", "stack_level"), "stackLevel") or 0,
        purpose=_choice(
            ProfilePurpose,
            _field(data, "chargingProfilePurpose", "charging_profile_purpose", "purpose"),
            "purpose",
        ),
        kind=_choice(
            ProfileKind,
            _field(data, "chargingProfileKind", "charging_profile_kind", "kind"),
            "kind",
        ),
        schedule=schedule,
        transaction_id=_whole(
            _field(data, "transactionId", "transaction_id"), "transactionId", required=False
        ),
        recurrency_kind=None
        if recurrency is None
        else _choice(RecurrencyKind, recurrency, "recurrencyKind"),
        valid_from=_time(_field(data, "validFrom", "valid_from"), "validFrom"),
        valid_to=_time(_field(data, "validTo", "valid_to"), "validTo"),
    )


def check_profile(
    profile: ChargingProfile,
    *,
    connector_id: int,
    limits: ProfileLimits,
    running_transactions: Sequence[int],
    installed: Sequence[int] = (),
) -> None:
    """The checks made before SetChargingProfile is sent (§3.13, §5.16, §7.7, §9.4).

    ``running_transactions``: ids of the transactions running on ``connector_id``;
    ``installed``: ids of the profiles the charger holds (a profile with the same id
    replaces its predecessor, so it does not count twice).

    Raises:
        ProfileError: with a one-line reason.
    """
    if connector_id < 0:
        raise ProfileError("connector id must be 0 (the whole charger) or a connector")
    if profile.profile_id < 1:
        raise ProfileError("the profile id must be a positive number")
    if profile.purpose is ProfilePurpose.CHARGE_POINT_MAX and connector_id != 0:
        raise ProfileError("a ChargePointMaxProfile applies to connector 0 only (§3.13.1)")
    if profile.purpose is ProfilePurpose.TX:
        if connector_id == 0:
            raise ProfileError("a TxProfile needs a connector (not 0) with a transaction")
        if not running_transactions:
            raise ProfileError(
                f"a TxProfile needs a running transaction on connector {connector_id} (§5.16)"
            )
        if (
            profile.transaction_id is not None
            and profile.transaction_id not in running_transactions
        ):
            raise ProfileError(
                f"transaction {profile.transaction_id} is not running on connector {connector_id}"
            )
    elif profile.transaction_id is not None:
        raise ProfileError("only a TxProfile names a transaction")
    if profile.stack_level < 0:
        raise ProfileError("the stack level must be 0 or more")
    if limits.max_stack_level is not None and profile.stack_level > limits.max_stack_level:
        raise ProfileError(
            f"stack level {profile.stack_level} is above the charger's "
            f"{KEY_MAX_STACK_LEVEL} ({limits.max_stack_level})"
        )
    schedule = profile.schedule
    if not schedule.periods:
        raise ProfileError("the schedule needs at least one period")
    if schedule.periods[0].start_period != 0:
        raise ProfileError("the first period must start at 0 (§7.13)")
    for before, after in zip(schedule.periods, schedule.periods[1:], strict=False):
        if after.start_period <= before.start_period:
            raise ProfileError(
                f"periods must start in ascending order: {after.start_period} s follows "
                f"{before.start_period} s"
            )
    for period in schedule.periods:
        if period.limit < 0:
            raise ProfileError("a period's limit cannot be negative")
        if period.number_phases is not None and period.number_phases not in (1, 2, 3):
            raise ProfileError("numberPhases must be 1, 2 or 3")
    if limits.max_periods is not None and len(schedule.periods) > limits.max_periods:
        raise ProfileError(
            f"{len(schedule.periods)} periods; the charger takes at most {limits.max_periods} "
            f"({KEY_MAX_PERIODS})"
        )
    if limits.allowed_units is not None and schedule.rate_unit not in limits.allowed_units:
        allowed = ", ".join(sorted(u.value for u in limits.allowed_units)) or "none"
        raise ProfileError(
            f"the charger does not take schedules in {schedule.rate_unit.value} "
            f"({KEY_ALLOWED_UNITS}: {allowed})"
        )
    if profile.kind is ProfileKind.RECURRING:
        if profile.recurrency_kind is None or schedule.start_schedule is None:
            raise ProfileError("a Recurring profile needs recurrencyKind and startSchedule")
    elif profile.recurrency_kind is not None:
        raise ProfileError("only a Recurring profile has a recurrencyKind")
    if profile.kind is ProfileKind.RELATIVE and schedule.start_schedule is not None:
        raise ProfileError("a Relative profile has no startSchedule (it starts with the session)")
    if profile.kind is ProfileKind.ABSOLUTE and schedule.start_schedule is None:
        raise ProfileError("an Absolute profile needs a startSchedule")
    if (
        profile.valid_from is not None
        and profile.valid_to is not None
        and profile.valid_to <= profile.valid_from
    ):
        raise ProfileError("validTo must be after validFrom")
    if (
        limits.max_profiles is not None
        and profile.profile_id not in installed
        and len(set(installed)) >= limits.max_profiles
    ):
        raise ProfileError(
            f"the charger holds {len(set(installed))} profiles already "
            f"({KEY_MAX_PROFILES} = {limits.max_profiles}); clear one first"
        )


def profile_to_wire(profile: ChargingProfile) -> dict[str, Any]:
    """csChargingProfiles as OCPP-J JSON (camelCase; times by the caller's formatter)."""

    schedule: dict[str, Any] = {
        "chargingRateUnit": profile.schedule.rate_unit.value,
        "chargingSchedulePeriod": [
            {
                "startPeriod": p.start_period,
                "limit": p.limit,
                **({"numberPhases": p.number_phases} if p.number_phases is not None else {}),
            }
            for p in profile.schedule.periods
        ],
    }
    if profile.schedule.duration is not None:
        schedule["duration"] = profile.schedule.duration
    if profile.schedule.start_schedule is not None:
        schedule["startSchedule"] = format_utc(profile.schedule.start_schedule)
    if profile.schedule.min_charging_rate is not None:
        schedule["minChargingRate"] = profile.schedule.min_charging_rate
    out: dict[str, Any] = {
        "chargingProfileId": profile.profile_id,
        "stackLevel": profile.stack_level,
        "chargingProfilePurpose": profile.purpose.value,
        "chargingProfileKind": profile.kind.value,
        "chargingSchedule": schedule,
    }
    if profile.transaction_id is not None:
        out["transactionId"] = profile.transaction_id
    if profile.recurrency_kind is not None:
        out["recurrencyKind"] = profile.recurrency_kind.value
    if profile.valid_from is not None:
        out["validFrom"] = format_utc(profile.valid_from)
    if profile.valid_to is not None:
        out["validTo"] = format_utc(profile.valid_to)
    return out


def limit_profile(limit: Any, unit: str = "A", *, profile_id: int = 1) -> dict[str, Any]:
    """ "Limit a charger": a ChargePointMaxProfile (connector 0) with one period from now
    on, Relative so it needs no start time (§3.13.1), in the wire's JSON form."""
    return {
        "chargingProfileId": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": ProfilePurpose.CHARGE_POINT_MAX.value,
        "chargingProfileKind": ProfileKind.RELATIVE.value,
        "chargingSchedule": {
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        },
    }
