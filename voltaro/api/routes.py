"""The HTTP API for integrations (billing, apps, monitoring).

Bearer tokens from settings.api_tokens: scope ``read`` for GETs, ``operate`` for
everything (commands and id tag changes). Errors are always
``{"error": {"code", "message"}}``. Commands go through the same CommandService as the
control socket.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from voltaro import __version__
from voltaro.api import models
from voltaro.domain.commands import CommandError, CommandErrorCode
from voltaro.domain.model import AuthorizationStatus
from voltaro.net.registry import Registry
from voltaro.service import views
from voltaro.service.commands import CommandService, command_from_args
from voltaro.service.hub import EventHub
from voltaro.service.overview import server_status
from voltaro.service.reconciliation import Reconciliation
from voltaro.settings import ApiScope, ApiToken, Settings
from voltaro.store import chargers, tags, transactions
from voltaro.store.db import Database
from voltaro.store.errors import AlreadyExists, NotFound


@dataclass
class ApiContext:
    settings: Settings
    db: Database
    registry: Registry
    commands: CommandService
    started: float = field(default_factory=time.monotonic)
    hub: EventHub | None = None  # for the events of operator actions


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_COMMAND_STATUS = {
    CommandErrorCode.BAD_ARGUMENTS: 422,
    CommandErrorCode.UNKNOWN_CHARGER: 404,
    CommandErrorCode.OFFLINE: 409,
    CommandErrorCode.NOT_ALLOWED: 409,
    CommandErrorCode.FORBIDDEN: 403,
    CommandErrorCode.TIMEOUT: 504,
    CommandErrorCode.CALL_ERROR: 502,
    CommandErrorCode.DISCONNECTED: 502,
    CommandErrorCode.BUSY: 503,
    CommandErrorCode.UNAVAILABLE: 503,
    CommandErrorCode.INTERNAL: 500,
}

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "missing or unknown bearer token"},
    403: {"model": models.ErrorBody, "description": "the token's scope does not allow it"},
}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def token_scope(request: Request) -> ApiScope:
    """The scope of the request's bearer token (constant-time comparison of every token)."""
    ctx: ApiContext = request.app.state.ctx
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(401, "unauthorized", "a bearer token is required")
    match: ApiToken | None = None
    for token in ctx.settings.api_tokens:
        if hmac.compare_digest(token.token.encode(), presented.encode()):
            match = token
    if match is None:
        raise ApiError(401, "unauthorized", "unknown bearer token")
    request.state.actor = f"api:{match.name or match.scope.value}"
    return match.scope


def operator(scope: Annotated[ApiScope, Depends(token_scope)]) -> ApiScope:
    if scope is not ApiScope.OPERATE:
        raise ApiError(403, "forbidden", "this needs a token with the operate scope")
    return scope


