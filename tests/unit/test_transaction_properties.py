"""Property test of the transaction state machine over random charger behaviour.

Simulated chargers run sessions and deliver their messages the way real ones do:
answers lost (so a StartTransaction is retried), StopTransaction sent twice or lost,
reboots with a queued or a lost stop, meter values delivered out of order, chargers
without a clock or meter (every start identical). Whatever happens:

- a retry always gets the id the first delivery got, and sessions never share an id;
- every transaction is closed at most once (its final figures never change);
- energy is never counted twice and never lost: a session whose stop was delivered
  bills exactly meterStop - meterStart; one whose stop was lost keeps the last reading
  that reached us as its best-known energy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from voltaro.domain import transaction_lifecycle as lc
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
    StopReason,
    StopTransactionRequest,
    StopTransactionResult,
    TransactionState,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)
CHARGERS = {"A": False, "B": False, "NOCLOCK": True}  # id -> without clock and meter
TAGS = ("T1", "T2")
FINAL = (TransactionState.COMPLETED, TransactionState.CLOSED)


@dataclass
class Session:
    charger: str
    connector: int
    meter_start: int
    started_at: datetime
    tx_id: int | None = None
    meter: int = 0  # the charger's register now
    delivered: list[tuple[datetime, int]] = field(default_factory=list)
    stop: int | None = None  # meterStop delivered to us
    lost: bool = False
    refused: bool = False


@dataclass
class World:
    ledger: lc.Ledger = field(default_factory=lc.Ledger)
    now: datetime = T0
    next_id: int = 0
    registers: dict[tuple[str, int], int] = field(default_factory=dict)
    running: dict[tuple[str, int], Session] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    final: dict[int, tuple[object, ...]] = field(default_factory=dict)

    def decide(self, event: lc.Event) -> lc.Reply:
        self.ledger, effects = lc.decide(self.ledger, event)
        self.check_closed_once()
        return lc.answer(effects)

    def check_closed_once(self) -> None:
        for tx in self.ledger.transactions.values():
            closed = tx.state in FINAL or (
                tx.state is TransactionState.REFUSED and tx.meter_stop is not None
            )
            if not closed:
                assert tx.transaction_id not in self.final, "a closed transaction reopened"
                continue
            figures = (tx.state, tx.meter_stop, tx.energy_wh, tx.stop_time)
            assert self.final.setdefault(tx.transaction_id, figures) == figures

    def clock(self, charger: str) -> datetime:
        return T0 if CHARGERS[charger] else self.now

    def status(self, charger: str, connector: int, status: ConnectorStatus) -> None:
        self.decide(
            lc.StatusNotification(
                request=StatusNotificationRequest(
                    charger_id=charger,
                    connector_id=connector,
                    status=status,
                    error_code="NoError",
                    timestamp=self.clock(charger),
                    received_at=self.now,
                )
            )
        )

    def start(self, charger: str, connector: int, tag: str, retries: int) -> None:
        if (charger, connector) in self.running:
            return
        noclock = CHARGERS[charger]
        register = 0 if noclock else self.registers.get((charger, connector), 0)
        session = Session(
            charger=charger,
            connector=connector,
            meter_start=register,
            started_at=self.clock(charger),
            meter=register,
        )
        req = StartTransactionRequest(
            charger_id=charger,
            connector_id=connector,
            id_tag=tag,
            meter_start=register,
            timestamp=session.started_at,
            received_at=self.now,
        )
        for _ in range(1 + retries):  # the answer was lost: the charger sends it again
            self.next_id += 1
            event = lc.StartTransaction(request=req, tag=IdTag(id_tag=tag), new_id=self.next_id)
            reply = self.decide(event)
            assert isinstance(reply, StartTransactionResult)
            if session.tx_id is None:
                session.tx_id = reply.transaction_id
            assert reply.transaction_id == session.tx_id, "a retry got another id"
        assert isinstance(reply, StartTransactionResult)
        self.sessions.append(session)
        if reply.id_tag_info.status is not AuthorizationStatus.ACCEPTED:
            session.refused = True
            self.deliver_stop(session, StopReason.DE_AUTHORIZED, copies=1)
            return
        self.running[(charger, connector)] = session
        self.status(charger, connector, ConnectorStatus.CHARGING)

    def charge(self, charger: str, connector: int, amounts: list[int], swap: bool) -> None:
        session = self.running.get((charger, connector))
        if session is None or CHARGERS[charger]:
            return  # a charger without a meter sends no readings
        readings = []
        for wh in amounts:
            self.now += timedelta(seconds=30)
            session.meter += wh
            readings.append((self.now, session.meter))
        if swap:
            readings.reverse()  # delivered out of order
        for at, value in readings:
            self.decide(
                lc.MeterValues(
                    request=MeterValuesRequest(
                        charger_id=charger,
                        connector_id=connector,
                        transaction_id=session.tx_id,
                        meter_values=(
                            MeterValue(
                                timestamp=at, sampled_values=(SampledValue(value=str(value)),)
                            ),
                        ),
                        received_at=self.now,
                    )
                )
            )
            session.delivered.append((at, value))

    def end(self, charger: str, connector: int, wh: int, how: str) -> None:
        session = self.running.pop((charger, connector), None)
        if session is None:
            return
        session.meter += wh
        self.registers[(charger, connector)] = session.meter
        if how == "lost":
            session.lost = True
        else:
            self.deliver_stop(session, StopReason.LOCAL, copies=2 if how == "twice" else 1)
        self.status(charger, connector, ConnectorStatus.AVAILABLE)

    def deliver_stop(self, session: Session, reason: StopReason, copies: int) -> None:
        assert session.tx_id is not None
        req = StopTransactionRequest(
            charger_id=session.charger,
            transaction_id=session.tx_id,
            meter_stop=session.meter,
            timestamp=self.clock(session.charger),
            reason=reason,
            received_at=self.now,
        )
        outcomes = []
        for _ in range(copies):
            reply = self.decide(lc.StopTransaction(request=req))
            assert isinstance(reply, StopTransactionResult)
            outcomes.append(reply.outcome)
        assert outcomes[0] == "stopped", outcomes
        assert all(o == "duplicate" for o in outcomes[1:]), outcomes
        session.stop = session.meter

    def reboot(self, charger: str, keep_queue: bool) -> None:
        mine = [k for k in self.running if k[0] == charger]
        queued = []
        for key in mine:
            session = self.running.pop(key)
            self.registers[key] = session.meter
            if keep_queue:
                queued.append(session)
            else:
                session.lost = True
        self.now += timedelta(minutes=1)
        self.decide(lc.BootNotification(charger_id=charger, received_at=self.now))
        self.now += timedelta(seconds=1)
        for connector in (1, 2):
            self.status(charger, connector, ConnectorStatus.AVAILABLE)
        for session in queued:  # the queue is sent after the status notifications
            self.deliver_stop(session, StopReason.POWER_LOSS, copies=1)


charger_ids = st.sampled_from(sorted(CHARGERS))
connectors = st.sampled_from((1, 2))
steps = st.one_of(
    st.tuples(st.just("start"), charger_ids, connectors, st.sampled_from(TAGS), st.integers(0, 2)),
    st.tuples(
        st.just("charge"),
        charger_ids,
        connectors,
        st.lists(st.integers(1, 5000), min_size=1, max_size=3),
        st.booleans(),
    ),
    st.tuples(
        st.just("end"),
        charger_ids,
        connectors,
        st.integers(0, 5000),
        st.sampled_from(("once", "twice", "lost")),
    ),
    st.tuples(st.just("reboot"), charger_ids, st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=40))
def test_random_interleavings_keep_billing_data_whole(plan: list[tuple[object, ...]]) -> None:
    world = World()
    for step in plan:
        world.now += timedelta(minutes=1)
        kind, charger, *rest = step
        assert isinstance(charger, str)
        if kind == "start":
            connector, tag, retries = rest
            world.start(charger, int(connector), str(tag), int(retries))  # type: ignore[call-overload]
        elif kind == "charge":
            connector, amounts, swap = rest
            world.charge(charger, int(connector), list(amounts), bool(swap))  # type: ignore[call-overload, arg-type]
        elif kind == "end":
            connector, wh, how = rest
            world.end(charger, int(connector), int(wh), str(how))  # type: ignore[call-overload]
        else:
            world.reboot(charger, bool(rest[0]))

    txs = world.ledger.transactions
    ids = [s.tx_id for s in world.sessions]
    assert len(set(ids)) == len(ids) == len(txs), "one row per session, no id shared"
    for session in world.sessions:
        assert session.tx_id is not None
        tx = txs[session.tx_id]
        if session.stop is not None:
            assert tx.meter_stop == session.stop
            assert tx.energy_wh == session.stop - session.meter_start
            expected = TransactionState.REFUSED if session.refused else TransactionState.COMPLETED
            assert tx.state is expected
            continue
        # Stop lost (or still running): the best-known reading is what reached us.
        best = max((v for _, v in session.delivered), default=session.meter_start)
        assert tx.last_meter_wh == best
        assert tx.state in (TransactionState.ACTIVE, TransactionState.INTERRUPTED)
        if tx.state is TransactionState.INTERRUPTED:
            assert tx.energy_wh == best - session.meter_start
            assert tx.energy_flag == lc.ESTIMATED
        else:
            # Still active: running, or its stop was lost and nothing superseded it yet.
            assert session in world.running.values() or session.lost
