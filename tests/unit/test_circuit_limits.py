"""A circuit limit or a charger rating must be a finite number (issue 17). NaN passed the
"not negative" check (every comparison with NaN is false), and SQLite stores NaN as
NULL: `ctl circuits add site --limit nan` stored a circuit without any limit, after
which every change to the tree was refused. Infinity was stored and listed as a limit.
"""

from __future__ import annotations

import math
import tomllib

import pytest

from voltaro.domain.circuits import (
    ChargerWiring,
    Circuit,
    CircuitError,
    check_tree,
    config_from_toml,
)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_circuit_limit_that_is_not_a_finite_number_is_refused(value: float) -> None:
    with pytest.raises(CircuitError, match="finite"):
        check_tree([Circuit(circuit_id="site", limit_amps=value)])
    with pytest.raises(CircuitError, match="finite"):
        check_tree([Circuit(circuit_id="site", limit_amps=63, limit_kw=value)])


@pytest.mark.parametrize("field", ["max_amps", "fallback_amps"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_charger_rating_that_is_not_a_finite_number_is_refused(field: str, value: float) -> None:
    wiring = ChargerWiring(charger_id="CP-1", circuit_id="site", **{field: value})
    with pytest.raises(CircuitError, match="finite"):
        check_tree([Circuit(circuit_id="site", limit_amps=63)], [wiring])


def test_nan_in_the_settings_file_is_refused() -> None:
    raw = tomllib.loads('[[circuits]]\nname = "site"\nlimit_amps = nan\n')
    with pytest.raises(CircuitError, match="finite"):
        config_from_toml(raw["circuits"])
