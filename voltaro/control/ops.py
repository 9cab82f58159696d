"""What each control-socket op does. Results are the JSON views of service/views.py."""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import trio

from voltaro.control.wire import ErrorCode
from voltaro.domain.charging_profiles import (
    ProfileError,
    ProfilePurpose,
    RateUnit,
    limit_profile,
    parse_profile,
)
from voltaro.domain.commands import (
    ChangeConfiguration,
    CommandError,
    CommandErrorCode,
    LogType,
    TriggerableMessage,
    TriggerMessage,
)
from voltaro.domain.credentials import password_bytes
from voltaro.domain.local_list import LocalListError, check_group
from voltaro.domain.model import AuthorizationStatus, RegistrationStatus, TransactionState
from voltaro.domain.secrets import redact_frame
from voltaro.domain.secrets import redact_value as redact
from voltaro.domain.timestamps import ensure_utc, format_utc, parse_timestamp, utc_now
from voltaro.domain.transaction_lifecycle import ORPHAN_STOP_KINDS
from voltaro.net.identity import identity_problem
from voltaro.net.registry import Registry
from voltaro.net.security_events import SecurityEvents
from voltaro.protocol.callerrors import CallErrorLog
from voltaro.service import views
from voltaro.service.campaigns import CampaignRunner
from voltaro.service.certificates import certificates_state, delete_by_index
from voltaro.service.charger_health import HealthRecorder, health_report
from voltaro.service.charging_profiles import ChargingProfileService
from voltaro.service.cluster_node import ClusterNode
from voltaro.service.commands import CommandService, command_from_args, command_time
from voltaro.service.files import FileError, FileTransfers
from voltaro.service.firmware import LOG_KINDS, FirmwareService
from voltaro.service.hub import EventHub
from voltaro.service.local_list import LocalListService
from voltaro.service.overview import server_status
from voltaro.service.reconciliation import Reconciliation
from voltaro.service.reservations import ReservationService, expiry_from, reservation_view
from voltaro.settings import Settings
from voltaro.store import (
    chargers,
    charging_profiles,
    commands,
    files,
    firmware,
    frames,
    local_lists,
    quarantine,
    security,
    tags,
    transactions,
)
from voltaro.store.db import Database
from voltaro.store.errors import AlreadyExists, NotFound

log = logging.getLogger(__name__)


class OpError(Exception):
    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message


_COMMAND_CODES = {
    CommandErrorCode.BAD_ARGUMENTS: ErrorCode.BAD_ARGUMENTS,
    CommandErrorCode.NOT_FOUND: ErrorCode.NOT_FOUND,
    CommandErrorCode.OFFLINE: ErrorCode.OFFLINE,
    CommandErrorCode.NOT_ALLOWED: ErrorCode.NOT_ALLOWED,
    CommandErrorCode.FORBIDDEN: ErrorCode.FORBIDDEN,
    CommandErrorCode.TIMEOUT: ErrorCode.TIMEOUT,
    CommandErrorCode.CALL_ERROR: ErrorCode.CALL_ERROR,
    CommandErrorCode.DISCONNECTED: ErrorCode.DISCONNECTED,
    CommandErrorCode.BUSY: ErrorCode.BUSY,
    CommandErrorCode.UNAVAILABLE: ErrorCode.UNAVAILABLE,
    CommandErrorCode.OWNER_UNREACHABLE: ErrorCode.OWNER_UNREACHABLE,
    CommandErrorCode.INTERNAL: ErrorCode.INTERNAL,
}


def _groups(raw: Any) -> tuple[str, ...]:
    """A tag's charger groups: a list of names, or one comma-separated string."""
    if raw is None:
        return ()
    names = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise OpError(ErrorCode.BAD_ARGUMENTS, "groups must be a list of group names")
    try:
        return tuple(sorted({check_group(n.strip()) for n in names if n.strip()}))
    except LocalListError as exc:
        raise OpError(ErrorCode.BAD_ARGUMENTS, str(exc)) from None


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise OpError(ErrorCode.BAD_ARGUMENTS, f"{key} is required")
    return value


def _time_arg(args: dict[str, Any], name: str) -> datetime | None:
    """An optional ISO 8601 time argument (the console's F3 period: started since/until)."""
    value = args.get(name)
    if value is None:
        return None
    try:
        return parse_timestamp(str(value))
    except ValueError:
        raise OpError(
            ErrorCode.BAD_ARGUMENTS, f"{name} must be an ISO 8601 time, e.g. 2026-12-04T00:00:00Z"
        ) from None


