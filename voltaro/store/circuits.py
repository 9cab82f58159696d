"""Units of work for the site's circuit tree (issue 17): every change is checked against
the whole tree it would make (a tree, no cycles, chargers on known circuits) before it
is written, in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from voltaro.domain.authorization import tag_key
from voltaro.domain.circuits import (
    ChargerWiring,
    Circuit,
    CircuitError,
    Phase,
    check_tree,
)
from voltaro.domain.load_allocation import Site
from voltaro.domain.timestamps import utc_now
from voltaro.store.errors import NotFound
from voltaro.store.schema import (
    ChargePointRow,
    CircuitChargerRow,
    CircuitRow,
    LoadTagPriorityRow,
)


def _circuit(row: CircuitRow) -> Circuit:
    return Circuit(
        circuit_id=row.name, parent=row.parent, limit_amps=row.limit_amps, limit_kw=row.limit_kw
    )


def _wiring(row: CircuitChargerRow) -> ChargerWiring:
    return ChargerWiring(
        charger_id=row.charger_id,
        circuit_id=row.circuit,
        phases=tuple(Phase(p) for p in row.phases.split(",")),
        max_amps=row.max_amps,
        fallback_amps=row.fallback_amps,
        priority=row.priority,
    )


def load_site(s: Session) -> Site:
    circuits = s.scalars(select(CircuitRow).order_by(CircuitRow.name))
    wirings = s.scalars(select(CircuitChargerRow).order_by(CircuitChargerRow.charger_id))
    priorities = s.scalars(select(LoadTagPriorityRow))
    return Site(
        circuits=tuple(_circuit(r) for r in circuits),
        chargers=tuple(_wiring(r) for r in wirings),
        tag_priorities={r.tag_key: r.priority for r in priorities},
    )


def tag_priorities(s: Session) -> dict[str, int]:
    """id tag (as given) -> priority, by tag."""
    rows = s.scalars(select(LoadTagPriorityRow).order_by(LoadTagPriorityRow.tag_key))
    return {r.id_tag: r.priority for r in rows}


def set_tag_priority(s: Session, id_tag: str, priority: int | None) -> None:
    """Give a tag a priority (None: remove it; NotFound if it had none).

    Raises:
        CircuitError: an empty tag.
        NotFound: removing a priority the tag does not have.
    """
    if not id_tag.strip() or len(id_tag.strip()) > 64:
        raise CircuitError("an id tag is 1 to 64 characters")
    key = tag_key(id_tag)
    row = s.get(LoadTagPriorityRow, key)
    if priority is None:
        if row is None:
            raise NotFound(f"id tag {id_tag} has no priority")
        s.delete(row)
        return
    if row is None:
        row = LoadTagPriorityRow(tag_key=key)
        s.add(row)
    row.id_tag = id_tag.strip()
    row.priority = priority
    row.updated_at = utc_now()


def apply_tag_priorities(s: Session, priorities: Mapping[str, int]) -> None:
    """The settings file's load_tag_priorities at start: written as it says them."""
    for id_tag, priority in priorities.items():
        set_tag_priority(s, id_tag, priority)


def _check(site: Site, circuits: Iterable[Circuit], wirings: Iterable[ChargerWiring]) -> None:
    check_tree(list(circuits), list(wirings))


def _write_circuit(s: Session, circuit: Circuit) -> None:
    row = s.get(CircuitRow, circuit.circuit_id)
    if row is None:
        row = CircuitRow(name=circuit.circuit_id)
        s.add(row)
    row.parent = circuit.parent
    row.limit_amps = circuit.limit_amps
    row.limit_kw = circuit.limit_kw
    row.updated_at = utc_now()


def _write_wiring(s: Session, wiring: ChargerWiring) -> None:
    row = s.get(CircuitChargerRow, wiring.charger_id)
    if row is None:
        row = CircuitChargerRow(charger_id=wiring.charger_id)
        s.add(row)
    row.circuit = wiring.circuit_id
    row.phases = ",".join(p.value for p in wiring.phases)
    row.max_amps = wiring.max_amps
    row.fallback_amps = wiring.fallback_amps
    row.priority = wiring.priority
    row.updated_at = utc_now()


