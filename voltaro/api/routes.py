"""The HTTP API for integrations (billing, apps, monitoring).

Bearer tokens from settings.api_tokens, checked by voltaro/api/guard.py before the body
is read: scope ``read`` for GETs, ``operate`` for id tag changes, commands and closing
sessions, ``admin`` also for what needs the admin role on the control socket (hard
reset, ChangeConfiguration). Errors are always
``{"error": {"code", "message"}}``. Commands go through the same CommandService as the
control socket.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.types import DecoratedCallable
from starlette.exceptions import HTTPException as StarletteHTTPException

from voltaro import __version__
from voltaro.api import models
from voltaro.api.docs import add_docs, complete_openapi
from voltaro.api.files import FileTransferApp
from voltaro.api.guard import Caller, RequestGuard
from voltaro.api.metrics import add_metrics
from voltaro.domain import session_export
from voltaro.domain.charging_profiles import ProfileError, ProfilePurpose, RateUnit, parse_profile
from voltaro.domain.circuits import CircuitError
from voltaro.domain.commands import CommandError, CommandErrorCode, LogType
from voltaro.domain.model import AuthorizationStatus, TransactionState
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.timestamps import utc_now
from voltaro.net.registry import Registry
from voltaro.net.security_events import SecurityEvents
from voltaro.service import views
from voltaro.service.campaigns import CampaignRunner
from voltaro.service.certificates import certificates_state
from voltaro.service.charger_health import HealthRecorder, health_report
from voltaro.service.charging_profiles import ChargingProfileService
from voltaro.service.circuits import CircuitService
from voltaro.service.cluster_node import ClusterNode
from voltaro.service.commands import CommandService, command_from_args
from voltaro.service.external_load import ExternalLoads
from voltaro.service.files import FileError
from voltaro.service.firmware import LOG_KINDS, FirmwareService
from voltaro.service.hub import EventHub
from voltaro.service.local_list import LocalListService
from voltaro.service.metrics import ServerMetrics
from voltaro.service.overview import server_status
from voltaro.service.reconciliation import Reconciliation
from voltaro.service.reservations import ReservationService, expiry_from, reservation_view
from voltaro.settings import ApiScope, Settings
from voltaro.store import (
    chargers,
    charging_profiles,
    files,
    firmware,
    quarantine,
    tags,
    transactions,
)
from voltaro.store import commands as command_audit
from voltaro.store.db import Database
from voltaro.store.errors import AlreadyExists, NotFound, StorageError
from voltaro.store.files import StoredFile

log = logging.getLogger(__name__)

# Seconds a client should wait before it repeats a request refused with 503 (the
# database unavailable, or too many requests in progress).
RETRY_AFTER = "5"
# Sessions per database read of the CSV export (one worker-thread hop each).
EXPORT_PAGE = 500


@dataclass
class ApiContext:
    settings: Settings
    db: Database
    registry: Registry
    commands: CommandService
    started: float = field(default_factory=time.monotonic)
    hub: EventHub | None = None  # for the events of operator actions
    firmware: FirmwareService | None = None  # UpdateFirmware, GetDiagnostics, files
    campaigns: CampaignRunner | None = None  # firmware campaigns
    local_lists: LocalListService | None = None
    reservations: ReservationService | None = None
    security: SecurityEvents | None = None  # the listener's security events
    circuits: CircuitService | None = None  # site load management (issue 17)
    load_live: Callable[[], dict[str, Any] | None] | None = None
    external_loads: ExternalLoads | None = None  # PUT /site/external-load
    metrics: ServerMetrics | None = None  # GET /metrics (voltaro/api/metrics.py)
    charger_health: HealthRecorder | None = None  # counts not written yet (issue 19)
    cluster: ClusterNode | None = None  # several nodes (issue 18): GET /status shows them

    profiles: ChargingProfileService = field(init=False)

    def __post_init__(self) -> None:
        self.profiles = ChargingProfileService(self.db, self.commands)
        if self.circuits is None:
            self.circuits = CircuitService(self.db)
        if self.local_lists is None:
            self.local_lists = LocalListService(self.db, self.commands, self.hub)
        if self.reservations is None:
            self.reservations = ReservationService(self.db, self.commands, self.hub)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_COMMAND_STATUS = {
    CommandErrorCode.BAD_ARGUMENTS: 422,
    CommandErrorCode.NOT_FOUND: 404,
    CommandErrorCode.OFFLINE: 409,
    CommandErrorCode.NOT_ALLOWED: 409,
    CommandErrorCode.FORBIDDEN: 403,
    CommandErrorCode.TIMEOUT: 504,
    CommandErrorCode.CALL_ERROR: 502,
    CommandErrorCode.DISCONNECTED: 502,
    CommandErrorCode.BUSY: 503,
    CommandErrorCode.UNAVAILABLE: 503,
    CommandErrorCode.OWNER_UNREACHABLE: 503,
    CommandErrorCode.INTERNAL: 500,
}

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "missing or unknown bearer token"},
    403: {"model": models.ErrorBody, "description": "the token's scope does not allow it"},
    413: {"model": models.ErrorBody, "description": "request body over 1 MiB"},
    503: {
        "model": models.ErrorBody,
        "description": "too many requests in progress, or the database is unavailable "
        "(nothing was changed; repeat after Retry-After seconds)",
    },
}

# Makes the OpenAPI document carry the bearer security scheme (the Authorize button of
# /docs); the token itself was already checked by the guard.
_bearer = HTTPBearer(auto_error=False, description="a token from the api_tokens setting")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


# Both dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a worker
# thread, two thread hops per request for a few attribute reads (issue 18 profile).
async def token_scope(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiScope:
    """The scope of the request's token, as the guard authenticated it."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:  # only if the guard is not in front (never in a served app)
        raise ApiError(401, "unauthorized", "a bearer token is required")
    request.state.actor = f"api:{caller.name}"
    return caller.scope


async def operator(scope: Annotated[ApiScope, Depends(token_scope)]) -> ApiScope:
    if scope.rank < ApiScope.OPERATE.rank:
        raise ApiError(403, "forbidden", "this needs a token with the operate scope")
    return scope


