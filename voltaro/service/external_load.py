"""The building's other load per circuit, pushed from outside (issue 17): ``PUT
/site/external-load`` and ``voltaro ctl circuits external-load`` set it, the load
manager subtracts it from the circuit's limit (voltaro/domain/site_limits.py).

Kept in memory: a value is only good for its validity (seconds to minutes), and after a
restart the circuits named in ``external_load_circuits`` start from the fallback
assumption until the first value arrives, so nothing stale is ever read back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from voltaro.domain.circuits import CircuitError
from voltaro.domain.site_limits import ExternalLoad, external_for
from voltaro.domain.timestamps import format_utc, utc_now
from voltaro.service.circuits import CircuitService
from voltaro.settings import Settings

log = logging.getLogger(__name__)

MAX_VALID_S = 86400.0


def phase_amps(raw: object) -> tuple[float, float, float]:
    """A single number (the same on every phase) or [L1, L2, L3], each >= 0.

    Raises:
        CircuitError: with a one-line reason.
    """
    values: list[object] = list(raw) if isinstance(raw, list | tuple) else [raw]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise CircuitError("amps must be one number or three (L1, L2, L3)")
    out: list[float] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CircuitError("amps must be numbers")
        if not math.isfinite(value) or value < 0:
            # Export (a negative load) would raise a limit above its breaker's.
            raise CircuitError("amps must be finite and >= 0 (export is not counted)")
        out.append(float(value))
    return (out[0], out[1], out[2])


class ExternalLoads:
    def __init__(self, circuits: CircuitService, settings: Settings) -> None:
        self._circuits = circuits
        self._settings = settings
        self._values: dict[str, ExternalLoad] = {}
        # The load manager recomputes at once (set by the composition root).
        self.on_change: Callable[[], None] = lambda: None

    def values(self) -> dict[str, ExternalLoad]:
        return dict(self._values)

    async def set(
        self, circuit: str | None, amps: object, valid_for_s: float, *, actor: str
    ) -> dict[str, Any]:
        """Store a value for ``circuit`` (None: the root, when there is one).

        Raises:
            CircuitError: an unknown circuit or a bad value.
        """
        if isinstance(valid_for_s, bool) or not isinstance(valid_for_s, int | float):
            raise CircuitError("valid_for_s must be a number of seconds")
        if not 0 < valid_for_s <= MAX_VALID_S:
            raise CircuitError(f"valid_for_s must be above 0 and at most {MAX_VALID_S:g}")
        per_phase = phase_amps(amps)
        site = await self._circuits.site()
        names = {c.circuit_id for c in site.circuits}
        if circuit is None:
            roots = [c.circuit_id for c in site.circuits if c.parent is None]
            if len(roots) != 1:
                raise CircuitError("give the circuit: there is not exactly one root circuit")
            circuit = roots[0]
        if circuit not in names:
            raise CircuitError(f"circuit {circuit} is not a circuit")
        now = utc_now()
        before = self._values.get(circuit)
        self._values[circuit] = ExternalLoad(
            circuit_id=circuit,
            amps=per_phase,
            at=now,
            valid_until=now + timedelta(seconds=float(valid_for_s)),
        )
        if before is None or before.amps != per_phase:
            log.info(
                "external load on circuit %s: %s A (valid %g s, by %s)",
                circuit,
                "/".join(f"{a:g}" for a in per_phase),
                valid_for_s,
                actor,
            )
        self.on_change()
        return self.view(circuit)

    def view(self, circuit: str) -> dict[str, Any]:
        s = self._settings
        now = utc_now()
        state, assumed = external_for(
            circuit,
            self._values,
            s.external_load_circuits,
            s.external_load_fallback_amps,
            now,
        )
        value = self._values.get(circuit)
        return {
            "circuit": circuit,
            "amps": None if value is None else list(value.amps),
            "at": None if value is None else format_utc(value.at),
            "valid_until": None if value is None else format_utc(value.valid_until),
            "state": state.value,
            "assumed_amps": None if assumed is None else list(assumed),
        }

    def views(self) -> list[dict[str, Any]]:
        names = sorted(set(self._values) | set(self._settings.external_load_circuits))
        return [self.view(name) for name in names]
