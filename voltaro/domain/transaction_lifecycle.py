"""Every rule that changes a transaction's state, in one place, without IO.

In the style of h11's ``_state.py``: ``decide(ledger, event) -> (ledger, effects)``.
The ledger is the slice of stored data a decision needs (the store loads it, under row
locks, and may load more than needed: every rule filters what it looks at); the
effects say what to store and what to answer. Nothing here reads a clock, draws a
random number or touches a database: a fresh transaction id and the tag's record come
in with the event.

The rules (OCPP 1.6 §3.7, §4.7, §4.8, §4.10, errata 3.18):

- StartTransaction always gets a positive id and a row, whatever the tag (R55-R57).
  A retry (same charger, connector, timestamp, meterStart and tag) gets the id it got
  the first time, but only while that transaction is still open and recent: a charger
  without a clock or meter sends identical starts for different sessions.
- A start answered other than Accepted is stored and closed at once as ``refused``;
  it never counts as live (a charger need not send a StopTransaction after a refusal).
- A new start on a connector supersedes the transaction still active there: it is
  ``interrupted`` (kept, with its last reading as best-known energy and the reason).
  So is one whose connector reports Available after the charger rebooted.
- ConcurrentTx (R58) counts only transactions that are plausibly live: active, on a
  connected charger whose connector has not reported Available/Finishing since.
- StopTransaction closes a transaction once. A retry with the same meterStop is a
  duplicate; a different meterStop is a conflict, kept for reconciliation. An unknown
  id, 0, -1 or another charger's id is an orphan / foreign stop, kept and answered.
  A late stop for an interrupted transaction completes it with the real figures.
- MeterValues update the best-known reading of an open transaction of the same
  charger, newest reading wins (out-of-order messages never move it back), and never
  after its final meter reading is known.
- An operator closes an active or interrupted transaction (``transactions close``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from voltaro.domain.authorization import decide as authorize
from voltaro.domain.authorization import decide_start, tag_key
from voltaro.domain.metering import MeterSummary, session_energy, summarize
from voltaro.domain.model import (
    AuthorizationStatus,
    ConnectorStatus,
    IdTag,
    IdTagInfo,
    MeterValue,
    MeterValuesRequest,
    StartTransactionRequest,
    StartTransactionResult,
    StatusNotificationRequest,
    StopTransactionRequest,
    StopTransactionResult,
    Transaction,
    TransactionState,
)

MAX_TRANSACTION_ID = 2**31 - 1  # chargers commonly store int32 (R56)

# How long a repeated StartTransaction is taken for a retry of the first one. Chargers
# retry from their offline queue; a day covers a long outage without letting a
# clockless charger's next session be mistaken for the previous one once that closed.
RETRY_WINDOW = timedelta(hours=24)

ESTIMATED = "estimated"  # energy_wh is the best-known reading, not a final meter stop

# After these, no transaction runs on the connector (§4.9: Available, or Finishing once
# the session has ended); a transaction there is not live for ConcurrentTx.
_IDLE = (ConnectorStatus.AVAILABLE, ConnectorStatus.FINISHING)


# --- The ledger: what a decision sees ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorView:
    """The connector's last reported status (for liveness)."""

    charger_id: str
    connector_id: int
    status: ConnectorStatus | None = None
    status_at: datetime | None = None  # the charger's timestamp (or time of receipt)
    received_at: datetime | None = None  # server time that status arrived


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerView:
    charger_id: str
    connected: bool = True  # unknown chargers are given the benefit of the doubt
    last_boot: datetime | None = None  # server time of the last BootNotification


