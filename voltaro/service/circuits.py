"""The site's circuit tree as operators change and read it (issue 17): ctl circuits,
the HTTP API and the settings file's [[circuits]] go through here, so every change is
checked as a whole tree and the load manager recomputes at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from voltaro.domain.circuits import (
    STRAIGHT,
    ChargerWiring,
    Circuit,
    CircuitConfig,
    CircuitError,
    parse_wiring,
    wiring_text,
)
from voltaro.domain.load_allocation import Site
from voltaro.store import circuits
from voltaro.store.db import Database


def circuit_views(site: Site) -> list[dict[str, Any]]:
    """Each circuit with its chargers, roots first then by name (JSON)."""
    depth: dict[str, int] = {}
    by_id = {c.circuit_id: c for c in site.circuits}

    def level(name: str) -> int:
        if name not in depth:
            parent = by_id[name].parent
            depth[name] = 0 if parent is None else level(parent) + 1
        return depth[name]

    out = []
    for circuit in sorted(site.circuits, key=lambda c: (level(c.circuit_id), c.circuit_id)):
        out.append(
            {
                "name": circuit.circuit_id,
                "parent": circuit.parent,
                "limit_amps": circuit.limit_amps,
                "limit_kw": circuit.limit_kw,
                "chargers": [
                    wiring_view(w) for w in site.chargers if w.circuit_id == circuit.circuit_id
                ],
            }
        )
    return out


def wiring_view(wiring: ChargerWiring) -> dict[str, Any]:
    return {
        "charger_id": wiring.charger_id,
        "circuit": wiring.circuit_id,
        "phases": wiring_text(wiring.phases),
        "max_amps": wiring.max_amps,
        "fallback_amps": wiring.fallback_amps,
        "priority": wiring.priority,
    }


class CircuitService:
    def __init__(
        self, db: Database, on_change: Callable[[], None] | None = None, *, cluster: bool = False
    ) -> None:
        self._db = db
        # Several nodes: no circuits (see _single_node).
        self._cluster = cluster
        # The load manager recomputes at once (set by the composition root).
        self.on_change: Callable[[], None] = on_change or (lambda: None)

    async def site(self) -> Site:
        return await self._db.run(circuits.load_site)

    async def views(self) -> list[dict[str, Any]]:
        return circuit_views(await self.site())

    async def tag_priorities(self) -> dict[str, int]:
        return await self._db.run(circuits.tag_priorities)

    async def set_tag_priority(self, id_tag: str, priority: int | None) -> None:
        """None removes it (NotFound when it had none; CircuitError: a bad tag)."""
        await self._db.run(circuits.set_tag_priority, id_tag, priority)
        self.on_change()

    async def apply_tag_priorities(self, priorities: Mapping[str, int]) -> None:
        if priorities:
            await self._db.run(circuits.apply_tag_priorities, priorities)
            self.on_change()

    async def apply_configuration(self, config: CircuitConfig) -> None:
        """The settings file's circuits, at start (CircuitError: nothing written)."""
        if config.circuits or config.chargers:
            await self._db.run(circuits.apply_configuration, config.circuits, config.chargers)
            self.on_change()

    async def add(
        self,
        name: str,
        *,
        parent: str | None,
        limit_amps: float | None,
        limit_kw: float | None,
    ) -> dict[str, Any]:
        self._single_node()
        circuit = Circuit(circuit_id=name, parent=parent, limit_amps=limit_amps, limit_kw=limit_kw)
        await self._db.run(circuits.add_circuit, circuit)
        self.on_change()
        return await self._view(name)

    async def set_limit(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """``changes``: limit_amps, limit_kw (None clears), parent (None: the root)."""
        await self._db.run(circuits.set_limit, name, changes)
        self.on_change()
        return await self._view(name)

    async def remove(self, name: str) -> None:
        await self._db.run(circuits.remove_circuit, name)
        self.on_change()

    async def assign(
        self,
        charger_id: str,
        circuit: str,
        *,
        phases: str | None,
        max_amps: float,
        fallback_amps: float,
        priority: int,
    ) -> dict[str, Any]:
        wiring = ChargerWiring(
            charger_id=charger_id,
            circuit_id=circuit,
            phases=STRAIGHT if phases is None else parse_wiring(phases),
            max_amps=max_amps,
            fallback_amps=fallback_amps,
            priority=priority,
        )
        await self._db.run(circuits.assign, wiring)
        self.on_change()
        return wiring_view(wiring)

    async def unassign(self, charger_id: str) -> None:
        await self._db.run(circuits.unassign, charger_id)
        self.on_change()

    def _single_node(self) -> None:
        """Each node's load manager sees only its own chargers' sessions: with several
        nodes each would hand out what the others use (docs/load-management.md)."""
        if self._cluster:
            raise CircuitError(
                "site load management runs on one node: circuits cannot be added while "
                "cluster = true"
            )

    async def _view(self, name: str) -> dict[str, Any]:
        return next(v for v in await self.views() if v["name"] == name)
