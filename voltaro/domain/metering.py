"""Reading meter values (OCPP 1.6 §4.7, §7.43): the live figures of a session, and the
energy of a finished one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from voltaro.domain.model import MeterValue, SampledValue

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
VOLTAGE = "Voltage"
SOC = "SoC"

_SCALE = {"kWh": 1000.0, "Wh": 1.0, "kW": 1000.0, "W": 1.0, "kvarh": 1000.0, "varh": 1.0}

# Phase spellings (§7.31 Phase). A three-phase total is L1+L2+L3 (or the same measured
# against neutral); the neutral conductor's own reading ("N") is never part of a total,
# and line-to-line voltages are not phase figures.
_LINE_PHASES = ("L1", "L2", "L3")
_LINE_TO_NEUTRAL = ("L1-N", "L2-N", "L3-N")

# Flags on a reading or a transaction's energy (listed for reconciliation, never billed).
NEGATIVE_ENERGY = "negative_energy"
METER_DECREASED = "meter_decreased"  # rollover, replaced meter or a wrong meterStop


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSummary:
    """The latest readings of one message, in Wh / W / A / V / %; None when absent."""

    energy_wh: float | None = None
    energy_at: datetime | None = None  # the timestamp of the energy reading
    power_w: float | None = None
    current_a: float | None = None
    # The highest line current (per phase), for load management (issue 17); the total
    # when the charger sends no phases (an upper bound of every phase).
    current_phase_a: float | None = None
    # Each line current by the charger's phase ("L1".."L3"; L1-N counts as L1), for the
    # phases a session really draws on (issue 17); None when the charger sends none.
    current_phases_a: Mapping[str, float] | None = None
    voltage_v: float | None = None
    soc: float | None = None
    flags: tuple[str, ...] = ()


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


def _figure(samples: dict[str | None, float], *, average: bool) -> float | None:
    """One figure from the samples of one timestamp: the phase-less total when the
    charger sent one, else the line phases summed (voltages averaged)."""
    if None in samples:
        return samples[None]
    for phases in (_LINE_PHASES, _LINE_TO_NEUTRAL):
        numbers = [samples[p] for p in phases if p in samples]
        if numbers:
            return sum(numbers) / len(numbers) if average else sum(numbers)
    return None


def summarize(values: tuple[MeterValue, ...]) -> MeterSummary:
    """Per measurand, the samples of the latest timestamp that has one (a message may
    carry several timestamps, §4.7): the total if given, else L1-L3 summed (voltage
    averaged), N excluded. A negative energy register is flagged and not used."""
    latest: dict[str, tuple[datetime, dict[str | None, float]]] = {}
    flags: list[str] = []
    for mv in sorted(values, key=lambda v: v.timestamp):
        for sample in mv.sampled_values:
            number = numeric(sample)
            if number is None:
                continue
            if sample.measurand == ENERGY_REGISTER and number < 0:
                flags.append(NEGATIVE_ENERGY)
                continue
            seen = latest.get(sample.measurand)
            if seen is None or seen[0] < mv.timestamp:
                seen = (mv.timestamp, {})
                latest[sample.measurand] = seen
            seen[1][sample.phase or None] = number

    def pick(measurand: str, *, average: bool = False) -> float | None:
        found = latest.get(measurand)
        return None if found is None else _figure(found[1], average=average)

    energy = pick(ENERGY_REGISTER)
    return MeterSummary(
        energy_wh=energy,
        energy_at=latest[ENERGY_REGISTER][0] if energy is not None else None,
        power_w=pick(POWER),
        current_a=pick(CURRENT),
        current_phase_a=_highest_phase(latest[CURRENT][1]) if CURRENT in latest else None,
        current_phases_a=_line_currents(latest[CURRENT][1]) if CURRENT in latest else None,
        voltage_v=pick(VOLTAGE, average=True),
        soc=pick(SOC),
        flags=tuple(dict.fromkeys(flags)),
    )


def _line_currents(samples: dict[str | None, float]) -> dict[str, float] | None:
    out: dict[str, float] = {}
    for line, neutral in zip(_LINE_PHASES, _LINE_TO_NEUTRAL, strict=True):
        value = samples.get(line, samples.get(neutral))
        if value is not None:
            out[line] = value
    return out or None


def _highest_phase(samples: dict[str | None, float]) -> float | None:
    lines = [v for k, v in samples.items() if k in _LINE_PHASES or k in _LINE_TO_NEUTRAL]
    if lines:
        return max(lines)
    return samples.get(None)


def session_energy(meter_start: int, meter_stop: int) -> tuple[int | None, str | None]:
    """The energy of a session in Wh, or None with a flag when the meter went backwards
    (a rollover or replaced meter): such a session is reconciled, never billed."""
    if meter_stop < meter_start:
        return None, METER_DECREASED
    return meter_stop - meter_start, None
