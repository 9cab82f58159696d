"""A first-contact storm larger than the event queue (issue 14, seen in
scripts/connect_storm.py: about a third of 3,000 new chargers got no local list sync):
every new charger is still asked about its local list once it is connected. Raw OCPP-J
chargers on loopback that answer as chargers without a local list."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from tests.e2e.conftest import serving
from tests.support.charger import RawCharger
from tests.support.scripted import Script, scripted
from voltaro.service.local_list import MAX_PARALLEL

STORM = 36  # the test chargers' threads share trio's default limit of 40
QUEUE = 16  # the smallest control_queue_size: the connect and boot events overflow it


def no_local_list(payload: dict[str, Any]) -> dict[str, Any]:
    # OCPP 1.6 §5.8: keys a charger does not know are listed in unknownKey.
    return {"unknownKey": payload.get("key", [])}


async def test_every_charger_of_a_storm_larger_than_the_event_queue_is_synced(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        serving(
            database_url,
            tmp_path,
            unknown_chargers="accept",
            max_pending_per_ip=1000,
            local_list_sync_on_connect=True,
            local_list_sync_delay=0.3,
            control_queue_size=QUEUE,
        ) as server,
        AsyncExitStack() as stack,
    ):
        connected: dict[str, RawCharger] = {}

        async def arrive(charger_id: str) -> None:
            connected[charger_id] = await RawCharger.connect(
                f"{server.url}/{charger_id}", timeout=20
            )

        async with trio.open_nursery() as nursery:
            for n in range(STORM):
                nursery.start_soon(arrive, f"STORM-{n}")
        scripts: dict[str, Script] = {}
        for charger_id, cp in connected.items():
            stack.push_async_callback(cp.close)
            scripts[charger_id] = await stack.enter_async_context(
                scripted(cp, {"GetConfiguration": no_local_list})
            )
        # Each booted at once, as after a power cut: a connect and a boot event each.
        async with trio.open_nursery() as nursery:
            for script in scripts.values():
                nursery.start_soon(script.cp.send_raw, boot_frame())

        with trio.move_on_after(30):
            while any(not s.payloads("GetConfiguration") for s in scripts.values()):  # noqa: ASYNC110
                await trio.sleep(0.1)
        unsynced = sorted(c for c, s in scripts.items() if not s.payloads("GetConfiguration"))
        assert unsynced == [], f"{len(unsynced)} of {STORM} never asked: {unsynced}"
        # And none asked twice, bar one whose sync was running when it counted as
        # arrived again (at most one per syncer).
        await trio.sleep(1.0)  # the re-arrivals' delay (0.3 s) and their syncs
        asked = sum(len(s.payloads("GetConfiguration")) for s in scripts.values())
        assert asked <= STORM + MAX_PARALLEL, asked


def boot_frame() -> str:
    return '[2,"boot","BootNotification",{"chargePointVendor":"Acme","chargePointModel":"X1"}]'
