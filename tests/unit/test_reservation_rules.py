"""Reservation rules (domain/reservations.py, OCPP 1.6 §5.13, §5.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from voltaro.domain.reservations import (
    Reservation,
    ReservationError,
    ReservationState,
    check_cancel,
    check_new,
    connector_zero_supported,
    effective_state,
    may_use,
    state_after_answer,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def reservation(**changes: object) -> Reservation:
    values: dict[str, object] = {
        "reservation_id": 1,
        "charger_id": "CP",
        "connector_id": 1,
        "id_tag": "TAG",
        "parent_id_tag": "FLEET",
        "expiry_date": NOW + timedelta(hours=1),
        "state": ReservationState.ACCEPTED,
    }
    values.update(changes)
    return Reservation(**values)  # type: ignore[arg-type]


def test_accepted_reservation_expires_at_its_expiry_date() -> None:
    r = reservation()
    assert effective_state(r, NOW) is ReservationState.ACCEPTED
    assert effective_state(r, NOW + timedelta(hours=1)) is ReservationState.EXPIRED
    used = reservation(state=ReservationState.USED)
    assert effective_state(used, NOW + timedelta(days=1)) is ReservationState.USED


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        ("Accepted", ReservationState.ACCEPTED),
        ("Faulted", ReservationState.REFUSED),
        ("Occupied", ReservationState.REFUSED),
        ("Rejected", ReservationState.REFUSED),
        ("Unavailable", ReservationState.REFUSED),
    ],
)
def test_each_answer_gives_its_state(answer: str, state: ReservationState) -> None:
    assert state_after_answer(answer) is state


def test_new_reservation_checks() -> None:
    check_new(
        connector_id=1,
        expiry_date=NOW + timedelta(minutes=1),
        now=NOW,
        connector_zero_supported=None,
    )
    with pytest.raises(ReservationError, match="future"):
        check_new(connector_id=1, expiry_date=NOW, now=NOW, connector_zero_supported=None)
    with pytest.raises(ReservationError, match="connector 0"):
        check_new(
            connector_id=0,
            expiry_date=NOW + timedelta(minutes=1),
            now=NOW,
            connector_zero_supported=False,
        )
    with pytest.raises(ReservationError, match="connector id"):
        check_new(
            connector_id=-1,
            expiry_date=NOW + timedelta(minutes=1),
            now=NOW,
            connector_zero_supported=True,
        )


def test_connector_zero_support_is_read_from_presence() -> None:
    assert connector_zero_supported(None, known=False) is None  # never read: ask the charger
    assert connector_zero_supported(None, known=True) is False  # absent key: unsupported
    assert connector_zero_supported("TRUE", known=True) is True
    assert connector_zero_supported("false", known=True) is False


def test_only_open_reservations_can_be_cancelled() -> None:
    check_cancel(reservation(), NOW)
    check_cancel(reservation(state=ReservationState.FAILED), NOW)  # the charger may hold it
    for state in (ReservationState.CANCELLED, ReservationState.USED, ReservationState.REFUSED):
        with pytest.raises(ReservationError, match=state.value):
            check_cancel(reservation(state=state), NOW)
    with pytest.raises(ReservationError, match="expired"):
        check_cancel(reservation(), NOW + timedelta(hours=2))


def test_reserved_tag_or_its_parent_may_use_it() -> None:
    r = reservation()
    assert may_use(r, "tag", None)
    assert may_use(r, "OTHER", "fleet")
    assert not may_use(r, "OTHER", "ELSEWHERE")
    assert not may_use(r, "OTHER", None)
    assert not may_use(reservation(parent_id_tag=None), "OTHER", "FLEET")