@dataclass(frozen=True, slots=True, kw_only=True)
class Ledger:
    transactions: Mapping[int, Transaction] = field(default_factory=dict)
    connectors: Mapping[tuple[str, int], ConnectorView] = field(default_factory=dict)
    chargers: Mapping[str, ChargerView] = field(default_factory=dict)

    def connector(self, charger_id: str, connector_id: int) -> ConnectorView:
        return self.connectors.get(
            (charger_id, connector_id),
            ConnectorView(charger_id=charger_id, connector_id=connector_id),
        )

    def charger(self, charger_id: str) -> ChargerView:
        return self.chargers.get(charger_id, ChargerView(charger_id=charger_id))

    def updated(
        self,
        transactions: Iterable[Transaction] = (),
        connectors: Iterable[ConnectorView] = (),
        chargers: Iterable[ChargerView] = (),
    ) -> Ledger:
        txs = dict(self.transactions)
        txs.update({t.transaction_id: t for t in transactions})
        cons = dict(self.connectors)
        cons.update({(c.charger_id, c.connector_id): c for c in connectors})
        chs = dict(self.chargers)
        chs.update({c.charger_id: c for c in chargers})
        return Ledger(transactions=txs, connectors=cons, chargers=chs)


# --- Events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTransaction:
    request: StartTransactionRequest
    tag: IdTag | None  # the tag's record, None when unknown
    new_id: int  # an unused id, used only if a new transaction is created
    allow_concurrent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StopTransaction:
    request: StopTransactionRequest
    tag: IdTag | None = None  # the stop's idTag record (answered in idTagInfo)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterValues:
    request: MeterValuesRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class BootNotification:
    charger_id: str
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusNotification:
    request: StatusNotificationRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorClose:
    transaction_id: int
    meter_stop: int | None
    reason: str | None
    actor: str
    at: datetime


Event = (
    StartTransaction
    | StopTransaction
    | MeterValues
    | BootNotification
    | StatusNotification
    | OperatorClose
)


# --- Effects -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveTransaction:
    """Insert or update this transaction row."""

    transaction: Transaction
    new: bool = False


