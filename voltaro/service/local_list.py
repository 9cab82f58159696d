"""Keeping chargers' Local Authorization Lists in sync with the tag table (OCPP 1.6 §3.4.3,
§5.7, §5.15).

One sync of one charger: read its three local list keys (GetConfiguration), its list
version (GetLocalListVersion), plan the SendLocalList messages (domain/local_list.py),
send them one by one and keep what it accepted. Every message goes through the
CommandService, so it is checked, routed and audited like any operator command.

The pusher (``run``) follows tag changes: ``tag_changed()`` marks the list dirty and the
pusher syncs every connected charger whose LocalAuthListEnabled is true. It also wakes
when a tag's expiry date passes (the entry turns Expired, §3.4.3), and, with
``sync_on_connect``, syncs a charger that connects or boots (``charger.connected`` and an
Accepted ``charger.boot`` on the hub) once it has been online for ``sync_delay`` seconds:
GetLocalListVersion, and an update only when the charger is behind.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import trio
from sqlalchemy.exc import SQLAlchemyError

from voltaro.background import LoopGuard
from voltaro.control.wire import Event
from voltaro.domain.commands import (
    CommandError,
    CommandErrorCode,
    GetConfiguration,
    GetLocalListVersion,
    SendLocalList,
)
from voltaro.domain.local_list import (
    CONFIGURATION_KEYS,
    VERSION_NOT_SUPPORTED,
    LocalListError,
    Plan,
    UpdateStatus,
    limits_from_configuration,
    plan_sync,
)
from voltaro.domain.model import RegistrationStatus
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.timestamps import utc_now
from voltaro.service.commands import CommandService
from voltaro.service.hub import RESYNC, EventHub
from voltaro.store import local_lists
from voltaro.store.db import Database

log = logging.getLogger(__name__)

# Chargers synced at the same time by one `local-list sync` or one push.
MAX_PARALLEL = 8
# How long the pusher waits when the database could not say when the next tag expires.
EXPIRY_RETRY = 60.0
# Arrivals due within this many seconds of each other are read in one query: a connect
# storm brings hundreds per second (issue 14).
ARRIVAL_GATHER = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResult:
    charger_id: str
    # Accepted | up-to-date | NotSupported | Failed | VersionMismatch | skipped | error
    result: str
    ok: bool
    version: int | None = None  # the charger's list version afterwards (as far as known)
    update_type: str | None = None  # Full | Differential | None (nothing sent)
    messages: int = 0  # SendLocalList messages the charger accepted
    entries: int | None = None  # entries on the charger's list afterwards
    detail: str = ""
    error_code: str | None = None  # a CommandErrorCode when a command failed

    def view(self) -> dict[str, Any]:
        return {
            "charger_id": self.charger_id,
            "result": self.result,
            "ok": self.ok,
            "version": self.version,
            "update_type": self.update_type,
            "messages": self.messages,
            "entries": self.entries,
            "detail": self.detail,
            "error_code": self.error_code,
        }


class LocalListService:
    def __init__(
        self,
        db: Database,
        commands: CommandService,
        hub: EventHub | None,
        *,
        sync_on_connect: bool = False,
        sync_delay: float = 2.0,
        connected: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        """``connected``: the chargers connected to this node now (the registry's)."""
        self._db = db
        self._connected = connected
        self._commands = commands
        self._hub = hub
        self._dirty = trio.Event()
        self._actor = "system:local-list"
        self.guard = LoopGuard("local list pusher", log)
        self._sync_on_connect = sync_on_connect
        self._sync_delay = sync_delay
        # Chargers that came online, with the trio time their sync is due, in that order
        # (the delay is the same for all): the next due is the first, never a scan of
        # thousands per arrival in a connect storm (issue 14).
        self._arrived: dict[str, float] = {}
        # Those of them that booted: their configuration may have changed (a reboot, new
        # firmware), so what they last reported is asked again.
        self._booted: set[str] = set()
        self._arrival = trio.Event()
        # One sync at a time per charger: a push and a connect sync must not interleave
        # their SendLocalList versions.
        self._locks: dict[str, trio.Lock] = {}
        # Chargers to sync on connect, in order; at most MAX_PARALLEL syncers work them
        # off. Not a task per charger: after a first-contact storm thousands wait here,
        # and a waiting task costs about 3 KiB each (issue 14 step 5).
        self._ready: deque[str] = deque()
        # The chargers in ``_ready``: one counted as arrived again while it waits there
        # (a reconnect, or every charger after dropped events) is not asked twice.
        self._queued: set[str] = set()
        self._syncers = 0

    # --- the pusher -----------------------------------------------------------------

    def tag_changed(self) -> None:
        """A tag was added, blocked, edited or removed: push to enabled chargers soon."""
        self._dirty.set()

    def charger_online(self, charger_id: str, *, booted: bool = False) -> None:
        """The charger connected or booted: sync it ``sync_delay`` seconds from now (a
        later arrival before then moves the time, so a connect and its boot give one)."""
        self._arrived.pop(charger_id, None)  # to the end: due last
        self._arrived[charger_id] = trio.current_time() + self._sync_delay
        if booted:
            self._booted.add(charger_id)
        self._arrival.set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self._sync_on_connect and self._hub is not None:
                await nursery.start(self._follow_connections, self._hub)
                nursery.start_soon(self._sync_arrivals)
            task_status.started()
            await self._push_loop()

    async def _push_loop(self) -> None:
        wake_at = await self._next_expiry()
        while True:
            with trio.move_on_at(wake_at):
                await self._dirty.wait()
            self._dirty = trio.Event()
            try:
                await self.push()
            except (SQLAlchemyError, StorageUnavailable) as exc:
                # The next tag change retries; the outage itself is the health report's.
                log.warning("local list push skipped: database unavailable: %s", exc)
            except Exception as exc:
                # A background loop never takes the server down (issue 11).
                await self.guard.after_failure(exc, "pushing local lists")
            else:
                self.guard.succeeded()
            wake_at = await self._next_expiry()

    async def _next_expiry(self) -> float:
        """The trio time the next tag expires (its entry turns Expired then)."""
        try:
            now = utc_now()
            at: datetime | None = await self._db.run(local_lists.next_expiry, now)
        except (SQLAlchemyError, StorageUnavailable):
            return trio.current_time() + EXPIRY_RETRY
        if at is None:
            return float("inf")
        return trio.current_time() + max(0.0, (at - now).total_seconds()) + 0.01

    async def _follow_connections(
        self, hub: EventHub, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        kinds = (str(Event.CHARGER_CONNECTED), str(Event.CHARGER_BOOT))
        async with hub.subscribe(kinds=kinds) as subscription:
            task_status.started()
            while True:
                item = await subscription.receive()
                if item == RESYNC:
                    self._arrivals_lost()
                    continue
                assert not isinstance(item, str)
                if item.name == Event.CHARGER_BOOT and item.data.get("status") != "Accepted":
                    continue
                charger_id = item.data.get("charger_id")
                if isinstance(charger_id, str):
                    # A boot as the same vendor, model and firmware (a power cut) keeps
                    # the configuration it last reported; other firmware may not.
                    booted = item.name == Event.CHARGER_BOOT and not item.data.get("same_identity")
                    self.charger_online(charger_id, booted=booted)

    def _arrivals_lost(self) -> None:
        """Connect and boot events were dropped (a storm larger than the event queue):
        every charger connected here counts as arrived. The arrival check skips those
        known to have no list, so a reconnect storm still costs no command; a charger
        never asked (first contact) is asked, as it would have been, and so is one that
        booted with other firmware meanwhile: its boot's commit forgot the "list off"
        it had reported (chargers._FORGET_LIST_DISABLED), so the arrival check does not
        skip it (issue 14: a third of a 3,000-charger first-contact storm was never
        synced when only list-enabled chargers were pushed here)."""
        if self._connected is None:
            self.tag_changed()  # no registry to read: push to list-enabled chargers
            return
        for charger_id in self._connected():
            self.charger_online(charger_id)

    async def _sync_arrivals(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                due_at = next(iter(self._arrived.values()), float("inf")) + ARRIVAL_GATHER
                with trio.move_on_at(due_at):
                    await self._arrival.wait()
                    self._arrival = trio.Event()
                    continue
                now = trio.current_time()
                due: dict[str, bool] = {}
                while self._arrived:
                    charger_id, at = next(iter(self._arrived.items()))
                    if at > now:
                        break
                    del self._arrived[charger_id]
                    due[charger_id] = charger_id in self._booted
                    self._booted.discard(charger_id)
                if due:
                    nursery.start_soon(self._sync_due, due, nursery)

    async def _sync_due(self, due: dict[str, bool], nursery: trio.Nursery) -> None:
        """``due``: charger id -> booted with other firmware since it last reported."""
        try:
            # One read for every charger due now, not one each: a reconnect storm makes
            # thousands due within a second (issue 14).
            known = await self._db.run(local_lists.arrivals, sorted(due))
        except (SQLAlchemyError, StorageUnavailable) as exc:
            log.warning("local list sync of %d chargers on connect skipped: %s", len(due), exc)
            return
        for charger_id, booted in due.items():
            arrival = known.get(charger_id)
            if (
                arrival is None
                or arrival.registration is not RegistrationStatus.ACCEPTED
                or not self._commands.is_connected(charger_id)
            ):
                continue  # a Pending charger gets its list once accepted and booted again
            if arrival.list_enabled is False and not booted:
                # It said its list is off (or that it has none) and has not booted with
                # other firmware since: asking again costs a command, an answer and an
                # audit row per charger in a reconnect storm (issue 14). New firmware, a
                # push or `ctl local-list sync` asks again.
                continue
            if charger_id in self._queued:
                continue
            self._queued.add(charger_id)
            self._ready.append(charger_id)
        while self._ready and self._syncers < MAX_PARALLEL:
            self._syncers += 1
            nursery.start_soon(self._syncer)

    async def _syncer(self) -> None:
        try:
            while self._ready:
                charger_id = self._ready.popleft()
                # From here an arrival queues it again: this sync may be for a
                # connection that is about to end (it vanished mid-sync).
                self._queued.discard(charger_id)
                await self._sync_arrival(charger_id)
        finally:
            self._syncers -= 1

    async def _sync_arrival(self, charger_id: str) -> None:
        if not self._commands.is_connected(charger_id):
            return
        try:
            result = await self.sync(charger_id, actor=self._actor, only_if_enabled=True)
        except Exception as exc:
            await self.guard.after_failure(exc, f"syncing {charger_id}'s local list")
            return
        if not result.ok:
            log.info(
                "local list sync of %s on connect: %s (%s)",
                charger_id,
                result.result,
                result.detail,
            )

    async def push(self) -> list[SyncResult]:
        """Sync the connected chargers whose LocalAuthListEnabled is true."""
        candidates = await self._db.run(local_lists.chargers_to_push)
        online = [c for c in candidates if self._commands.is_connected(c)]
        if not online:
            return []
        return await self.sync_many(online, actor=self._actor, only_if_enabled=True)

    # --- syncing --------------------------------------------------------------------

    async def sync_many(
        self,
        charger_ids: list[str],
        *,
        actor: str,
        full: bool = False,
        only_if_enabled: bool = False,
    ) -> list[SyncResult]:
        results: dict[str, SyncResult] = {}
        limiter = trio.CapacityLimiter(MAX_PARALLEL)

        async def one(charger_id: str) -> None:
            async with limiter:
                results[charger_id] = await self.sync(
                    charger_id, actor=actor, full=full, only_if_enabled=only_if_enabled
                )

        async with trio.open_nursery() as nursery:
            for charger_id in charger_ids:
                nursery.start_soon(one, charger_id)
        return [results[c] for c in charger_ids]

    async def version(self, charger_id: str, *, actor: str) -> int | None:
        outcome = await self._commands.execute(charger_id, GetLocalListVersion(), actor=actor)
        version = outcome.details.get("list_version")
        return version if isinstance(version, int) else None

    async def sync(
        self, charger_id: str, *, actor: str, full: bool = False, only_if_enabled: bool = False
    ) -> SyncResult:
        """Bring one charger's list up to date. Never raises for the charger's answers or
        command failures: they are in the result (and in the audit of each command)."""
        lock = self._locks.setdefault(charger_id, trio.Lock())
        try:
            async with lock:
                result = await self._sync(
                    charger_id, actor=actor, full=full, only_if_enabled=only_if_enabled
                )
        except CommandError as exc:
            result = SyncResult(
                charger_id=charger_id,
                result="error",
                ok=False,
                detail=exc.message,
                error_code=str(exc.code),
            )
            if exc.code not in (CommandErrorCode.UNKNOWN_CHARGER, CommandErrorCode.UNAVAILABLE):
                await self._record(charger_id, "error", exc.message)
        except (SQLAlchemyError, StorageUnavailable) as exc:
            result = SyncResult(
                charger_id=charger_id,
                result="error",
                ok=False,
                detail=f"the database is unavailable ({type(exc).__name__}); retry later",
                error_code=str(CommandErrorCode.UNAVAILABLE),
            )
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(charger_id, None)
        self._publish(result)
        return result

    async def _record(
        self, charger_id: str, result: str, error: str | None, *, forget: bool = False
    ) -> None:
        try:
            await self._db.run(local_lists.record_result, charger_id, result, error, forget=forget)
        except (SQLAlchemyError, StorageUnavailable) as exc:
            log.warning("local list result for %s not stored: %s", charger_id, exc)

    def _publish(self, result: SyncResult) -> None:
        if self._hub is not None:
            self._hub.publish(Event.LOCAL_LIST_SYNCED, result.view())

    async def _sync(
        self, charger_id: str, *, actor: str, full: bool, only_if_enabled: bool
    ) -> SyncResult:
        config = await self._commands.execute(
            charger_id, GetConfiguration(keys=CONFIGURATION_KEYS), actor=actor
        )
        limits = limits_from_configuration({e.key: e.value for e in config.configuration})
        if only_if_enabled and limits.enabled is not True:
            return SyncResult(
                charger_id=charger_id,
                result="skipped",
                ok=True,
                detail="LocalAuthListEnabled is not true",
            )
        charger_version = await self.version(charger_id, actor=actor)
        if charger_version is None:
            raise CommandError(
                CommandErrorCode.CALL_ERROR, f"{charger_id} answered no list version"
            )
        if charger_version == VERSION_NOT_SUPPORTED:
            detail = f"{charger_id} does not support a local list (version -1)"
            await self._record(charger_id, UpdateStatus.NOT_SUPPORTED.value, detail)
            return SyncResult(
                charger_id=charger_id,
                result=UpdateStatus.NOT_SUPPORTED.value,
                ok=False,
                version=charger_version,
                detail=detail,
            )
        known_version, known = await self._db.run(local_lists.known_state, charger_id)
        desired = await self._db.run(local_lists.desired, utc_now(), charger_id)
        try:
            plan = plan_sync(
                charger_id=charger_id,
                desired=desired,
                known=known,
                known_version=known_version,
                charger_version=charger_version,
                limits=limits,
                force_full=full,
            )
        except LocalListError as exc:
            await self._record(charger_id, "refused", str(exc))
            return SyncResult(
                charger_id=charger_id,
                result="refused",
                ok=False,
                version=charger_version,
                detail=str(exc),
                error_code=str(CommandErrorCode.BAD_ARGUMENTS),
            )
        result = await self._send(charger_id, plan, actor=actor, charger_version=charger_version)
        if result.result != UpdateStatus.VERSION_MISMATCH.value or plan.full:
            return result
        # VersionMismatch to a Differential update: what the charger holds is not what
        # we think; start again from nothing with a Full update (§5.15).
        charger_version = await self.version(charger_id, actor=actor) or 0
        plan = plan_sync(
            charger_id=charger_id,
            desired=desired,
            known=None,
            known_version=None,
            charger_version=max(charger_version, 0),
            limits=limits,
            force_full=True,
        )
        return await self._send(charger_id, plan, actor=actor, charger_version=charger_version)

    async def _send(
        self, charger_id: str, plan: Plan, *, actor: str, charger_version: int
    ) -> SyncResult:
        if not plan.updates:
            await self._record(charger_id, "up-to-date", None)
            return SyncResult(
                charger_id=charger_id,
                result="up-to-date",
                ok=True,
                version=charger_version,
                detail=plan.reason,
            )
        update_type = plan.updates[0].update_type.value
        accepted = 0
        version: int | None = charger_version
        entries: int | None = None
        for update in plan.updates:
            command = SendLocalList(
                list_version=update.version,
                update_type=update.update_type,
                entries=update.entries,
            )
            try:
                outcome = await self._commands.execute(charger_id, command, actor=actor)
            except CommandError as exc:
                # Timeout or hang-up mid-sync: the charger holds the last accepted
                # version or this one; the next sync's version check tells which.
                await self._record(charger_id, "error", exc.message)
                return SyncResult(
                    charger_id=charger_id,
                    result="error",
                    ok=False,
                    version=version,
                    update_type=update_type,
                    messages=accepted,
                    entries=entries,
                    detail=f"{plan.reason}; message {accepted + 1} of {len(plan.updates)}: "
                    f"{exc.message}",
                    error_code=str(exc.code),
                )
            if outcome.status == UpdateStatus.ACCEPTED.value:
                await self._db.run(
                    local_lists.save_accepted, charger_id, update.version, update.after
                )
                accepted += 1
                version, entries = update.version, len(update.after)
                continue
            status = outcome.status
            detail = f"{plan.reason}; {charger_id} answered {status} to version {update.version}"
            # Failed: the charger could not update its list; what it holds is unknown.
            await self._record(
                charger_id, status, detail, forget=status == UpdateStatus.FAILED.value
            )
            return SyncResult(
                charger_id=charger_id,
                result=status,
                ok=False,
                version=version,
                update_type=update_type,
                messages=accepted,
                entries=entries,
                detail=detail,
            )
        return SyncResult(
            charger_id=charger_id,
            result=UpdateStatus.ACCEPTED.value,
            ok=True,
            version=version,
            update_type=update_type,
            messages=accepted,
            entries=entries,
            detail=plan.reason,
        )
