"""The composition root: builds every piece and owns the root nursery.

Start order: database (migrations) -> event hub, registry, command service -> OCPP
listener -> control socket -> HTTP API -> frame-log retention. Each service is started with
``await nursery.start(service.run)`` so that ``run`` only reports ready once everything
listens; ``task_status.started`` hands back the bound addresses (tests bind port 0).

Shutdown (SIGTERM / Ctrl-C, signalled through ``stop``): the listener refuses new
chargers, every connection stops reading and finishes the answers in flight, then
closes with 1001 going-away, within settings.shutdown_grace; database writes in flight
finish because ``Database.run`` never abandons a worker thread on cancel; then the
nursery is cancelled.
"""

from __future__ import annotations

import functools
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

import trio
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from voltaro.api.routes import ApiContext
from voltaro.api.server import ApiServer
from voltaro.control.circuit_ops import CircuitOps
from voltaro.control.ops import ControlOps
from voltaro.control.server import ControlServer
from voltaro.control.wire import Event
from voltaro.domain.circuits import CircuitError
from voltaro.domain.ports import ChargerBackend
from voltaro.net.directory import Connection
from voltaro.net.listener import OcppListener
from voltaro.net.registry import Registry
from voltaro.net.security_events import SecurityEvents
from voltaro.net.tls import TlsConfigError, server_context
from voltaro.protocol import ConnectionLimits, OcppConnection, warm_up
from voltaro.protocol.callerrors import CallErrorLog
from voltaro.protocol.traffic import Traffic
from voltaro.service.authority import CaError, check_local_ca
from voltaro.service.campaigns import CampaignRunner
from voltaro.service.certificates import CertificateSigner
from voltaro.service.charger_health import HealthRecorder
from voltaro.service.charging_profiles import ChargingProfileService
from voltaro.service.circuits import CircuitService
from voltaro.service.cluster_events import ClusterEvents
from voltaro.service.cluster_node import ClusterNode
from voltaro.service.cluster_router import ClusterRouter
from voltaro.service.commands import CommandService
from voltaro.service.directory import StoreDirectory
from voltaro.service.external_load import ExternalLoads
from voltaro.service.files import FileTransfers
from voltaro.service.firmware import FirmwareService
from voltaro.service.frame_log import FrameSink
from voltaro.service.health import HealthMonitor
from voltaro.service.hub import EventHub
from voltaro.service.ingest import ChargerIngest, Liveness
from voltaro.service.load_manager import LoadManager
from voltaro.service.local_list import LocalListService
from voltaro.service.metrics import EventTally, MetricSources, ServerMetrics
from voltaro.service.overview import Protection
from voltaro.service.presence import ConnectionFlags
from voltaro.service.reservations import ReservationService
from voltaro.service.retention import Retention
from voltaro.service.upload_retention import UploadRetention
from voltaro.settings import Settings
from voltaro.startup import StartupError, find_exception, os_reason
from voltaro.store import chargers
from voltaro.store.db import Database
from voltaro.store.notify import PgListener

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BoundAddresses:
    """Where the running server listens (real ports even when 0 was asked for)."""

    ocpp: list[tuple[str, int]]
    control_socket: str | None = None
    http: tuple[str, int] | None = None
    ocpp_tls: list[tuple[str, int]] = field(default_factory=list)  # wss:// (tls_port)

    @property
    def ocpp_port(self) -> int:
        return self.ocpp[0][1]

    @property
    def ocpp_tls_port(self) -> int | None:
        return self.ocpp_tls[0][1] if self.ocpp_tls else None


@dataclass(slots=True)
class Components:
    """What ``run`` assembled: exposed for tests and for the HTTP API / control server."""

    settings: Settings
    registry: Registry
    listener: OcppListener
    database: Database
    hub: EventHub
    commands: CommandService
    extras: dict[str, Any] = field(default_factory=dict)


