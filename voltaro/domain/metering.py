"""Reading meter values (OCPP 1.6 §4.7, §7.43): the live figures of a session."""

from __future__ import annotations

from dataclasses import dataclass

from voltaro.domain.model import MeterValue, SampledValue

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
VOLTAGE = "Voltage"
SOC = "SoC"

_SCALE = {"kWh": 1000.0, "Wh": 1.0, "kW": 1000.0, "W": 1.0, "kvarh": 1000.0, "varh": 1.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSummary:
    """The latest readings of one message, in Wh / W / A / V / %; None when absent."""

    energy_wh: float | None = None
    power_w: float | None = None
    current_a: float | None = None
    voltage_v: float | None = None
    soc: float | None = None


def numeric(sample: SampledValue) -> float | None:
    """The value as a number in base units, or None (SignedData is never parsed, R71)."""
    if sample.format != "Raw":
        return None
    try:
        number = float(sample.value)
    except ValueError:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return number * _SCALE.get(sample.unit, 1.0)


def summarize(values: tuple[MeterValue, ...]) -> MeterSummary:
    """Pick the latest reading of each measurand; per-phase currents/powers are summed,
    voltages averaged, when no phase-less total is given."""
    found: dict[str, float] = {}
    phased: dict[str, list[float]] = {}
    for mv in sorted(values, key=lambda v: v.timestamp):
        for sample in mv.sampled_values:
            number = numeric(sample)
            if number is None:
                continue
            if sample.phase and sample.measurand in (POWER, CURRENT, VOLTAGE):
                phased.setdefault(sample.measurand, []).append(number)
                continue
            found[sample.measurand] = number

    def pick(measurand: str, *, average: bool = False) -> float | None:
        if measurand in found:
            return found[measurand]
        numbers = phased.get(measurand)
        if not numbers:
            return None
        recent = numbers[-3:]
        return sum(recent) / len(recent) if average else sum(recent)

    return MeterSummary(
        energy_wh=found.get(ENERGY_REGISTER),
        power_w=pick(POWER),
        current_a=pick(CURRENT),
        voltage_v=pick(VOLTAGE, average=True),
        soc=found.get(SOC),
    )
