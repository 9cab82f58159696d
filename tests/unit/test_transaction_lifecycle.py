"""The transaction state machine, synchronously (no database, no IO)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from voltaro.domain import transaction_lifecycle as lc
from voltaro.domain.metering import METER_DECREASED, NEGATIVE_ENERGY, summarize
from voltaro.domain.model import (
    AuthorizationStatus,
    ConnectorStatus,
    IdTag,
    MeterValue,
    MeterValuesRequest,
    SampledValue,
    StartTransactionRequest,
    StartTransactionResult,
    StatusNotificationRequest,
    StopTransactionRequest,
    StopTransactionResult,
    Transaction,
    TransactionState,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TAGS = {
    "TAG1": IdTag(id_tag="TAG1"),
    "BLOCKED": IdTag(id_tag="BLOCKED", status=AuthorizationStatus.BLOCKED),
}


@dataclass
class Machine:
    """Drives ``decide`` like the store does: keeps the ledger, hands out ids."""

    ledger: lc.Ledger = field(default_factory=lc.Ledger)
    next_id: int = 100
    kept: list[lc.KeepStop] = field(default_factory=list)
    now: datetime = T0

    def apply(self, event: lc.Event) -> lc.Reply:
        self.ledger, effects = lc.decide(self.ledger, event)
        self.kept += [e for e in effects if isinstance(e, lc.KeepStop)]
        return lc.answer(effects)

    def start(
        self,
        charger: str = "A",
        connector: int = 1,
        tag: str = "TAG1",
        meter: int = 0,
        at: datetime = T0,
        received: datetime | None = None,
    ) -> StartTransactionResult:
        self.next_id += 1
        req = StartTransactionRequest(
            charger_id=charger,
            connector_id=connector,
            id_tag=tag,
            meter_start=meter,
            timestamp=at,
            received_at=received or self.now,
        )
        reply = self.apply(lc.StartTransaction(request=req, tag=TAGS.get(tag), new_id=self.next_id))
        assert isinstance(reply, StartTransactionResult)
        return reply

    def stop(
        self, tx: int, meter: int, charger: str = "A", at: datetime | None = None
    ) -> StopTransactionResult:
        req = StopTransactionRequest(
            charger_id=charger,
            transaction_id=tx,
            meter_stop=meter,
            timestamp=at or self.now,
            received_at=self.now,
        )
        reply = self.apply(lc.StopTransaction(request=req))
        assert isinstance(reply, StopTransactionResult)
        return reply

    def meter(self, tx: int, wh: float, at: datetime, charger: str = "A") -> None:
        req = MeterValuesRequest(
            charger_id=charger,
            connector_id=1,
            transaction_id=tx,
            meter_values=(MeterValue(timestamp=at, sampled_values=(SampledValue(value=str(wh)),)),),
            received_at=self.now,
        )
        self.apply(lc.MeterValues(request=req))

    def status(self, status: ConnectorStatus, charger: str = "A", connector: int = 1) -> None:
        req = StatusNotificationRequest(
            charger_id=charger,
            connector_id=connector,
            status=status,
            error_code="NoError",
            timestamp=self.now,
            received_at=self.now,
        )
        self.apply(lc.StatusNotification(request=req))

    def boot(self, charger: str = "A") -> None:
        self.apply(lc.BootNotification(charger_id=charger, received_at=self.now))

    def tx(self, tx_id: int) -> Transaction:
        return self.ledger.transactions[tx_id]


def test_retry_gets_the_first_id_and_one_row() -> None:
    m = Machine()
    first = m.start(meter=1000)
    again = m.start(meter=1000)
    assert again.duplicate
    assert again.transaction_id == first.transaction_id
    assert len(m.ledger.transactions) == 1


def test_identical_start_after_the_session_closed_is_a_new_session() -> None:
    """Issue 10 §2.1: a charger without clock or meter sends the same start each time."""
    m = Machine()
    first = m.start(meter=0)
    assert m.stop(first.transaction_id, 300).outcome == "stopped"
    m.now += timedelta(minutes=30)
    second = m.start(meter=0)
    assert not second.duplicate
    assert second.transaction_id != first.transaction_id
    assert m.stop(second.transaction_id, 300).outcome == "stopped"
    assert [t.energy_wh for t in m.ledger.transactions.values()] == [300, 300]


def test_retry_window_is_bounded() -> None:
    m = Machine()
    first = m.start()
    m.now += lc.RETRY_WINDOW + timedelta(seconds=1)
    later = m.start()
    assert later.transaction_id != first.transaction_id
    # The stale one on the same connector is superseded, not deleted.
    assert m.tx(first.transaction_id).state is TransactionState.INTERRUPTED


def test_conflicting_second_stop_is_kept_duplicate_is_not() -> None:
    m = Machine()
    tx = m.start(meter=1000).transaction_id
    assert m.stop(tx, 5000).outcome == "stopped"
    assert m.stop(tx, 5000).outcome == "duplicate"
    assert m.kept == []
    assert m.stop(tx, 6000).outcome == "conflict"
    assert [(k.kind, k.request.meter_stop) for k in m.kept] == [("conflict", 6000)]
    assert m.tx(tx).energy_wh == 4000


def test_orphan_and_foreign_stops_are_kept_and_touch_nothing() -> None:
    m = Machine()
    tx = m.start(meter=1000).transaction_id
    assert m.stop(0, 10).outcome == "orphan"
    assert m.stop(-1, 10).outcome == "orphan"
    assert m.stop(tx, 10, charger="B").outcome == "foreign"
    assert [k.kind for k in m.kept] == ["unknown", "unknown", "foreign"]
    assert m.tx(tx).state is TransactionState.ACTIVE


def test_new_start_on_the_connector_interrupts_the_old_one_with_best_known_energy() -> None:
    m = Machine()
    old = m.start(meter=1000).transaction_id
    m.meter(old, 1800, T0 + timedelta(minutes=10))
    m.now += timedelta(hours=1)
    new = m.start(meter=2500, at=T0 + timedelta(hours=1))
    assert new.id_tag_info.status is AuthorizationStatus.ACCEPTED  # not ConcurrentTx
    assert [t.transaction_id for t in new.interrupted] == [old]
    stale = m.tx(old)
    assert stale.state is TransactionState.INTERRUPTED
    assert (stale.energy_wh, stale.energy_flag) == (800, lc.ESTIMATED)
    assert "superseded" in (stale.end_reason or "")
    # Its late StopTransaction still completes it with the real figures.
    assert m.stop(old, 2400).outcome == "stopped"
    assert (m.tx(old).state, m.tx(old).energy_wh, m.tx(old).energy_flag) == (
        TransactionState.COMPLETED,
        1400,
        None,
    )


def test_available_after_reboot_interrupts_but_plain_available_does_not() -> None:
    m = Machine()
    tx = m.start().transaction_id
    m.now += timedelta(minutes=5)
    m.status(ConnectorStatus.AVAILABLE)  # e.g. Available sent just before the stop
    assert m.tx(tx).state is TransactionState.ACTIVE
    m.now += timedelta(minutes=5)
    m.boot()
    m.now += timedelta(seconds=2)
    m.status(ConnectorStatus.AVAILABLE)
    assert m.tx(tx).state is TransactionState.INTERRUPTED
    assert "rebooted" in (m.tx(tx).end_reason or "")


def test_refused_start_is_closed_at_once_and_never_live() -> None:
    """Issue 21 item 2: accepted on A, ConcurrentTx on B (which sends nothing), A stops,
    the next start on C is Accepted."""
    m = Machine()
    a = m.start(charger="A")
    assert a.id_tag_info.status is AuthorizationStatus.ACCEPTED
    b = m.start(charger="B")
    assert b.id_tag_info.status is AuthorizationStatus.CONCURRENT_TX
    assert m.tx(b.transaction_id).state is TransactionState.REFUSED
    assert m.stop(a.transaction_id, 100).outcome == "stopped"
    c = m.start(charger="C")
    assert c.id_tag_info.status is AuthorizationStatus.ACCEPTED
    # A retry of the refused start gets its id and its answer again.
    again = m.start(charger="B")
    assert (again.transaction_id, again.id_tag_info.status) == (
        b.transaction_id,
        AuthorizationStatus.CONCURRENT_TX,
    )
    blocked = m.start(charger="D", tag="BLOCKED")
    assert m.tx(blocked.transaction_id).state is TransactionState.REFUSED
    assert m.tx(blocked.transaction_id).end_reason == "start refused: Blocked"


def test_concurrent_tx_counts_only_plausibly_live_transactions() -> None:
    m = Machine()
    m.start(charger="A")
    m.now += timedelta(seconds=1)
    m.status(ConnectorStatus.FINISHING, charger="A")
    assert m.start(charger="B").id_tag_info.status is AuthorizationStatus.ACCEPTED
    # B's is live; a disconnected charger's is not.
    assert m.start(charger="C").id_tag_info.status is AuthorizationStatus.CONCURRENT_TX
    m.ledger = m.ledger.updated(chargers=[lc.ChargerView(charger_id="B", connected=False)])
    assert m.start(charger="D").id_tag_info.status is AuthorizationStatus.ACCEPTED


def test_meter_values_newest_wins_and_never_after_stop() -> None:
    m = Machine()
    tx = m.start(meter=1000).transaction_id
    m.meter(tx, 3000, T0 + timedelta(minutes=20))
    m.meter(tx, 2000, T0 + timedelta(minutes=10))  # delivered late
    assert m.tx(tx).last_meter_wh == 3000
    m.stop(tx, 4000)
    m.meter(tx, 9000, T0 + timedelta(hours=5))
    assert (m.tx(tx).last_meter_wh, m.tx(tx).energy_wh) == (4000, 3000)


def test_operator_close() -> None:
    m = Machine()
    tx = m.start(meter=1000).transaction_id
    m.meter(tx, 1500, T0 + timedelta(minutes=1))
    close = lc.OperatorClose(
        transaction_id=tx, meter_stop=None, reason="stop lost", actor="ann", at=m.now
    )
    reply = m.apply(close)
    assert isinstance(reply, lc.CloseResult)
    assert reply.outcome == "closed"
    closed = m.tx(tx)
    assert (closed.state, closed.energy_wh, closed.energy_flag, closed.closed_by) == (
        TransactionState.CLOSED,
        500,
        lc.ESTIMATED,
        "ann",
    )
    again = m.apply(close)
    assert isinstance(again, lc.CloseResult)
    assert again.outcome == "already_closed"
    missing = m.apply(
        lc.OperatorClose(transaction_id=7, meter_stop=1, reason=None, actor="a", at=T0)
    )
    assert isinstance(missing, lc.CloseResult)
    assert missing.outcome == "not_found"
    # The charger's stop arriving afterwards is a conflict, kept, energy unchanged.
    assert m.stop(tx, 1700).outcome == "conflict"
    assert m.tx(tx).energy_wh == 500
    tx2 = m.start(connector=2, meter=100).transaction_id
    bad = m.apply(
        lc.OperatorClose(transaction_id=tx2, meter_stop=50, reason=None, actor="a", at=T0)
    )
    assert isinstance(bad, lc.CloseResult)
    assert bad.outcome == "invalid"


def test_meter_going_backwards_is_flagged_not_billed() -> None:
    m = Machine()
    tx = m.start(meter=4_294_967_000).transaction_id
    m.stop(tx, 500)  # a 32-bit register rolled over
    assert (m.tx(tx).energy_wh, m.tx(tx).energy_flag) == (None, METER_DECREASED)


# --- Meter values (issue 10 §2.8) ------------------------------------------------------


def _mv(at: datetime, *samples: tuple[str, str, str | None]) -> MeterValue:
    return MeterValue(
        timestamp=at,
        sampled_values=tuple(
            SampledValue(value=v, measurand=meas, phase=ph, unit="A" if "Current" in meas else "Wh")
            for v, meas, ph in samples
        ),
    )


def test_per_phase_uses_latest_timestamp_only() -> None:
    values = tuple(_mv(T0 + timedelta(seconds=i), ("16", "Current.Import", "L1")) for i in range(3))
    assert summarize(values).current_a == 16


def test_per_phase_sums_l1_to_l3_and_excludes_neutral() -> None:
    values = (
        _mv(
            T0,
            ("10", "Current.Import", "L1"),
            ("11", "Current.Import", "L2"),
            ("12", "Current.Import", "L3"),
            ("3", "Current.Import", "N"),
        ),
    )
    assert summarize(values).current_a == 33
    # Load management (issue 17) needs the most loaded phase, not the sum.
    assert summarize(values).current_phase_a == 12
    # ...and each phase for the phases a session really draws on (neutral left out).
    assert summarize(values).current_phases_a == {"L1": 10, "L2": 11, "L3": 12}


def test_the_highest_phase_current_is_the_total_when_no_phase_is_given() -> None:
    assert summarize((_mv(T0, ("30", "Current.Import", None)),)).current_phase_a == 30
    energy_only = (_mv(T0, ("500", "Energy.Active.Import.Register", None)),)
    assert summarize(energy_only).current_phase_a is None
    assert summarize(energy_only).current_phases_a is None
    # No phase given: no per-phase figures; line-to-neutral counts as its line.
    assert summarize((_mv(T0, ("30", "Current.Import", None)),)).current_phases_a is None
    assert summarize((_mv(T0, ("7", "Current.Import", "L2-N")),)).current_phases_a == {"L2": 7}


def test_per_phase_energy_registers_are_summed() -> None:
    values = (
        _mv(
            T0,
            ("100", "Energy.Active.Import.Register", "L1"),
            ("200", "Energy.Active.Import.Register", "L2"),
            ("300", "Energy.Active.Import.Register", "L3"),
        ),
    )
    summary = summarize(values)
    assert (summary.energy_wh, summary.energy_at) == (600, T0)


def test_negative_energy_is_flagged() -> None:
    summary = summarize((_mv(T0, ("-5", "Energy.Active.Import.Register", None)),))
    assert summary.energy_wh is None
    assert summary.flags == (NEGATIVE_ENERGY,)
