"""Control-socket ops for the site's circuits (issue 17): circuits.list, .add,
.set_limit, .remove, .assign, .unassign. ``ctl circuits`` is their command line."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voltaro.control.ops import OpError
from voltaro.control.wire import ErrorCode
from voltaro.domain.circuits import CircuitError
from voltaro.service.circuits import CircuitService
from voltaro.service.external_load import ExternalLoads
from voltaro.store.errors import NotFound

log = logging.getLogger(__name__)

Op = Callable[[dict[str, Any], str], Awaitable[Any]]


def _name(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value.strip():
        raise OpError(ErrorCode.BAD_ARGUMENTS, f"{key} is required")
    return value.strip()


def _amps(args: dict[str, Any], key: str, default: float | None = None) -> float | None:
    value = args.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OpError(ErrorCode.BAD_ARGUMENTS, f"{key} must be a number")
    return float(value)


class CircuitOps:
    def __init__(
        self,
        circuits: CircuitService,
        live: Callable[[], dict[str, Any] | None] | None = None,
        external: ExternalLoads | None = None,
    ) -> None:
        self._circuits = circuits
        self._external = external
        # The load manager's latest allocation (per circuit load, per session limits).
        self._live = live or (lambda: None)
        self.table: dict[str, Op] = {
            "circuits.list": self.list_,
            "circuits.add": self.add,
            "circuits.set_limit": self.set_limit,
            "circuits.remove": self.remove,
            "circuits.assign": self.assign,
            "circuits.unassign": self.unassign,
            "circuits.tag_priority": self.tag_priority,
            "circuits.external_load": self.external_load,
            "circuits.set_external_load": self.set_external_load,
        }

    async def _guard(self, work: Awaitable[Any]) -> Any:
        try:
            return await work
        except CircuitError as exc:
            raise OpError(ErrorCode.BAD_ARGUMENTS, str(exc)) from None
        except NotFound as exc:
            raise OpError(ErrorCode.NOT_FOUND, str(exc)) from None

    async def list_(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        return {
            "circuits": await self._circuits.views(),
            "live": self._live(),
            "tag_priorities": await self._circuits.tag_priorities(),
        }

    async def tag_priority(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """An id tag's priority (``priority`` None: removed)."""
        id_tag = _name(args, "id_tag")
        priority = args.get("priority")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "priority must be a whole number (or null)")
        await self._guard(self._circuits.set_tag_priority(id_tag, priority))
        log.info("id tag %s load priority %s (by %s)", id_tag, priority, user)
        return {"id_tag": id_tag, "priority": priority}

    async def add(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        name = _name(args, "name")
        parent = args.get("parent") or None
        if parent is not None and not isinstance(parent, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "parent must be a circuit name")
        view: dict[str, Any] = await self._guard(
            self._circuits.add(
                name,
                parent=parent,
                limit_amps=_amps(args, "limit_amps"),
                limit_kw=_amps(args, "limit_kw"),
            )
        )
        log.info("circuit %s added (by %s): %s", name, user, view)
        return view

    async def set_limit(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        name = _name(args, "name")
        changes: dict[str, Any] = {}
        for key in ("limit_amps", "limit_kw"):
            if key in args:
                changes[key] = _amps(args, key)
        if "parent" in args:
            parent = args["parent"] or None
            if parent is not None and not isinstance(parent, str):
                raise OpError(ErrorCode.BAD_ARGUMENTS, "parent must be a circuit name")
            changes["parent"] = parent
        if not changes:
            raise OpError(ErrorCode.BAD_ARGUMENTS, "nothing to change: give a limit or a parent")
        view: dict[str, Any] = await self._guard(self._circuits.set_limit(name, changes))
        log.info("circuit %s changed (by %s): %s", name, user, view)
        return view

    async def remove(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        name = _name(args, "name")
        await self._guard(self._circuits.remove(name))
        log.info("circuit %s removed (by %s)", name, user)
        return {"removed": name}

    async def assign(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _name(args, "charger_id")
        circuit = _name(args, "circuit")
        phases = args.get("phases")
        if phases is not None and not isinstance(phases, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "phases must look like L1=L2,L2=L3,L3=L1")
        priority = args.get("priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "priority must be a whole number")
        view: dict[str, Any] = await self._guard(
            self._circuits.assign(
                charger_id,
                circuit,
                phases=phases,
                max_amps=_amps(args, "max_amps", 32.0) or 0.0,
                fallback_amps=_amps(args, "fallback_amps", 6.0) or 0.0,
                priority=priority,
            )
        )
        log.info("charger %s put on circuit %s (by %s): %s", charger_id, circuit, user, view)
        return view

    async def unassign(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _name(args, "charger_id")
        await self._guard(self._circuits.unassign(charger_id))
        log.info("charger %s taken off its circuit (by %s)", charger_id, user)
        return {"unassigned": charger_id}

    def _loads(self) -> ExternalLoads:
        if self._external is None:
            raise OpError(ErrorCode.UNAVAILABLE, "external loads are not served here")
        return self._external

    async def external_load(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """The building's other load per circuit (pushed, or assumed when out of date)."""
        return {"external_loads": self._loads().views()}

    async def set_external_load(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        circuit = args.get("circuit") or None
        if circuit is not None and not isinstance(circuit, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "circuit must be a circuit name")
        view: dict[str, Any] = await self._guard(
            self._loads().set(
                circuit, args.get("amps"), args.get("valid_for_s", 300.0), actor=f"ctl:{user}"
            )
        )
        return view
