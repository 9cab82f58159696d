"""Commands between nodes on one PostgreSQL (issue 18; scale-and-security A2 step 5).

A command issued on any node (console, ``voltaro ctl``, HTTP API) reaches the node that
holds the charger's connection, is sent once, and its answer comes back:

1. the origin writes a ``routed_commands`` row (id = request id, the whole command in
   ``payload``) addressed to the owner it finds in ``charger_owners`` under a live lease
   (database clock); no owner: Offline at once, nothing sent;
2. it NOTIFYs the owner's "cmd" channel with the id only (payloads of SendLocalList or
   SetChargingProfile can exceed NOTIFY's 8000 bytes);
3. the owner claims the row (``queued -> routed``, conditional: a duplicate
   notification or a retry with the same request id never runs it twice) and NOTIFYs
   the acknowledgement in the same transaction, then checks that it is not fenced and
   that the charger's live session has the epoch the command was addressed to, sends
   the CALL through the charger's one-CALL-at-a-time queue, stores the answer and
   NOTIFYs ``rep``;
4. the origin waits ``ack_timeout`` (1 s) for the acknowledgement. None: if the owner
   changed (a dead node's chargers reconnected elsewhere) the request, never claimed, is
   readdressed to the new owner; if nobody holds the charger, it waits for one within
   the command's time; if the same owner is still leased it ends the request
   (``queued -> error``, so a late claim finds nothing) with OwnerUnreachable. Then it
   waits for the answer up to the command's own bounds plus a margin.

Notifications only wake; the row is the truth. After a resync (the LISTEN connection
came back, or a buffer overflowed) the origin rereads its rows and the owner rereads
the requests queued for it. Without a request id and with the charger on this node, a
command goes straight to the connection as on a single node (no row).
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import trio
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from voltaro.domain.command_codec import (
    CodecError,
    decode_command,
    decode_result,
    encode_command,
    encode_error,
    encode_outcome,
)
from voltaro.domain.commands import (
    ACTION_OF,
    Command,
    CommandError,
    CommandErrorCode,
    CommandOutcome,
)
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.timestamps import utc_now
from voltaro.net.registry import Registry
from voltaro.service.commands import command_args
from voltaro.settings import Settings
from voltaro.store import routed_commands as routed
from voltaro.store.db import Database
from voltaro.store.notify import Notification, PgListener, channel_name

log = logging.getLogger(__name__)

ACK_TIMEOUT = 1.0  # seconds: the owner claims a request within this, or it is unreachable
# Requests queued for this node that a resync rereads (older ones: their origin gave up).
RESYNC_WINDOW = timedelta(seconds=10)
OWNERS_REFRESH = 1.0  # seconds between refreshes of the owner map behind is_connected
# A retry waiting for a first attempt in flight rereads its row this often: the answer's
# notification goes to the first attempt's node, which may be another one.
FOLLOW_POLL = 0.25
RETENTION = timedelta(hours=24)  # routed_commands rows are kept this long
RETENTION_INTERVAL = 600.0  # seconds between trims
_DB_ERRORS = (SQLAlchemyError, StorageUnavailable)
# Final status of a routed row for each way a command can fail on the owner.
_STATUS_OF = {CommandErrorCode.TIMEOUT: "timeout", CommandErrorCode.OFFLINE: "offline"}


@dataclass(eq=False)
class _Waiter:
    """A request in flight on this node, woken by ``ack``/``rep`` or a resync. Shared by
    every attempt with its id waiting here (a retry joins the first): its flags only
    ever go up, and each attempt remembers the resyncs it has seen."""

    woken: trio.Event = field(default_factory=trio.Event)
    acked: bool = False
    answered: bool = False
    resyncs: int = 0
    result: dict[str, Any] | None = None  # the answer, when the reply carried it
    users: int = 0

    def wake(self) -> None:
        self.woken.set()
        self.woken = trio.Event()

    def claimed(self) -> bool:
        """An owner acknowledged (or already answered)."""
        return self.acked or self.answered

    async def wait(self, deadline: float) -> bool:
        """False at the deadline; True when woken. The flags are checked before the call
        without a checkpoint in between, so no wake-up falls between the two."""
        event = self.woken
        with trio.move_on_at(deadline):
            await event.wait()
            return True
        return False


@dataclass(eq=False)
class Prepared:
    """A routed request to be written in the caller's transaction (the command audit's,
    so the audit row, the request row and its NOTIFY are one commit): :meth:`unit` runs
    in that transaction; :meth:`ClusterRouter.send` then waits for the answer. The
    waiter is registered before the commit, so an acknowledgement or an answer that
    comes back at once is never missed."""

    router: ClusterRouter
    request_id: str
    charger_id: str
    action: str
    payload: dict[str, Any]
    actor: str
    waiter: _Waiter
    existing: routed.Routed | None = None
    owner: routed.Owner | None = None
    released: bool = False

    def unit(self, s: Session) -> None:
        self.existing, self.owner = routed.start(
            s,
            request_id=self.request_id,
            charger_id=self.charger_id,
            action=self.action,
            payload=self.payload,
            origin_node=self.router.node_id,
            requested_by=self.actor,
        )

    def abandon(self) -> None:
        """Not written (the transaction failed or was cancelled): forget the waiter."""
        self.router._release(self.request_id, self)


@dataclass(slots=True)
class RouterStatistics:
    routed: int = 0  # requests this node sent to another node
    served: int = 0  # requests this node claimed for its chargers
    readdressed: int = 0  # requests sent on to a new owner after no acknowledgement
    unreachable: int = 0  # requests whose owner never acknowledged
    duplicates: int = 0  # notifications for a request already claimed (not run again)


class ClusterRouter:
    """:class:`voltaro.service.commands.CommandRouter` for several nodes (see module)."""

    def __init__(
        self,
        database: Database,
        registry: Registry,
        listener: PgListener,
        *,
        node_id: str,
        fenced: Callable[[], bool],
        settings: Settings,
        ack_timeout: float = ACK_TIMEOUT,
    ) -> None:
        self._db = database
        self._registry = registry
        self._node_id = node_id
        self._fenced = fenced
        self._settings = settings
        self._ack_timeout = ack_timeout
        self._inbox = listener.subscribe(channel_name("cmd", node_id))
        self._waiters: dict[str, _Waiter] = {}
        self._owners: dict[str, str] = {}  # charger -> node, refreshed every second
        self.statistics = RouterStatistics()

    @property
    def node_id(self) -> str:
        return self._node_id

    def _answer_bound(self) -> float:
        """How long the owner's link may take: the queue wait, the send and the answer
        (each bounded by the link itself)."""
        s = self._settings
        return s.command_queue_timeout + s.send_timeout + s.call_timeout

    # -- CommandRouter ------------------------------------------------------------------

    def is_connected(self, charger_id: str) -> bool:
        """On this node, or on a leased node as of the last refresh (at most a second
        old): for the background services that pick chargers to talk to."""
        return self._registry.is_connected(charger_id) or charger_id in self._owners

    async def reachable(self, charger_id: str) -> bool:
        """Connected to this node or to a node under a live lease: the owner map, and
        the table read now when the map does not have it (it may have just connected)."""
        if self._registry.is_connected(charger_id) or charger_id in self._owners:
            # Held here, or by a leased node a second ago: ``send`` reads the owner table
            # anyway (offline at once if it is gone).
            return True
        found = await self._db.run(routed.owner, charger_id)
        if found is None:
            self._owners.pop(charger_id, None)
            return False
        self._owners[charger_id] = found.node_id
        return True

    def lookup(self, request_id: str) -> Callable[[Session], routed.Routed | None]:
        """A unit of work (for the transaction that reads the charger) that reads what
        this request id already holds."""
        return functools.partial(routed.get, request_id=request_id)

    async def previous(
        self, found: Any, request_id: str, charger_id: str, action: str
    ) -> CommandOutcome | None:
        """The first attempt's answer for a retry (raises its error): at once if it
        ended, after waiting for it while it is in flight (the charger may have started
        meanwhile: the state checks would refuse the retry, RemoteStart is not
        idempotent). None: no such request, or it ended unsent (run it again)."""
        if found is None:
            return None
        assert isinstance(found, routed.Routed)
        _same_request(found, charger_id, action)
        result = found.result if found.status in routed.FINAL else None
        if result is None:
            log.info(
                "request %s (%s) is in flight: a retry waits for its answer", request_id, action
            )
            with self._waiting(request_id) as waiter:
                result = await self._await_result(request_id, waiter, action, poll=FOLLOW_POLL)
        if routed.not_sent(result):
            return None
        return _result(result)

    def prepare(
        self, charger_id: str, command: Command, *, actor: str, request_id: str | None
    ) -> Prepared | None:
        """None: the command goes straight to this node's connection (no request id and
        the charger here). Otherwise the request, to write in the caller's transaction
        (see :class:`Prepared`); then pass it to :meth:`send`."""
        if request_id is None and self._registry.session(charger_id) is not None:
            return None
        request_id = request_id or str(uuid.uuid4())
        payload = encode_command(command)
        waiter = self._waiters.setdefault(request_id, _Waiter())
        waiter.users += 1
        return Prepared(
            self, request_id, charger_id, ACTION_OF[type(command)], payload, actor, waiter
        )

    async def send(
        self,
        charger_id: str,
        command: Command,
        *,
        actor: str = "",
        request_id: str | None = None,
        prepared: Any = None,
    ) -> CommandOutcome:
        """Carry out ``command`` on the node that holds ``charger_id``. ``request_id``:
        the caller's idempotency key; a second call with it never sends the command
        again, it returns (or waits for) the first one's answer. ``prepared``: what
        :meth:`prepare` gave and the caller's transaction wrote."""
        if prepared is not None:
            assert isinstance(prepared, Prepared)
            try:
                return await self._routed(charger_id, command, prepared.request_id, prepared)
            finally:
                prepared.abandon()
        session = self._registry.session(charger_id)
        if request_id is None and session is not None:
            if self._fenced():
                raise _fenced_error(self._node_id)
            return await session.link.send_command(command)
        return await self._route(charger_id, command, actor, request_id or str(uuid.uuid4()))

    @contextmanager
    def _waiting(self, request_id: str) -> Iterator[_Waiter]:
        waiter = self._waiters.setdefault(request_id, _Waiter())
        waiter.users += 1
        try:
            yield waiter
        finally:
            self._drop(request_id, waiter)

    def _drop(self, request_id: str, waiter: _Waiter) -> None:
        waiter.users -= 1
        if waiter.users <= 0 and self._waiters.get(request_id) is waiter:
            del self._waiters[request_id]

    def _release(self, request_id: str, prepared: Prepared) -> None:
        if not prepared.released:
            prepared.released = True
            self._drop(request_id, prepared.waiter)

    # -- origin -------------------------------------------------------------------------

    async def _route(
        self, charger_id: str, command: Command, actor: str, request_id: str
    ) -> CommandOutcome:
        """Write the request in a transaction of its own, then as :meth:`_routed`."""
        action = ACTION_OF[type(command)]
        prepared = self.prepare(charger_id, command, actor=actor, request_id=request_id)
        assert prepared is not None
        try:
            try:
                await self._db.run(prepared.unit)
            except _DB_ERRORS as exc:
                # The database is down (a concurrent first attempt with the same id is
                # waited for by the INSERT itself and read as a retry).
                existing = await self._get_quietly(request_id)
                if existing is None:
                    raise CommandError(
                        CommandErrorCode.UNAVAILABLE,
                        f"{action} not sent: the database is unavailable "
                        f"({type(exc).__name__}); retry later",
                    ) from None
                prepared.existing, prepared.owner = existing, None
            return await self._routed(charger_id, command, request_id, prepared)
        finally:
            prepared.abandon()

    async def _routed(
        self, charger_id: str, command: Command, request_id: str, prepared: Prepared
    ) -> CommandOutcome:
        """After the request row was written (or found: a retry): wait for the owner's
        acknowledgement and answer."""
        action = ACTION_OF[type(command)]
        waiter, existing, owner = prepared.waiter, prepared.existing, prepared.owner
        if existing is not None:
            _same_request(existing, charger_id, action)
            log.info("routed command %s (%s) is a retry: not sent again", request_id, action)
            return await self._follow(request_id, waiter, existing)
        if owner is None:
            raise CommandError(
                CommandErrorCode.OFFLINE,
                f"charger {charger_id} is not connected to any node",
            )
        if owner.node_id == self._node_id:
            return await self._serve_here(request_id)
        self.statistics.routed += 1
        try:
            if await self._await_ack(request_id, charger_id, waiter, owner):
                return await self._serve_here(request_id)
            return await self._await_answer(request_id, waiter, action)
        except _DB_ERRORS as exc:
            # Written and notified: it may have been sent. The owner still stores
            # its answer in routed_commands and the command audit.
            raise CommandError(
                CommandErrorCode.DISCONNECTED,
                f"{action} to {charger_id} via node {owner.node_id}: the database "
                f"became unavailable while waiting for the answer "
                f"({type(exc).__name__}); it may have been carried out",
            ) from None

    async def _await_ack(
        self, request_id: str, charger_id: str, waiter: _Waiter, owner: routed.Owner
    ) -> bool:
        """Return once an owner claimed the request (True: readdressed to this node, for
        the caller to run); raise if none will."""
        deadline = trio.current_time() + self._ack_timeout
        # A dead owner's chargers reconnect elsewhere within seconds: a request never
        # claimed may follow them for as long as the command itself may take.
        give_up_at = trio.current_time() + self._answer_bound()
        seen = waiter.resyncs
        while True:
            # Flags first: the ack (and even the reply) may have come in before we wait.
            if waiter.claimed():
                return False
            if waiter.resyncs == seen:
                woken = await waiter.wait(deadline)
                if waiter.claimed():
                    return False
                if woken and waiter.resyncs == seen:
                    continue
            seen = waiter.resyncs
            row = await self._db.run(routed.get, request_id)
            if row is None or row.status != "queued":
                return False  # claimed (or final): the answer phase reads the row
            if trio.current_time() < deadline:
                continue
            current = await self._db.run(routed.owner, charger_id)
            if current is not None and current == owner:
                await self._end_unclaimed(
                    request_id,
                    CommandError(
                        CommandErrorCode.OWNER_UNREACHABLE,
                        f"node {owner.node_id} holds charger {charger_id} but did not take "
                        f"the command within {self._ack_timeout:g} s; not sent",
                    ),
                )
                self.statistics.unreachable += 1
                return False  # claimed at the last moment after all
            if current is None:
                if trio.current_time() >= give_up_at:
                    await self._end_unclaimed(
                        request_id,
                        CommandError(
                            CommandErrorCode.OFFLINE,
                            f"node {owner.node_id} stopped answering and charger "
                            f"{charger_id} did not reconnect to another node in time; not sent",
                        ),
                    )
                    return False
                deadline = min(give_up_at, trio.current_time() + 0.2)  # poll for a new owner
                continue
            if await self._db.run(
                routed.readdress, request_id, owner.node_id, current, self._node_id
            ):
                log.info(
                    "routed command %s: node %s did not take it, sent on to node %s",
                    request_id,
                    owner.node_id,
                    current.node_id,
                )
                self.statistics.readdressed += 1
                if current.node_id == self._node_id:
                    return True  # the charger is here now: the caller runs it
                owner = current
                deadline = trio.current_time() + self._ack_timeout
                continue
            return False  # claimed meanwhile

    async def _get_quietly(self, request_id: str) -> routed.Routed | None:
        try:
            return await self._db.run(routed.get, request_id)
        except _DB_ERRORS:
            return None

    async def _end_unclaimed(self, request_id: str, error: CommandError) -> None:
        """End a request nobody claimed; raise ``error`` unless an owner claimed it in
        the meantime (then return, and the caller waits for its answer)."""
        status = "offline" if error.code == CommandErrorCode.OFFLINE else "error"
        if await self._db.run(routed.give_up, request_id, status, encode_error(error)):
            log.warning("routed command %s: %s", request_id, error.message)
            raise error

    async def _await_answer(self, request_id: str, waiter: _Waiter, action: str) -> CommandOutcome:
        return _result(await self._await_result(request_id, waiter, action))

    async def _await_result(
        self, request_id: str, waiter: _Waiter, action: str, *, poll: float | None = None
    ) -> dict[str, Any]:
        """The stored answer (or error) of a request: from the reply's notification, or
        read from its row after a reply, a resync, every ``poll`` seconds when given
        (the reply may go to another node), and once more at the deadline."""
        # The owner's link bounds its own queue wait and the answer; the margin covers
        # the two database round trips and the notification.
        deadline = trio.current_time() + self._answer_bound() + 2.0
        seen = waiter.resyncs
        read = handled_reply = False
        while True:
            if waiter.result is not None:
                return waiter.result  # carried by the reply: no read
            if read or (waiter.answered and not handled_reply) or waiter.resyncs != seen:
                seen, handled_reply, read = waiter.resyncs, waiter.answered, False
                row = await self._db.run(routed.get, request_id)
                if row is not None and row.status in routed.FINAL and row.result is not None:
                    return row.result
                if trio.current_time() >= deadline:
                    owner = row.owner_node if row is not None else "?"
                    raise CommandError(
                        CommandErrorCode.TIMEOUT,
                        f"node {owner} did not report the answer to {action} in time",
                    )
            wake_at = deadline if poll is None else min(deadline, trio.current_time() + poll)
            if not await waiter.wait(wake_at):
                read = True

    async def _follow(self, request_id: str, waiter: _Waiter, row: routed.Routed) -> CommandOutcome:
        """A retry: the answer of the first attempt, never a second CALL."""
        if row.status in routed.FINAL and row.result is not None:
            return _result(row.result)
        return _result(await self._await_result(request_id, waiter, row.action, poll=FOLLOW_POLL))

    # -- owner --------------------------------------------------------------------------

    async def _serve_here(self, request_id: str) -> CommandOutcome:
        """The charger is on this node: claim and run it in the caller's task."""
        row = await self._db.run(routed.claim, request_id, self._node_id)
        if row is None:
            raise CommandError(CommandErrorCode.INTERNAL, f"request {request_id} vanished")
        result = await self._execute(row)
        return _result(result)

    async def _serve(self, request_id: str) -> None:
        """A request addressed to this node: claim it (the ack), run it, store the answer."""
        try:
            row = await self._db.run(routed.claim, request_id, self._node_id)
        except _DB_ERRORS as exc:
            log.warning("routed command %s not claimed: database unavailable: %s", request_id, exc)
            return  # the origin sees no ack and says so
        if row is None:
            self.statistics.duplicates += 1
            return
        self.statistics.served += 1
        await self._execute(row)

    async def _execute(self, row: routed.Routed) -> dict[str, Any]:
        """Send a claimed request to the charger and store the answer (always)."""
        result: dict[str, Any] | None = None
        status = "error"
        redacted: dict[str, Any] | None = None
        try:
            command = decode_command(row.payload)
            redacted = _redacted(command)
            session = self._registry.session(row.charger_id)
            if self._fenced():
                raise _fenced_error(self._node_id)
            if session is None:
                raise CommandError(
                    CommandErrorCode.OFFLINE,
                    f"charger {row.charger_id} is no longer connected to node {self._node_id}",
                )
            if row.owner_epoch is not None and session.epoch != row.owner_epoch:
                # Fencing token (A2 step 4): the command was addressed to another
                # connection of this charger; it is not sent over this one.
                raise CommandError(
                    CommandErrorCode.OFFLINE,
                    f"charger {row.charger_id} reconnected (epoch {session.epoch}, the "
                    f"command was for epoch {row.owner_epoch}); not sent",
                )
            with trio.fail_after(self._answer_bound() + 1.0):
                outcome = await session.link.send_command(command)
            result, status = encode_outcome(outcome), "answered"
        except CommandError as exc:
            result, status = encode_error(exc), _STATUS_OF.get(exc.code, "error")
        except trio.TooSlowError:
            error = CommandError(
                CommandErrorCode.TIMEOUT, f"{row.charger_id} did not answer {row.action} in time"
            )
            result, status = encode_error(error), "timeout"
        except CodecError as exc:
            log.error("routed command %s: %s", row.id, exc)
            result = encode_error(CommandError(CommandErrorCode.INTERNAL, str(exc)))
        except trio.Cancelled:
            result = encode_error(
                CommandError(
                    CommandErrorCode.INTERNAL,
                    f"node {self._node_id} stopped before the command completed",
                )
            )
            raise
        finally:
            with trio.CancelScope(shield=True):
                await self._store(row.id, status, result, redacted)
        return result

    async def _store(
        self,
        request_id: str,
        status: str,
        result: dict[str, Any] | None,
        redacted: dict[str, Any] | None,
    ) -> None:
        if result is None:
            result = encode_error(CommandError(CommandErrorCode.INTERNAL, "no result"))
        deadline = trio.current_time() + max(1.0, self._settings.db_retry_seconds)
        delay = 0.05
        while True:
            try:
                await self._db.run(routed.finish, request_id, status, result, redacted=redacted)
                return
            except _DB_ERRORS as exc:
                if trio.current_time() + delay > deadline:
                    log.error(
                        "routed command %s: answer not stored (database unavailable): %s",
                        request_id,
                        exc,
                    )
                    return
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- background ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read this node's "cmd" channel, keep the owner map fresh, trim old rows."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._refresh_owners)
            nursery.start_soon(self._trim)
            task_status.started()
            try:
                async for note in self._inbox:
                    self._dispatch(nursery, note)
            finally:
                nursery.cancel_scope.cancel()

    def _dispatch(self, nursery: trio.Nursery, note: Notification) -> None:
        if note.payload is None:
            for waiter in self._waiters.values():
                waiter.resyncs += 1
                waiter.wake()
            nursery.start_soon(self._reread_queued)
            return
        try:
            data = json.loads(note.payload)
            kind, request_id = data["kind"], str(data["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed routing notification: %.200s", note.payload)
            return
        if kind == "req":
            nursery.start_soon(self._serve, request_id)
            return
        waiting = self._waiters.get(request_id)
        if waiting is None:
            return  # the origin gave up or finished: nothing waits for it
        if kind == "ack":
            waiting.acked = True
        elif kind == "rep":
            waiting.answered = True
            if isinstance(data.get("result"), dict):
                waiting.result = data["result"]
        waiting.wake()

    async def _reread_queued(self) -> None:
        """After a resync: the requests queued for this node whose notification was lost."""
        try:
            pending = await self._db.run(
                routed.pending_for, self._node_id, utc_now() - RESYNC_WINDOW
            )
        except _DB_ERRORS as exc:
            log.warning("routed commands not reread after a resync: %s", exc)
            return
        for request_id in pending:
            await self._serve(request_id)

    async def _refresh_owners(self) -> None:
        while True:
            try:
                self._owners = await self._db.run(routed.owned)
            except _DB_ERRORS:
                pass  # is_connected falls back on the last map; send reads the table
            await trio.sleep(OWNERS_REFRESH)

    async def _trim(self) -> None:
        while True:
            try:
                # A batch at a time, until nothing older is left.
                while await self._db.run(routed.trim, RETENTION) > 0:
                    pass
            except _DB_ERRORS as exc:
                log.warning("routed_commands not trimmed: %s", exc)
            await trio.sleep(RETENTION_INTERVAL)


def _same_request(row: routed.Routed, charger_id: str, action: str) -> None:
    if (row.charger_id, row.action) != (charger_id, action):
        raise CommandError(
            CommandErrorCode.BAD_ARGUMENTS,
            f"request id {row.id} was used for {row.action} to {row.charger_id}: "
            "a retry must repeat the same command",
        )


def _fenced_error(node_id: str) -> CommandError:
    return CommandError(
        CommandErrorCode.OWNER_UNREACHABLE,
        f"node {node_id} lost its lease (fenced): its chargers reconnect to another node; not sent",
    )


def _redacted(command: Command) -> dict[str, Any]:
    try:
        return command_args(command)
    except Exception:  # a certificate that does not parse: the action alone
        return {}


def _result(data: dict[str, Any]) -> CommandOutcome:
    """A stored answer, or raise the stored error."""
    try:
        decoded = decode_result(data)
    except CodecError as exc:
        raise CommandError(CommandErrorCode.INTERNAL, str(exc)) from None
    if isinstance(decoded, CommandError):
        raise decoded
    return decoded


__all__ = ["ACK_TIMEOUT", "ClusterRouter", "Prepared", "RouterStatistics"]
