"""What the server does with each charger message: the ChargerBackend of one connection.

Transaction messages (StartTransaction, StopTransaction, MeterValues) are answered only
after they are committed. When the database fails we retry for ``db_retry_seconds`` and
then raise StorageUnavailable: the charger gets a CALLERROR and keeps the message queued
(OCPP 1.6 §3.7.1). Retries are safe because every write is idempotent.
Heartbeats never touch the database on the hot path (last-seen is batched by
``Liveness``); StatusNotification is retried briefly and then answered anyway, since it
is state, not billing data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import trio
from sqlalchemy.exc import SQLAlchemyError

from voltaro.control.wire import Event
from voltaro.domain.model import (
    BootDecision,
    BootRequest,
    DataTransferRequest,
    DataTransferResult,
    DataTransferStatus,
    FrameRecord,
    IdTagInfo,
    MeterValuesRequest,
    StartTransactionRequest,
    StartTransactionResult,
    StatusNotificationRequest,
    StopTransactionRequest,
    StopTransactionResult,
    Transaction,
)
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.timestamps import format_utc
from voltaro.service.frame_log import FrameSink
from voltaro.settings import Settings
from voltaro.store import chargers, commands, transactions
from voltaro.store.db import Database

log = logging.getLogger(__name__)

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


class Liveness:
    """Every PDU counts as a sign of life (R49), cheaply: ids are collected in memory and
    flushed in one UPDATE every few seconds by ``run``. Each flush is also published as
    one ``chargers.seen`` event, so consoles see heartbeats move "last seen" without an
    event per heartbeat."""

    def __init__(
        self, db: Database, *, interval: float = 5.0, publish: Publish | None = None
    ) -> None:
        self._db = db
        self._interval = interval
        self._publish = publish
        self._seen: dict[str, datetime] = {}

    def seen(self, charger_id: str, at: datetime) -> None:
        self._seen[charger_id] = at

    async def flush(self) -> None:
        batch, self._seen = self._seen, {}
        if not batch:
            return
        latest = max(batch.values())
        if self._publish is not None:
            self._publish(
                Event.CHARGERS_SEEN, {"chargers": {k: format_utc(v) for k, v in batch.items()}}
            )
        try:
            await self._db.run(chargers.touch, list(batch), latest)
        except SQLAlchemyError as exc:
            log.warning("last-seen update skipped (%d chargers): %s", len(batch), exc)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await trio.sleep(self._interval)
                await self.flush()
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()


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
    ) -> None:
        self.charger_id = charger_id
        self._db = db
        self._settings = settings
        self._publish = publish
        self._frames = frame_sink
        self._liveness = liveness

    # --- helpers -------------------------------------------------------------------

    async def _durable(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a write until it commits or ``db_retry_seconds`` have passed."""
        delay = 0.05
        deadline = trio.current_time() + self._settings.db_retry_seconds
        while True:
            try:
                return await self._db.run(fn, *args)
            except SQLAlchemyError as exc:
                if trio.current_time() + delay > deadline:
                    raise StorageUnavailable(
                        f"database unavailable: {exc.__class__.__name__}"
                    ) from exc
                log.warning("charger=%s database error, retrying: %s", self.charger_id, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _alive(self, at: datetime) -> None:
        if self._liveness is not None:
            self._liveness.seen(self.charger_id, at)

    # --- ChargerBackend --------------------------------------------------------------

    async def boot_notification(self, request: BootRequest) -> BootDecision:
        decision = await self._durable(self._boot, request)
        self._publish(
            Event.CHARGER_BOOT,
            {
                "charger_id": self.charger_id,
                "status": decision.status.value,
                "vendor": request.identity.vendor,
                "model": request.identity.model,
                "firmware_version": request.identity.firmware_version,
            },
        )
        return decision

    def _boot(self, session: Any, request: BootRequest) -> BootDecision:
        return chargers.boot(
            session,
            request,
            heartbeat_interval=self._settings.heartbeat_interval,
            retry_interval=self._settings.boot_retry_interval,
        )

    async def heartbeat(self, charger_id: str, received_at: datetime) -> None:
        self._alive(received_at)

    async def authorize(self, charger_id: str, id_tag: str, received_at: datetime) -> IdTagInfo:
        self._alive(received_at)
        return await self._durable(transactions.authorize, self.charger_id, id_tag, received_at)

    async def start_transaction(self, request: StartTransactionRequest) -> StartTransactionResult:
        self._alive(request.received_at)
        result = await self._durable(self._start, request)
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
        for tx in result.interrupted:
            log.warning(
                "charger=%s transaction %d interrupted (%s); listed for reconciliation",
                self.charger_id,
                tx.transaction_id,
                tx.end_reason,
            )
            self._publish(Event.TRANSACTION_ENDED, ended_event(tx))
        return result

    def _start(self, session: Any, request: StartTransactionRequest) -> StartTransactionResult:
        return transactions.start_transaction(
            session, request, allow_concurrent=self._settings.allow_concurrent_tx
        )

    async def stop_transaction(self, request: StopTransactionRequest) -> StopTransactionResult:
        self._alive(request.received_at)
        result = await self._durable(transactions.stop_transaction, request)
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
        summary = await self._durable(transactions.record_meter_values, request)
        latest = max(mv.timestamp for mv in request.meter_values)
        self._publish(
            Event.METER_VALUES,
            {
                "charger_id": self.charger_id,
                "connector_id": request.connector_id,
                "transaction_id": request.transaction_id,
                "energy_wh": summary.energy_wh,
                "power_w": summary.power_w,
                "current_a": summary.current_a,
                "voltage_v": summary.voltage_v,
                "soc": summary.soc,
                "at": format_utc(latest),
            },
        )

    async def status_notification(self, request: StatusNotificationRequest) -> None:
        self._alive(request.received_at)
        at = request.timestamp or request.received_at
        try:
            with trio.fail_after(min(self._settings.db_retry_seconds, 2.0) + 0.5):
                await self._durable(chargers.record_status, request)
        except (StorageUnavailable, trio.TooSlowError):
            # State, not billing data: answer anyway (R75) and say so in the log.
            log.error(
                "charger=%s StatusNotification not stored (database unavailable): connector %d %s",
                self.charger_id,
                request.connector_id,
                request.status.value,
            )
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

    async def data_transfer(self, request: DataTransferRequest) -> DataTransferResult:
        self._alive(request.received_at)
        status = decide_data_transfer(self._settings.data_transfer_vendors, request)
        await self._durable(commands.record_data_transfer, request, status)
        log.info(
            "charger=%s DataTransfer vendor=%s message=%s -> %s",
            self.charger_id,
            request.vendor_id,
            request.message_id,
            status.value,
        )
        return DataTransferResult(status=status)

    def record_frame(self, frame: FrameRecord) -> None:
        if self._frames is not None:
            self._frames.record(frame)
