"""A site's electrical tree for load management (issue 17): circuits (site, feeders,
sub-feeders) with a limit per phase in A and/or a power limit in kW, and the chargers
hanging off them with their phase wiring. Pure data and the checks made before a tree
is stored or allocated over.

Phase rotation: installers rotate the phases from one charger to the next so that
single-phase cars do not all load the site's L1. A charger's wiring maps its own
L1/L2/L3 terminals to the site's phases; a single-phase charger has only L1. A car
charging on n phases draws from the charger's L1..Ln (IEC 61851: a one-phase car uses
L1), so wiring decides which site phases carry its current.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    L1 = "L1"
    L2 = "L2"
    L3 = "L3"


PHASES = (Phase.L1, Phase.L2, Phase.L3)
# The usual three-phase wiring: the charger's L1 on the site's L1, and so on.
STRAIGHT = (Phase.L1, Phase.L2, Phase.L3)
DEFAULT_VOLTAGE = 230.0  # nominal phase-to-neutral voltage (EN 50160) for kW limits


class CircuitError(ValueError):
    """A circuit tree or wiring we cannot use; the message says why in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Circuit:
    """One breaker: ``limit_amps`` per phase and/or ``limit_kw`` over all phases.

    ``parent`` None: the root (the site's grid connection). A child's limits may be
    above its parent's (feeders are often sized for more than the connection): the
    allocator applies every limit on the way to the root.
    """

    circuit_id: str
    parent: str | None = None
    limit_amps: float | None = None
    limit_kw: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerWiring:
    """How a charger hangs off the tree.

    ``phases[i]`` is the site phase the charger's L(i+1) is wired to; one entry for a
    single-phase charger. ``max_amps`` is its rating per phase (all connectors
    together); ``fallback_amps`` the limit it keeps when it loses Voltaro (sent as a
    ChargePointMaxProfile, OCPP 1.6 §3.13.1). ``priority``: its sessions' priority under
    the priority policy (higher first).
    """

    charger_id: str
    circuit_id: str
    phases: tuple[Phase, ...] = STRAIGHT
    max_amps: float = 32.0
    fallback_amps: float = 6.0
    priority: int = 0


def _phase(text: str, what: str) -> Phase:
    cleaned = text.strip().upper()
    for phase in PHASES:
        if phase.value == cleaned:
            return phase
    raise CircuitError(f"{what}: {text!r} is not L1, L2 or L3")


def parse_wiring(text: str) -> tuple[Phase, ...]:
    """``L1=L2,L2=L3,L3=L1`` (charger phase = site phase) to the site phases of the
    charger's L1, L2, L3 in that order; ``L1=L3`` alone is a single-phase charger.

    Raises:
        CircuitError: with a one-line reason.
    """
    mapping: dict[Phase, Phase] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        left, sep, right = part.partition("=")
        if not sep:
            raise CircuitError(f"phase wiring {part.strip()!r} must look like L1=L2")
        charger_phase = _phase(left, "charger phase")
        if charger_phase in mapping:
            raise CircuitError(f"charger phase {charger_phase} is wired twice")
        mapping[charger_phase] = _phase(right, "site phase")
    return wiring_from_mapping(mapping)


def wiring_from_mapping(mapping: Mapping[Phase, Phase]) -> tuple[Phase, ...]:
    """Check a charger-phase -> site-phase map: L1 first, no gaps, each site phase once."""
    if not mapping:
        raise CircuitError("phase wiring is empty (give at least L1=<site phase>)")
    wired = tuple(PHASES[: len(mapping)])
    if tuple(sorted(mapping)) != wired:
        raise CircuitError("a charger's phases are wired from L1 up (L1; L1, L2; or L1, L2, L3)")
    sites = tuple(mapping[p] for p in wired)
    if len(set(sites)) != len(sites):
        raise CircuitError("two charger phases are wired to the same site phase")
    return sites


def wiring_text(phases: Iterable[Phase]) -> str:
    return ",".join(f"{PHASES[i]}={site}" for i, site in enumerate(phases))


def check_circuit(circuit: Circuit) -> None:
    if not circuit.circuit_id.strip():
        raise CircuitError("a circuit needs a name")
    if circuit.limit_amps is None and circuit.limit_kw is None:
        raise CircuitError(f"circuit {circuit.circuit_id} needs a limit in A or kW (or both)")
    for value, unit in ((circuit.limit_amps, "A"), (circuit.limit_kw, "kW")):
        # NaN passes "< 0" (every comparison with it is false) and SQLite stores it as
        # NULL: a circuit without a limit. Infinity is no breaker either.
        if value is not None and not math.isfinite(value):
            raise CircuitError(
                f"circuit {circuit.circuit_id}: a limit must be a finite number of {unit}"
            )
        if value is not None and value < 0:
            raise CircuitError(f"circuit {circuit.circuit_id}: a limit cannot be negative {unit}")
    if circuit.parent == circuit.circuit_id:
        raise CircuitError(f"circuit {circuit.circuit_id} cannot be its own parent")


