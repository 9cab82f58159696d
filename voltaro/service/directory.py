"""The listener's view of registered chargers (net.directory.ChargerDirectory) over the
store, publishing connection events for consoles."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from voltaro.control.wire import Event
from voltaro.domain.model import RegistrationStatus
from voltaro.service.charger_health import HealthRecorder
from voltaro.service.hub import EventHub
from voltaro.service.presence import ConnectionFlags
from voltaro.service.rounds import Rounds
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
        # A connect storm's handshakes share their reads and first-contact writes, one
        # unit of work per round instead of one each (issue 14 step 4). Always the
        # database's answer (no copy in memory that other nodes or writers could leave
        # stale): a password, registration or removal takes effect at the next handshake.
        self._lookups: Rounds[str, None, ChargerAuth | None] = Rounds(
            database, _lookup_many, _lookup_one, missing=None
        )
        self._registrations: Rounds[str, RegistrationStatus, bool] = Rounds(
            database, _register_many, _register_one, missing=True
        )

    async def lookup(self, charger_id: str) -> ChargerAuth | None:
        return await self._lookups.run(charger_id, None)

    async def register_unknown(self, charger_id: str, registration: RegistrationStatus) -> None:
        # Committed before it returns: the charger is registered before its upgrade.
        await self._registrations.run(charger_id, registration)
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

    async def disconnected(self, charger_id: str, reason: str, *, moved_to: str = "") -> None:
        # Never dropped: written by ConnectionFlags, retried until the database takes it
        # (several nodes: cleared only if no other node holds the charger).
        self._flags.settle(charger_id)
        if self._health is not None:
            self._health.disconnected(charger_id)
        if moved_to:
            # Taken over by another node (issue 18): its charger.connected went out
            # first; consoles must not see the charger go offline after it.
            return
        self._hub.publish(Event.CHARGER_DISCONNECTED, {"charger_id": charger_id, "reason": reason})


def _lookup_many(s: Session, items: Mapping[str, None]) -> dict[str, ChargerAuth]:
    return chargers.charger_auths(s, sorted(items))


def _lookup_one(s: Session, charger_id: str, _: None) -> ChargerAuth | None:
    return chargers.charger_auth(s, charger_id)


def _register_many(s: Session, items: Mapping[str, RegistrationStatus]) -> dict[str, bool]:
    chargers.register_unknowns(s, items)
    return dict.fromkeys(items, True)


def _register_one(s: Session, charger_id: str, registration: RegistrationStatus) -> bool:
    chargers.register_unknown(s, charger_id, registration)
    return True