# The kinds of KeepStop, as stored in orphan_stops.kind and listed for reconciliation.
ORPHAN_STOP_KINDS = ("unknown", "foreign", "conflict")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepStop:
    """A StopTransaction that closes nothing, kept for reconciliation:
    "unknown" (no such id), "foreign" (another charger's) or "conflict" (a second stop
    with a different meterStop)."""

    kind: str
    request: StopTransactionRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSamples:
    """Store these sampled values (idempotently), linked to ``linked`` when it is the
    charger's own transaction."""

    charger_id: str
    connector_id: int
    reported_transaction_id: int
    linked: int | None
    values: tuple[MeterValue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseResult:
    outcome: str  # "closed" | "not_found" | "already_closed" | "invalid"
    transaction: Transaction | None = None
    message: str = ""


# MeterValues answers with its summary (the caller reports it; computed once).
Reply = StartTransactionResult | StopTransactionResult | CloseResult | MeterSummary | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What the caller returns (to the charger, or to the operator)."""

    reply: Reply


Effect = SaveTransaction | KeepStop | StoreSamples | Answer


# --- Rules ---------------------------------------------------------------------------


def is_open(tx: Transaction) -> bool:
    """Running, or ended without a final meter reading (its stop may still come)."""
    return tx.state in (TransactionState.ACTIVE, TransactionState.INTERRUPTED)


def plausibly_live(tx: Transaction, ledger: Ledger) -> bool:
    """Could this transaction still be charging? Only such count for ConcurrentTx."""
    if tx.state is not TransactionState.ACTIVE:
        return False
    if not ledger.charger(tx.charger_id).connected:
        return False
    return not _idle_since_start(tx, ledger)


def _idle_since_start(tx: Transaction, ledger: Ledger) -> bool:
    """Has the connector reported that nothing runs there since this transaction began?"""
    view = ledger.connector(tx.charger_id, tx.connector_id)
    if view.status not in _IDLE:
        return False
    if view.received_at is not None and tx.created_at is not None:
        # Server times: a charger without a clock stamps everything alike.
        return view.received_at > tx.created_at
    return view.status_at is not None and view.status_at >= tx.start_time


def _interrupt(tx: Transaction, reason: str, at: datetime) -> Transaction:
    """Superseded without a stop: keep it, with its last reading as best-known energy."""
    last = tx.last_meter_wh if tx.last_meter_wh is not None else float(tx.meter_start)
    energy, flag = session_energy(tx.meter_start, round(last))
    return replace(
        tx,
        state=TransactionState.INTERRUPTED,
        end_reason=reason,
        ended_at=at,
        energy_wh=energy,
        energy_flag=flag or ESTIMATED,
    )


def _is_retry(tx: Transaction, req: StartTransactionRequest, ledger: Ledger) -> bool:
    return (
        tx.charger_id == req.charger_id
        and tx.connector_id == req.connector_id
        and tx.start_time == req.timestamp
        and tx.meter_start == req.meter_start
        and tag_key(tx.id_tag) == tag_key(req.id_tag)
        # Only a transaction that is still open: once closed, an identical start is a
        # new session (a charger without clock or meter sends the same one each time).
        and tx.meter_stop is None
        and tx.state in (TransactionState.ACTIVE, TransactionState.REFUSED)
        and (tx.created_at is None or req.received_at - tx.created_at <= RETRY_WINDOW)
        # A charger retries before anything else on the connector; once it reported the
        # connector Available/Finishing, an identical start is the next session (its
        # previous stop was lost).
        and not _idle_since_start(tx, ledger)
    )


def _start(ledger: Ledger, ev: StartTransaction) -> tuple[Ledger, list[Effect]]:
    req = ev.request
    retry = next((t for t in _sorted(ledger) if _is_retry(t, req, ledger)), None)
    if retry is not None:
        # The same answer as the first time (R60): its id, and its status.
        info = authorize(ev.tag, req.received_at)
        info = IdTagInfo(
            status=retry.id_tag_status,
            expiry_date=info.expiry_date,
            parent_id_tag=info.parent_id_tag,
        )
        result = StartTransactionResult(
            transaction_id=retry.transaction_id,
            id_tag_info=info,
            duplicate=True,
            transaction=retry,
        )
        return ledger, [Answer(reply=result)]

    superseded = [
        _interrupt(
            t,
            f"superseded by a new StartTransaction on connector {req.connector_id}",
            req.received_at,
        )
        for t in _sorted(ledger)
        if t.state is TransactionState.ACTIVE
        and t.charger_id == req.charger_id
        and t.connector_id == req.connector_id
    ]
    key = tag_key(req.id_tag)
    busy = any(
        tag_key(t.id_tag) == key
        and not (t.charger_id == req.charger_id and t.connector_id == req.connector_id)
        and plausibly_live(t, ledger)
        for t in ledger.transactions.values()
    )
    info = decide_start(
        ev.tag, req.received_at, busy_elsewhere=busy, allow_concurrent=ev.allow_concurrent
    )
    accepted = info.status is AuthorizationStatus.ACCEPTED
    tx = Transaction(
        transaction_id=ev.new_id,
        charger_id=req.charger_id,
        connector_id=req.connector_id,
        id_tag=req.id_tag,
        id_tag_status=info.status,
        start_time=req.timestamp,
        meter_start=req.meter_start,
        reservation_id=req.reservation_id,
        state=TransactionState.ACTIVE if accepted else TransactionState.REFUSED,
        last_meter_wh=float(req.meter_start),
        last_meter_at=req.timestamp,
        end_reason=None if accepted else f"start refused: {info.status.value}",
        ended_at=None if accepted else req.received_at,
        created_at=req.received_at,
    )
    result = StartTransactionResult(
        transaction_id=tx.transaction_id,
        id_tag_info=info,
        transaction=tx,
        interrupted=tuple(superseded),
    )
    effects: list[Effect] = [SaveTransaction(transaction=t) for t in superseded]
    effects += [SaveTransaction(transaction=tx, new=True), Answer(reply=result)]
    return ledger.updated([*superseded, tx]), effects


def _own(ledger: Ledger, charger_id: str, transaction_id: int | None) -> Transaction | None:
    if transaction_id is None or not 0 < transaction_id <= MAX_TRANSACTION_ID:
        return None
    tx = ledger.transactions.get(transaction_id)
    return tx if tx is not None and tx.charger_id == charger_id else None


def _stop(ledger: Ledger, ev: StopTransaction) -> tuple[Ledger, list[Effect]]:
    req = ev.request
    info = authorize(ev.tag, req.received_at) if req.id_tag else None
    tx = _own(ledger, req.charger_id, req.transaction_id)
    if tx is None:
        # Answered as if valid so the charger's queue moves on (errata 3.18); another
        # charger's transaction stays untouched (RT8).
        known = 0 < req.transaction_id <= MAX_TRANSACTION_ID and (
            req.transaction_id in ledger.transactions
        )
        kind = "foreign" if known else "unknown"
        effects: list[Effect] = [
            KeepStop(kind=kind, request=req),
            StoreSamples(
                charger_id=req.charger_id,
                connector_id=0,
                reported_transaction_id=req.transaction_id,
                linked=None,
                values=req.transaction_data,
            ),
            Answer(
                reply=StopTransactionResult(
                    id_tag_info=info, outcome="foreign" if known else "orphan"
                )
            ),
        ]
        return ledger, effects
    samples = StoreSamples(
        charger_id=req.charger_id,
        connector_id=tx.connector_id,
        reported_transaction_id=tx.transaction_id,
        linked=tx.transaction_id,
        values=req.transaction_data,
    )
    if tx.meter_stop is not None:
        if tx.meter_stop == req.meter_stop:
            reply = StopTransactionResult(id_tag_info=info, outcome="duplicate", transaction=tx)
            return ledger, [samples, Answer(reply=reply)]
        # A second, different stop: never silently dropped.
        reply = StopTransactionResult(id_tag_info=info, outcome="conflict", transaction=tx)
        return ledger, [samples, KeepStop(kind="conflict", request=req), Answer(reply=reply)]
    energy, flag = session_energy(tx.meter_start, req.meter_stop)
    stopped = replace(
        tx,
        # A refused start that was charged anyway keeps its state; its energy is recorded.
        state=TransactionState.REFUSED
        if tx.state is TransactionState.REFUSED
        else TransactionState.COMPLETED,
        stop_time=req.timestamp,
        meter_stop=req.meter_stop,
        stop_reason=req.reason,
        stop_id_tag=req.id_tag,
        energy_wh=energy,
        energy_flag=flag,
        last_meter_wh=float(req.meter_stop),
        last_meter_at=req.timestamp,
    )
    reply = StopTransactionResult(id_tag_info=info, outcome="stopped", transaction=stopped)
    return ledger.updated([stopped]), [
        samples,
        SaveTransaction(transaction=stopped),
        Answer(reply=reply),
    ]


def _meter_values(ledger: Ledger, ev: MeterValues) -> tuple[Ledger, list[Effect]]:
    req = ev.request
    tx = _own(ledger, req.charger_id, req.transaction_id)
    effects: list[Effect] = [
        StoreSamples(
            charger_id=req.charger_id,
            connector_id=req.connector_id,
            reported_transaction_id=req.transaction_id or 0,
            linked=tx.transaction_id if tx is not None else None,
            values=req.meter_values,
        )
    ]
    summary = summarize(req.meter_values)
    if tx is None or tx.meter_stop is not None or not is_open(tx):
        return ledger, [*effects, Answer(reply=summary)]
    changes: dict[str, object] = {}
    energy, at = summary.energy_wh, summary.energy_at
    newer = at is not None and (tx.last_meter_at is None or at >= tx.last_meter_at)
    if energy is not None and newer and energy >= tx.meter_start:
        changes.update(last_meter_wh=energy, last_meter_at=at)
        if tx.state is TransactionState.INTERRUPTED:
            # A late reading improves the best-known energy of an interrupted session.
            changes["energy_wh"] = round(energy) - tx.meter_start
    if summary.power_w is not None and tx.state is TransactionState.ACTIVE:
        changes["last_power_w"] = summary.power_w
    if not changes:
        return ledger, [*effects, Answer(reply=summary)]
    updated = replace(tx, **changes)  # type: ignore[arg-type]
    return ledger.updated([updated]), [
        *effects,
        SaveTransaction(transaction=updated),
        Answer(reply=summary),
    ]


def _boot(ledger: Ledger, ev: BootNotification) -> tuple[Ledger, list[Effect]]:
    # A boot alone ends nothing: a charger sends its queued StopTransaction after
    # booting. What it reports next (a connector Available) decides.
    charger = replace(ledger.charger(ev.charger_id), last_boot=ev.received_at, connected=True)
    return ledger.updated(chargers=[charger]), [Answer(reply=None)]


def _status(ledger: Ledger, ev: StatusNotification) -> tuple[Ledger, list[Effect]]:
    req = ev.request
    at = req.timestamp or req.received_at
    view = ledger.connector(req.charger_id, req.connector_id)
    if view.status_at is None or at >= view.status_at:
        view = replace(view, status=req.status, status_at=at, received_at=req.received_at)
    ended: list[Transaction] = []
    boot = ledger.charger(req.charger_id).last_boot
    if req.status is ConnectorStatus.AVAILABLE and req.connector_id > 0 and boot is not None:
        # Available after a reboot: nothing runs on the connector (§4.9), so a
        # transaction started before the boot was lost with its stop.
        ended = [
            _interrupt(
                t,
                "connector reported Available after the charger rebooted, "
                "no StopTransaction received",
                req.received_at,
            )
            for t in _sorted(ledger)
            if t.state is TransactionState.ACTIVE
            and t.charger_id == req.charger_id
            and t.connector_id == req.connector_id
            and t.created_at is not None
            and t.created_at < boot <= req.received_at
        ]
    effects: list[Effect] = [SaveTransaction(transaction=t) for t in ended]
    return ledger.updated(ended, [view]), [*effects, Answer(reply=None)]


def _close(ledger: Ledger, ev: OperatorClose) -> tuple[Ledger, list[Effect]]:
    tx = ledger.transactions.get(ev.transaction_id)
    if tx is None:
        return ledger, [Answer(reply=CloseResult(outcome="not_found"))]
    if not is_open(tx) or tx.meter_stop is not None:
        message = f"transaction {tx.transaction_id} is {tx.state.value} already"
        return ledger, [
            Answer(reply=CloseResult(outcome="already_closed", transaction=tx, message=message))
        ]
    if ev.meter_stop is not None and ev.meter_stop < tx.meter_start:
        message = f"meter stop {ev.meter_stop} is below meter start {tx.meter_start}"
        return ledger, [
            Answer(reply=CloseResult(outcome="invalid", transaction=tx, message=message))
        ]
    if ev.meter_stop is not None:
        meter_stop, flag = ev.meter_stop, None
    else:
        last = tx.last_meter_wh if tx.last_meter_wh is not None else float(tx.meter_start)
        meter_stop, flag = max(round(last), tx.meter_start), ESTIMATED
    energy, _ = session_energy(tx.meter_start, meter_stop)
    closed = replace(
        tx,
        state=TransactionState.CLOSED,
        stop_time=ev.at,
        meter_stop=meter_stop,
        energy_wh=energy,
        energy_flag=flag,
        end_reason=ev.reason or "closed by an operator",
        ended_at=ev.at,
        closed_by=ev.actor,
    )
    return ledger.updated([closed]), [
        SaveTransaction(transaction=closed),
        Answer(reply=CloseResult(outcome="closed", transaction=closed)),
    ]


def _sorted(ledger: Ledger) -> list[Transaction]:
    """Oldest first, so decisions do not depend on the order rows were loaded in."""
    return sorted(ledger.transactions.values(), key=lambda t: (t.start_time, t.transaction_id))


def decide(ledger: Ledger, event: Event) -> tuple[Ledger, list[Effect]]:
    """Apply one event: the new ledger and what to store and answer. The last effect is
    always the ``Answer``."""
    if isinstance(event, StartTransaction):
        return _start(ledger, event)
    if isinstance(event, StopTransaction):
        return _stop(ledger, event)
    if isinstance(event, MeterValues):
        return _meter_values(ledger, event)
    if isinstance(event, BootNotification):
        return _boot(ledger, event)
    if isinstance(event, StatusNotification):
        return _status(ledger, event)
    return _close(ledger, event)


def answer(effects: list[Effect]) -> Reply:
    last = effects[-1]
    assert isinstance(last, Answer)
    return last.reply
