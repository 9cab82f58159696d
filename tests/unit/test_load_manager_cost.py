"""What the load manager costs a server, circuits or not (issue 14 next to issue 17).

It runs on every server. Before: it subscribed to every event (each frame and heartbeat
of every charger was built and queued for it) and read the circuit tree from the
database at the start of every round, i.e. after nearly every session, status or meter
event of a connect storm, even on a site with no circuits.
"""

from __future__ import annotations

from typing import Any, cast

import trio

from voltaro.domain.load_allocation import Site
from voltaro.net.registry import Registry
from voltaro.service.charging_profiles import ChargingProfileService
from voltaro.service.circuits import CircuitService
from voltaro.service.hub import EventHub
from voltaro.service.load_manager import LoadManager
from voltaro.settings import Settings
from voltaro.store.db import Database


class CountingCircuits:
    """The circuit service's read, counted (no circuits: a site with nothing to do)."""

    def __init__(self) -> None:
        self.reads = 0

    async def site(self) -> Site:
        self.reads += 1
        return Site(circuits=(), chargers=())


async def test_frames_are_not_queued_and_the_tree_is_read_when_it_changed() -> None:
    hub = EventHub(8)
    circuits = CountingCircuits()
    manager = LoadManager(
        cast(Database, None),
        Registry(),
        hub,
        cast(CircuitService, circuits),
        cast(ChargingProfileService, None),
        Settings(load_interval=3600.0),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        # A storm of frames and heartbeats: nothing the manager uses. With a queue of 8
        # an unfiltered subscription overflows at once.
        for n in range(500):
            hub.publish("frame", {"charger_id": f"CP-{n}", "payload": "[2]"})
            hub.publish("charger.seen", {"chargers": {f"CP-{n}": "now"}})
        assert hub.statistics().dropped == 0
        # Sessions and statuses wake it, round after round: the tree is read once.
        for n in range(20):
            data: dict[str, Any] = {"charger_id": f"CP-{n}", "connector_id": 1}
            hub.publish("connector.status", data)
            await trio.sleep(0.2)  # past the debounce: one round each
        assert circuits.reads == 1
        # A change of the circuits (ctl, API, settings file) is read at once.
        manager.changed()
        await trio.sleep(0.2)
        assert circuits.reads == 2
        nursery.cancel_scope.cancel()


async def test_meter_values_of_a_charger_on_no_circuit_start_no_round() -> None:
    """Allocation leaves a charger on no circuit unmanaged: its draw changes no limit,
    so its meter values (every few seconds per session) start no round and keep no
    phase tracking (issue 14)."""
    hub = EventHub(64)
    manager = LoadManager(
        cast(Database, None),
        Registry(),
        hub,
        cast(CircuitService, CountingCircuits()),
        cast(ChargingProfileService, None),
        Settings(load_interval=3600.0),
    )
    rounds = 0
    original = manager._round

    async def counted(nursery: trio.Nursery) -> None:
        nonlocal rounds
        rounds += 1
        await original(nursery)

    manager._round = counted  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        hub.publish("connector.status", {"charger_id": "CP-1", "connector_id": 1})
        await trio.sleep(0.2)  # one round: the site (no circuits) is known from now
        assert rounds == 1
        for n in range(5):
            amps = 10.0 * n
            hub.publish(
                "meter.values",
                {
                    "charger_id": "CP-1",
                    "connector_id": 1,
                    "current_a": amps,
                    "current_phases_a": {"L1": amps, "L2": 0.0, "L3": 0.0},
                },
            )
            await trio.sleep(0.2)
        assert rounds == 1
        assert manager._phase_use == {}
        nursery.cancel_scope.cancel()
