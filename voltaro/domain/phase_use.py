"""Which of its charger's phases a session really draws on, from the per-phase
``Current.Import`` meter values (OCPP 1.6 §7.31 Phase L1/L2/L3) (issue 17). Pure.

A session is counted on every phase its charger is wired to until the meter shows
otherwise: a single-phase car on a three-phase charger then frees two phases' worth of
room on the site for others. The rules lean to the safe side:

- **Narrow** only after ``NARROW_AFTER`` consecutive samples in which a phase stays
  under ``OFF_AMPS`` while another draws at least ``ON_AMPS`` (the car is charging, the
  quiet phase is not just a car at rest). Only to the charger's L1, or L1 and L2: a car
  on fewer phases uses the charger's first ones (IEC 61851-1), so any other pattern is
  a meter we do not understand and the session stays on all phases.
- **Widen at once**: one sample in which a phase that is not counted draws
  ``OFF_AMPS`` or more puts the session back on all its charger's phases.

So a wrong narrowing can leave a circuit short only from the sample that shows the
draw on an uncounted phase to the round it starts (the load manager recomputes on that
meter value; cuts go out before raises): one meter interval at most, and by no more
than the narrowed sessions' own limits on the phases they were not counted on (a
TxProfile in A limits every phase). tests/unit/test_load_allocation_phases.py proves
that bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

OFF_AMPS = 1.0  # below this a phase is not drawing
ON_AMPS = 6.0  # IEC 61851-1's least charging current: at or above, the car is charging
NARROW_AFTER = 2  # consecutive samples before a session is narrowed
TERMINALS = ("L1", "L2", "L3")  # the charger's own phases, as its meter reports them


@dataclass(frozen=True, slots=True)
class PhaseUse:
    """``phases_used``: None (all its charger's phases) or 1 or 2 (the charger's L1, or
    L1 and L2). ``quiet``: per charger phase, consecutive samples it was quiet while
    another drew."""

    phases_used: int | None = None
    quiet: tuple[int, int, int] = (0, 0, 0)


def terminal_currents(raw: object) -> dict[str, float] | None:
    """The per-phase currents of a meter.values event (``current_phases_a``), or None."""
    if not isinstance(raw, Mapping):
        return None
    out: dict[str, float] = {}
    for phase in TERMINALS:
        value = raw.get(phase)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[phase] = float(value)
    return out or None


def observe(state: PhaseUse, currents: Mapping[str, float], wired: int) -> PhaseUse:
    """The state after one sample of per-phase currents on a charger with ``wired``
    phases. Phases the sample does not report are taken as not known (no change to
    their count, never a reason to narrow)."""
    wired = max(1, min(wired, 3))
    counted = wired if state.phases_used is None else state.phases_used
    for i in range(counted, wired):
        if currents.get(TERMINALS[i], 0.0) >= OFF_AMPS:
            return PhaseUse()  # an uncounted phase draws: back on all phases at once
    quiet = list(state.quiet)
    for i in range(3):
        phase = TERMINALS[i]
        others = [v for k, v in currents.items() if k != phase]
        if i >= wired or phase not in currents:
            quiet[i] = 0 if i >= wired else quiet[i]
        elif currents[phase] < OFF_AMPS and others and max(others) >= ON_AMPS:
            quiet[i] += 1
        else:
            quiet[i] = 0
    in_use = [i for i in range(wired) if quiet[i] < NARROW_AFTER]
    narrowed: int | None = None
    if in_use and in_use == list(range(len(in_use))) and len(in_use) < wired:
        narrowed = len(in_use)
    if state.phases_used is not None and narrowed is None:
        # Narrowed already, and no pattern now: stay (only a draw widens).
        narrowed = state.phases_used
    return PhaseUse(phases_used=narrowed, quiet=(quiet[0], quiet[1], quiet[2]))