def node_name(settings: Settings) -> str:
    """This node's id: the setting node_id, else the host name."""
    return settings.node_id or socket.gethostname()


def upgrade_database(settings: Settings) -> tuple[str | None, str | None]:
    """``voltaro db upgrade``: bring the database to the current schema.

    Returns the schema revision before (None: an empty database) and after.
    """
    from alembic.runtime.migration import MigrationContext

    def revision(db: Database) -> str | None:
        with db.engine.connect() as connection:
            current: str | None = MigrationContext.configure(connection).get_current_revision()
            return current

    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    try:
        before = revision(db)
        db.upgrade()
        return before, revision(db)
    except SQLAlchemyError as exc:
        raise StartupError(
            f"cannot use the database {_safe_url(settings.database_url)} "
            f"(setting database_url): {_first_line(exc)}"
        ) from exc
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
        # SQLite's busy wait is one attempt; keep it well inside the answer budget so a
        # message waiting behind a locked database is retried and counted (health log).
        lock_timeout=max(0.5, min(5.0, settings.db_retry_seconds / 3)),
        batch_window=settings.db_batch_window,
        batch_max=settings.db_batch_max,
    )
    # Issue 18: several nodes on one PostgreSQL. One LISTEN connection per node (other
    # parts subscribe to it before it starts), and this node's lease and ownership.
    cluster: ClusterNode | None = None
    pg_listener: PgListener | None = None
    if settings.cluster:
        pg_listener = PgListener(
            database.url, application_name=f"voltaro listen {node_name(settings)}"
        )
        cluster = ClusterNode(
            database,
            registry,
            None,
            node_id=node_name(settings),
            lease_seconds=settings.node_lease_seconds,
            address=settings.node_address,
            pg_listener=pg_listener,
        )
    try:
        await trio.to_thread.run_sync(database.upgrade)
        if cluster is None:
            # Nobody is connected yet, whatever a crash left in the table.
            await database.run(chargers.reset_connected)
        else:
            # Only this node's chargers: the others' are still connected elsewhere.
            await cluster.register()
    except SQLAlchemyError as exc:  # StorageError too (the SQLite write-locked case)
        database.dispose()
        raise StartupError(
            f"cannot use the database {_safe_url(settings.database_url)} "
            f"(setting database_url): {_first_line(exc)}"
        ) from exc
    if settings.tls_port is not None:
        try:  # the listener builds it again; a bad file is one line at start-up
            server_context(settings.tls_certfile, settings.tls_keyfile, settings.tls_client_ca)
        except TlsConfigError as exc:
            database.dispose()
            raise StartupError(str(exc)) from exc
    try:
        check_local_ca(settings)
    except CaError as exc:
        database.dispose()
        raise StartupError(str(exc)) from exc
    hub = EventHub(settings.control_queue_size)
    if cluster is not None:
        cluster.hub = hub
    # Issue 18: consoles on every node see every charger's events (the event outbox).
    cluster_events: ClusterEvents | None = None
    if pg_listener is not None:
        cluster_events = ClusterEvents(
            database,
            hub,
            pg_listener,
            node_name(settings),
            retention=settings.cluster_events_retention,
            buffer=settings.cluster_events_buffer,
            poll=settings.cluster_events_poll,
        )
    # Issue 19: every event counted (and the energy of completed sessions) for /metrics.
    events = EventTally()
    hub.tap = events
    traffic = Traffic()  # frames and answer latency of every connection, for /metrics
    charger_health = HealthRecorder()  # per-charger health counters (issue 19)
    liveness = Liveness(database, publish=hub.publish_lazy, health=charger_health)
    health = HealthMonitor(database, registry, hub)

    publish = hub.publish
    frame_sink = FrameSink(
        db=database, settings=settings, publish=publish, wants_frames=hub.wants_frames
    )
    flags = ConnectionFlags(
        database,
        registry,
        interval=settings.connection_reconcile_interval,
        node_id=cluster.node_id if cluster is not None else None,
    )
    directory = StoreDirectory(database, hub, flags, charger_health)

    def backend_factory(charger_id: str) -> ChargerBackend:
        return ChargerIngest(
            charger_id,
            db=database,
            settings=settings,
            publish=publish,
            frame_sink=frame_sink,
            liveness=liveness,
            security_events=security,
            certificates=certificate_signer,
        )

    # CALLERRORs we send, counted per charger across its connections (issue 23.4).
    # During a database outage the InternalErrors it causes are summarised by the
    # database's health log, not logged per charger (issue 21 item 5).
    call_errors = CallErrorLog(
        absorb=lambda charger_id, code: (
            code == "InternalError"
            and database.health.absorb("CALLERRORs sent (InternalError)", charger_id)
        ),
        counted=charger_health.call_error_sent,
    )
    security = SecurityEvents(publish=lambda data: publish(Event.SECURITY_EVENT, data))
    if cluster is not None:
        cluster.security = security  # takeovers from other nodes: takeover_alert
    # Several nodes on one PostgreSQL (issue 18): one LISTEN connection per node
    # (every subscription is made before it starts), and commands routed to the node
    # that holds the charger.
    router: ClusterRouter | None = None
    if cluster is not None and pg_listener is not None:
        router = ClusterRouter(
            database,
            registry,
            pg_listener,
            node_id=node_name(settings),
            fenced=cluster.fenced,
            settings=settings,
        )
    command_service = CommandService(
        database, registry, hub, settings=settings, health=charger_health, router=router
    )
    # SignCertificate: checks, signs and sends CertificateSigned (docs/security.md).
    certificate_signer = CertificateSigner(database, command_service, settings, security=security)
    listener = OcppListener(
        settings,
        absorb=database.health.absorb,
        registry=registry,
        directory=directory,
        backend_factory=backend_factory,
        connection_factory=functools.partial(
            OcppConnection,
            call_errors=call_errors,
            traffic=traffic,
            limits=ConnectionLimits(
                send_timeout=settings.send_timeout,
                queue_timeout=settings.command_queue_timeout,
                protocol_error_limit=settings.protocol_error_limit,
                protocol_error_window=settings.protocol_error_window,
                fenced=cluster.fenced if cluster is not None else None,
            ),
        ),
        security_events=security,
        ownership=cluster,
    )
    components = Components(
        settings=settings,
        registry=registry,
        listener=listener,
        database=database,
        hub=hub,
        commands=command_service,
    )
    components.extras["charger_health"] = charger_health
    if pg_listener is not None:
        components.extras["pg_listener"] = pg_listener
    if router is not None:
        components.extras["cluster_router"] = router
    if cluster is not None:
        components.extras["cluster_node"] = cluster
    components.extras["frame_sink"] = frame_sink
    components.extras["liveness"] = liveness
    components.extras["health"] = health
    components.extras["connection_flags"] = flags
    components.extras["call_errors"] = call_errors
    retention = Retention(database, days=settings.frame_log_retention_days)
    components.extras["retention"] = retention
    local_list_service = LocalListService(
        database,
        components.commands,
        hub,
        sync_on_connect=settings.local_list_sync_on_connect,
        sync_delay=settings.local_list_sync_delay,
        connected=registry.connected,
    )
    reservation_service = ReservationService(database, components.commands, hub)
    components.extras["local_lists"] = local_list_service
    components.extras["reservations"] = reservation_service
    files = FileTransfers(database, settings)
    components.extras["files"] = files
    upload_retention = UploadRetention(database, files, days=settings.upload_retention_days)
    # Issue 11: what was refused, shed or failed, for `ctl status` and the console.
    protection = Protection(
        listener,
        frame_sink,
        [
            database.health.guard,
            liveness.guard,
            health.guard,
            flags.guard,
            retention.guard,
            upload_retention.guard,
            local_list_service.guard,
            reservation_service.guard,
            *(cluster_events.guards if cluster_events is not None else []),
        ],
    )
    if cluster_events is not None:
        components.extras["cluster_events"] = cluster_events
        protection.cluster_events = cluster_events.lost
    components.extras["protection"] = protection
    components.extras["metrics"] = ServerMetrics(
        MetricSources(
            listener=listener,
            registry=registry,
            database=database,
            hub=hub,
            commands=components.commands,
            frame_sink=frame_sink,
            traffic=traffic,
            call_errors=call_errors,
            protection=protection,
            events=events,
            cluster_events=cluster_events,
        )
    )
    health.protection = functools.partial(protection.snapshot, live=True)
    if cluster is not None:
        health.cluster = cluster.view  # consoles see the nodes live (issue 18)
    firmware = FirmwareService(components.commands, files)
    components.extras["firmware"] = firmware
    campaigns = CampaignRunner(
        database,
        firmware,
        is_connected=components.commands.is_connected,  # any node's (several nodes)
        publish=hub.publish,
        settings=settings,
    )
    components.extras["campaigns"] = campaigns
    circuits = CircuitService(database, cluster=settings.cluster)
    components.extras["circuits"] = circuits
    external_loads = ExternalLoads(circuits, settings)
    components.extras["external_loads"] = external_loads
    load_manager = LoadManager(
        database,
        registry,
        hub,
        circuits,
        ChargingProfileService(database, components.commands),
        settings,
        external_loads,
    )
    circuits.on_change = load_manager.changed
    external_loads.on_change = load_manager.limits_changed
    components.extras["load_manager"] = load_manager
    try:
        await circuits.apply_configuration(settings.circuits)
        await circuits.apply_tag_priorities(settings.load_tag_priorities)
    except CircuitError as exc:
        database.dispose()
        raise StartupError(
            f"setting circuits: {exc} (the settings file's circuits, merged with the "
            "database's, must be one tree)"
        ) from exc
    known = {c.circuit_id for c in (await circuits.site()).circuits}
    if settings.cluster and known:
        # Each node's load manager sees only its own chargers' sessions and would count
        # the other nodes' at their fallback: two nodes would each hand out what the
        # other uses and together overload the breaker (docs/load-management.md).
        database.dispose()
        raise StartupError(
            f"site load management runs on one node: circuit {sorted(known)[0]} is "
            "configured and cluster = true; run the site's chargers on one node, or "
            "remove the circuits (voltaro ctl circuits remove, settings file)"
        )
    for setting, names in (
        ("load_schedule", [e.circuit_id for e in settings.load_schedule]),
        ("external_load_circuits", list(settings.external_load_circuits)),
    ):
        unknown = sorted(set(names) - known)
        if unknown:
            database.dispose()
            raise StartupError(f"setting {setting}: circuit {unknown[0]} is not a circuit")

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(database.health.run, settings.db_outage_log_interval)
            if database.checkpointer is not None:
                await nursery.start(database.checkpointer.run)
            if pg_listener is not None:
                await nursery.start(pg_listener.run)  # after every subscribe()
            if router is not None:
                await nursery.start(router.run)
            if cluster_events is not None:
                await nursery.start(cluster_events.run)
            await nursery.start(frame_sink.run)
            await nursery.start(liveness.run)
            await nursery.start(health.run)
            await nursery.start(flags.run)
            await nursery.start(local_list_service.run)
            await nursery.start(reservation_service.run)
            await nursery.start(certificate_signer.run)
            if cluster is not None:
                await nursery.start(cluster.run)
            ocpp = await _start(
                nursery,
                listener.run,
                f"cannot listen for chargers on {settings.host}:{settings.port}"
                + (
                    f" and {settings.tls_port} (settings host, port, tls_port)"
                    if settings.tls_port is not None
                    else " (settings host, port)"
                ),
            )
            control_path = await _start_control(nursery, components)
            http = await _start_http(nursery, components)
            await nursery.start(retention.run)
            await nursery.start(upload_retention.run)
            await nursery.start(campaigns.run)
            await nursery.start(load_manager.run)
            task_status.started(
                BoundAddresses(
                    ocpp=ocpp, control_socket=control_path, http=http, ocpp_tls=listener.tls_bound
                )
            )
            await stop.wait()
            log.info("shutting down: closing charger connections (1001)")
            await listener.shutdown(grace=settings.shutdown_grace)
            nursery.cancel_scope.cancel()
    finally:
        database.dispose()
    log.info("stopped")