Read = Annotated[ApiScope, Depends(token_scope)]
Operate = Annotated[ApiScope, Depends(operator)]


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="Voltaro",
        version=__version__,
        description="HTTP API of the Voltaro OCPP 1.6J Central System.",
    )
    app.state.ctx = ctx

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Any:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "bad_arguments", f"{where}: {first.get('msg', 'invalid')}")

    def charge_point(charger: Any) -> dict[str, Any]:
        view = views.charger_view(charger)
        view["connected"] = ctx.registry.is_connected(charger.charger_id)
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
        return {"status": "ok"}

    @app.get(
        "/health/ready",
        response_model=models.Health,
        tags=["health"],
        responses={503: {"model": models.Health, "description": "the database is unreachable"}},
    )
    async def health_ready() -> Any:
        if await ctx.db.ping():
            return {"status": "ok", "database": "ok"}
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)

    @app.get("/status", response_model=models.Status, responses=ERRORS)
    async def status(_: Read) -> Any:
        return await server_status(ctx.db, ctx.registry, uptime_s=time.monotonic() - ctx.started)

    @app.get("/charge_points", response_model=list[models.ChargePoint], responses=ERRORS)
    async def list_charge_points(_: Read) -> Any:
        return [charge_point(c) for c in await ctx.db.run(chargers.list_chargers)]

    @app.get(
        "/charge_points/{charger_id}",
        response_model=models.ChargePoint,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def get_charge_point(charger_id: str, _: Read) -> Any:
        charger = await ctx.db.run(chargers.get_charger, charger_id)
        if charger is None:
            raise ApiError(404, "not_found", f"unknown charge point {charger_id}")
        return charge_point(charger)

    @app.get("/sessions", response_model=models.SessionPage, responses=ERRORS)
    async def list_sessions(
        _: Read,
        charge_point_id: str | None = None,
        active: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Any:
        filters = {"active": active, "charger_id": charge_point_id, "since": since, "until": until}
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
        "/sessions/{transaction_id}",
        response_model=models.SessionDetail,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def get_session(transaction_id: int, _: Read) -> Any:
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

    @app.get("/id_tags", response_model=list[models.IdTag], responses=ERRORS)
    async def list_id_tags(_: Read) -> Any:
        return [views.tag_view(t) for t in await ctx.db.run(tags.list_tags)]

    @app.post(
        "/id_tags",
        response_model=models.IdTag,
        status_code=201,
        responses={**ERRORS, 404: {"model": models.ErrorBody}, 409: {"model": models.ErrorBody}},
    )
    async def create_id_tag(body: models.IdTagCreate, _: Operate) -> Any:
        try:
            tag = await ctx.db.run(
                tags.add_tag,
                body.id_tag,
                status=AuthorizationStatus(body.status),
                expiry=body.expiry_date,
                parent=body.parent_id_tag,
            )
        except AlreadyExists as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        return views.tag_view(tag)

    @app.patch(
        "/id_tags/{id_tag}",
        response_model=models.IdTag,
        responses={**ERRORS, 404: {"model": models.ErrorBody}},
    )
    async def update_id_tag(id_tag: str, body: models.IdTagUpdate, _: Operate) -> Any:
        changes: dict[str, Any] = {}
        if body.status is not None:
            changes["status"] = AuthorizationStatus(body.status)
        if "expiry_date" in body.model_fields_set:
            changes["expiry"] = body.expiry_date
        if "parent_id_tag" in body.model_fields_set:
            changes["parent"] = body.parent_id_tag
        try:
            tag = await ctx.db.run(tags.update_tag, id_tag, **changes)
        except NotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        if tag is None:
            raise ApiError(404, "not_found", f"unknown id tag {id_tag}")
        return views.tag_view(tag)

    @app.delete(
        "/id_tags/{id_tag}", status_code=204, responses={**ERRORS, 404: {"model": models.ErrorBody}}
    )
    async def delete_id_tag(id_tag: str, _: Operate) -> None:
        if not await ctx.db.run(tags.remove_tag, id_tag):
            raise ApiError(404, "not_found", f"unknown id tag {id_tag}")

    command_errors: dict[int | str, dict[str, Any]] = {
        **ERRORS,
        **{code: {"model": models.ErrorBody} for code in (404, 409, 422, 502, 504)},
    }

    @app.post(
        "/charge_points/{charger_id}/commands/{command}",
        response_model=models.CommandResult,
        response_model_exclude_none=True,
        responses=command_errors,
    )
    async def run_command(
        charger_id: str,
        command: str,
        request: Request,
        _: Operate,
        arguments: Annotated[dict[str, Any] | None, Body()] = None,
    ) -> Any:
        try:
            parsed = command_from_args(command, arguments or {})
            outcome = await ctx.commands.execute(charger_id, parsed, actor=request.state.actor)
        except CommandError as exc:
            raise ApiError(_COMMAND_STATUS[exc.code], str(exc.code), exc.message) from None
        return views.outcome_view(outcome)

    return app