def _replace(site: Site, circuit: Circuit) -> list[Circuit]:
    return [c for c in site.circuits if c.circuit_id != circuit.circuit_id] + [circuit]


def add_circuit(s: Session, circuit: Circuit) -> Circuit:
    """Raises:
    CircuitError: it exists already, or the tree it makes is not usable."""
    site = load_site(s)
    if any(c.circuit_id == circuit.circuit_id for c in site.circuits):
        raise CircuitError(f"circuit {circuit.circuit_id} exists already (set-limit changes it)")
    _check(site, _replace(site, circuit), site.chargers)
    _write_circuit(s, circuit)
    return circuit


def set_limit(s: Session, name: str, changes: Mapping[str, object]) -> Circuit:
    """Change a circuit: the keys present in ``changes`` (limit_amps, limit_kw: a number
    or None to clear; parent: a circuit or None for the root) are set, the rest kept.

    Raises:
        NotFound: no such circuit.
        CircuitError: the result is not usable (no limit left, a cycle...).
    """
    site = load_site(s)
    current = next((c for c in site.circuits if c.circuit_id == name), None)
    if current is None:
        raise NotFound(f"unknown circuit {name}")
    unknown = set(changes) - {"limit_amps", "limit_kw", "parent"}
    if unknown:
        raise CircuitError(f"cannot change {sorted(unknown)[0]} of a circuit")
    changed = replace(current, **changes)  # type: ignore[arg-type]
    _check(site, _replace(site, changed), site.chargers)
    _write_circuit(s, changed)
    return changed


def remove_circuit(s: Session, name: str) -> None:
    """Raises:
    NotFound: no such circuit.
    CircuitError: circuits or chargers still hang off it."""
    site = load_site(s)
    if not any(c.circuit_id == name for c in site.circuits):
        raise NotFound(f"unknown circuit {name}")
    children = [c.circuit_id for c in site.circuits if c.parent == name]
    chargers = [w.charger_id for w in site.chargers if w.circuit_id == name]
    if children or chargers:
        raise CircuitError(
            f"circuit {name} still feeds "
            + ", ".join([*(f"circuit {c}" for c in children), *(f"charger {c}" for c in chargers)])
            + ": remove or move them first"
        )
    s.execute(delete(CircuitRow).where(CircuitRow.name == name))


def assign(s: Session, wiring: ChargerWiring) -> ChargerWiring:
    """Put a charger on a circuit (again: replaces its wiring).

    Raises:
        NotFound: the charger is not registered (a typo would hold its fallback on
            every phase up to the root for a charger that never comes; register one
            not booted yet first, ``chargers add``).
        CircuitError: unknown circuit or unusable wiring.
    """
    if s.get(ChargePointRow, wiring.charger_id) is None:
        raise NotFound(f"unknown charger {wiring.charger_id}")
    site = load_site(s)
    wirings = [w for w in site.chargers if w.charger_id != wiring.charger_id] + [wiring]
    _check(site, site.circuits, wirings)
    _write_wiring(s, wiring)
    return wiring


def unassign(s: Session, charger_id: str) -> None:
    """Raises:
    NotFound: the charger is on no circuit."""
    result = s.execute(delete(CircuitChargerRow).where(CircuitChargerRow.charger_id == charger_id))
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"charger {charger_id} is on no circuit")


def apply_configuration(
    s: Session, circuits: Iterable[Circuit], wirings: Iterable[ChargerWiring]
) -> None:
    """The settings file's circuits at start-up: those it names are written as it says
    them (replacing what ctl changed); circuits and chargers it does not name are kept.

    Raises:
        CircuitError: the merged tree is not usable (nothing is written).
    """
    site = load_site(s)
    new_circuits = {c.circuit_id: c for c in site.circuits}
    new_circuits.update({c.circuit_id: c for c in circuits})
    new_wirings = {w.charger_id: w for w in site.chargers}
    new_wirings.update({w.charger_id: w for w in wirings})
    check_tree(list(new_circuits.values()), list(new_wirings.values()))
    for circuit in circuits:
        _write_circuit(s, circuit)
    for wiring in wirings:
        _write_wiring(s, wiring)
