"""What the listener needs to know about chargers, as small Protocols.

The listener is below the store and the event hub in the layering, so it asks through
these seams; the composition root implements them with the store's unit-of-work
functions and the event hub, and tests implement them in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from voltaro.domain.model import RegistrationStatus
from voltaro.domain.ports import ChargerBackend, ChargerLink


class ChargerCredentials(Protocol):
    """The handshake-relevant part of a charger record (store: ``ChargerAuth``)."""

    @property
    def charger_id(self) -> str: ...

    @property
    def registration(self) -> RegistrationStatus: ...

    @property
    def password_hash(self) -> str | None: ...

    @property
    def allow_no_subprotocol(self) -> bool: ...

    @property
    def security_profile(self) -> int: ...

    @property
    def pending_password_hashes(self) -> tuple[str, ...]: ...

    @property
    def serial_number(self) -> str | None: ...


class ChargerDirectory(Protocol):
    async def lookup(self, charger_id: str) -> ChargerCredentials | None:
        """The charger's record, or None when the id is unknown.

        Raises:
            StorageUnavailable: the database cannot answer now (HTTP 503 at the handshake).
        """
        ...

    async def register_unknown(self, charger_id: str, registration: RegistrationStatus) -> None:
        """Create a record for an unknown id (unknown_chargers = pending | accept)."""
        ...

    async def password_confirmed(self, charger_id: str, password_hash: str) -> None:
        """The charger logged in with a provisioned password: it becomes the only one.

        Raises:
            StorageUnavailable: the database cannot record it now (HTTP 503).
        """
        ...

    async def admit(self, charger_id: str) -> None:
        """Record, before the upgrade, that the charger is connecting here.

        Raises:
            StorageUnavailable: the database cannot record it now (HTTP 503).
        """
        ...

    async def connected(self, charger_id: str, remote: str) -> None:
        """The charger is now connected here: mark it and tell the consoles."""
        ...

    async def disconnected(self, charger_id: str, reason: str, *, moved_to: str = "") -> None:
        """The charger's live connection ended (not called when a successor took over on
        this node). ``moved_to``: several nodes, the node that took the charger over:
        recorded here, but not announced to consoles as a disconnection (as a takeover
        on one node is not): the new node's ``charger.connected`` came first, and a
        later ``charger.disconnected`` would show the charger offline."""
        ...


class Connection(ChargerLink, Protocol):
    """One charger's OCPP session over an accepted socket (voltaro.protocol.OcppConnection)."""

    async def run(self) -> None:
        """Serve the socket until it closes; ordinary closes return normally."""
        ...


ConnectionFactory = Callable[..., Connection]
"""``factory(charger_id, websocket, backend, *, call_timeout) -> Connection``."""

BackendFactory = Callable[[str], ChargerBackend]
"""``backend_factory(charger_id) -> ChargerBackend`` (voltaro.service.ingest.ChargerIngest)."""


class MemoryDirectory:
    """A ChargerDirectory held in memory: for listener tests and a server without a store.

    Records are plain :class:`ChargerRecord` values keyed by id; connection state is a set.
    """

    def __init__(self, records: Iterable[ChargerRecord] = ()) -> None:
        self.records: dict[str, ChargerRecord] = {r.charger_id: r for r in records}
        self.online: set[str] = set()
        self.history: list[tuple[str, str]] = []

    async def lookup(self, charger_id: str) -> ChargerRecord | None:
        return self.records.get(charger_id)

    async def register_unknown(self, charger_id: str, registration: RegistrationStatus) -> None:
        self.records.setdefault(charger_id, ChargerRecord(charger_id, registration))

    async def password_confirmed(self, charger_id: str, password_hash: str) -> None:
        record = self.records[charger_id]
        self.records[charger_id] = dataclasses.replace(
            record,
            password_hash=password_hash,
            pending_password_hashes=(),
            security_profile=max(1, record.security_profile),
        )

    async def admit(self, charger_id: str) -> None:
        self.history.append(("admitted", charger_id))

    async def connected(self, charger_id: str, remote: str) -> None:
        self.online.add(charger_id)
        self.history.append(("connected", charger_id))

    async def disconnected(self, charger_id: str, reason: str, *, moved_to: str = "") -> None:
        self.online.discard(charger_id)
        self.history.append(("disconnected", charger_id))


@dataclass(frozen=True, slots=True)
class ChargerRecord:
    """A plain ChargerCredentials value."""

    charger_id: str
    registration: RegistrationStatus = RegistrationStatus.ACCEPTED
    password_hash: str | None = None
    allow_no_subprotocol: bool = False
    security_profile: int = 0
    pending_password_hashes: tuple[str, ...] = ()
    serial_number: str | None = None