async def _start_control(nursery: trio.Nursery, c: Components) -> str:
    ops = ControlOps(
        c.database,
        c.registry,
        c.commands,
        c.hub,
        settings=c.settings,
        call_errors=c.extras.get("call_errors"),
        protection=c.extras["protection"].snapshot,
        firmware=c.extras.get("firmware"),
        campaigns=c.extras.get("campaigns"),
        local_lists=c.extras.get("local_lists"),
        reservations=c.extras.get("reservations"),
        security_events=c.listener.security,
        charger_health=c.extras.get("charger_health"),
        cluster=c.extras.get("cluster_node"),
    )
    ops.table.update(
        CircuitOps(
            c.extras["circuits"], c.extras["load_manager"].live, c.extras["external_loads"]
        ).table
    )
    path: str = await _start(
        nursery,
        ControlServer(c.settings, ops, c.hub).run,
        f"cannot open the control socket {c.settings.control_socket} (setting control_socket)",
    )
    return path


async def _start_http(nursery: trio.Nursery, c: Components) -> tuple[str, int] | None:
    if not c.settings.http_enabled:
        log.info("HTTP API disabled (http_enabled = false)")
        return None
    context = ApiContext(
        settings=c.settings,
        db=c.database,
        registry=c.registry,
        commands=c.commands,
        hub=c.hub,
        firmware=c.extras.get("firmware"),
        campaigns=c.extras.get("campaigns"),
        local_lists=c.extras.get("local_lists"),
        reservations=c.extras.get("reservations"),
        security=c.listener.security,
        circuits=c.extras["circuits"],
        metrics=c.extras.get("metrics"),
        load_live=c.extras["load_manager"].live,
        external_loads=c.extras["external_loads"],
        charger_health=c.extras.get("charger_health"),
        cluster=c.extras.get("cluster_node"),
    )
    api = ApiServer(context)
    # Issue 11.8: accepts the HTTP API could not make for lack of descriptors.
    c.extras["protection"].http_accept_errors = lambda: api.accept_errors.errors
    address: tuple[str, int] = await _start(
        nursery,
        api.run,
        f"cannot serve the HTTP API on {c.settings.http_host}:{c.settings.http_port} "
        "(settings http_host, http_port; http_enabled = false turns it off)",
    )
    files: FileTransfers | None = c.extras.get("files")
    if files is not None:
        files.http_address = address
        if not c.settings.http_public_base and address[0] in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "file URLs for chargers (firmware, diagnostics) will be on http://%s:%d, "
                "which only chargers on this machine reach: set http_public_base",
                *address,
            )
    return address


async def _start(nursery: trio.Nursery, service: Any, what: str) -> Any:
    """``nursery.start(service)``, with an OS error at start-up said in one line."""
    try:
        return await nursery.start(service)
    except (OSError, BaseExceptionGroup) as exc:
        cause = find_exception(exc, OSError)
        if cause is None:
            raise
        raise StartupError(f"{what}: {os_reason(cause)}") from exc


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable URL)"


def _first_line(exc: SQLAlchemyError) -> str:
    """The driver's own message, without SQLAlchemy's SQL echo and background link."""
    origin = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(origin).splitlines() if line.strip()]
    return lines[0] if lines else exc.__class__.__name__


__all__ = ["BoundAddresses", "Components", "Connection", "run", "upgrade_database"]
