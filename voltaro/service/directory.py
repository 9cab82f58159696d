"""The listener's view of registered chargers (net.directory.ChargerDirectory) over the
store, publishing connection events for consoles."""

from __future__ import annotations

from voltaro.control.wire import Event
from voltaro.domain.model import RegistrationStatus
from voltaro.domain.timestamps import utc_now
from voltaro.service.hub import EventHub
from voltaro.store import chargers
from voltaro.store.chargers import ChargerAuth
from voltaro.store.db import Database


class StoreDirectory:
    def __init__(self, database: Database, hub: EventHub) -> None:
        self._db = database
        self._hub = hub

    async def lookup(self, charger_id: str) -> ChargerAuth | None:
        return await self._db.run(chargers.charger_auth, charger_id)

    async def register_unknown(self, charger_id: str, registration: RegistrationStatus) -> None:
        await self._db.run(chargers.register_unknown, charger_id, registration)
        self._hub.publish(
            Event.CHARGER_UPDATED, {"charger_id": charger_id, "registration": registration.value}
        )

    async def connected(self, charger_id: str, remote: str) -> None:
        await self._db.run(chargers.mark_connected, charger_id, True, utc_now())
        self._hub.publish(Event.CHARGER_CONNECTED, {"charger_id": charger_id, "remote": remote})

    async def disconnected(self, charger_id: str, reason: str) -> None:
        await self._db.run(chargers.mark_connected, charger_id, False, utc_now())
        self._hub.publish(Event.CHARGER_DISCONNECTED, {"charger_id": charger_id, "reason": reason})
