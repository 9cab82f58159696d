"""What the server does with each charger message: the ChargerBackend of one connection.

The rule (issue 21, design "Rules that shape everything"): a CALLRESULT is a promise —
the charger deletes the message once answered (OCPP 1.6 §4.1, §4.10) — so every message
that changes something is answered only after that change is committed:

- a write that fails *transiently* (database down, locked, busy, slow) is retried until
  it commits or ``db_retry_seconds`` have passed, counting the wait for a database
  worker; then the charger gets a CALLERROR InternalError and retries (OCPP 1.6 §3.7.1,
  §4.10). Nothing is ever answered as if stored when it was not.
- a write that fails *permanently* (the database refuses this data) is never answered
  with "try again", which would block the charger's queue forever: the raw frame is
  kept in the quarantine table for an operator, logged with the charger and message id,
  and the message is answered as the spec allows so that the charger moves on.
- Heartbeat stores nothing but ``last_seen``, which ``Liveness`` writes in batches and
  keeps in memory until stored (never dropped); its answer carries the time chargers
  set their clock by, so it is not delayed by the database (see docs/operations.md).

Backpressure comes from the adapter: one worker per connection answers CALLs in order,
and the reader blocks on a bounded channel while the worker waits for the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from voltaro.background import LoopGuard
from voltaro.control.wire import Event
from voltaro.domain.charger_health import HourBucket
from voltaro.domain.firmware import TransferKind, TransferStatusReport
from voltaro.domain.model import (
    AuthorizationStatus,
    BootDecision,
    BootRequest,
    ChargerSecurityEvent,
    DataTransferRequest,
    DataTransferResult,
    DataTransferStatus,
    FrameRecord,
    IdTagInfo,
    MeterValuesRequest,
    RegistrationStatus,
    StartTransactionRequest,
    StartTransactionResult,
    StatusNotificationRequest,
    StopTransactionRequest,
    StopTransactionResult,
    Transaction,
)
from voltaro.domain.ports import CURRENT_CALL, IncomingCall, StorageUnavailable
from voltaro.domain.secrets import redact_frame
from voltaro.domain.timestamps import format_utc, utc_now
from voltaro.net.security_events import SecurityEvents
from voltaro.protocol.edge import repair_text
from voltaro.service.charger_health import HealthRecorder, TakenCounts
from voltaro.service.frame_log import FrameSink
from voltaro.service.reservations import reservation_view
from voltaro.settings import Settings
from voltaro.store import (
    charger_health,
    chargers,
    commands,
    firmware,
    quarantine,
    security,
    transactions,
)
from voltaro.store.db import Database
from voltaro.store.errors import PermanentStorageError, TransientStorageError

if TYPE_CHECKING:
    from voltaro.service.certificates import CertificateSigner

log = logging.getLogger(__name__)

# The event each kind of status report is published as (control/wire.py).
_TRANSFER_EVENTS = {
    TransferKind.FIRMWARE: Event.FIRMWARE_STATUS,
    TransferKind.DIAGNOSTICS: Event.DIAGNOSTICS_STATUS,
    TransferKind.LOG: Event.LOG_STATUS,
    TransferKind.SIGNED_FIRMWARE: Event.SIGNED_FIRMWARE_STATUS,
}

T = TypeVar("T")
Publish = Callable[[str, dict[str, Any]], None]


def decide_data_transfer(
    vendors: dict[str, tuple[str, ...]] | Any, request: DataTransferRequest
) -> DataTransferStatus:
    """Per the configured vendor table (OCPP 1.6 §4.3, OCTT TC_064)."""
    accepted = vendors.get(request.vendor_id)
    if accepted is None:
        return DataTransferStatus.UNKNOWN_VENDOR_ID
    if "*" in accepted or (request.message_id is not None and request.message_id in accepted):
        return DataTransferStatus.ACCEPTED
    return DataTransferStatus.UNKNOWN_MESSAGE_ID


# Chargers per unit of work of a last-seen flush (their times and their health counts).
# One flush of 1,000 chargers in one transaction held SQLite's one writer for ~64 ms
# every 5 s, and every charger message waiting to be stored waited behind it (latency
# spikes of 60-140 ms at 500 msg/s, issue 14). 100 chargers hold it a tenth of that
# (~6 ms), so a message that arrives during a flush waits a few ms, not tens; the cost
# is one commit (an fsync on SQLite) per 100 chargers every 5 s, 2 a second for 1,000
# chargers: nothing against the 500 messages' own. Larger slices make messages wait
# longer; much smaller ones only add commits.
PRESENCE_SLICE = 100
# Connected chargers whose seconds online one step of a flush counts on the trio thread
# (~1-2 ms; all 10,000 of a large site in one go held every charger ~75 ms).
ONLINE_SLICE = 250
# PostgreSQL runs units side by side (a slice holds only its own chargers' row locks,
# for a few ms), and each unit there costs several round trips of driver work: with 100
# per slice a flush of 10,000 chargers in a connect storm was 100 units every 5 s
# (issue 14, storms measured 31 -> 34-36 s, within the noise of one run but consistent
# in two). 1,000 per slice keeps that to 10.
PRESENCE_SLICE_POSTGRESQL = 1_000

# A publisher that builds the event only if someone takes it (EventHub.publish_lazy).
LazyPublish = Callable[[str, Callable[[], dict[str, Any]]], None]


class Liveness:
    """Every PDU counts as a sign of life (R49), cheaply: each charger's latest time is
    collected in memory and written in batches every few seconds by ``run``. Each flush
    is also published as one ``chargers.seen`` event, so consoles see heartbeats move
    "last seen" without an event per heartbeat (built only when someone takes it).

    A flush writes ``slice_size`` chargers per unit of work (SQLite: ``PRESENCE_SLICE``,
    PostgreSQL: ``PRESENCE_SLICE_POSTGRESQL``), in charger id order
    (the order PostgreSQL's writers lock charger rows in: chargers.touch,
    group_commit.lock_order), so that it never holds the database for long: charger
    messages queued meanwhile are stored between the slices (they take a free database
    slot first: voltaro.store.write_order).

    A slice that cannot be written (database down) stays in memory, with the slices not
    tried yet, and is written with the next flush: last-seen times are never dropped,
    only delayed.
    """

    def __init__(
        self,
        db: Database,
        *,
        interval: float = 5.0,
        publish: LazyPublish | None = None,
        health: HealthRecorder | None = None,
        slice_size: int | None = None,
    ) -> None:
        self._db = db
        self._interval = interval
        self.slice_size = slice_size or (
            PRESENCE_SLICE if db.backend == "sqlite" else PRESENCE_SLICE_POSTGRESQL
        )
        self._publish = publish
        self._seen: dict[str, datetime] = {}
        # The per-charger health counters ride on this batch (issue 19): no write of
        # their own, never one per message.
        self.health = health
        self.guard = LoopGuard("last-seen writer", log)

    def seen(self, charger_id: str, at: datetime) -> None:
        previous = self._seen.get(charger_id)
        if previous is None or at > previous:
            self._seen[charger_id] = at

    @property
    def pending(self) -> int:
        return len(self._seen)

    async def flush(self, *, final: bool = False) -> None:
        if self.health is not None:
            # Seconds online are due for every charger connected a minute ago: counted
            # ONLINE_SLICE at a time, giving way between (7.5 ms of the trio thread for
            # 1,000 chargers in one go, measured).
            now = utc_now()
            due = self.health.online_due(now, final=final)
            for start in range(0, len(due), ONLINE_SLICE):
                if start:
                    await trio.lowlevel.checkpoint()
                self.health.count_online(due[start : start + ONLINE_SLICE], now)
            # Then the rest, at once: what is taken below is written or kept.
            counts = self.health.take_unconverted(now, final=final)
        else:
            counts = []
        batch, self._seen = self._seen, {}
        prune_before = self.health.prune_before() if self.health is not None else None
        if not batch and not counts and prune_before is None:
            return
        if batch and self._publish is not None:
            self._publish(
                Event.CHARGERS_SEEN,
                lambda: {"chargers": {k: format_utc(v) for k, v in batch.items()}},
            )
        plan = _FlushPlan(batch, counts, self.slice_size)
        slices = plan.parts
        done = 0
        try:
            for part in slices:
                # The prune goes with the first slice only: once per flush.
                prune = prune_before if done == 0 else None
                await self._write_slice(*plan.slice(part), prune)
                done += 1
                if done < len(slices):
                    # Let the tasks woken meanwhile (charger messages) queue for the
                    # database before the next slice does.
                    await trio.lowlevel.checkpoint()
        except TransientStorageError:
            # Keep this slice and the ones not tried (the database just failed) for the
            # next flush; newer times seen meanwhile win. The outage itself is logged by
            # the database's health report.
            self._keep(plan, slices[done:])
        except Exception:
            # Not the database's (a bug): the batch is dropped (see run()), its health
            # counts with it; never left readable as "not written yet" for good.
            if self.health is not None:
                for part in slices[done:]:
                    self.health.settled(self.health.buckets(plan.slice(part)[1]))
            raise
        except BaseException:
            # Cancelled (shutdown): the slice it interrupted was not written (a unit of
            # work is cancelled only while it waits for the database); the final flush
            # writes them with the rest.
            self._keep(plan, slices[done:])
            raise

    async def _write_slice(
        self,
        seen: dict[str, datetime],
        taken: list[TakenCounts],
        prune: datetime | None,
    ) -> None:
        health = self.health
        if health is None:
            await self._write(seen, [], prune)
            return
        counts = health.buckets(taken)
        # Health reads never overlap a slice's write (HealthRecorder.settling): they
        # see its counts in memory before the commit, in the database after it.
        async with health.settling:
            await self._write(seen, counts, prune)
            health.settled(counts)

    async def _write(
        self,
        seen: dict[str, datetime],
        counts: list[tuple[str, HourBucket]],
        prune: datetime | None,
    ) -> None:
        try:
            await self._db.run(_write_presence, seen, counts, prune)
        except PermanentStorageError as exc:
            # Refused for good: dropped (settled), never retried.
            log.error(
                "last-seen update of %d chargers (%d health counts) refused: %s",
                len(seen),
                len(counts),
                exc.reason,
            )

    def _keep(self, plan: _FlushPlan, parts: list[list[str]]) -> None:
        for part in parts:
            seen, taken = plan.slice(part)
            for charger_id, at in seen.items():
                self.seen(charger_id, at)
            if self.health is not None:
                self.health.restore(self.health.buckets(taken))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await trio.sleep(self._interval)
                try:
                    await self.flush()
                    self.guard.succeeded()
                except Exception as exc:
                    # Issue 11.1: never the root nursery. The batch is not kept: the
                    # chargers' next messages bring newer times anyway.
                    await self.guard.after_failure(exc, "writing last-seen times")
        finally:
            with trio.move_on_after(5, shield=True):
                try:
                    await self.flush(final=True)
                except Exception as exc:
                    self.guard.failed(exc, "writing last-seen times at shutdown")


class _FlushPlan:
    """A flush's units of work: up to ``size`` chargers each, every charger's time and
    counts in the same one, in charger id order within and across them; one (empty)
    when there is only the prune to do. Each is built when it is written (10,000
    chargers' slices built at once held the trio thread ~13 ms, measured)."""

    def __init__(self, seen: dict[str, datetime], taken: list[TakenCounts], size: int) -> None:
        self._seen = seen
        self._taken_of: dict[str, list[TakenCounts]] = {}
        for item in taken:
            self._taken_of.setdefault(item[0], []).append(item)
        charger_ids = sorted(seen.keys() | self._taken_of.keys())
        self.parts = [charger_ids[i : i + size] for i in range(0, len(charger_ids), size)] or [[]]

    def slice(self, part: list[str]) -> tuple[dict[str, datetime], list[TakenCounts]]:
        seen, taken_of = self._seen, self._taken_of
        return (
            {cid: seen[cid] for cid in part if cid in seen},
            [item for cid in part for item in taken_of.get(cid, ())],
        )


def _write_presence(
    s: Any,
    seen: dict[str, datetime],
    counts: list[tuple[str, HourBucket]],
    prune_before: datetime | None,
) -> None:
    """One unit of work for a slice of the batch: last-seen times, health counts, and
    (with the first slice) old hours."""
    chargers.touch(s, seen)
    charger_health.add_counts(s, counts)
    if prune_before is not None:
        charger_health.prune(s, prune_before)


def ended_event(tx: Transaction) -> dict[str, Any]:
    """The transaction.ended event: a transaction ended other than by its stop."""
    return {
        "transaction_id": tx.transaction_id,
        "charger_id": tx.charger_id,
        "connector_id": tx.connector_id,
        "state": tx.state.value,
        "reason": tx.end_reason,
        "energy_wh": tx.energy_wh,
        "energy_flag": tx.energy_flag,
        "closed_by": tx.closed_by,
    }


class ChargerIngest:
    """The ChargerBackend of one connection: store, answer, publish."""

    def __init__(
        self,
        charger_id: str,
        *,
        db: Database,
        settings: Settings,
        publish: Publish,
        frame_sink: FrameSink | None = None,
        liveness: Liveness | None = None,
        security_events: SecurityEvents | None = None,
        certificates: CertificateSigner | None = None,
    ) -> None:
        self.charger_id = charger_id
        self._security = security_events
        self._certificates = certificates
        # Accepted CSRs waiting for their answer to go out: csr -> signing id.
        self._to_sign: dict[str, int] = {}
        self._db = db
        self._settings = settings
        self._publish = publish
        self._frames = frame_sink
        self._liveness = liveness
        self._kept: IncomingCall | None = None  # the repaired CALL whose frame is kept

    # --- helpers -------------------------------------------------------------------

    async def _durable(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a unit of work until it commits, within ``db_retry_seconds``.

        The budget counts the wait for a database worker as well as the retries: under
        overload the charger gets a CALLERROR it retries rather than a late answer it may
        have given up on. A write that has started is never abandoned (Database.run), so
        a result returned here is committed even when it came after the deadline.

        Raises:
            StorageUnavailable: not committed in time; the charger must retry.
            PermanentStorageError: the database refuses this work; never retry it.
        """
        await self._keep_repaired()
        deadline = trio.current_time() + self._settings.db_retry_seconds
        delay = 0.05
        last: TransientStorageError | None = None
        with self._db.health.waiting(self.charger_id):
            while True:
                with trio.move_on_at(deadline):
                    try:
                        # Group-committed with other chargers' messages; returns only
                        # once committed (voltaro.store.group_commit).
                        result = await self._db.write(fn, *args)
                        self._db.health.wrote()
                        return result
                    except TransientStorageError as exc:
                        last = exc
                    await trio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    self._db.health.retries += 1
                    continue
                self._db.health.given_up += 1
                cause = last.reason if last is not None else "database busy"
                raise StorageUnavailable(f"not stored in time ({cause})") from last

    async def _keep_repaired(self) -> None:
        """The message being answered had text no column can hold as sent (NUL, lone
        surrogates): it is stored with U+FFFD in their place, so its raw frame, which
        holds the original as JSON escapes, is kept first, durably, in the quarantine
        (kind ``repaired``). Lossless and reversible (docs/security.md)."""
        call = CURRENT_CALL.get()
        if call is None or not call.repaired or call is self._kept:
            return
        self._kept = call  # before the write: _durable comes back here
        try:
            payload = json.loads(call.frame)[3]
            tx = payload.get("transactionId") if isinstance(payload, dict) else None
        except (ValueError, IndexError, KeyError, TypeError):
            tx = None
        record = quarantine.QuarantineEntry(
            charger_id=self.charger_id,
            unique_id=repair_text(call.unique_id),
            action=repair_text(call.action),
            frame=redact_frame(call.frame),
            error="stored with U+FFFD in place of NUL or lone surrogates in "
            + ", ".join(call.repaired)
            + "; this frame holds the original text",
            transaction_id=tx if isinstance(tx, int) and not isinstance(tx, bool) else None,
            at=utc_now(),
            kind=quarantine.REPAIRED,
        )
        try:
            entry_id = await self._durable(quarantine.add, record)
        except PermanentStorageError as exc:
            # The raw frame is valid text by construction; should it still be refused,
            # the frame log has it and the message itself must not be lost for it.
            log.error("charger=%s original frame not kept: %s", self.charger_id, exc.reason)
            return
        log.info(
            "charger=%s message=%s %s stored with U+FFFD in %s; original kept as quarantine #%d",
            self.charger_id,
            record.unique_id,
            record.action,
            ", ".join(call.repaired),
            entry_id,
        )
        self._publish(
            Event.QUARANTINED,
            {
                "id": entry_id,
                "kind": quarantine.REPAIRED,
                "charger_id": self.charger_id,
                "unique_id": record.unique_id,
                "action": record.action,
                "error": record.error,
            },
        )

    async def _quarantine(
        self, error: PermanentStorageError, *, transaction_id: int | None = None
    ) -> None:
        """Keep the raw frame of a message the database refuses, durably, and say so."""
        call = CURRENT_CALL.get()
        record = quarantine.QuarantineEntry(
            charger_id=self.charger_id,
            unique_id=repair_text(call.unique_id) if call is not None else None,
            action=repair_text(call.action) if call is not None else None,
            frame=repair_text(redact_frame(call.frame)) if call is not None else "",
            error=error.reason,
            transaction_id=transaction_id,
            at=utc_now(),
        )
        entry_id = await self._durable(quarantine.add, record)
        log.error(
            "charger=%s message=%s %s refused by the database and quarantined as #%d "
            "(answered so the charger moves on; see `voltaro ctl quarantine list`): %s",
            self.charger_id,
            record.unique_id,
            record.action,
            entry_id,
            error.reason,
        )
        self._publish(
            Event.QUARANTINED,
            {
                "id": entry_id,
                "kind": quarantine.REFUSED,
                "charger_id": self.charger_id,
                "unique_id": record.unique_id,
                "action": record.action,
                "error": record.error,
            },
        )

    def _alive(self, at: datetime) -> None:
        if self._liveness is not None:
            self._liveness.seen(self.charger_id, at)

    def _clock(self, charger_time: datetime | None, received_at: datetime) -> None:
        """A timestamp the charger set: counted for its clock drift (issue 19)."""
        health = self._liveness.health if self._liveness is not None else None
        if health is not None and charger_time is not None:
            health.clock(self.charger_id, charger_time, received_at)

    # --- ChargerBackend --------------------------------------------------------------

    async def boot_notification(self, request: BootRequest) -> BootDecision:
        try:
            decision = await self._durable(
                chargers.boot_unit,
                request,
                self._settings.heartbeat_interval,
                self._settings.boot_retry_interval,
            )
        except PermanentStorageError as exc:
            # Pending: the charger boots again after the interval (OCPP 1.6 §4.2.1) and
            # the operator finds the identity it sent in quarantine.
            await self._quarantine(exc)
            return BootDecision(
                status=RegistrationStatus.PENDING,
                interval=self._settings.boot_retry_interval,
                current_time=request.received_at,
            )
        self._publish(
            Event.CHARGER_BOOT,
            {
                "charger_id": self.charger_id,
                "status": decision.status.value,
                "vendor": request.identity.vendor,
                "model": request.identity.model,
                "firmware_version": request.identity.firmware_version,
                # Booted before as this vendor, model and firmware (the local list
                # follower then trusts what the charger last reported, issue 14).
                "same_identity": decision.same_identity,
            },
        )
        return decision

    async def heartbeat(self, charger_id: str, received_at: datetime) -> None:
        self._alive(received_at)
        if self._liveness is not None and self._liveness.health is not None:
            self._liveness.health.heartbeat(self.charger_id, received_at)

    async def authorize(self, charger_id: str, id_tag: str, received_at: datetime) -> IdTagInfo:
        self._alive(received_at)
        try:
            return await self._durable(transactions.authorize, self.charger_id, id_tag, received_at)
        except PermanentStorageError as exc:
            # Authorize stores nothing: an id tag the database cannot even look up is
            # not a known tag (OCPP 1.6 §4.1).
            log.error("charger=%s Authorize lookup refused: %s", self.charger_id, exc.reason)
            return IdTagInfo(status=AuthorizationStatus.INVALID)

    async def start_transaction(self, request: StartTransactionRequest) -> StartTransactionResult:
        self._alive(request.received_at)
        self._clock(request.timestamp, request.received_at)
        try:
            result = await self._durable(self._start, request)
        except PermanentStorageError as exc:
            return await self._quarantined_start(request, exc)
        if not result.duplicate:
            self._publish(
                Event.TRANSACTION_STARTED,
                {
                    "transaction_id": result.transaction_id,
                    "charger_id": self.charger_id,
                    "connector_id": request.connector_id,
                    "id_tag": request.id_tag,
                    "id_tag_status": result.id_tag_info.status.value,
                    "meter_start": request.meter_start,
                    "start_time": format_utc(request.timestamp),
                },
            )
            if result.transaction is not None and result.transaction.end_reason:
                self._publish(Event.TRANSACTION_ENDED, ended_event(result.transaction))
            if result.reservation is not None:
                # Ended by this start (§4.8): consoles and `ctl events` see it at once.
                self._publish(Event.RESERVATION_UPDATED, reservation_view(result.reservation))
        for tx in result.interrupted:
            self._interrupted(tx)
        return result

    def _interrupted(self, tx: Transaction) -> None:
        """Announce a transaction that ended without its StopTransaction: one log line
        and the ``transaction.ended`` event (consoles, ``ctl events``, reconciliation)."""
        log.warning(
            "charger=%s transaction=%d connector=%d interrupted: %s "
            "(best-known energy %s Wh; listed for reconciliation)",
            self.charger_id,
            tx.transaction_id,
            tx.connector_id,
            tx.end_reason,
            tx.energy_wh,
        )
        self._publish(Event.TRANSACTION_ENDED, ended_event(tx))

    async def _quarantined_start(
        self, request: StartTransactionRequest, error: PermanentStorageError
    ) -> StartTransactionResult:
        """A StartTransaction the database refuses: the charger needs a transaction id
        to go on, so one is reserved with the quarantined frame; the StopTransaction
        that follows is kept as an orphan stop with that id (docs/operations.md)."""
        tx_id = await self._durable(quarantine.reserve_transaction_id)
        await self._quarantine(error, transaction_id=tx_id)
        try:
            info = await self._durable(
                transactions.authorize, self.charger_id, request.id_tag, request.received_at
            )
        except PermanentStorageError:
            info = IdTagInfo(status=AuthorizationStatus.INVALID)
        return StartTransactionResult(transaction_id=tx_id, id_tag_info=info)

    def _start(self, session: Any, request: StartTransactionRequest) -> StartTransactionResult:
        return transactions.start_transaction(
            session, request, allow_concurrent=self._settings.allow_concurrent_tx
        )

    async def stop_transaction(self, request: StopTransactionRequest) -> StopTransactionResult:
        self._alive(request.received_at)
        self._clock(request.timestamp, request.received_at)
        try:
            result = await self._durable(transactions.stop_transaction, request)
        except PermanentStorageError as exc:
            # Billing data: kept whole in quarantine, then acknowledged so the charger's
            # queue moves on (OCPP 1.6 §4.10 would otherwise have it retry forever).
            await self._quarantine(exc, transaction_id=request.transaction_id)
            return StopTransactionResult(outcome="quarantined", transaction=None, id_tag_info=None)
        if result.outcome in ("orphan", "foreign", "conflict"):
            what = {"foreign": "another charger's", "orphan": "unknown"}.get(
                result.outcome, "an already closed (different meterStop)"
            )
            log.warning(
                "charger=%s StopTransaction for %s transaction %d recorded for reconciliation",
                self.charger_id,
                what,
                request.transaction_id,
            )
            # Consoles show it at once (F3, attention count) instead of at the next
            # `transactions.stops` read; fields as that op returns them.
            self._publish(
                Event.TRANSACTION_ORPHAN_STOP,
                {
                    "charger_id": self.charger_id,
                    "transaction_id": request.transaction_id,
                    "kind": "unknown" if result.outcome == "orphan" else result.outcome,
                    "meter_stop": request.meter_stop,
                    "stop_time": format_utc(request.timestamp),
                    "reason": request.reason.value,
                    "id_tag": request.id_tag,
                },
            )
        tx = result.transaction
        if result.outcome == "stopped" and tx is not None:
            self._publish(
                Event.TRANSACTION_STOPPED,
                {
                    "transaction_id": tx.transaction_id,
                    "charger_id": self.charger_id,
                    "connector_id": tx.connector_id,
                    "meter_stop": tx.meter_stop,
                    "energy_wh": tx.energy_wh,
                    "reason": tx.stop_reason.value if tx.stop_reason else None,
                    "stop_time": format_utc(tx.stop_time) if tx.stop_time else None,
                },
            )
        return result

    async def meter_values(self, request: MeterValuesRequest) -> None:
        self._alive(request.received_at)
        # The newest reading: the one that made the charger send (older ones may have
        # waited in its queue). Also the time of the event published below.
        latest = max(mv.timestamp for mv in request.meter_values)
        self._clock(latest, request.received_at)
        try:
            summary = await self._durable(transactions.record_meter_values, request)
        except PermanentStorageError as exc:
            await self._quarantine(exc, transaction_id=request.transaction_id)
            return
        self._publish(
            Event.METER_VALUES,
            {
                "charger_id": self.charger_id,
                "connector_id": request.connector_id,
                "transaction_id": request.transaction_id,
                "energy_wh": summary.energy_wh,
                "power_w": summary.power_w,
                "current_a": summary.current_a,
                "current_phase_a": summary.current_phase_a,
                "current_phases_a": None
                if summary.current_phases_a is None
                else dict(summary.current_phases_a),
                "voltage_v": summary.voltage_v,
                "soc": summary.soc,
                "at": format_utc(latest),
            },
        )

    async def status_notification(self, request: StatusNotificationRequest) -> None:
        self._alive(request.received_at)
        self._clock(request.timestamp, request.received_at)
        at = request.timestamp or request.received_at
        try:
            # Answered only once stored: a CALLRESULT for a dropped status would leave
            # the connector's state wrong for good (issue 21 item 1).
            recorded = await self._durable(chargers.record_status, request)
        except PermanentStorageError as exc:
            await self._quarantine(exc)
            return
        self._publish(
            Event.CONNECTOR_STATUS,
            {
                "charger_id": self.charger_id,
                "connector_id": request.connector_id,
                "status": request.status.value,
                "error_code": request.error_code,
                "info": request.info,
                "vendor_error_code": request.vendor_error_code,
                "at": format_utc(at),
            },
        )
        for tx in recorded.interrupted:
            self._interrupted(tx)

    async def data_transfer(self, request: DataTransferRequest) -> DataTransferResult:
        self._alive(request.received_at)
        status = decide_data_transfer(self._settings.data_transfer_vendors, request)
        try:
            await self._durable(commands.record_data_transfer, request, status)
        except PermanentStorageError as exc:
            await self._quarantine(exc)
            return DataTransferResult(status=DataTransferStatus.REJECTED)
        log.info(
            "charger=%s DataTransfer vendor=%s message=%s -> %s",
            self.charger_id,
            request.vendor_id,
            request.message_id,
            status.value,
        )
        return DataTransferResult(status=status)

    async def security_event(self, event: ChargerSecurityEvent) -> None:
        self._alive(event.received_at)
        try:
            await self._durable(security.record_security_event, event)
        except PermanentStorageError as exc:
            await self._quarantine(exc)
            return
        if self._security is not None:
            # Counted, logged as one line and shown in the consoles' alerts.
            self._security.record(
                "charger_reported",
                charger_id=self.charger_id,
                detail=event.type + (f": {event.tech_info}" if event.tech_info else ""),
            )

    async def sign_certificate(self, csr: str, received_at: datetime) -> bool:
        self._alive(received_at)
        if self._certificates is None:
            return False
        # A database outage propagates (TransientStorageError is a StorageUnavailable):
        # the charger gets a CALLERROR and sends the CSR again.
        signing_id = await self._certificates.review(self.charger_id, csr, received_at)
        if signing_id is None:
            return False
        self._to_sign[csr] = signing_id
        return True

    async def certificate_request_answered(self, csr: str) -> None:
        signing_id = self._to_sign.pop(csr, None)
        if signing_id is not None and self._certificates is not None:
            await self._certificates.schedule(self.charger_id, signing_id, csr)

    async def transfer_status(self, report: TransferStatusReport) -> None:
        self._alive(report.received_at)
        try:
            changes = await self._durable(firmware.record_transfer_status, report)
        except PermanentStorageError as exc:
            await self._quarantine(exc)
            return
        log.info("charger=%s %s status %s", self.charger_id, report.kind.value, report.status)
        data: dict[str, Any] = {
            "charger_id": self.charger_id,
            "status": report.status,
            "at": format_utc(report.received_at),
        }
        if report.kind in (TransferKind.LOG, TransferKind.SIGNED_FIRMWARE):
            data["request_id"] = report.request_id
        self._publish(_TRANSFER_EVENTS[report.kind], data)
        for change in changes:
            self._publish(
                Event.CAMPAIGN_PROGRESS,
                {
                    "campaign_id": change.campaign_id,
                    "charger_id": change.charger_id,
                    "state": change.state.value,
                },
            )

    def record_frame(self, frame: FrameRecord) -> None:
        if self._frames is not None:
            self._frames.record(frame)
