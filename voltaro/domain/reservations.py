"""Reservations (OCPP 1.6 §3.11, §5.13 ReserveNow, §5.1 CancelReservation, §4.8
StartTransaction's reservationId). Pure rules: the state a reservation is in, what may be
reserved or cancelled, and who may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from voltaro.domain.authorization import tag_key

KEY_CONNECTOR_ZERO = "ReserveConnectorZeroSupported"


class ReservationState(StrEnum):
    REQUESTED = "requested"  # stored, ReserveNow sent, no answer yet
    ACCEPTED = "accepted"  # the charger holds it until expiry_date
    REFUSED = "refused"  # the charger answered Faulted, Occupied, Rejected or Unavailable
    FAILED = "failed"  # no answer (timeout, disconnected, CALLERROR): the charger may hold it
    CANCELLED = "cancelled"  # CancelReservation accepted
    USED = "used"  # a StartTransaction carried its id (§4.8)
    EXPIRED = "expired"  # its expiry date passed unused


class ReservationStatus(StrEnum):
    """ReservationStatus, ReserveNow's answer (OCPP 1.6 §7.32)."""

    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


class CancelReservationStatus(StrEnum):
    """CancelReservationStatus (OCPP 1.6 §7.8)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    reservation_id: int
    charger_id: str
    connector_id: int  # 0: any connector of the charger (§5.13)
    id_tag: str
    parent_id_tag: str | None
    expiry_date: datetime
    state: ReservationState
    answer: str | None = None  # the charger's last answer (ReserveNow or CancelReservation)
    transaction_id: int | None = None
    created_at: datetime | None = None
    ended_at: datetime | None = None
    actor: str | None = None
    error: str | None = None


class ReservationError(ValueError):
    """A reservation request refused before anything is sent."""


# States in which the charger may still hold the reservation.
OPEN_STATES = frozenset({ReservationState.REQUESTED, ReservationState.ACCEPTED})


def effective_state(reservation: Reservation, now: datetime) -> ReservationState:
    """An accepted reservation ends by itself at its expiry date (§3.11, §5.13): the
    charger frees the connector then; no message tells us, so time does."""
    if reservation.state in OPEN_STATES and reservation.expiry_date <= now:
        return ReservationState.EXPIRED
    return reservation.state


def state_after_answer(status: str) -> ReservationState:
    return (
        ReservationState.ACCEPTED
        if status == ReservationStatus.ACCEPTED.value
        else ReservationState.REFUSED
    )


def check_new(
    *,
    connector_id: int,
    expiry_date: datetime,
    now: datetime,
    connector_zero_supported: bool | None,
) -> None:
    """Refuse what the charger could only refuse, or what makes no sense.

    - the expiry date must lie in the future;
    - connector 0 reserves "any connector" and needs ReserveConnectorZeroSupported
      (§5.13, optional key: absent means not supported, R94). Unknown (configuration
      never read) is sent and left to the charger.

    Raises:
        ReservationError: with a one-line reason.
    """
    if isinstance(connector_id, bool) or not isinstance(connector_id, int) or connector_id < 0:
        raise ReservationError("connector id must be 0 (any connector) or a connector number")
    if expiry_date <= now:
        raise ReservationError("the expiry date must lie in the future")
    if connector_id == 0 and connector_zero_supported is False:
        raise ReservationError(
            f"the charger does not support reserving connector 0 ({KEY_CONNECTOR_ZERO})"
        )


def check_cancel(reservation: Reservation, now: datetime) -> None:
    """Only a reservation the charger may still hold can be cancelled.

    Raises:
        ReservationError: with a one-line reason.
    """
    state = effective_state(reservation, now)
    if state not in OPEN_STATES and state is not ReservationState.FAILED:
        raise ReservationError(f"reservation {reservation.reservation_id} is {state.value}")


def connector_zero_supported(value: str | None, *, known: bool) -> bool | None:
    """From the charger's configuration: None when it was never read; a key the charger
    does not report means not supported (R94)."""
    if not known:
        return None
    if value is None:
        return False
    return value.strip().lower() == "true"


def may_use(reservation: Reservation, id_tag: str, parent_of_tag: str | None) -> bool:
    """Whether ``id_tag`` may start on the reservation: the reserved tag, or a tag with the
    reservation's parent id tag (§5.13: "the Charge Point SHALL ... also accept an idTag
    with the same parentIdTag")."""
    if tag_key(id_tag) == tag_key(reservation.id_tag):
        return True
    return (
        reservation.parent_id_tag is not None
        and parent_of_tag is not None
        and tag_key(parent_of_tag) == tag_key(reservation.parent_id_tag)
    )