def require_admin(scope: ApiScope, what: str) -> None:
    """403 ``forbidden``, "<what> needs the admin scope", unless the token is admin.

    Called at the top of a route's body rather than declared as a dependency: a
    dependency runs before the body is validated (a non-admin's bad body would get 403
    instead of 422) and ahead of ``Operate`` (a read token would lose its "operate
    scope" message)."""
    if scope is not ApiScope.ADMIN:
        raise ApiError(403, "forbidden", f"{what} needs the admin scope")


def needs_admin(action: str, arguments: dict[str, Any]) -> bool:
    """The commands that need the admin role on the control socket (wire.command_role)."""
    if action in (
        "ChangeConfiguration",
        "UpdateFirmware",
        "InstallCertificate",
        "DeleteCertificate",
        "SignedUpdateFirmware",
    ):
        return True
    return action == "Reset" and str(arguments.get("type", "Soft")).lower() == "hard"


Read = Annotated[ApiScope, Depends(token_scope)]
Operate = Annotated[ApiScope, Depends(operator)]


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="Voltaro",
        version=__version__,
        description="HTTP API of the Voltaro OCPP 1.6J Central System.",
        # /docs with locally served assets (voltaro/api/docs.py); no ReDoc (CDN only).
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    add_docs(app)
    add_metrics(app, ctx.metrics)
    complete_openapi(app)
    app.add_middleware(
        RequestGuard,
        tokens=ctx.settings.api_tokens,
        # A firmware image (up to firmware_max_bytes) streams to disk, never to memory.
        streamed={("POST", "/firmware"): ctx.settings.firmware_max_bytes},
    )
    # Outermost: /files/ (chargers' downloads and uploads, URL tokens) never reaches the
    # bearer-token guard or FastAPI, and its bodies stream to disk (voltaro/api/files.py).
    app.add_middleware(
        FileTransferApp,
        files=ctx.firmware.files if ctx.firmware is not None else None,
        on_upload=(lambda stored: _uploaded(ctx, stored)),
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Any:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 503:
            headers = {"Retry-After": RETRY_AFTER}
        return _error(exc.status, exc.code, exc.message, headers)

    # The database down or locked (issue 10 §3): every unit of work is one database
    # transaction, so a refused request changed nothing and may simply be repeated. The
    # outage itself is logged once by the database's health report, not per request.
    @app.exception_handler(StorageUnavailable)
    async def storage_unavailable(request: Request, exc: StorageUnavailable) -> Any:
        return _error(
            503,
            "unavailable",
            "the database is unavailable; nothing was changed, retry later",
            {"Retry-After": RETRY_AFTER},
        )

    @app.exception_handler(StorageError)
    async def storage_refused(request: Request, exc: StorageError) -> Any:
        if exc.transient:
            return await storage_unavailable(request, exc)  # type: ignore[arg-type]
        log.error(
            "HTTP %s %s: the database refused the work: %s",
            request.method,
            request.url.path,
            exc.reason,
        )
        return _error(500, "internal", "the database refused this request; nothing was changed")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(400, "bad_request", "the request body is not valid JSON")
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "bad_arguments", f"{where}: {first.get('msg', 'invalid')}")

    def tag_changed() -> None:
        assert ctx.local_lists is not None
        ctx.local_lists.tag_changed()

    def charge_point(charger: Any) -> dict[str, Any]:
        view = views.charger_view(charger)
        # Several nodes: held by any live node (the owner map, at most a second old).
        view["connected"] = ctx.commands.is_connected(charger.charger_id)
        return view

    # Probes for load balancers, Docker and systemd: no token (they carry no data), so a
    # health checker needs no secret. Live: the process answers HTTP. Ready: it can also
    # reach its database, so it can store what chargers send (503 while it cannot).
    @app.get(
        "/health/live",
        response_model=models.Health,
        response_model_exclude_none=True,
        tags=["health"],
    )
    async def health_live() -> Any:
        """Liveness: 200 while the process answers HTTP (no token)."""
        return {"status": "ok"}

    @app.get(
        "/health/ready",
        response_model=models.Health,
        tags=["health"],
        responses={
            503: {
                "model": models.Health,
                "description": "the database is unreachable, or this cluster node is fenced",
            }
        },
        response_model_exclude_none=True,
    )
    async def health_ready() -> Any:
        """Readiness: 200 while the database is reachable (and, with several nodes, this
        node holds a valid lease), else 503 (no token; the Docker and HAProxy check)."""
        if not await ctx.db.ping():
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        if ctx.cluster is None:
            return {"status": "ok", "database": "ok"}
        if ctx.cluster.fenced():
            # It refuses chargers (503) until it has joined again: with leastconn a
            # load balancer would otherwise send it every reconnect (it has none left).
            return JSONResponse(
                {"status": "unavailable", "database": "ok", "cluster": "fenced"},
                status_code=503,
            )
        return {"status": "ok", "database": "ok", "cluster": "ok"}

    @app.get("/status", response_model=models.Status, responses=ERRORS)
    async def status(_: Read) -> Any:
        """Version, uptime, database state, chargers connected and by registration, connectors
        by status, active sessions."""
        return await server_status(
            ctx.db, ctx.registry, uptime_s=time.monotonic() - ctx.started, cluster=ctx.cluster
        )

    @app.get("/security/events", response_model=models.SecurityEvents, responses=ERRORS)
    async def security_events(_: Read) -> Any:
        """Security events at the connection edge since the server started: counts per
        kind and the most recent ones, newest first (docs/security.md)."""
        return (ctx.security or SecurityEvents()).summary()

    @app.get("/charge_points", response_model=list[models.ChargePoint], responses=ERRORS)
    async def list_charge_points(
        _: Read,
        response: Response,
        connected: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Any:
        """Charge points with their connectors and active sessions; the total number that
        match the filter is in the X-Total-Count header."""
        rows = [charge_point(c) for c in await ctx.db.run(chargers.list_chargers)]
        if connected is not None:
            rows = [r for r in rows if r["connected"] is connected]
        response.headers["X-Total-Count"] = str(len(rows))
        page = rows[offset : offset + limit]
        active = await ctx.db.run(transactions.list_transactions, active=True, limit=10000)
        by_charger: dict[str, list[dict[str, Any]]] = {}
        for tx in active:
            by_charger.setdefault(tx.charger_id, []).append(views.transaction_view(tx))
        for row in page:
            row["active_transactions"] = by_charger.get(row["charger_id"], [])
        return page

    @app.get(
        "/charge_points/{charger_id}/certificates",
        response_model=models.ChargerCertificates,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def get_charger_certificates(charger_id: str, _: Read) -> Any:
        """The certificates the charger last reported (installed-certificates) or accepted
        (install-certificate), numbered, and its SignCertificate requests, newest first."""
        try:
            return await certificates_state(ctx.db, charger_id)
        except CommandError as exc:
            raise ApiError(_COMMAND_STATUS[exc.code], str(exc.code), exc.message) from None

    @app.get(
        "/charge_points/{charger_id}",
        response_model=models.ChargePoint,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def get_charge_point(charger_id: str, _: Read) -> Any:
        """One charge point: metadata, connection state and connectors with their status."""
        charger = await ctx.db.run(chargers.get_charger, charger_id)
        if charger is None:
            raise ApiError(404, "not_found", f"unknown charge point {charger_id}")
        return charge_point(charger)

    @app.put(
        "/charge_points/{charger_id}/list_group",
        response_model=models.ChargePoint,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
        tags=["local list"],
    )
    async def set_list_group(charger_id: str, body: models.ListGroup, _: Operate) -> Any:
        """The group whose local list the charge point gets (null: the all-chargers
        list); chargers with LocalAuthListEnabled are pushed the change."""
        charger = await ctx.db.run(chargers.set_list_group, charger_id, body.group)
        if charger is None:
            raise ApiError(404, "not_found", f"unknown charge point {charger_id}")
        tag_changed()
        return charge_point(charger)

    @app.get(
        "/fleet/health",
        response_model=list[models.ChargerHealth],
        responses=ERRORS,
    )
    async def fleet_health(_: Read, flagged: bool = False) -> Any:
        """Every registered charge point's health over the last 24 clock hours (the fleet
        view): connections, time online, command timeouts, CALLERRORs, clock drift,
        heartbeat regularity, last boot and its likely reason, and the flags (`flapping`,
        `drifting`) with their reason; `flagged=true`: only flagged ones."""
        rows = await health_report(
            ctx.db, ctx.charger_health, ctx.settings, is_connected=ctx.registry.is_connected
        )
        return [r for r in rows if r["flags"]] if flagged else rows

    @app.get(
        "/charge_points/{charger_id}/health",
        response_model=models.ChargerHealth,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def charger_health(charger_id: str, _: Read) -> Any:
        """One charge point's health over the last 24 clock hours (docs/operations.md,
        "Charger health")."""
        rows = await health_report(
            ctx.db,
            ctx.charger_health,
            ctx.settings,
            charger_id=charger_id,
            is_connected=ctx.registry.is_connected,
        )
        if not rows:
            raise ApiError(404, "not_found", f"unknown charge point {charger_id}")
        return rows[0]

    @app.get(
        "/charge_points/{charger_id}/firmware",
        response_model=models.FirmwareState,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def get_firmware_state(charger_id: str, _: Read) -> Any:
        """Firmware and diagnostics status as the charger reported it (OCPP 1.6 §4.4, §4.5)."""
        if await ctx.db.run(chargers.get_charger, charger_id) is None:
            raise ApiError(404, "not_found", f"unknown charge point {charger_id}")
        latest = await ctx.db.run(firmware.latest_transfer_status, charger_id)
        history = await ctx.db.run(firmware.transfer_history, charger_id)
        return {"charger_id": charger_id, **views.transfer_status_view(latest, history)}

    @app.get("/sessions", response_model=models.SessionPage, responses=ERRORS)
    async def list_sessions(
        _: Read,
        charge_point_id: str | None = None,
        active: bool | None = None,
        state: TransactionState | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Any:
        """Charging sessions, latest first, with their energy; `total` counts all that match
        the filters. `state=interrupted` lists the sessions to reconcile."""
        filters = {
            "active": active,
            "charger_id": charge_point_id,
            "since": since,
            "until": until,
            "state": state,
        }
        rows = await ctx.db.run(
            transactions.list_transactions, limit=limit, offset=offset, **filters
        )
        total = await ctx.db.run(transactions.count_transactions, **filters)
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [views.transaction_view(t) for t in rows],
        }

    @app.get(
        "/transactions.csv",
        response_class=StreamingResponse,
        responses={
            **ERRORS,
            200: {
                "content": {"text/csv": {}},
                "description": "one row per session (columns: docs/reconciliation.md)",
            },
        },
    )
    async def export_sessions(
        _: Read,
        start_from: Annotated[datetime | None, Query(alias="from")] = None,
        start_to: Annotated[datetime | None, Query(alias="to")] = None,
        charge_point_id: str | None = None,
    ) -> Any:
        """Sessions started in [from, to) as CSV for billing, in start order, streamed page
        by page (a year of sessions is never held in memory). The same file as `voltaro
        ctl transactions export`."""
        if start_from is not None and start_from.tzinfo is None:
            start_from = start_from.replace(tzinfo=UTC)  # a time without offset is UTC here
        if start_to is not None and start_to.tzinfo is None:
            start_to = start_to.replace(tzinfo=UTC)
        if charge_point_id is not None and (
            await ctx.db.run(chargers.get_charger, charge_point_id) is None
        ):
            raise ApiError(404, "not_found", f"unknown charge point {charge_point_id}")
        # The first page is read before the response starts, so that a database that is
        # down is a 503, not a 200 with a cut file.
        first = await ctx.db.run(
            transactions.export_page,
            start_from=start_from,
            start_to=start_to,
            charger_id=charge_point_id,
            limit=EXPORT_PAGE,
        )

        async def rows() -> AsyncIterator[str]:
            page = first
            yield _csv_text([session_export.HEADER])
            while True:
                yield _csv_text([session_export.csv_row(views.transaction_view(t)) for t in page])
                if len(page) < EXPORT_PAGE:
                    return
                page = await ctx.db.run(
                    transactions.export_page,
                    start_from=start_from,
                    start_to=start_to,
                    charger_id=charge_point_id,
                    after=(page[-1].start_time, page[-1].transaction_id),
                    limit=EXPORT_PAGE,
                )

        return StreamingResponse(
            rows(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="sessions.csv"'},
        )

    @app.get(
        "/orphan_stops",
        response_model=list[models.OrphanStop],
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def list_orphan_stops(
        _: Read,
        charge_point_id: str | None = None,
        kind: Literal["unknown", "foreign", "conflict"] | None = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    ) -> Any:
        """StopTransactions that closed nothing, newest first, kept for reconciliation:
        `unknown` (orphan), `foreign` (another charger's transaction) or `conflict`."""
        rows = await ctx.db.run(transactions.orphan_stops, charge_point_id, kind=kind, limit=limit)
        if not rows and charge_point_id is not None:
            await known_charger(charge_point_id)
        return [views.orphan_stop_view(r) for r in rows]

    @app.get(
        "/quarantine",
        response_model=list[models.QuarantinedFrame],
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def list_quarantine(
        scope: Read,
        charge_point_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """Charger messages kept as raw frames, newest first: `refused` (the database
        refused them for good, not stored) or `repaired` (stored with U+FFFD). Raw frames
        need the operate scope, or `viewer_frames = true` for read tokens (issue 15)."""
        if scope is ApiScope.READ and not ctx.settings.viewer_frames:
            raise ApiError(
                403, "forbidden", "raw frames need the operate scope (or viewer_frames = true)"
            )
        entries = await ctx.db.run(quarantine.list_entries, charger_id=charge_point_id, limit=limit)
        if not entries and charge_point_id is not None:
            await known_charger(charge_point_id)
        return [views.quarantine_view(e) for e in entries]

    async def known_charger(charger_id: str) -> None:
        if await ctx.db.run(chargers.get_charger, charger_id) is None:
            raise ApiError(404, "not_found", f"unknown charge point {charger_id}")

    @app.get(
        "/sessions/{transaction_id}",
        response_model=models.SessionDetail,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def get_session(transaction_id: int, _: Read) -> Any:
        """One session with its meter values."""
        tx = await ctx.db.run(transactions.get_transaction, transaction_id)
        if tx is None:
            raise ApiError(404, "not_found", f"unknown session {transaction_id}")
        view = views.transaction_view(tx)
        values = await ctx.db.run(transactions.transaction_meter_values, transaction_id)
        view["meter_values"] = [views.meter_value_view(mv) for mv in values]
        return view

    @app.post(
        "/sessions/{transaction_id}/close",
        response_model=models.Session,
        responses={**ERRORS, **{code: {"model": models.ErrorBody} for code in (404, 409, 422)}},
    )
    async def close_session(
        transaction_id: int, body: models.SessionClose, request: Request, _: Operate
    ) -> Any:
        """Close an active or interrupted session by hand (audited with the token's name):
        with ``meter_stop`` when the real final reading is known, else the last reading
        received is used and the energy is flagged ``estimated``."""
        result = await Reconciliation(ctx.db, ctx.hub).close(
            transaction_id,
            meter_stop=body.meter_stop,
            reason=body.reason or None,
            actor=request.state.actor,
        )
        if result.outcome == "not_found":
            raise ApiError(404, "not_found", f"unknown session {transaction_id}")
        if result.outcome == "already_closed":
            raise ApiError(409, "conflict", result.message)
        if result.outcome == "invalid" or result.transaction is None:
            raise ApiError(422, "bad_arguments", result.message)
        return views.transaction_view(result.transaction)

    @app.get("/commands", response_model=models.CommandPage, responses=ERRORS)
    async def list_commands(
        _: Read,
        charge_point_id: str | None = None,
        since: datetime | None = None,
        actor: Annotated[
            str | None, Query(description="who sent it: a Unix user, or api:<token name>")
        ] = None,
        action: Annotated[str | None, Query(description="an OCPP action, e.g. Reset")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Any:
        """The command audit, newest first: who sent which command to which charge point
        (control-socket user or `api:<token name>`), when, and the outcome."""
        filters = {"charger_id": charge_point_id, "since": since, "actor": actor, "action": action}
        rows = await ctx.db.run(command_audit.command_log, limit=limit, offset=offset, **filters)
        total = await ctx.db.run(command_audit.count_commands, **filters)
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "items": [views.command_view(row) for row in rows],
        }

    @app.get("/id_tags", response_model=list[models.IdTag], responses=ERRORS)
    async def list_id_tags(_: Read, response: Response) -> Any:
        """Every id tag with its status, expiry and parent; the total is in the X-Total-Count
        header."""
        rows = [views.tag_view(t) for t in await ctx.db.run(tags.list_tags)]
        response.headers["X-Total-Count"] = str(len(rows))
        return rows

    @app.post(
        "/id_tags",
        response_model=models.IdTag,
        status_code=201,
        responses={**ERRORS, 404: {"model": models.ErrorBody}, 409: {"model": models.ErrorBody}},
    )
    async def create_id_tag(body: models.IdTagCreate, _: Operate) -> Any:
        """Add an id tag (case-insensitive id; 409 if it exists, 404 for an unknown parent)."""
        try:
            tag = await ctx.db.run(
                tags.add_tag,
                body.id_tag,
                status=AuthorizationStatus(body.status),
                expiry=body.expiry_date,
                parent=body.parent_id_tag,
                groups=tuple(body.groups),
            )
        except AlreadyExists as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        tag_changed()
        return views.tag_view(tag)

    @app.patch(
        "/id_tags/{id_tag}",
        response_model=models.IdTag,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def update_id_tag(id_tag: str, body: models.IdTagUpdate, _: Operate) -> Any:
        """Change an id tag's status, expiry or parent (only the fields given; null clears)."""
        changes: dict[str, Any] = {}
        if body.status is not None:
            changes["status"] = AuthorizationStatus(body.status)
        if "expiry_date" in body.model_fields_set:
            changes["expiry"] = body.expiry_date
        if "parent_id_tag" in body.model_fields_set:
            changes["parent"] = body.parent_id_tag
        if body.groups is not None:
            changes["groups"] = tuple(body.groups)
        try:
            tag = await ctx.db.run(tags.update_tag, id_tag, **changes)
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        if tag is None:
            raise ApiError(404, "not_found", f"unknown id tag {id_tag}")
        tag_changed()
        return views.tag_view(tag)

    @app.delete(
        "/id_tags/{id_tag}", status_code=204, responses={**ERRORS, 404: {"model": models.ErrorBody}}
    )
    async def delete_id_tag(id_tag: str, _: Operate) -> None:
        """Delete an id tag."""
        if not await ctx.db.run(tags.remove_tag, id_tag):
            raise ApiError(404, "not_found", f"unknown id tag {id_tag}")
        tag_changed()

    @app.post(
        "/local_list/sync",
        response_model=list[models.LocalListSyncResult],
        responses={**ERRORS, 422: {"model": models.ErrorBody}},
        tags=["local list"],
    )
    async def sync_local_list(body: models.LocalListSync, request: Request, _: Operate) -> Any:
        """Bring chargers' Local Authorization Lists in line with the id tags (Differential
        when the charger holds what it was last sent, Full otherwise), one result each."""
        assert ctx.local_lists is not None
        ids = body.charge_point_ids
        if ids is None:
            ids = [
                c.charger_id
                for c in await ctx.db.run(chargers.list_chargers)
                if ctx.commands.is_connected(c.charger_id)
            ]
        results = await ctx.local_lists.sync_many(ids, actor=request.state.actor, full=body.full)
        return [r.view() for r in results]

    profile_errors: dict[int | str, dict[str, Any]] = {
        **ERRORS,
        **{code: {"model": models.ErrorBody} for code in (404, 409, 422, 502, 504)},
    }

    async def profile_call(call: Any) -> Any:
        try:
            return await call
        except CommandError as exc:
            raise ApiError(_COMMAND_STATUS[exc.code], str(exc.code), exc.message) from None

    @app.get(
        "/charge_points/{charger_id}/charging_profiles",
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
        tags=["smart charging"],
    )
    async def list_charging_profiles(charger_id: str, _: Read, all: bool = False) -> Any:  # noqa: A002
        """The profiles the charger accepted and nobody cleared; ``all``: every profile
        sent, with the charger's answer."""
        if await ctx.db.run(chargers.get_charger, charger_id) is None:
            raise ApiError(404, "not_found", f"unknown charge point {charger_id}")
        return await ctx.db.run(charging_profiles.list_profiles, charger_id, all_rows=all)

    @app.post(
        "/charge_points/{charger_id}/charging_profiles",
        responses=profile_errors,
        tags=["smart charging"],
    )
    async def set_charging_profile(
        charger_id: str, body: models.ChargingProfileSet, request: Request, _: Operate
    ) -> Any:
        """Check the profile (purpose and connector, a running transaction for a
        TxProfile, stack level, ascending periods, the charger's ChargeProfileMaxStackLevel,
        ChargingScheduleAllowedChargingRateUnit, ChargingScheduleMaxPeriods,
        MaxChargingProfilesInstalled) and send SetChargingProfile; 422 says why a profile
        was not sent."""
        try:
            profile = parse_profile(body.profile)
        except ProfileError as exc:
            raise ApiError(422, "bad_arguments", f"charging profile: {exc}") from None
        return await profile_call(
            ctx.profiles.set(charger_id, body.connector_id, profile, actor=request.state.actor)
        )

    @app.post(
        "/charge_points/{charger_id}/charging_profiles/clear",
        responses=profile_errors,
        tags=["smart charging"],
    )
    async def clear_charging_profiles(
        charger_id: str, body: models.ChargingProfileClear, request: Request, _: Operate
    ) -> Any:
        """ClearChargingProfile by id, or by connector, purpose and stack level (none:
        every profile); stored profiles it matches are marked cleared when Accepted."""
        return await profile_call(
            ctx.profiles.clear(
                charger_id,
                actor=request.state.actor,
                profile_id=body.profile_id,
                connector_id=body.connector_id,
                purpose=None if body.purpose is None else ProfilePurpose(body.purpose),
                stack_level=body.stack_level,
            )
        )

    @app.get(
        "/charge_points/{charger_id}/composite_schedule",
        responses=profile_errors,
        tags=["smart charging"],
    )
    async def composite_schedule(
        charger_id: str,
        request: Request,
        _: Operate,
        connector_id: Annotated[int, Query(ge=0, le=models.MAX_INTEGER)] = 0,
        duration: Annotated[int, Query(ge=1, le=models.MAX_INTEGER)] = 3600,
        unit: Literal["A", "W"] | None = None,
    ) -> Any:
        """GetCompositeSchedule: the schedule the connector (0: the grid connection) will
        follow over ``duration`` seconds, as the charger computed it."""
        outcome = await profile_call(
            ctx.profiles.composite(
                charger_id,
                connector_id,
                duration,
                actor=request.state.actor,
                unit=None if unit is None else RateUnit(unit),
            )
        )
        return views.outcome_view(outcome)

    @app.get("/circuits", response_model=models.Circuits, responses=ERRORS)
    async def list_circuits(_: Read) -> Any:
        """The site's circuits (limits, chargers and their phase wiring) and the load
        manager's latest allocation (docs/load-management.md)."""
        assert ctx.circuits is not None
        return {
            "circuits": await ctx.circuits.views(),
            "live": ctx.load_live() if ctx.load_live is not None else None,
            "tag_priorities": await ctx.circuits.tag_priorities(),
        }

    def external_loads() -> ExternalLoads:
        if ctx.external_loads is None:
            raise ApiError(404, "not_found", "external loads are not served here")
        return ctx.external_loads

    @app.get("/site/external-load", response_model=models.ExternalLoads, responses=ERRORS)
    async def get_external_load(_: Read) -> Any:
        """The building's other load per circuit: the value last pushed, its state (live,
        stale, missing) and what the load manager subtracts (docs/load-management.md)."""
        return {"external_loads": external_loads().views()}

    @app.put(
        "/site/external-load",
        response_model=models.ExternalLoad,
        responses={**ERRORS, 422: {"model": models.ErrorBody}},
    )
    async def put_external_load(body: models.ExternalLoadBody, request: Request, _: Operate) -> Any:
        """Push the building's other load on a circuit (operate scope): its available
        capacity is its limit minus this, per phase, until ``valid_for_s`` runs out."""
        try:
            return await external_loads().set(
                body.circuit, body.amps, body.valid_for_s, actor=request.state.actor
            )
        except CircuitError as exc:
            raise ApiError(422, "bad_arguments", str(exc)) from None

    @app.get("/reservations", response_model=list[models.Reservation], responses=ERRORS)
    async def list_reservations(
        _: Read,
        charge_point_id: str | None = None,
        open: bool = False,  # noqa: A002 - the query parameter's name
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """Reservations, newest first; ``open``: only those the charger still holds."""
        assert ctx.reservations is not None
        rows = await ctx.reservations.list(charger_id=charge_point_id, open_only=open, limit=limit)
        now = utc_now()
        return [reservation_view(r, now) for r in rows]

    reservation_errors: dict[int | str, dict[str, Any]] = {
        **ERRORS,
        **{code: {"model": models.ErrorBody} for code in (404, 409, 422, 502, 504)},
    }

    @app.post(
        "/reservations",
        response_model=models.Reservation,
        status_code=201,
        responses=reservation_errors,
    )
    async def create_reservation(
        body: models.ReservationCreate, request: Request, _: Operate
    ) -> Any:
        """Send ReserveNow; the answer is in ``answer`` and ``state`` (accepted or
        refused). 201 whenever the charger answered."""
        assert ctx.reservations is not None
        try:
            expiry = expiry_from(
                expiry=body.expiry_date.isoformat() if body.expiry_date else None,
                minutes=body.minutes,
                now=utc_now(),
            )
            reservation = await ctx.reservations.add(
                body.charge_point_id,
                id_tag=body.id_tag,
                expiry=expiry,
                connector_id=body.connector_id,
                actor=request.state.actor,
            )
        except CommandError as exc:
            raise ApiError(_COMMAND_STATUS[exc.code], str(exc.code), exc.message) from None
        return reservation_view(reservation)

    @app.post(
        "/reservations/{reservation_id}/cancel",
        response_model=models.Reservation,
        responses=reservation_errors,
    )
    async def cancel_reservation(
        reservation_id: Annotated[int, Path(ge=0, le=models.MAX_INTEGER)],
        request: Request,
        _: Operate,
    ) -> Any:
        """Send CancelReservation: Accepted ends the reservation (state cancelled);
        Rejected (the charger knows no such reservation) is recorded in ``answer``. 409 for
        a reservation that is no longer open (nothing sent)."""
        assert ctx.reservations is not None
        try:
            reservation = await ctx.reservations.cancel(reservation_id, actor=request.state.actor)
        except CommandError as exc:
            if exc.message.startswith("unknown reservation"):
                raise ApiError(404, "not_found", exc.message) from None
            raise ApiError(_COMMAND_STATUS[exc.code], str(exc.code), exc.message) from None
        return reservation_view(reservation)

    def firmware_service() -> FirmwareService:
        if ctx.firmware is None:
            raise ApiError(404, "not_found", "this server keeps no files")
        return ctx.firmware

    async def firmware_command(run: Any) -> Any:
        try:
            outcome = await run
        except CommandError as exc:
            raise ApiError(_COMMAND_STATUS[exc.code], str(exc.code), exc.message) from None
        return views.outcome_view(outcome)

    file_errors: dict[int | str, dict[str, Any]] = {
        **ERRORS,
        **{code: {"model": models.ErrorBody} for code in (404, 409, 422, 502, 504)},
    }

    def file_command(path: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """The route of a command that moves a file (UpdateFirmware, GetDiagnostics,
        SignedUpdateFirmware, GetLog): its answer and the errors of a file transfer."""
        return app.post(
            path,
            response_model=models.CommandResult,
            response_model_exclude_none=True,
            responses=file_errors,
            tags=["firmware"],
        )

    @file_command("/charge_points/{charger_id}/firmware/update")
    async def update_firmware(
        charger_id: str, body: models.FirmwareUpdateBody, request: Request, scope: Operate
    ) -> Any:
        """UpdateFirmware (OCPP 1.6 §5.19; needs the admin scope): a location URL passed
        through unchanged, or a firmware image this server serves at a URL made for this
        charger alone."""
        require_admin(scope, "UpdateFirmware")
        return await firmware_command(
            firmware_service().update(
                charger_id,
                actor=request.state.actor,
                location=body.location,
                file=body.file,
                retrieve_at=body.retrieve_date,
                retries=body.retries,
                retry_interval=body.retry_interval,
            )
        )

    @file_command("/charge_points/{charger_id}/diagnostics")
    async def get_diagnostics(
        charger_id: str, body: models.DiagnosticsBody, request: Request, _: Operate
    ) -> Any:
        """GetDiagnostics (OCPP 1.6 §5.9): to ``location``, or to an upload URL of this
        server; the file then appears in ``GET /diagnostics``."""
        return await firmware_command(
            firmware_service().diagnostics(
                charger_id,
                actor=request.state.actor,
                location=body.location,
                start_time=body.start_time,
                stop_time=body.stop_time,
                retries=body.retries,
                retry_interval=body.retry_interval,
            )
        )

    def campaign_runner() -> CampaignRunner:
        if ctx.campaigns is None:
            raise ApiError(404, "not_found", "this server runs no firmware campaigns")
        return ctx.campaigns

    campaign_errors: dict[int | str, dict[str, Any]] = {
        **ERRORS,
        **{code: {"model": models.ErrorBody} for code in (404, 409, 422)},
    }

    @app.post(
        "/firmware/campaigns",
        response_model=models.Campaign,
        status_code=201,
        responses=campaign_errors,
        tags=["firmware"],
    )
    async def create_campaign(body: models.CampaignCreate, request: Request, scope: Operate) -> Any:
        """Update many charge points, ``max_parallel`` at a time from ``retrieve_date``
        (needs the admin scope, as UpdateFirmware does): the server sends UpdateFirmware
        to each in turn and follows its FirmwareStatusNotifications; nothing is sent by
        this request itself. 422 when no registered charge point matches, an id is
        unknown or the file is not one this server serves."""
        require_admin(scope, "a firmware campaign")
        try:
            campaign = await campaign_runner().create(
                pattern=body.charge_point_pattern,
                charger_ids=body.charge_point_ids,
                actor=request.state.actor,
                location=body.location,
                file=body.file,
                retrieve_at=body.retrieve_date,
                retries=body.retries,
                retry_interval=body.retry_interval,
                max_parallel=body.max_parallel,
            )
        except CommandError as exc:
            raise ApiError(_COMMAND_STATUS[exc.code], str(exc.code), exc.message) from None
        return views.campaign_view(campaign)

    @app.get(
        "/firmware/campaigns",
        response_model=list[models.CampaignSummary],
        responses=ERRORS,
        tags=["firmware"],
    )
    async def list_campaigns(_: Read, limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> Any:
        """Firmware campaigns, newest first, with the number of charge points per state."""
        rows = await ctx.db.run(firmware.list_campaigns, limit=limit)
        return [views.campaign_view(c, targets=False) for c in rows]

    @app.get(
        "/firmware/campaigns/{campaign_id}",
        response_model=models.Campaign,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
        tags=["firmware"],
    )
    async def get_campaign(campaign_id: Annotated[int, Path(ge=0, le=2**62)], _: Read) -> Any:
        """One campaign with each charge point's state, since when, and why (``detail``)."""
        campaign = await ctx.db.run(firmware.get_campaign, campaign_id)
        if campaign is None:
            raise ApiError(404, "not_found", f"unknown campaign {campaign_id}")
        return views.campaign_view(campaign)

    @app.post(
        "/firmware/campaigns/{campaign_id}/cancel",
        response_model=models.Campaign,
        responses=campaign_errors,
        tags=["firmware"],
    )
    async def cancel_campaign(
        campaign_id: Annotated[int, Path(ge=0, le=2**62)], request: Request, _: Operate
    ) -> Any:
        """Cancel a campaign: the charge points not sent UpdateFirmware yet are
        ``cancelled``; those already sent it go on (OCPP 1.6 cannot stop an accepted
        update) and are followed to their final status. 409 when it has finished."""
        try:
            campaign = await campaign_runner().cancel(campaign_id, actor=request.state.actor)
        except CommandError as exc:
            raise ApiError(_COMMAND_STATUS[exc.code], str(exc.code), exc.message) from None
        return views.campaign_view(campaign)

    file_status = {"not_found": 404, "conflict": 409, "too_large": 413, "disk_full": 507}

    def file_error(exc: FileError) -> ApiError:
        return ApiError(file_status.get(exc.code, 422), exc.code, exc.message)

    @app.post(
        "/firmware",
        response_model=models.StoredFile,
        status_code=201,
        responses={
            **ERRORS,
            **{code: {"model": models.ErrorBody} for code in (404, 409, 413, 422, 507)},
            413: {"model": models.ErrorBody, "description": "over firmware_max_bytes"},
        },
        tags=["firmware"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "the image itself, as the request body (not multipart): "
                "`curl --data-binary @image.bin`",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def upload_firmware(
        request: Request,
        scope: Read,
        name: Annotated[str, Query(min_length=1, max_length=200, description="shown and served")],
        sha256: Annotated[
            str | None,
            Query(
                pattern="^[0-9a-fA-F]{64}$",
                description="the image's SHA-256 as computed by the sender: refused (409) "
                "if what arrived differs",
            ),
        ] = None,
    ) -> Any:
        """Add a firmware image this server serves to chargers, as `voltaro ctl firmware
        add` does (admin scope): streamed to the data directory, at most
        `firmware_max_bytes` (413), kept only when complete. Then usable as `file` in
        UpdateFirmware and campaigns."""
        require_admin(scope, "adding firmware")
        files = firmware_service().files
        if files is None:
            raise ApiError(404, "not_found", "this server keeps no files")
        try:
            # Closed at once when the image is refused midway (not left to the GC).
            async with aclosing(request.stream()) as chunks:
                stored = await files.add_firmware_stream(
                    chunks, name=name, sha256=sha256, actor=request.state.actor
                )
        except FileError as exc:
            raise file_error(exc) from None
        return views.file_view(stored)

    @app.delete(
        "/firmware/{ref}",
        response_model=models.StoredFile,
        responses={**ERRORS, **{code: {"model": models.ErrorBody} for code in (404, 409)}},
        tags=["firmware"],
    )
    async def remove_firmware(
        ref: Annotated[str, Path(description="the image's name or id")],
        request: Request,
        scope: Read,
        force: bool = False,
    ) -> Any:
        """Remove a firmware image (admin scope), from disk and from the list; 409 while
        an unfinished campaign uses it or, unless ``force``, while a charger still has
        an unspent, unexpired URL to download it (a pending UpdateFirmware)."""
        require_admin(scope, "removing firmware")
        files = firmware_service().files
        if files is None:
            raise ApiError(404, "not_found", "this server keeps no files")
        try:
            stored = await files.remove_firmware(ref, actor=request.state.actor, force=force)
        except FileError as exc:
            raise file_error(exc) from None
        return views.file_view(stored)

    @file_command("/charge_points/{charger_id}/firmware/signed_update")
    async def signed_update_firmware(
        charger_id: str, body: models.SignedFirmwareUpdateBody, request: Request, scope: Operate
    ) -> Any:
        """SignedUpdateFirmware (1.6 security extension; needs the admin scope). The
        answer's ``details.request_id`` is what SignedFirmwareStatusNotifications name."""
        require_admin(scope, "SignedUpdateFirmware")
        return await firmware_command(
            firmware_service().signed_update(
                charger_id,
                actor=request.state.actor,
                signing_certificate=body.signing_certificate,
                signature=body.signature,
                private_key=body.private_key,
                location=body.location,
                file=body.file,
                retrieve_at=body.retrieve_date,
                install_at=body.install_date,
                retries=body.retries,
                retry_interval=body.retry_interval,
            )
        )

    @file_command("/charge_points/{charger_id}/logs")
    async def get_log(
        charger_id: str, body: models.GetLogBody, request: Request, _: Operate
    ) -> Any:
        """GetLog (1.6 security extension): to ``location``, or to an upload URL of this
        server; the file then appears in ``GET /logs``. ``details.request_id`` is what
        the charger's LogStatusNotifications name."""
        return await firmware_command(
            firmware_service().get_log(
                charger_id,
                actor=request.state.actor,
                log_type=LogType(body.log_type),
                location=body.location,
                oldest=body.oldest_timestamp,
                latest=body.latest_timestamp,
                retries=body.retries,
                retry_interval=body.retry_interval,
            )
        )

    @app.get("/logs", response_model=list[models.StoredFile], responses=ERRORS, tags=["firmware"])
    async def list_logs(
        _: Read,
        charge_point_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """Logs chargers uploaded after GetLog (kind securitylog or diagnosticslog),
        newest first; the bytes are at ``/stored_files/{id}/content``."""
        rows = await ctx.db.run(
            files.list_files_of_kinds, LOG_KINDS, charger_id=charge_point_id, limit=limit
        )
        return [views.file_view(f) for f in rows]

    @app.get(
        "/firmware", response_model=list[models.StoredFile], responses=ERRORS, tags=["firmware"]
    )
    async def list_firmware(_: Read) -> Any:
        """Firmware images this server serves (added with `voltaro ctl firmware add`)."""
        return [views.file_view(f) for f in await ctx.db.run(files.list_files, "firmware")]

    @app.get(
        "/diagnostics",
        response_model=list[models.StoredFile],
        responses=ERRORS,
        tags=["firmware"],
    )
    async def list_diagnostics(
        _: Read,
        charge_point_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """Diagnostics files chargers uploaded to this server, newest first."""
        rows = await ctx.db.run(
            files.list_files, "diagnostics", charger_id=charge_point_id, limit=limit
        )
        return [views.file_view(f) for f in rows]

    @app.get(
        "/stored_files/{file_id}/content",
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
        response_class=FileResponse,
        tags=["firmware"],
    )
    async def stored_file_content(file_id: int, scope: Read) -> Any:
        """The bytes of a stored file (an uploaded diagnostics file, a firmware image);
        needs the admin scope."""
        require_admin(scope, "reading stored files")
        stored = await ctx.db.run(files.get_file, file_id)
        if stored is None:
            raise ApiError(404, "not_found", f"unknown file {file_id}")
        return FileResponse(
            firmware_service().files_path(stored),
            filename=stored.name,
            media_type="application/octet-stream",
        )

    command_errors: dict[int | str, dict[str, Any]] = {
        **ERRORS,
        **{code: {"model": models.ErrorBody} for code in (404, 409, 422, 502, 504)},
    }

    async def run_command(
        charger_id: str, name: str, arguments: dict[str, Any], request: Request, scope: ApiScope
    ) -> Any:
        action = models.COMMANDS[name][1]
        if needs_admin(action, arguments):
            require_admin(scope, f"{name} with these arguments")
        try:
            parsed = command_from_args(action, arguments)
            outcome = await ctx.commands.execute(
                charger_id,
                parsed,
                actor=request.state.actor,
                # Several nodes: a retry with the same key is not sent twice (issue 18).
                request_id=request.headers.get("idempotency-key"),
            )
        except CommandError as exc:
            raise ApiError(_COMMAND_STATUS[exc.code], str(exc.code), exc.message) from None
        return views.outcome_view(outcome)

    # One route and one typed body per command (unknown fields: 422), so that each is
    # documented in the OpenAPI document with its own arguments.
    for name, (body_model, action, summary) in models.COMMANDS.items():
        _add_command_route(app, name, body_model, action, summary, command_errors, run_command)

    return app


def _csv_text(rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _uploaded(ctx: ApiContext, stored: StoredFile) -> None:
    if ctx.hub is not None:
        ctx.hub.publish(
            "file.uploaded",
            {
                "id": stored.id,
                "kind": stored.kind,
                "name": stored.name,
                "size": stored.size,
                "charger_id": stored.charger_id,
            },
        )


def _add_command_route(
    app: FastAPI,
    name: str,
    body_model: type[Any],
    action: str,
    summary: str,
    responses: dict[int | str, dict[str, Any]],
    run: Any,
) -> None:
    async def command(
        charger_id: str,
        request: Request,
        scope: Operate,
        body: Any = None,
    ) -> Any:
        arguments: dict[str, Any] = body.model_dump(exclude_none=True) if body is not None else {}
        return await run(charger_id, name, arguments, request, scope)

    # The body's type is this command's model (a closure variable, so set it here rather
    # than in the string annotation that `from __future__ import annotations` makes).
    command.__annotations__["body"] = Annotated[body_model | None, Body()]

    app.post(
        f"/charge_points/{{charger_id}}/commands/{name}",
        response_model=models.CommandResult,
        response_model_exclude_none=True,
        responses=responses,
        summary=f"{name}: {summary}",
        description=f"Sends OCPP {action} to the charger and returns its answer.",
        name=f"command_{name.replace('-', '_')}",
        tags=["commands"],
    )(command)
    # The OCPP action name works as the path too (as before the typed routes).
    app.post(
        f"/charge_points/{{charger_id}}/commands/{action}",
        response_model=models.CommandResult,
        response_model_exclude_none=True,
        include_in_schema=False,
        name=f"command_{action}",
    )(command)
