"""The composition root: builds every piece and owns the root nursery.

Start order: database (migrations) -> event hub, registry, command service -> OCPP
listener -> control socket -> HTTP API -> housekeeping. Each service is started with
``await nursery.start(service.run)`` so that ``run`` only reports ready once everything
listens; ``task_status.started`` hands back the bound addresses (tests bind port 0).

Shutdown (SIGTERM / Ctrl-C, signalled through ``stop``): the listener refuses new
chargers and closes every charger socket with 1001 going-away, waiting up to
settings.shutdown_grace; database writes in flight finish because ``Database.run`` never
abandons a worker thread on cancel; then the nursery is cancelled.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import Any

import trio

from voltaro.domain.ports import ChargerBackend, StorageUnavailable
from voltaro.net.directory import Connection
from voltaro.net.listener import OcppListener
from voltaro.net.registry import Registry
from voltaro.protocol import OcppConnection, warm_up
from voltaro.service.ingest import ChargerIngest, FrameSink, Liveness
from voltaro.settings import Settings
from voltaro.store import chargers, frames
from voltaro.store.db import Database

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 3600.0  # seconds between frame-log retention sweeps


@dataclass(frozen=True, slots=True)
class BoundAddresses:
    """Where the running server listens (real ports even when 0 was asked for)."""

    ocpp: list[tuple[str, int]]
    control_socket: str | None = None
    http: tuple[str, int] | None = None

    @property
    def ocpp_port(self) -> int:
        return self.ocpp[0][1]


@dataclass(slots=True)
class Components:
    """What ``run`` assembled: exposed for tests and for the HTTP API / control server."""

    settings: Settings
    registry: Registry
    listener: OcppListener
    database: Any = None
    hub: Any = None
    commands: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


def _optional(module: str) -> ModuleType | None:
    """A piece another engineer delivers; None until it has landed in the tree."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise


def upgrade_database(settings: Settings) -> None:
    """``voltaro db upgrade``: bring the database to the current schema."""
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    try:
        db.upgrade()
    finally:
        db.dispose()


async def run(
    settings: Settings,
    *,
    stop: trio.Event | None = None,
    task_status: trio.TaskStatus[BoundAddresses] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set (then shut down gracefully) or until cancelled."""
    stop = trio.Event() if stop is None else stop
    registry = Registry()

    # Validators are loaded now, not on the first message of each action (reference §7.6).
    warm_up()
    database = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        lock_timeout=max(1.0, min(10.0, settings.db_retry_seconds)),
    )
    await trio.to_thread.run_sync(database.upgrade)
    # Nobody is connected yet, whatever a crash left in the table.
    await database.run(chargers.reset_connected)
    liveness = Liveness(database)

    # --- event hub (seam: voltaro.service.hub.EventHub) -------------------------------
    hub_module = _optional("voltaro.service.hub")
    hub: Any = hub_module.EventHub(settings.control_queue_size) if hub_module else None

    publish = _publisher(hub)
    frame_sink = FrameSink(db=database, settings=settings, publish=publish)
    directory = StoreDirectory(database, hub)

    def backend_factory(charger_id: str) -> ChargerBackend:
        return ChargerIngest(
            charger_id,
            db=database,
            settings=settings,
            publish=publish,
            frame_sink=frame_sink,
            liveness=liveness,
        )

    listener = OcppListener(
        settings,
        registry=registry,
        directory=directory,
        backend_factory=backend_factory,
        connection_factory=OcppConnection,
    )
    components = Components(
        settings=settings,
        registry=registry,
        listener=listener,
        database=database,
        hub=hub,
        commands=_command_service(settings, database, registry, hub),
    )
    components.extras["frame_sink"] = frame_sink
    components.extras["liveness"] = liveness

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(frame_sink.run)
            await nursery.start(liveness.run)
            ocpp = await nursery.start(listener.run)
            control_path = await _start_control(nursery, components)
            http = await _start_http(nursery, components)
            nursery.start_soon(_housekeeping, components)
            task_status.started(BoundAddresses(ocpp=ocpp, control_socket=control_path, http=http))
            await stop.wait()
            log.info("shutting down: closing charger connections (1001)")
            await listener.shutdown(grace=settings.shutdown_grace)
            nursery.cancel_scope.cancel()
    finally:
        database.dispose()
    log.info("stopped")


def _command_service(settings: Settings, database: Any, registry: Registry, hub: Any) -> Any:
    """voltaro.service.commands.CommandService (control engineer), when it exists."""
    commands = _optional("voltaro.service.commands")
    if commands is None or database is None:
        return None
    return commands.CommandService(database, registry, hub, settings=settings)


class StoreDirectory:
    """ChargerDirectory over the store's unit-of-work functions and the event hub."""

    def __init__(self, database: Any, hub: Any) -> None:
        self._db = database
        self._hub = hub
        self._chargers = chargers

    async def lookup(self, charger_id: str) -> Any:
        return await self._db.run(self._chargers.charger_auth, charger_id)

    async def register_unknown(self, charger_id: str, registration: Any) -> None:
        await self._db.run(self._chargers.register_unknown, charger_id, registration)
        self._publish("charger.updated", charger_id=charger_id, registration=str(registration))

    async def connected(self, charger_id: str, remote: str) -> None:
        from voltaro.domain.timestamps import utc_now

        await self._db.run(self._chargers.mark_connected, charger_id, True, utc_now())
        self._publish("charger.connected", charger_id=charger_id, remote=remote)

    async def disconnected(self, charger_id: str, reason: str) -> None:
        from voltaro.domain.timestamps import utc_now

        await self._db.run(self._chargers.mark_connected, charger_id, False, utc_now())
        self._publish("charger.disconnected", charger_id=charger_id, reason=reason)

    def _publish(self, event: str, **data: object) -> None:
        if self._hub is not None:
            self._hub.publish(event, data)


def _publisher(hub: Any) -> Callable[[str, dict[str, Any]], None]:
    if hub is None:
        return lambda event, data: None
    publish: Callable[[str, dict[str, Any]], None] = hub.publish
    return publish


async def _start_control(nursery: trio.Nursery, c: Components) -> str | None:
    """Seam: voltaro.control.server (control engineer)."""
    return None


async def _start_http(nursery: trio.Nursery, c: Components) -> tuple[str, int] | None:
    """Seam: voltaro.api (api engineer): ``await nursery.start(ApiServer(...).run)``."""
    return None


async def _housekeeping(c: Components) -> None:
    """Frame-log retention: purge frames older than settings.frame_log_retention_days."""
    days = c.settings.frame_log_retention_days
    if days <= 0:
        await trio.sleep_forever()
    from voltaro.domain.timestamps import utc_now

    while True:
        try:
            removed = await c.database.run(frames.purge_frames, utc_now() - timedelta(days=days))
            if removed:
                log.info("frame log: purged %d frames older than %d days", removed, days)
        except StorageUnavailable:
            log.warning("frame log retention sweep skipped: database unavailable")
        await trio.sleep(HOUSEKEEPING_INTERVAL)


__all__ = ["BoundAddresses", "Components", "Connection", "run", "upgrade_database"]