def check_wiring(wiring: ChargerWiring) -> None:
    if not wiring.phases or len(wiring.phases) > 3 or len(set(wiring.phases)) != len(wiring.phases):
        raise CircuitError(f"charger {wiring.charger_id}: wiring needs 1 to 3 distinct phases")
    if not (math.isfinite(wiring.max_amps) and math.isfinite(wiring.fallback_amps)):
        raise CircuitError(
            f"charger {wiring.charger_id}: rating and fallback must be finite numbers of A"
        )
    if wiring.max_amps <= 0:
        raise CircuitError(f"charger {wiring.charger_id}: max rating must be above 0 A")
    if not 0 <= wiring.fallback_amps <= wiring.max_amps:
        raise CircuitError(
            f"charger {wiring.charger_id}: fallback limit must be between 0 A and its "
            f"rating ({wiring.max_amps:g} A)"
        )


def check_tree(circuits: Iterable[Circuit], wirings: Iterable[ChargerWiring] = ()) -> None:
    """A forest of circuits (every parent known, no cycles) and chargers on known circuits.

    Raises:
        CircuitError: the first problem, in one line.
    """
    by_id: dict[str, Circuit] = {}
    for circuit in circuits:
        check_circuit(circuit)
        if circuit.circuit_id in by_id:
            raise CircuitError(f"circuit {circuit.circuit_id} is defined twice")
        by_id[circuit.circuit_id] = circuit
    for circuit in by_id.values():
        if circuit.parent is not None and circuit.parent not in by_id:
            raise CircuitError(
                f"circuit {circuit.circuit_id}: parent {circuit.parent} is not a circuit"
            )
        ancestors(by_id, circuit.circuit_id)
    seen: set[str] = set()
    for wiring in wirings:
        check_wiring(wiring)
        if wiring.charger_id in seen:
            raise CircuitError(f"charger {wiring.charger_id} is assigned twice")
        seen.add(wiring.charger_id)
        if wiring.circuit_id not in by_id:
            raise CircuitError(
                f"charger {wiring.charger_id}: circuit {wiring.circuit_id} is not a circuit"
            )


def ancestors(by_id: Mapping[str, Circuit], circuit_id: str) -> tuple[str, ...]:
    """``circuit_id`` and every circuit above it, up to the root.

    Raises:
        CircuitError: a cycle or an unknown parent.
    """
    path: list[str] = []
    current: str | None = circuit_id
    while current is not None:
        if current in path:
            raise CircuitError(f"circuits form a cycle: {' -> '.join([*path, current])}")
        circuit = by_id.get(current)
        if circuit is None:
            raise CircuitError(f"circuit {current} is not a circuit")
        path.append(current)
        current = circuit.parent
    return tuple(path)


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitConfig:
    """The circuits a settings file declares (``[[circuits]]``), with their chargers."""

    circuits: tuple[Circuit, ...] = ()
    chargers: tuple[ChargerWiring, ...] = ()


_CIRCUIT_KEYS = {"name", "parent", "limit_amps", "limit_kw", "chargers"}
_CHARGER_KEYS = {"id", "phases", "max_amps", "fallback_amps", "priority"}


def _number(entry: Mapping[str, object], key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CircuitError(f"{where}: {key} must be a number")
    return float(value)


def config_from_toml(raw: object) -> CircuitConfig:
    """``[[circuits]]`` tables (name, parent?, limit_amps?, limit_kw?) each with
    ``[[circuits.chargers]]`` (id, phases = "L1=L2,L2=L3,L3=L1"?, max_amps?,
    fallback_amps?, priority?), checked as one tree.

    Raises:
        CircuitError: with a one-line reason naming the circuit or charger.
    """
    if not isinstance(raw, list | tuple):
        raise CircuitError("expected [[circuits]] tables (set circuits in the TOML file)")
    circuits: list[Circuit] = []
    wirings: list[ChargerWiring] = []
    for entry in raw:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise CircuitError("each [[circuits]] table needs a name")
        name = str(entry["name"])
        where = f"circuit {name}"
        unknown = set(entry) - _CIRCUIT_KEYS
        if unknown:
            raise CircuitError(f"{where}: unknown key {sorted(unknown)[0]}")
        parent = entry.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise CircuitError(f"{where}: parent must be a circuit name")
        circuits.append(
            Circuit(
                circuit_id=name,
                parent=parent,
                limit_amps=_number(entry, "limit_amps", where),
                limit_kw=_number(entry, "limit_kw", where),
            )
        )
        chargers = entry.get("chargers", [])
        if not isinstance(chargers, list):
            raise CircuitError(f"{where}: chargers must be [[circuits.chargers]] tables")
        for item in chargers:
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                raise CircuitError(f"{where}: each charger needs an id")
            at = f"charger {item['id']}"
            unknown = set(item) - _CHARGER_KEYS
            if unknown:
                raise CircuitError(f"{at}: unknown key {sorted(unknown)[0]}")
            phases = item.get("phases", "L1=L1,L2=L2,L3=L3")
            if not isinstance(phases, str):
                raise CircuitError(f'{at}: phases must look like "L1=L2,L2=L3,L3=L1"')
            priority = item.get("priority", 0)
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise CircuitError(f"{at}: priority must be a whole number")
            max_amps = _number(item, "max_amps", at)
            fallback = _number(item, "fallback_amps", at)
            wirings.append(
                ChargerWiring(
                    charger_id=str(item["id"]),
                    circuit_id=name,
                    phases=parse_wiring(phases),
                    max_amps=32.0 if max_amps is None else max_amps,
                    fallback_amps=6.0 if fallback is None else fallback,
                    priority=priority,
                )
            )
    check_tree(circuits, wirings)
    return CircuitConfig(circuits=tuple(circuits), chargers=tuple(wirings))