def _profile(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3:
        raise OpError(ErrorCode.BAD_ARGUMENTS, "security_profile must be 0, 1, 2 or 3")
    return value


def _limit(args: dict[str, Any], default: int = 50, maximum: int = 1000) -> int:
    value = args.get("limit", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise OpError(ErrorCode.BAD_ARGUMENTS, f"limit must be an integer from 1 to {maximum}")
    return value


class ControlOps:
    """The server side of every op except subscribe (handled by the session)."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        command_service: CommandService,
        hub: EventHub,
        *,
        settings: Settings | None = None,
        call_errors: CallErrorLog | None = None,
        protection: Callable[[], dict[str, Any]] | None = None,
        firmware: FirmwareService | None = None,
        campaigns: CampaignRunner | None = None,
        local_lists: LocalListService | None = None,
        reservations: ReservationService | None = None,
        security_events: SecurityEvents | None = None,
        charger_health: HealthRecorder | None = None,
        cluster: ClusterNode | None = None,
    ) -> None:
        self._charger_health = charger_health
        self._cluster = cluster  # several nodes (issue 18): status shows them
        self._protection = protection
        self._firmware = firmware or FirmwareService(command_service)
        self._campaigns = campaigns
        self._db = db
        self.db = db  # the control server reports refused requests to its health
        self._settings = settings or Settings()
        self._call_errors = call_errors or CallErrorLog()
        self._security = security_events or SecurityEvents()
        self._registry = registry
        self._commands = command_service
        self._hub = hub
        self._reconciliation = Reconciliation(db, hub)
        self._local_lists = local_lists or LocalListService(db, command_service, hub)
        self._reservations = reservations or ReservationService(db, command_service, hub)
        self._profiles = ChargingProfileService(db, command_service)
        self._started = time.monotonic()
        self.table: dict[str, Callable[[dict[str, Any], str], Awaitable[Any]]] = {
            "status": self.status,
            "chargers.list": self.chargers_list,
            "chargers.show": self.chargers_show,
            "chargers.frames": self.chargers_frames,
            "chargers.health": self.chargers_health,
            "chargers.add": self.chargers_add,
            "chargers.set_profile": self.chargers_set_profile,
            "chargers.set_group": self.chargers_set_group,
            "chargers.set_password": self.chargers_set_password,
            "security.events": self.security_events,
            "chargers.remove": self.chargers_remove,
            "chargers.accept": self.chargers_accept,
            "chargers.reject": self.chargers_reject,
            "tags.list": self.tags_list,
            "tags.add": self.tags_add,
            "tags.block": self.tags_block,
            "tags.set": self.tags_set,
            "tags.unblock": self.tags_unblock,
            "tags.remove": self.tags_remove,
            "transactions.list": self.transactions_list,
            "transactions.show": self.transactions_show,
            "transactions.close": self.transactions_close,
            "transactions.stops": self.transactions_stops,
            "transactions.export": self.transactions_export,
            "quarantine.list": self.quarantine_list,
            "commands.list": self.commands_list,
            "command": self.command,
            "firmware.add": self.firmware_add,
            "firmware.list": self.firmware_list,
            "firmware.remove": self.firmware_remove,
            "firmware.update": self.firmware_update,
            "diagnostics.get": self.diagnostics_get,
            "diagnostics.list": self.diagnostics_list,
            "files.read": self.files_read,
            "logs.get": self.logs_get,
            "logs.list": self.logs_list,
            "firmware.update_signed": self.firmware_update_signed,
            "firmware.campaign": self.firmware_campaign,
            "firmware.campaigns": self.firmware_campaigns,
            "firmware.cancel": self.firmware_cancel,
            "local_list.sync": self.local_list_sync,
            "local_list.show": self.local_list_show,
            "reservations.add": self.reservations_add,
            "reservations.cancel": self.reservations_cancel,
            "reservations.list": self.reservations_list,
            "profiles.set": self.profiles_set,
            "profiles.clear": self.profiles_clear,
            "profiles.list": self.profiles_list,
            "profiles.composite": self.profiles_composite,
            "certificates.show": self.certificates_show,
            "certificates.delete": self.certificates_delete,
        }

    def _charger_view(self, charger: Any, owners: dict[str, str] | None = None) -> dict[str, Any]:
        view = views.charger_view(charger)
        charger_id = charger.charger_id
        if owners is None or self._cluster is None:
            # Several nodes: held by any live node (the owner map, at most a second old).
            view["connected"] = self._commands.is_connected(charger_id)
            return view
        # Several nodes, the owner table read now (see _owners), and which node has it.
        node = self._cluster.node_id if self._registry.is_connected(charger_id) else None
        node = node or owners.get(charger_id)
        view["connected"] = node is not None
        view["node"] = node
        return view

    async def _owners(self, charger_ids: list[str] | None = None) -> dict[str, str] | None:
        """Several nodes: who holds each charger under a live lease, read from the owner
        table now. chargers.list and chargers.show are what a console re-reads after an
        event it cannot place (another node's charger.connected for a charger it does
        not know yet): an answer from the owner map (refreshed every second) could still
        say offline, and no later event would correct it (issue 18). None on one node."""
        if self._cluster is None:
            return None
        return await self._cluster.owners(charger_ids)

    async def status(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        uptime = time.monotonic() - self._started
        status = await server_status(
            self._db, self._registry, uptime_s=uptime, cluster=self._cluster
        )
        # Consoles flag a charger offline for longer than its heartbeat interval.
        status["heartbeat_interval"] = self._settings.heartbeat_interval
        if self._protection is not None:
            status["protection"] = self._protection()
        return status

    async def chargers_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        active = await self._db.run(transactions.list_transactions, active=True, limit=10000)
        by_charger: dict[str, list[dict[str, Any]]] = {}
        for tx in active:
            by_charger.setdefault(tx.charger_id, []).append(views.transaction_view(tx))
        out = []
        owners = await self._owners()
        for charger in await self._db.run(chargers.list_chargers):
            view = self._charger_view(charger, owners)
            view["active_transactions"] = by_charger.get(charger.charger_id, [])
            out.append(view)
        return out

    async def chargers_show(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        charger = await self._db.run(chargers.get_charger, charger_id)
        if charger is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
        view = self._charger_view(charger, await self._owners([charger_id]))
        history = await self._db.run(chargers.status_history, charger_id)
        view["status_history"] = [
            {
                "connector_id": h.connector_id,
                "status": h.status,
                "error_code": h.error_code,
                "info": h.info,
                "at": format_utc(h.at),
            }
            for h in history
        ]
        config = await self._db.run(commands.get_configuration, charger_id)
        view["configuration"] = redact(
            [{"key": c.key, "readonly": c.readonly, "value": c.value} for c in config]
        )
        recent_commands = await self._db.run(commands.list_commands, charger_id, 20)
        view["commands"] = [
            {
                "action": c["action"],
                "request": redact(c["request"]),
                "actor": c["actor"],
                "requested_at": format_utc(c["requested_at"]) if c["requested_at"] else None,
                "status": c["status"],
                "error": c["error"],
            }
            for c in recent_commands
        ]
        set_by_operator, reported = await self._db.run(
            commands.heartbeat_interval_state, charger_id
        )
        view["heartbeat_interval"] = views.heartbeat_view(
            set_by_operator, reported, self._settings.heartbeat_interval
        )
        view["attention"] = views.attention(view)
        # CALLERRORs this server sent the charger since it started (issue 23.4).
        view["call_errors_sent"] = self._call_errors.count(charger_id)
        # SecurityEventNotifications the charger sent (1.6 security extension), newest first.
        own_log = await self._db.run(security.recent_security_events, charger_id, 20)
        view["security_events"] = [
            {"type": e.type, "tech_info": e.tech_info, "at": format_utc(e.at)} for e in own_log
        ]
        recent = await self._db.run(transactions.list_transactions, charger_id=charger_id, limit=20)
        view["transactions"] = [views.transaction_view(t) for t in recent]
        latest = await self._db.run(firmware.latest_transfer_status, charger_id)
        reports = await self._db.run(firmware.transfer_history, charger_id)
        view.update(views.transfer_status_view(latest, reports))
        # Issue 16: open reservations and what the charger holds of the local list.
        now = utc_now()
        view["reservations"] = [
            reservation_view(r, now)
            for r in await self._reservations.list(charger_id=charger_id, open_only=True)
        ]
        view["local_list"] = await self._db.run(local_lists.list_state, charger_id)
        # Issue 19: the charger's health over 24 h; its flags join the attention notes.
        health = await self._health(charger_id)
        view["health"] = health[0] if health else None
        view["attention"] += [
            f"{f['flag']}: {f['reason']}" for f in (view["health"] or {}).get("flags", [])
        ]
        return view

    async def _health(self, charger_id: str | None) -> list[dict[str, Any]]:
        return await health_report(
            self._db,
            self._charger_health,
            self._settings,
            charger_id=charger_id,
            is_connected=self._registry.is_connected,
        )

    async def chargers_health(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """Per-charger health over the last 24 clock hours (one charger with
        ``charger_id``, else every registered one; ``flagged``: only those flagged)."""
        charger_id = _optional_text(args, "charger_id")
        rows = await self._health(charger_id)
        if charger_id is not None and not rows:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
        if args.get("flagged"):
            rows = [r for r in rows if r["flags"]]
        return rows

    async def chargers_frames(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        charger_id = _text(args, "charger_id")
        action = args.get("action")
        rows = await self._db.run(
            frames.recent_frames,
            charger_id,
            limit=_limit(args, 100),
            action=action if isinstance(action, str) else None,
        )
        if not rows:
            await self._known_charger(charger_id)
        return [
            {
                "direction": f.direction,
                "at": format_utc(f.at),
                "action": f.action,
                "unique_id": f.unique_id,
                "payload": redact_frame(f.payload),  # rows stored before redaction
            }
            for f in rows
        ]

    async def chargers_add(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        problem = identity_problem(charger_id)
        if problem is not None:
            # The handshake's rule (issue 11.11): an id it would refuse cannot be added.
            raise OpError(ErrorCode.BAD_ARGUMENTS, problem.replace("the URL ends without a", "no"))
        password = args.get("password")
        if password is not None and (not isinstance(password, str) or not password):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "password must be a non-empty string")
        profile = args.get("security_profile")
        if profile is not None:
            profile = _profile(profile)
            if profile in (1, 2) and not password:
                raise OpError(
                    ErrorCode.BAD_ARGUMENTS,
                    f"security profile {profile} needs a password (HTTP Basic auth)",
                )
        try:
            charger = await self._db.run(
                chargers.add_charger,
                charger_id,
                password=password_bytes(password) if password else None,
                allow_no_subprotocol=bool(args.get("allow_no_subprotocol", False)),
                security_profile=profile,
            )
        except AlreadyExists as exc:
            raise OpError(ErrorCode.CONFLICT, str(exc)) from None
        self._hub.publish(
            "charger.updated",
            {"charger_id": charger_id, "registration": charger.registration.value},
        )
        return self._charger_view(charger)

    async def chargers_set_group(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """The group whose local list a charger gets (``group`` null: the all-chargers
        list); its list follows at the next push or sync."""
        charger_id = _text(args, "charger_id")
        raw = args.get("group")
        if raw is not None and not isinstance(raw, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "group must be a name or null")
        try:
            group = check_group(raw) if raw else None
        except LocalListError as exc:
            raise OpError(ErrorCode.BAD_ARGUMENTS, str(exc)) from None
        charger = await self._db.run(chargers.set_list_group, charger_id, group)
        if charger is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
        log.info("local list group of %r: %s (by %s)", charger_id, group or "none", user)
        self._hub.publish("charger.updated", {"charger_id": charger_id})
        self._local_lists.tag_changed()  # its list changed: push to enabled chargers
        return views.charger_view(charger)

    async def chargers_set_profile(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """Set the profile a charger must use from its next connection (no downgrade
        by the charger itself: this is the operator's decision, audited in the log)."""
        charger_id = _text(args, "charger_id")
        profile = _profile(args.get("security_profile"))
        before = await self._db.run(chargers.get_charger, charger_id)
        if before is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
        if profile in (1, 2) and not before.has_password:
            raise OpError(
                ErrorCode.BAD_ARGUMENTS,
                f"security profile {profile} needs a password: {charger_id} has none "
                "(remove it and add it again with --password)",
            )
        if profile >= 2 and self._settings.tls_port is None:
            raise OpError(
                ErrorCode.BAD_ARGUMENTS,
                f"security profile {profile} needs wss:// (set tls_port, tls_certfile)",
            )
        if profile == 3 and not self._settings.tls_client_ca:
            raise OpError(
                ErrorCode.BAD_ARGUMENTS,
                "security profile 3 needs a client CA bundle (set tls_client_ca)",
            )
        charger = await self._db.run(chargers.set_security_profile, charger_id, profile)
        if charger is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
        log.info(
            "security profile of %r: %d -> %d (by %s)",
            charger_id,
            before.security_profile,
            profile,
            user,
        )
        self._hub.publish("charger.updated", {"charger_id": charger_id})
        return self._charger_view(charger)

    async def chargers_set_password(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """ChangeConfiguration AuthorizationKey with a new password (TC_073): the old
        password stays valid until the charger logs in with the new one."""
        charger_id = _text(args, "charger_id")
        # --generate: 20 random bytes as 40 hex digits (the whitepaper's maximum).
        value = secrets.token_hex(20) if args.get("generate") else _text(args, "password")
        command = ChangeConfiguration(key="AuthorizationKey", value=value)
        with _command_errors():
            outcome = await self._commands.execute(charger_id, command, actor=user)
        view = views.outcome_view(outcome)
        view["charger_id"] = charger_id
        view["note"] = (
            "the charger keeps its old password until it reconnects with the new one"
            if outcome.status in ("Accepted", "RebootRequired")
            else "the charger refused it: its old password stays the only one"
        )
        return view

    async def security_events(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        return self._security.summary()

    async def chargers_remove(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        if not await self._db.run(chargers.remove_charger, charger_id):
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
        link = self._registry.get(charger_id)
        if link is not None:
            await link.close(1000, "charger removed")
        self._hub.publish("charger.removed", {"charger_id": charger_id})
        return {"charger_id": charger_id, "removed": True}

    async def _registration(self, args: dict[str, Any], status: RegistrationStatus) -> Any:
        charger_id = _text(args, "charger_id")
        charger = await self._db.run(chargers.set_registration, charger_id, status)
        if charger is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
        self._hub.publish(
            "charger.updated", {"charger_id": charger_id, "registration": status.value}
        )
        return self._charger_view(charger)

    async def chargers_accept(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        before = await self._db.run(chargers.get_charger, charger_id)
        view = dict(await self._registration(args, RegistrationStatus.ACCEPTED))
        if before is not None and before.registration is not RegistrationStatus.ACCEPTED:
            view["boot_trigger"] = await self._trigger_boot(charger_id, before.registration, user)
        return view

    async def _trigger_boot(
        self, charger_id: str, registration: RegistrationStatus, user: str
    ) -> str:
        """Ask a just-accepted charger to boot again now, so that it learns it is
        Accepted without waiting for its retry interval: TriggerMessage BootNotification
        is allowed while the charger is Pending (OCPP 1.6 §4.2.1, errata 3.40)."""
        if registration is not RegistrationStatus.PENDING:
            return "not sent: the charger was not Pending (it learns at its next boot)"
        if not self._commands.is_connected(charger_id):
            return "not sent: the charger is offline (it learns at its next boot)"
        command = TriggerMessage(requested_message=TriggerableMessage.BOOT_NOTIFICATION)
        try:
            outcome = await self._commands.execute(
                charger_id, command, actor=user, charger_registration=registration
            )
        except CommandError as exc:
            return f"failed: {exc.message}"
        return outcome.status

    async def chargers_reject(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        view = dict(await self._registration(args, RegistrationStatus.REJECTED))
        # Issue 11.12: a rejected charger must not keep its session (and start
        # transactions on it); when it reconnects, BootNotification answers Rejected.
        link = self._registry.get(_text(args, "charger_id"))
        if link is not None:
            await link.close(1000, "charger rejected")
        return view

    async def tags_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        return [views.tag_view(t) for t in await self._db.run(tags.list_tags)]

    async def tags_add(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        id_tag = _text(args, "id_tag")
        if len(id_tag) > 20 or not id_tag.isascii() or not id_tag.isprintable():
            raise OpError(
                ErrorCode.BAD_ARGUMENTS,
                "id tag must be 1-20 printable ASCII characters (OCPP 1.6 IdToken)",
            )
        try:
            status = AuthorizationStatus(args.get("status") or "Accepted")
        except ValueError:
            raise OpError(
                ErrorCode.BAD_ARGUMENTS, "status must be Accepted, Blocked, Expired or Invalid"
            ) from None
        expiry: datetime | None = None
        if args.get("expiry"):
            try:
                expiry = parse_timestamp(str(args["expiry"]))
            except ValueError:
                raise OpError(ErrorCode.BAD_ARGUMENTS, "expiry must be an ISO 8601 time") from None
        parent = args.get("parent") or None
        groups = _groups(args.get("groups"))
        try:
            tag = await self._db.run(
                tags.add_tag, id_tag, status=status, expiry=expiry, parent=parent, groups=groups
            )
        except AlreadyExists as exc:
            raise OpError(ErrorCode.CONFLICT, str(exc)) from None
        except NotFound as exc:
            raise OpError(ErrorCode.NOT_FOUND, str(exc)) from None
        self._hub.publish("tag.updated", {"id_tag": tag.id_tag, "status": tag.status.value})
        self._local_lists.tag_changed()
        return views.tag_view(tag)

    async def tags_set(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """Edit a tag: unblock it, change its expiry or parent (absent: unchanged)."""
        id_tag = _text(args, "id_tag")
        changes: dict[str, Any] = {}
        if args.get("status") is not None:
            try:
                changes["status"] = AuthorizationStatus(str(args["status"]))
            except ValueError:
                raise OpError(
                    ErrorCode.BAD_ARGUMENTS, "status must be Accepted, Blocked, Expired or Invalid"
                ) from None
        if args.get("expiry") is not None:
            try:
                changes["expiry"] = parse_timestamp(str(args["expiry"])) if args["expiry"] else None
            except ValueError:
                raise OpError(ErrorCode.BAD_ARGUMENTS, "expiry must be an ISO 8601 time") from None
        if args.get("parent") is not None:
            changes["parent"] = str(args["parent"]) or None
        if args.get("groups") is not None:
            changes["groups"] = _groups(args["groups"])  # []: every charger's list again
        if not changes:
            raise OpError(
                ErrorCode.BAD_ARGUMENTS,
                "nothing to change: give status, expiry, parent or groups",
            )
        try:
            tag = await self._db.run(tags.update_tag, id_tag, **changes)
        except NotFound as exc:
            raise OpError(ErrorCode.NOT_FOUND, str(exc)) from None
        if tag is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown tag {id_tag}")
        self._hub.publish("tag.updated", {"id_tag": tag.id_tag, "status": tag.status.value})
        self._local_lists.tag_changed()
        return views.tag_view(tag)

    async def tags_block(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        id_tag = _text(args, "id_tag")
        tag = await self._db.run(tags.block_tag, id_tag)
        if tag is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown tag {id_tag}")
        self._hub.publish("tag.updated", {"id_tag": tag.id_tag, "status": tag.status.value})
        self._local_lists.tag_changed()
        return views.tag_view(tag)

    async def tags_unblock(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """A blocked tag is Accepted again (the console's and ctl's undo of tags.block)."""
        id_tag = _text(args, "id_tag")
        tag = await self._db.run(tags.update_tag, id_tag, status=AuthorizationStatus.ACCEPTED)
        if tag is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown tag {id_tag}")
        self._hub.publish("tag.updated", {"id_tag": tag.id_tag, "status": tag.status.value})
        self._local_lists.tag_changed()
        return views.tag_view(tag)

    async def tags_remove(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        id_tag = _text(args, "id_tag")
        if not await self._db.run(tags.remove_tag, id_tag):
            raise OpError(ErrorCode.NOT_FOUND, f"unknown tag {id_tag}")
        self._local_lists.tag_changed()
        return {"id_tag": id_tag, "removed": True}

    async def transactions_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        active = args.get("active")
        charger_id = args.get("charger_id")
        state = None
        if args.get("state") is not None:
            try:
                state = TransactionState(args["state"])
            except ValueError:
                choices = ", ".join(s.value for s in TransactionState)
                raise OpError(ErrorCode.BAD_ARGUMENTS, f"state must be one of {choices}") from None
        rows = await self._db.run(
            transactions.list_transactions,
            active=True if active else None,
            charger_id=charger_id if isinstance(charger_id, str) else None,
            since=_time_arg(args, "since"),
            until=_time_arg(args, "until"),
            state=state,
            limit=_limit(args),
        )
        if not rows:
            await self._known_charger(charger_id)
        return [views.transaction_view(t) for t in rows]

    async def _known_charger(self, charger_id: Any) -> None:
        """A filter naming a charger that does not exist is a typo, not "nothing": say so
        (not_found). Only asked when a filtered list came back empty, so the records of a
        removed charger stay listable."""
        if not isinstance(charger_id, str):
            return
        if await self._db.run(chargers.get_charger, charger_id) is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")

    async def commands_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """The command audit, newest first: who sent what to which charger, when, and
        the outcome (transactions closed by hand included)."""
        charger_id = _optional_text(args, "charger_id")
        since: datetime | None = None
        if args.get("since") is not None:
            try:
                since = parse_timestamp(str(args["since"]))
            except ValueError:
                raise OpError(ErrorCode.BAD_ARGUMENTS, "since must be an ISO 8601 time") from None
        rows = await self._db.run(
            commands.command_log,
            charger_id=charger_id,
            since=since,
            actor=_optional_text(args, "actor"),
            action=_optional_text(args, "action"),
            limit=_limit(args),
        )
        if not rows:
            await self._known_charger(charger_id)
        return [views.command_view(row) for row in rows]

    async def transactions_stops(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """Stops that closed nothing, newest first; ``kind`` filters (unknown: an orphan
        stop, foreign: another charger's transaction, conflict)."""
        charger_id = _optional_text(args, "charger_id")
        kind = _optional_text(args, "kind")
        if kind is not None and kind not in ORPHAN_STOP_KINDS:
            choices = ", ".join(ORPHAN_STOP_KINDS)
            raise OpError(ErrorCode.BAD_ARGUMENTS, f"kind must be one of {choices}")
        rows = await self._db.run(
            transactions.orphan_stops,
            charger_id,
            kind=kind,
            limit=_limit(args, 1000, 100_000) if "limit" in args else None,
        )
        if not rows:
            await self._known_charger(charger_id)
        return [views.orphan_stop_view(row) for row in rows]

    async def transactions_export(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """One page of the billing export (docs/reconciliation.md, "CSV export"): sessions
        started in [from, to), in start order; ``after`` is the previous page's ``next``.
        ctl asks page after page and writes each as CSV rows: neither side ever holds
        the whole export."""
        charger_id = _optional_text(args, "charger_id")
        after = args.get("after")
        cursor: tuple[datetime, int] | None = None
        if after is not None:
            try:
                cursor = (parse_timestamp(str(after["start_time"])), int(after["transaction_id"]))
            except (TypeError, KeyError, ValueError):
                raise OpError(
                    ErrorCode.BAD_ARGUMENTS,
                    "after must be a page's next: {start_time, transaction_id}",
                ) from None
        rows = await self._db.run(
            transactions.export_page,
            start_from=_time_arg(args, "from"),
            start_to=_time_arg(args, "to"),
            charger_id=charger_id,
            after=cursor,
            limit=_limit(args, 500, 5000),
        )
        if not rows and cursor is None:
            await self._known_charger(charger_id)
        items = [views.transaction_view(t) for t in rows]
        last = rows[-1] if rows else None
        return {
            "items": items,
            "next": {
                # Full precision, not format_utc's milliseconds: a start time with
                # microseconds cut to the millisecond sorts before itself, and the next
                # page would begin with this page's last session again.
                "start_time": ensure_utc(last.start_time).isoformat(),
                "transaction_id": last.transaction_id,
            }
            if last is not None and len(rows) == _limit(args, 500, 5000)
            else None,
        }

    async def transactions_show(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        tx_id = args.get("transaction_id")
        if isinstance(tx_id, bool) or not isinstance(tx_id, int):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "transaction_id must be an integer")
        tx = await self._db.run(transactions.get_transaction, tx_id)
        if tx is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown transaction {tx_id}")
        view = views.transaction_view(tx)
        values = await self._db.run(transactions.transaction_meter_values, tx_id)
        view["meter_values"] = [views.meter_value_view(mv) for mv in values]
        return view

    async def transactions_close(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        tx_id = args.get("transaction_id")
        if isinstance(tx_id, bool) or not isinstance(tx_id, int):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "transaction_id must be an integer")
        meter_stop = args.get("meter_stop")
        if meter_stop is not None and (
            isinstance(meter_stop, bool) or not isinstance(meter_stop, int) or meter_stop < 0
        ):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "meter_stop must be a whole number of Wh")
        reason = args.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "reason must be text (500 characters at most)")
        result = await self._reconciliation.close(
            tx_id, meter_stop=meter_stop, reason=reason or None, actor=user
        )
        if result.outcome == "not_found":
            raise OpError(ErrorCode.NOT_FOUND, f"unknown transaction {tx_id}")
        if result.outcome == "already_closed":
            raise OpError(ErrorCode.CONFLICT, result.message)
        if result.outcome == "invalid" or result.transaction is None:
            raise OpError(ErrorCode.BAD_ARGUMENTS, result.message)
        return views.transaction_view(result.transaction)

    async def quarantine_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """Charger messages kept as raw frames, newest first (read-only): ``refused``
        (the database refused them for good) and ``repaired`` (stored with U+FFFD in
        place of NUL / lone surrogates; the frame holds the original)."""
        charger_id = args.get("charger_id")
        if charger_id is not None and not isinstance(charger_id, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "charger_id must be a string")
        entries = await self._db.run(
            quarantine.list_entries, charger_id=charger_id, limit=_limit(args, 100)
        )
        return [views.quarantine_view(e) for e in entries]

    async def command(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        action = _text(args, "action")
        arguments = args.get("args") or {}
        request_id = args.get("request_id")  # several nodes: a retry is not sent twice
        with _command_errors():
            command = command_from_args(action, arguments)
            outcome = await self._commands.execute(
                charger_id, command, actor=user, request_id=request_id
            )
        return views.outcome_view(outcome)

    # --- Charger certificates (docs/security.md) -----------------------------------------

    async def certificates_show(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        with _command_errors():
            return await certificates_state(self._db, _text(args, "charger_id"))

    async def certificates_delete(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """DeleteCertificate by hash data, or by ``index`` in the stored list."""
        charger_id = _text(args, "charger_id")
        index = args.get("index")
        with _command_errors():
            if index is not None:
                if isinstance(index, bool) or not isinstance(index, int):
                    raise OpError(ErrorCode.BAD_ARGUMENTS, "index must be an integer")
                command: Any = await delete_by_index(self._db, charger_id, index)
            else:
                command = command_from_args("DeleteCertificate", args.get("hash_data") or {})
            outcome = await self._commands.execute(charger_id, command, actor=user)
        return views.outcome_view(outcome)

    # --- Firmware Management (docs/firmware.md) ------------------------------------------

    def _files(self) -> FileTransfers:
        if self._firmware.files is None:
            raise OpError(ErrorCode.BAD_ARGUMENTS, "this server keeps no files")
        return self._firmware.files

    async def firmware_add(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        path = _text(args, "path")
        name = args.get("name")
        sha256 = args.get("sha256")
        if name is not None and not isinstance(name, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "name must be a string")
        if sha256 is not None and not isinstance(sha256, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "sha256 must be a string")
        try:
            stored = await self._files().add_firmware(path, name=name, sha256=sha256, actor=user)
        except FileError as exc:
            raise OpError(exc.code, exc.message) from None
        return views.file_view(stored)

    async def firmware_remove(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        force = args.get("force", False)
        if not isinstance(force, bool):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "force must be true or false")
        try:
            stored = await self._files().remove_firmware(
                _text(args, "file"), actor=user, force=force
            )
        except FileError as exc:
            raise OpError(exc.code, exc.message) from None
        return views.file_view(stored)

    async def firmware_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        rows = await self._db.run(files.list_files, "firmware", limit=_limit(args, 100))
        return [views.file_view(f) for f in rows]

    async def diagnostics_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        charger_id = args.get("charger_id")
        if charger_id is not None and not isinstance(charger_id, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "charger_id must be a string")
        rows = await self._db.run(
            files.list_files, "diagnostics", charger_id=charger_id, limit=_limit(args, 100)
        )
        return [views.file_view(f) for f in rows]

    async def files_read(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """A piece of a stored file, base64 (the control socket carries JSON lines)."""
        file_id, offset = args.get("id"), args.get("offset", 0)
        length = args.get("length", 32768)
        for key, value in (("id", file_id), ("offset", offset), ("length", length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OpError(ErrorCode.BAD_ARGUMENTS, f"{key} must be a whole number")
        stored = await self._db.run(files.get_file, file_id)
        if stored is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown file {file_id}")
        path = self._files().path_of(stored)
        size = min(length, 48 * 1024)

        def read() -> bytes:
            with path.open("rb") as handle:
                handle.seek(offset)
                return handle.read(size)

        try:
            data = await trio.to_thread.run_sync(read)
        except OSError as exc:
            raise OpError(ErrorCode.INTERNAL, f"file {file_id} cannot be read: {exc}") from None
        return {
            **views.file_view(stored),
            "offset": offset,
            "data": base64.b64encode(data).decode(),
            "eof": offset + len(data) >= stored.size,
        }

    async def firmware_update(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        with _command_errors():
            outcome = await self._firmware.update(
                charger_id,
                actor=user,
                location=_optional_text(args, "location"),
                file=_optional_text(args, "file"),
                retrieve_at=command_time(args, "retrieve_date"),
                **_retries(args),
            )
        return views.outcome_view(outcome)

    async def diagnostics_get(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        with _command_errors():
            outcome = await self._firmware.diagnostics(
                charger_id,
                actor=user,
                location=_optional_text(args, "location"),
                start_time=command_time(args, "start_time"),
                stop_time=command_time(args, "stop_time"),
                **_retries(args),
            )
        return views.outcome_view(outcome)

    # --- The 1.6 security extension: GetLog, SignedUpdateFirmware (docs/security.md) ---

    async def logs_get(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        kind = _optional_text(args, "log_type") or LogType.SECURITY_LOG.value
        log_type = next((t for t in LogType if t.value.lower() == kind.lower()), None)
        if log_type is None:
            raise OpError(ErrorCode.BAD_ARGUMENTS, "log_type must be SecurityLog or DiagnosticsLog")
        with _command_errors():
            outcome = await self._firmware.get_log(
                charger_id,
                actor=user,
                log_type=log_type,
                location=_optional_text(args, "location"),
                oldest=command_time(args, "oldest"),
                latest=command_time(args, "latest"),
                **_retries(args),
            )
        return views.outcome_view(outcome)

    async def logs_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        charger_id = args.get("charger_id")
        if charger_id is not None and not isinstance(charger_id, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "charger_id must be a string")
        rows = await self._db.run(
            files.list_files_of_kinds, LOG_KINDS, charger_id=charger_id, limit=_limit(args, 100)
        )
        return [views.file_view(f) for f in rows]

    async def firmware_update_signed(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        with _command_errors():
            outcome = await self._firmware.signed_update(
                charger_id,
                actor=user,
                signing_certificate=_text(args, "signing_certificate"),
                signature=_optional_text(args, "signature"),
                private_key=_optional_text(args, "private_key"),
                location=_optional_text(args, "location"),
                file=_optional_text(args, "file"),
                retrieve_at=command_time(args, "retrieve_date"),
                install_at=command_time(args, "install_date"),
                **_retries(args),
            )
        return views.outcome_view(outcome)

    async def firmware_campaign(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        if self._campaigns is None:
            raise OpError(ErrorCode.BAD_ARGUMENTS, "this server runs no firmware campaigns")
        max_parallel = args.get("max_parallel", 5)
        ids = args.get("charger_ids")
        if ids is not None and (
            isinstance(ids, str)
            or not isinstance(ids, list)
            or not all(isinstance(i, str) and i for i in ids)
        ):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "charger_ids must be a list of charger ids")
        with _command_errors():
            campaign = await self._campaigns.create(
                pattern=_optional_text(args, "pattern"),
                charger_ids=ids,
                actor=user,
                location=_optional_text(args, "location"),
                file=_optional_text(args, "file"),
                retrieve_at=command_time(args, "retrieve_date"),
                **_retries(args),
                max_parallel=max_parallel,
            )
        return views.campaign_view(campaign)

    async def firmware_campaigns(self, args: dict[str, Any], user: str) -> Any:
        """One campaign with every charger's progress, or the latest campaigns."""
        campaign_id = args.get("campaign_id")
        if campaign_id is None:
            rows = await self._db.run(firmware.list_campaigns, limit=_limit(args, 20))
            return [views.campaign_view(c, targets=False) for c in rows]
        if isinstance(campaign_id, bool) or not isinstance(campaign_id, int):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "campaign_id must be an integer")
        campaign = await self._db.run(firmware.get_campaign, campaign_id)
        if campaign is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown campaign {campaign_id}")
        return views.campaign_view(campaign)

    async def firmware_cancel(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        if self._campaigns is None:
            raise OpError(ErrorCode.BAD_ARGUMENTS, "this server runs no firmware campaigns")
        campaign_id = args.get("campaign_id")
        if isinstance(campaign_id, bool) or not isinstance(campaign_id, int):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "campaign_id must be an integer")
        with _command_errors():
            campaign = await self._campaigns.cancel(campaign_id, actor=user)
        return views.campaign_view(campaign)

    # --- Local Authorization List (issue 16) -------------------------------------------

    async def local_list_sync(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """Sync the given chargers (default: every connected one); one result each."""
        ids = args.get("charger_ids")
        if ids is None and isinstance(args.get("charger_id"), str):
            ids = [args["charger_id"]]  # the console's palette: the selected charger
        if ids is None:
            listed = await self._db.run(chargers.list_chargers)
            ids = [c.charger_id for c in listed if self._commands.is_connected(c.charger_id)]
        elif isinstance(ids, str) or not all(isinstance(i, str) and i for i in ids):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "charger_ids must be a list of charger ids")
        full = args.get("full", False)
        if not isinstance(full, bool):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "full must be true or false")
        results = await self._local_lists.sync_many(list(ids), actor=user, full=full)
        return [r.view() for r in results]

    async def local_list_show(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        """What the charger last accepted, and the list it should hold now."""
        charger_id = _text(args, "charger_id")
        if await self._db.run(chargers.get_charger, charger_id) is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
        state = await self._db.run(local_lists.list_state, charger_id)
        desired = await self._db.run(local_lists.desired, utc_now(), charger_id)
        return {
            "charger_id": charger_id,
            "state": state,
            "list": [
                {
                    "id_tag": e.id_tag,
                    "status": e.info.status.value if e.info else None,
                    "expiry_date": format_utc(e.info.expiry_date)
                    if e.info and e.info.expiry_date
                    else None,
                    "parent_id_tag": e.info.parent_id_tag if e.info else None,
                }
                for _, e in sorted(desired.items())
            ],
        }

    # --- Reservations (issue 16) ----------------------------------------------------------

    async def reservations_add(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        id_tag = _text(args, "id_tag")
        connector = args.get("connector_id", 0)
        if connector is None:
            connector = 0
        if isinstance(connector, bool) or not isinstance(connector, int) or connector < 0:
            raise OpError(ErrorCode.BAD_ARGUMENTS, "connector_id must be 0 (any) or a connector")
        with _command_errors():
            expiry = expiry_from(
                expiry=args.get("expiry") or None, minutes=args.get("minutes"), now=utc_now()
            )
            reservation = await self._reservations.add(
                charger_id, id_tag=id_tag, expiry=expiry, connector_id=connector, actor=user
            )
        return reservation_view(reservation)

    async def reservations_cancel(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        rid = args.get("reservation_id")
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "reservation_id must be an integer")
        try:
            reservation = await self._reservations.cancel(rid, actor=user)
        except CommandError as exc:
            code = (
                ErrorCode.NOT_FOUND
                if exc.message.startswith("unknown reservation")
                else _COMMAND_CODES[exc.code]
            )
            raise OpError(code, exc.message) from None
        return reservation_view(reservation)

    async def reservations_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        charger_id = args.get("charger_id")
        if charger_id is not None and not isinstance(charger_id, str):
            raise OpError(ErrorCode.BAD_ARGUMENTS, "charger_id must be a string")
        rows = await self._reservations.list(
            charger_id=charger_id, open_only=bool(args.get("open")), limit=_limit(args, 100)
        )
        now = utc_now()
        return [reservation_view(r, now) for r in rows]

    # --- Smart Charging (issue 16) --------------------------------------------------------

    @staticmethod
    def _optional_int(args: dict[str, Any], key: str) -> int | None:
        value = args.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise OpError(ErrorCode.BAD_ARGUMENTS, f"{key} must be an integer")
        return value

    async def profiles_set(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        connector = self._optional_int(args, "connector_id")
        if connector is None:
            raise OpError(ErrorCode.BAD_ARGUMENTS, "connector_id is required (0: the charger)")
        data = args.get("profile")
        if data is None and args.get("limit") is not None:
            # "Limit a charger" (the console's form): one ChargePointMaxProfile period.
            data = limit_profile(args["limit"], str(args.get("unit") or "A"))
        try:
            profile = parse_profile(data or {})
        except ProfileError as exc:
            raise OpError(ErrorCode.BAD_ARGUMENTS, f"charging profile: {exc}") from None
        with _command_errors():
            return await self._profiles.set(charger_id, connector, profile, actor=user)

    async def profiles_clear(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        purpose = None
        if args.get("purpose") is not None:
            try:
                purpose = ProfilePurpose(str(args["purpose"]))
            except ValueError:
                choices = ", ".join(p.value for p in ProfilePurpose)
                raise OpError(
                    ErrorCode.BAD_ARGUMENTS, f"purpose must be one of {choices}"
                ) from None
        with _command_errors():
            return await self._profiles.clear(
                charger_id,
                actor=user,
                profile_id=self._optional_int(args, "profile_id"),
                connector_id=self._optional_int(args, "connector_id"),
                purpose=purpose,
                stack_level=self._optional_int(args, "stack_level"),
            )

    async def profiles_list(self, args: dict[str, Any], user: str) -> list[dict[str, Any]]:
        charger_id = _text(args, "charger_id")
        if await self._db.run(chargers.get_charger, charger_id) is None:
            raise OpError(ErrorCode.NOT_FOUND, f"unknown charger {charger_id}")
        rows: list[dict[str, Any]] = await self._db.run(
            charging_profiles.list_profiles, charger_id, all_rows=bool(args.get("all"))
        )
        return rows

    async def profiles_composite(self, args: dict[str, Any], user: str) -> dict[str, Any]:
        charger_id = _text(args, "charger_id")
        connector = self._optional_int(args, "connector_id")
        duration = self._optional_int(args, "duration")
        if connector is None or duration is None:
            raise OpError(ErrorCode.BAD_ARGUMENTS, "connector_id and duration are required")
        unit = None
        if args.get("unit") is not None:
            try:
                unit = RateUnit(str(args["unit"]).upper())
            except ValueError:
                raise OpError(ErrorCode.BAD_ARGUMENTS, "unit must be A or W") from None
        with _command_errors():
            outcome = await self._profiles.composite(
                charger_id, connector, duration, actor=user, unit=unit
            )
        return views.outcome_view(outcome)


@contextmanager
def _command_errors() -> Iterator[None]:
    """A CommandError (from the service, or from an argument it parses, such as a bad
    time) as the op's error, with the same code on the wire."""
    try:
        yield
    except CommandError as exc:
        raise OpError(_COMMAND_CODES[exc.code], exc.message) from None


def _retries(args: dict[str, Any]) -> dict[str, int | None]:
    """The upload and download commands' ``retries`` and ``retry_interval`` (OCPP 1.6
    §5.9, §5.19), each optional."""
    return {
        "retries": _optional_int(args, "retries"),
        "retry_interval": _optional_int(args, "retry_interval"),
    }


def _optional_text(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise OpError(ErrorCode.BAD_ARGUMENTS, f"{key} must be a string")
    return value


def _optional_int(args: dict[str, Any], key: str) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise OpError(ErrorCode.BAD_ARGUMENTS, f"{key} must be a whole number")
    return value
