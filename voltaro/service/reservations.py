"""Reservations (OCPP 1.6 §3.11, §5.13 ReserveNow, §5.1 CancelReservation).

A reservation is stored before ReserveNow is sent (its id is the reservationId the
charger gets), and takes the charger's answer: Accepted, or refused with the status the
charger gave (Faulted, Occupied, Rejected, Unavailable). A reservation never sent
(charger offline, busy, database down) is removed again; one whose answer never came
(timeout, hang-up) is kept as failed: the charger may hold it, so it can be cancelled.
StartTransaction with its id ends it (store/transactions.py); ``run`` marks expired ones.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import trio
from sqlalchemy.exc import SQLAlchemyError

from voltaro.background import LoopGuard
from voltaro.control.wire import Event
from voltaro.domain.commands import (
    CancelReservation,
    CommandError,
    CommandErrorCode,
    ReserveNow,
)
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.reservations import (
    KEY_CONNECTOR_ZERO,
    Reservation,
    ReservationError,
    ReservationState,
    check_cancel,
    check_new,
    connector_zero_supported,
    effective_state,
    state_after_answer,
)
from voltaro.domain.timestamps import format_utc, parse_timestamp, utc_now
from voltaro.service.commands import CommandService
from voltaro.service.hub import EventHub
from voltaro.store import chargers, reservations, tags
from voltaro.store.db import Database

log = logging.getLogger(__name__)

EXPIRY_SWEEP_INTERVAL = 5.0  # seconds
MAX_MINUTES = 60 * 24 * 366  # a reservation longer than a year is a typo
MAX_RESERVATION_ID = 2**31 - 1  # OCPP integers are 32-bit
# Errors for which ReserveNow was never sent: the stored reservation is removed again.
_NOT_SENT = {
    CommandErrorCode.BAD_ARGUMENTS,
    CommandErrorCode.UNKNOWN_CHARGER,
    CommandErrorCode.OFFLINE,
    CommandErrorCode.NOT_ALLOWED,
    CommandErrorCode.FORBIDDEN,
    CommandErrorCode.BUSY,
    CommandErrorCode.UNAVAILABLE,
}


def reservation_view(r: Reservation, now: datetime | None = None) -> dict[str, Any]:
    return {
        "reservation_id": r.reservation_id,
        "charger_id": r.charger_id,
        "connector_id": r.connector_id,
        "id_tag": r.id_tag,
        "parent_id_tag": r.parent_id_tag,
        "expiry_date": format_utc(r.expiry_date),
        "state": effective_state(r, now or utc_now()).value,
        "answer": r.answer,
        "error": r.error,
        "transaction_id": r.transaction_id,
        "actor": r.actor,
        "created_at": format_utc(r.created_at) if r.created_at else None,
        "ended_at": format_utc(r.ended_at) if r.ended_at else None,
    }


def _bad(message: str) -> CommandError:
    return CommandError(CommandErrorCode.BAD_ARGUMENTS, message)


class ReservationService:
    def __init__(self, db: Database, commands: CommandService, hub: EventHub | None) -> None:
        self._db = db
        self._commands = commands
        self._hub = hub
        self.guard = LoopGuard("reservation expiry sweep", log)

    def _publish(self, r: Reservation) -> None:
        if self._hub is not None:
            self._hub.publish(Event.RESERVATION_UPDATED, reservation_view(r))

    async def add(
        self,
        charger_id: str,
        *,
        id_tag: str,
        expiry: datetime,
        connector_id: int = 0,
        actor: str,
    ) -> Reservation:
        """Reserve a connector (0: any) for a tag until ``expiry``. Returns the stored
        reservation with the charger's answer; raises CommandError when nothing was sent
        or no answer came (then the reservation is kept as failed)."""
        now = utc_now()
        try:
            charger = await self._db.run(chargers.get_charger, charger_id)
            if charger is None:
                raise CommandError(
                    CommandErrorCode.UNKNOWN_CHARGER, f"unknown charger {charger_id}"
                )
            known, value = await self._db.run(
                reservations.configuration_value, charger_id, KEY_CONNECTOR_ZERO
            )
            try:
                check_new(
                    connector_id=connector_id,
                    expiry_date=expiry,
                    now=now,
                    connector_zero_supported=connector_zero_supported(value, known=known),
                )
            except ReservationError as exc:
                raise _bad(str(exc)) from None
            tag = await self._db.run(tags.get_tag, id_tag)
            # The tag's parent goes with the reservation, so that any tag of the same
            # group may use it (§5.13 parentIdTag).
            parent = tag.parent_id_tag if tag is not None else None
            stored = await self._db.run(
                reservations.create,
                charger_id=charger_id,
                connector_id=connector_id,
                id_tag=tag.id_tag if tag is not None else id_tag,
                parent_id_tag=parent,
                expiry_date=expiry,
                actor=actor,
            )
        except (SQLAlchemyError, StorageUnavailable) as exc:
            raise CommandError(
                CommandErrorCode.UNAVAILABLE,
                f"ReserveNow not sent: the database is unavailable ({type(exc).__name__}); "
                "retry later",
            ) from None
        command = ReserveNow(
            connector_id=connector_id,
            expiry_date=expiry,
            id_tag=stored.id_tag,
            reservation_id=stored.reservation_id,
            parent_id_tag=parent,
        )
        try:
            outcome = await self._commands.execute(charger_id, command, actor=actor)
        except CommandError as exc:
            if exc.code in _NOT_SENT:
                await self._db.run(reservations.discard, stored.reservation_id)
            else:
                failed = await self._db.run(
                    reservations.set_state,
                    stored.reservation_id,
                    ReservationState.FAILED,
                    error=f"{exc.code}: {exc.message}",
                )
                if failed is not None:
                    self._publish(failed)
            raise
        state = state_after_answer(outcome.status)
        updated = await self._db.run(
            reservations.set_state, stored.reservation_id, state, answer=outcome.status
        )
        assert updated is not None
        self._publish(updated)
        return updated

    async def cancel(self, reservation_id: int, *, actor: str) -> Reservation:
        """CancelReservation; Accepted ends the reservation, Rejected is recorded (the
        charger knows no such reservation, §5.1)."""
        stored = (
            await self._db.run(reservations.get, reservation_id)
            if 0 <= reservation_id <= MAX_RESERVATION_ID
            else None
        )
        if stored is None:
            raise CommandError(
                CommandErrorCode.BAD_ARGUMENTS, f"unknown reservation {reservation_id}"
            )
        try:
            check_cancel(stored, utc_now())
        except ReservationError as exc:
            raise CommandError(CommandErrorCode.NOT_ALLOWED, f"not sent: {exc}") from None
        outcome = await self._commands.execute(
            stored.charger_id, CancelReservation(reservation_id=reservation_id), actor=actor
        )
        if outcome.status == "Accepted":
            updated = await self._db.run(
                reservations.set_state,
                reservation_id,
                ReservationState.CANCELLED,
                answer=outcome.status,
            )
        else:
            updated = await self._db.run(
                reservations.set_state,
                reservation_id,
                stored.state,
                answer=outcome.status,
                error=f"the charger answered {outcome.status} to CancelReservation",
            )
        assert updated is not None
        self._publish(updated)
        return updated

    async def list(
        self, *, charger_id: str | None = None, open_only: bool = False, limit: int = 100
    ) -> list[Reservation]:
        rows: list[Reservation] = await self._db.run(
            reservations.list_reservations,
            charger_id=charger_id,
            open_only=open_only,
            limit=limit,
        )
        return rows

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Mark reservations expired at their expiry date (§5.13) and tell consoles."""
        task_status.started()
        while True:
            try:
                for expired in await self._db.run(reservations.expire_due, utc_now()):
                    log.info(
                        "reservation %d on %s expired", expired.reservation_id, expired.charger_id
                    )
                    self._publish(expired)
            except (SQLAlchemyError, StorageUnavailable) as exc:
                log.debug("reservation expiry sweep skipped: %s", exc)
            except Exception as exc:
                # A background loop never takes the server down (issue 11).
                await self.guard.after_failure(exc, "expiring reservations")
            else:
                self.guard.succeeded()
            await trio.sleep(EXPIRY_SWEEP_INTERVAL)


def expiry_from(*, expiry: str | None, minutes: Any, now: datetime) -> datetime:
    """The expiry date from an ISO 8601 time or a number of minutes from now."""
    if expiry:
        try:
            return parse_timestamp(expiry)
        except ValueError:
            raise _bad(f"expiry {expiry!r} is not an ISO 8601 time") from None
    if minutes is None:
        raise _bad("give the expiry (ISO 8601) or minutes from now")
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
        raise _bad("minutes must be a positive number")
    if minutes > MAX_MINUTES:
        raise _bad(f"minutes must be at most {MAX_MINUTES} (a year)")
    return now + timedelta(minutes=minutes)
