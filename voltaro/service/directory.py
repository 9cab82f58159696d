"""The listener's view of registered chargers (net.directory.ChargerDirectory) over the
store, publishing connection events for consoles."""

from __future__ import annotations

from voltaro.control.wire import Event
from voltaro.domain.model import RegistrationStatus
from voltaro.service.charger_health import HealthRecorder
from voltaro.service.hub import EventHub
from voltaro.service.presence import ConnectionFlags
from voltaro.store import chargers
from voltaro.store.chargers import ChargerAuth
from voltaro.store.db import Database


class StoreDirectory:
    def __init__(
        self,
        database: Database,
        hub: EventHub,
        flags: ConnectionFlags,
        health: HealthRecorder | None = None,
    ) -> None:
        self._db = database
        self._hub = hub
        self._flags = flags
        self._health = health  # connections and time online (issue 19)

    async def lookup(self, charger_id: str) -> ChargerAuth | None:
        return await self._db.run(chargers.charger_auth, charger_id)

    async def register_unknown(self, charger_id: str, registration: RegistrationStatus) -> None:
        await self._db.run(chargers.register_unknown, charger_id, registration)
        self._hub.publish(
            Event.CHARGER_UPDATED, {"charger_id": charger_id, "registration": registration.value}
        )

    async def password_confirmed(self, charger_id: str, password_hash: str) -> None:
        await self._db.run(chargers.confirm_password, charger_id, password_hash)
        self._hub.publish(Event.CHARGER_UPDATED, {"charger_id": charger_id})

    async def admit(self, charger_id: str) -> None:
        # The flag is written before the upgrade, in a batch with the other chargers'
        # flags: a database that cannot take it is answered 503 (issue 10 §2.4).
        await self._flags.admit(charger_id)

    async def connected(self, charger_id: str, remote: str) -> None:
        # From here on the flag follows the registry, written until stored (presence).
        self._flags.settle(charger_id)
        if self._health is not None:
            self._health.connected(charger_id)
        self._hub.publish(Event.CHARGER_CONNECTED, {"charger_id": charger_id, "remote": remote})

    async def disconnected(self, charger_id: str, reason: str) -> None:
        # Never dropped: written by ConnectionFlags, retried until the database takes it.
        self._flags.settle(charger_id)
        if self._health is not None:
            self._health.disconnected(charger_id)
        self._hub.publish(Event.CHARGER_DISCONNECTED, {"charger_id": charger_id, "reason": reason})
