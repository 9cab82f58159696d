"""Units of work for transactions and meter values (OCPP 1.6 §3.7, §4.7, §4.8, §4.10).

Every rule lives in ``voltaro.domain.transaction_lifecycle``; a unit of work here
loads the rows a decision needs, locks them, calls ``decide`` and saves the effects.
Each decision is atomic on PostgreSQL: the connector and tag a StartTransaction looks
at are serialised with transaction-scoped advisory locks (taken in one global order),
and every transaction row a decision may change is read ``FOR UPDATE``; on SQLite the
single writer does the same. A partial unique index keeps at most one active
transaction per connector whatever happens.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from voltaro.domain import transaction_lifecycle as lc
from voltaro.domain.authorization import decide, tag_key
from voltaro.domain.metering import MeterSummary
from voltaro.domain.model import (
    AuthorizationStatus,
    ConnectorStatus,
    IdTagInfo,
    MeterValue,
    MeterValuesRequest,
    SampledValue,
    StartTransactionRequest,
    StartTransactionResult,
    StatusNotificationRequest,
    StopReason,
    StopTransactionRequest,
    StopTransactionResult,
    Transaction,
    TransactionState,
)
from voltaro.store.group_commit import BATCHED, BatchHooks, flush_kept
from voltaro.store.plain_sql import MultiRowInsert, processed, processors
from voltaro.store.reservations import close_by_start
from voltaro.store.schema import (
    METER_VALUE_KEY,
    ChargePointRow,
    ConnectorRow,
    MeterValueRow,
    OrphanStopRow,
    TransactionRow,
)
from voltaro.store.tags import get_tag

MAX_TRANSACTION_ID = lc.MAX_TRANSACTION_ID

# --- Cached Core statements for the hot path (issue 14 step 1) -----------------------
#
# Built once: SQLAlchemy compiles each statement once and reuses the compiled form (a
# statement built per message with ``values(list)`` has no cache key and is compiled
# every time). Rows go in as executemany parameter lists; nothing on this path builds
# ORM objects.

_TX: Table = TransactionRow.__table__  # type: ignore[assignment]
_TX_COLUMNS = (
    "charger_id",
    "connector_id",
    "id_tag",
    "tag_key",
    "id_tag_status",
    "start_time",
    "meter_start",
    "reservation_id",
    "state",
    "stop_time",
    "meter_stop",
    "stop_reason",
    "stop_id_tag",
    "energy_wh",
    "last_meter_wh",
    "last_power_w",
    "last_meter_at",
    "end_reason",
    "ended_at",
    "closed_by",
    "energy_flag",
)
_UPDATE_TX = (
    update(_TX)
    .where(_TX.c.transaction_id == bindparam("b_transaction_id"))
    .values({name: bindparam("b_" + name) for name in _TX_COLUMNS})
)
_INSERT_IGNORE: dict[tuple[str, str], Executable] = {}
_SELECT_OWN = select(_TX).where(_TX.c.transaction_id == bindparam("tid")).with_for_update()
_SELECT_MANY = (
    select(_TX)
    .where(_TX.c.transaction_id.in_(bindparam("tids", expanding=True)))
    .order_by(_TX.c.charger_id, _TX.c.transaction_id)
    .with_for_update()
)


# --- Driver-level statements for MeterValues (issue 14 step 3) -----------------------
#
# In the latency phase a batch holds one to three messages, so what SQLAlchemy does per
# statement (execution context, parameter construction, type processing per row, result
# wrapping) is most of a stored message's CPU. The two MeterValues writes (the UPDATE of
# the transaction rows, the samples' INSERT) are therefore sent as plain SQL through
# ``Connection.exec_driver_sql`` (voltaro.store.plain_sql: same stored values, samples in
# pages on PostgreSQL). The locking read stays a cached Core statement (see
# ``_Driver.select``).
#
# A reading changes only the reading columns of its transaction row (``_READINGS``), so
# its UPDATE sets only those: setting every column made SQLite rewrite the entries of
# the row's five indexes (charger and state, tag and state, start time, the retry key,
# the one active transaction per connector) at every reading, with their pages in the
# commit's log writes. Measured alone (SQLite file, WAL, synchronous=FULL, one row per
# transaction with its commit): 107-111 us of CPU with every column, 61-64 us with the
# four. A row whose other columns changed too is written whole, as before.


class _Driver:
    """Plain SQL and per-column processors for one dialect (built once per dialect)."""

    __slots__ = (
        "insert_samples_sql",
        "reading_processors",
        "update_one",
        "update_processors",
        "update_reading",
    )

    def __init__(self, dialect: Any) -> None:
        samples: Table = MeterValueRow.__table__  # type: ignore[assignment]
        conflict = " ON CONFLICT (" + ", ".join(METER_VALUE_KEY) + ") DO NOTHING"
        self.insert_samples_sql = MultiRowInsert(samples, _SAMPLE_COLUMNS, dialect, conflict)
        mark = "%s" if dialect.name == "postgresql" else "?"
        self.update_processors = processors(_TX, _UPDATE_COLUMNS, dialect)
        self.update_one = (
            f"UPDATE {_TX.name} SET "
            + ", ".join(f"{name} = {mark}" for name in _TX_COLUMNS)
            + f" WHERE transaction_id = {mark}"
        )
        self.reading_processors = processors(_TX, _READING_ROW, dialect)
        self.update_reading = (
            f"UPDATE {_TX.name} SET "
            + ", ".join(f"{name} = {mark}" for name in _READINGS)
            + f" WHERE transaction_id = {mark}"
        )

    def insert_samples(self, connection: Any, rows: list[tuple[Any, ...]]) -> None:
        self.insert_samples_sql.run(connection, rows)

    def update(self, connection: Any, rows: list[tuple[Any, ...]]) -> None:
        # One statement per transaction row (executemany: sqlite3 steps it in C, psycopg
        # pipelines it); transaction_id goes last (the WHERE).
        moved = [(*row[1:], row[0]) for row in processed(rows, self.update_processors)]
        connection.exec_driver_sql(self.update_one, moved if len(moved) > 1 else moved[0])

    def update_readings(self, connection: Any, rows: list[tuple[Any, ...]]) -> None:
        """``_READING_ROW`` rows: only the reading columns of each transaction row."""
        moved = [(*row[2:], row[0]) for row in processed(rows, self.reading_processors)]
        connection.exec_driver_sql(self.update_reading, moved if len(moved) > 1 else moved[0])

    def select(self, connection: Any, tids: Sequence[int]) -> list[Transaction]:
        # SQLAlchemy's cached Core statements: their result metadata is cached with them,
        # which plain SQL's is not (it is rebuilt from the cursor description per call,
        # 22 columns, dearer than what it saves).
        if len(tids) == 1:
            rows = connection.execute(_SELECT_OWN, {"tid": tids[0]})
        else:
            rows = connection.execute(_SELECT_MANY, {"tids": list(tids)})
        return [_transaction(row) for row in rows]


_SAMPLE_COLUMNS = (
    "charger_id",
    "connector_id",
    "reported_transaction_id",
    "transaction_id",
    "at",
    "value",
    "context",
    "format",
    "measurand",
    "phase",
    "location",
    "unit",
)
_DRIVERS: dict[str, _Driver] = {}
_UPDATE_COLUMNS = ("transaction_id", *_TX_COLUMNS)
# What a MeterValues reading may change of its transaction (transaction_lifecycle's
# _meter_values), and the rest of a transaction, compared to find out.
_READINGS = ("energy_wh", "last_meter_wh", "last_power_w", "last_meter_at")
_READING_ROW = ("transaction_id", "charger_id", *_READINGS)
_reading_row = attrgetter(*_READING_ROW)
_not_readings = attrgetter(*(f.name for f in fields(Transaction) if f.name not in _READINGS))


def _driver(connection: Any) -> _Driver:
    dialect = connection.dialect
    driver = _DRIVERS.get(dialect.name)
    if driver is None:
        driver = _DRIVERS[dialect.name] = _Driver(dialect)
    return driver


def _transaction(row: TransactionRow) -> Transaction:
    return Transaction(
        transaction_id=row.transaction_id,
        charger_id=row.charger_id,
        connector_id=row.connector_id,
        id_tag=row.id_tag,
        id_tag_status=AuthorizationStatus(row.id_tag_status),
        start_time=row.start_time,
        meter_start=row.meter_start,
        state=TransactionState(row.state),
        stop_time=row.stop_time,
        meter_stop=row.meter_stop,
        stop_reason=StopReason(row.stop_reason) if row.stop_reason else None,
        stop_id_tag=row.stop_id_tag,
        energy_wh=row.energy_wh,
        last_meter_wh=row.last_meter_wh,
        last_power_w=row.last_power_w,
        reservation_id=row.reservation_id,
        last_meter_at=row.last_meter_at,
        end_reason=row.end_reason,
        ended_at=row.ended_at,
        closed_by=row.closed_by,
        energy_flag=row.energy_flag,
        created_at=row.created_at,
    )


def _update_params(tx: Transaction) -> dict[str, Any]:
    params = {"b_" + k: v for k, v in _columns(tx).items()}
    params["b_transaction_id"] = tx.transaction_id
    return params


def _update_row(tx: Transaction) -> tuple[Any, ...]:
    """transaction_id, then ``_TX_COLUMNS`` in order (the driver-level UPDATE)."""
    return (
        tx.transaction_id,
        tx.charger_id,
        tx.connector_id,
        tx.id_tag,
        tag_key(tx.id_tag),
        tx.id_tag_status.value,
        tx.start_time,
        tx.meter_start,
        tx.reservation_id,
        tx.state.value,
        tx.stop_time,
        tx.meter_stop,
        tx.stop_reason.value if tx.stop_reason else None,
        tx.stop_id_tag,
        tx.energy_wh,
        tx.last_meter_wh,
        tx.last_power_w,
        tx.last_meter_at,
        tx.end_reason,
        tx.ended_at,
        tx.closed_by,
        tx.energy_flag,
    )


def _columns(tx: Transaction) -> dict[str, Any]:
    return {
        "charger_id": tx.charger_id,
        "connector_id": tx.connector_id,
        "id_tag": tx.id_tag,
        "tag_key": tag_key(tx.id_tag),
        "id_tag_status": tx.id_tag_status.value,
        "start_time": tx.start_time,
        "meter_start": tx.meter_start,
        "reservation_id": tx.reservation_id,
        "state": tx.state.value,
        "stop_time": tx.stop_time,
        "meter_stop": tx.meter_stop,
        "stop_reason": tx.stop_reason.value if tx.stop_reason else None,
        "stop_id_tag": tx.stop_id_tag,
        "energy_wh": tx.energy_wh,
        "last_meter_wh": tx.last_meter_wh,
        "last_power_w": tx.last_power_w,
        "last_meter_at": tx.last_meter_at,
        "end_reason": tx.end_reason,
        "ended_at": tx.ended_at,
        "closed_by": tx.closed_by,
        "energy_flag": tx.energy_flag,
    }


def authorize(s: Session, charger_id: str, id_tag: str, now: datetime) -> IdTagInfo:
    return decide(get_tag(s, id_tag), now)


def _new_id(s: Session) -> int:
    # Random rather than sequential: ids are not guessable across chargers (steve#1296).
    while True:
        candidate = secrets.randbelow(MAX_TRANSACTION_ID) + 1
        if s.get(TransactionRow, candidate) is None:
            return candidate


# --- Loading the ledger, under locks ------------------------------------------------


def _lock(s: Session, *names: str) -> None:
    """Transaction-scoped advisory locks on PostgreSQL, always taken in sorted order so
    two decisions never wait on each other in a cycle. SQLite has one writer already."""
    if s.get_bind().dialect.name != "postgresql":
        return
    for name in sorted(set(names)):
        key = int.from_bytes(
            hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
        )
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _connector_lock(charger_id: str, connector_id: int) -> str:
    return f"voltaro.connector:{charger_id}:{connector_id}"


def _rows(s: Session, *conditions: ColumnElement[bool]) -> list[TransactionRow]:
    query = select(TransactionRow).where(*conditions).with_for_update()
    return list(s.scalars(query))


def _ledger(s: Session, rows: Iterable[TransactionRow]) -> lc.Ledger:
    txs = {r.transaction_id: _transaction(r) for r in rows}
    chargers = {t.charger_id for t in txs.values()}
    connectors: dict[tuple[str, int], lc.ConnectorView] = {}
    for c in s.scalars(select(ConnectorRow).where(ConnectorRow.charger_id.in_(chargers))):
        try:
            status = ConnectorStatus(c.status) if c.status is not None else None
        except ValueError:
            status = None
        connectors[(c.charger_id, c.connector_id)] = lc.ConnectorView(
            charger_id=c.charger_id,
            connector_id=c.connector_id,
            status=status,
            status_at=c.status_at,
            received_at=c.status_received_at,
        )
    views = {
        charger_id: lc.ChargerView(charger_id=charger_id, connected=False)
        for charger_id in chargers
    }
    for ch in s.scalars(select(ChargePointRow).where(ChargePointRow.charger_id.in_(chargers))):
        views[ch.charger_id] = lc.ChargerView(
            charger_id=ch.charger_id, connected=ch.connected, last_boot=ch.last_boot
        )
    return lc.Ledger(transactions=txs, connectors=connectors, chargers=views)


def _apply(s: Session, effects: Sequence[lc.Effect]) -> lc.Reply:
    """Save what a decision returned, in order (updates before the insert they make
    room for), and return its answer."""
    for effect in effects:
        if isinstance(effect, lc.SaveTransaction):
            tx = effect.transaction
            if effect.new:
                s.connection().execute(
                    _TX.insert(),
                    [
                        {"transaction_id": tx.transaction_id, "created_at": tx.created_at}
                        | _columns(tx)
                    ],
                )
            else:
                s.connection().execute(_UPDATE_TX, [_update_params(tx)])
        elif isinstance(effect, lc.KeepStop):
            req = effect.request
            _insert_ignore(
                s,
                OrphanStopRow,
                [
                    {
                        "charger_id": req.charger_id,
                        "transaction_id": req.transaction_id,
                        "kind": effect.kind,
                        "meter_stop": req.meter_stop,
                        "stop_time": req.timestamp,
                        "id_tag": req.id_tag,
                        "reason": req.reason.value,
                        "received_at": req.received_at,
                    }
                ],
                ["charger_id", "transaction_id", "meter_stop", "stop_time"],
            )
        elif isinstance(effect, lc.StoreSamples):
            _store_samples(
                s,
                effect.charger_id,
                effect.connector_id,
                effect.reported_transaction_id,
                effect.linked,
                effect.values,
            )
    return lc.answer(list(effects))


# --- Units of work --------------------------------------------------------------------


def start_transaction(
    s: Session, req: StartTransactionRequest, *, allow_concurrent: bool
) -> StartTransactionResult:
    key = tag_key(req.id_tag)
    _lock(s, _connector_lock(req.charger_id, req.connector_id), f"voltaro.tag:{key}")
    here = _rows(
        s,
        TransactionRow.charger_id == req.charger_id,
        TransactionRow.connector_id == req.connector_id,
        TransactionRow.state.in_((TransactionState.ACTIVE.value, TransactionState.REFUSED.value)),
        TransactionRow.meter_stop.is_(None),
    )
    elsewhere = s.scalars(
        select(TransactionRow).where(
            TransactionRow.tag_key == key, TransactionRow.state == TransactionState.ACTIVE.value
        )
    )
    ledger = _ledger(s, [*here, *elsewhere])
    event = lc.StartTransaction(
        request=req,
        tag=get_tag(s, req.id_tag),
        new_id=_new_id(s),
        allow_concurrent=allow_concurrent,
    )
    _, effects = lc.decide(ledger, event)
    result = _apply(s, effects)
    assert isinstance(result, StartTransactionResult)
    if req.reservation_id is not None:
        # The reservation ends with this start, in the same commit as the answer (§4.8).
        closed = close_by_start(
            s,
            req.charger_id,
            req.reservation_id,
            result.transaction_id,
            req.id_tag,
            req.timestamp,
        )
        if closed is not None:
            result = replace(result, reservation=closed)
    return result


def _own_row(s: Session, transaction_id: int | None) -> list[TransactionRow]:
    if transaction_id is None or not 0 < transaction_id <= MAX_TRANSACTION_ID:
        return []
    return _rows(s, TransactionRow.transaction_id == transaction_id)


def stop_transaction(s: Session, req: StopTransactionRequest) -> StopTransactionResult:
    ledger = _ledger(s, _own_row(s, req.transaction_id))
    tag = get_tag(s, req.id_tag) if req.id_tag else None
    _, effects = lc.decide(ledger, lc.StopTransaction(request=req, tag=tag))
    result = _apply(s, effects)
    assert isinstance(result, StopTransactionResult)
    return result


def record_meter_values(s: Session, req: MeterValuesRequest) -> MeterSummary:
    # The MeterValues rule looks only at the charger's own transaction row (no
    # connectors, no chargers): one cached SELECT ... FOR UPDATE, no ORM objects.
    batch: _MeterBatch | None = s.info.get(_METER_BATCH)
    if batch is not None:
        return batch.record(s, req)
    # Alone (a group commit of one message, the fallback one unit at a time,
    # Database.run): the same read and writes as inside a batch, for this one message;
    # at 500 msg/s most group commits hold a single message.
    alone = _MeterBatch(s.connection())
    summary = alone.record(s, req)
    alone.write(s)
    return summary


# --- MeterValues inside a group commit (issue 14 step 2) ------------------------------
#
# On PostgreSQL a unit of work costs round trips, not CPU: per MeterValues a SELECT ...
# FOR UPDATE of its transaction row, an UPDATE of it and the samples' INSERT. Inside a
# batch the MeterValues units share them: one SELECT ... FOR UPDATE of every
# transaction row they name, in (charger id, transaction id) order (the batch's lock
# order, group_commit.lock_order), then each unit decides from those rows and keeps its
# writes pending; they are written as one executemany UPDATE (one per touched
# transaction: the latest state wins) and the samples' INSERT (pages of rows on
# PostgreSQL: voltaro.store.plain_sql), at the end of the
# batch or before a unit of another kind runs, which must see them. Nothing else
# changes: the same decision, the same ON CONFLICT de-duplication of a retried message.

_METER_BATCH = "voltaro.meter_batch"


class _MeterBatch:
    """The transaction rows a batch's MeterValues read (locked) and their pending writes."""

    __slots__ = ("absent", "connection", "driver", "readings", "rows", "samples", "updates")

    def __init__(self, connection: Any) -> None:
        self.connection = connection  # the batch's: a Session keeps one per transaction
        self.driver = _driver(connection)
        self.rows: dict[int, Transaction] = {}
        self.absent: set[int] = set()  # looked up: no such transaction
        self.updates: dict[int, tuple[Any, ...]] = {}  # whole rows (_update_row)
        self.readings: dict[int, tuple[Any, ...]] = {}  # reading columns only (_READING_ROW)
        self.samples: list[tuple[Any, ...]] = []

    def read(self, s: Session, tids: Sequence[int]) -> None:
        wanted = sorted({t for t in tids if 0 < t <= MAX_TRANSACTION_ID} - self.rows.keys())
        if not wanted:
            return
        for tx in self.driver.select(self.connection, wanted):
            self.rows[tx.transaction_id] = tx
        self.absent.update(t for t in wanted if t not in self.rows)

    def record(self, s: Session, req: MeterValuesRequest) -> MeterSummary:
        tid = req.transaction_id
        transactions: dict[int, Transaction] = {}
        if tid is not None and 0 < tid <= MAX_TRANSACTION_ID:
            if tid not in self.rows and tid not in self.absent:
                self.read(s, [tid])  # forgotten since the batch began (see forget)
            if tid in self.rows:
                transactions[tid] = self.rows[tid]
        _, effects = lc.decide(lc.Ledger(transactions=transactions), lc.MeterValues(request=req))
        for effect in effects:
            if isinstance(effect, lc.SaveTransaction) and not effect.new:
                tx = effect.transaction
                tid = tx.transaction_id
                before = self.rows.get(tid)
                self.rows[tid] = tx
                if (
                    tid not in self.updates
                    and before is not None
                    and _not_readings(before) == _not_readings(tx)
                ):
                    self.readings[tid] = _reading_row(tx)
                else:
                    self.readings.pop(tid, None)
                    self.updates[tid] = _update_row(tx)
            elif isinstance(effect, lc.StoreSamples):
                self.samples.extend(
                    _sample_rows(
                        effect.charger_id,
                        effect.connector_id,
                        effect.reported_transaction_id,
                        effect.linked,
                        effect.values,
                    )
                )
            elif not isinstance(effect, lc.Answer):
                self.write(s)  # not a MeterValues effect today: kept in order all the same
                _apply(s, [effect, lc.Answer(reply=None)])
        summary = lc.answer(effects)
        assert isinstance(summary, MeterSummary)
        return summary

    def write(self, s: Session) -> None:
        if self.updates:
            # In (charger, transaction) order, the order their rows were locked in.
            rows = sorted(self.updates.values(), key=lambda row: (row[1], row[0]))
            self.driver.update(self.connection, rows)
            self.updates = {}
        if self.readings:
            rows = sorted(self.readings.values(), key=lambda row: (row[1], row[0]))
            self.driver.update_readings(self.connection, rows)
            self.readings = {}
        if self.samples:
            self.driver.insert_samples(self.connection, self.samples)
            self.samples = []

    def forget(self, charger_id: str) -> None:
        """Another kind of unit may change ``charger_id``'s transactions (``""``: any):
        read them again when needed (their row locks are held until the commit)."""
        if not charger_id:
            self.rows.clear()
        else:
            for tid in [t for t, tx in self.rows.items() if tx.charger_id == charger_id]:
                del self.rows[tid]
        self.absent.clear()  # a StartTransaction may have created one


def _prepare_meter_values(s: Session, units: list[tuple[Any, ...]]) -> None:
    batch = _MeterBatch(s.connection())
    batch.read(s, [req.transaction_id for req, *_ in units if req.transaction_id is not None])
    s.info[_METER_BATCH] = batch


BATCHED[record_meter_values] = BatchHooks(_prepare_meter_values, flush_kept(_METER_BATCH))


def apply_status(s: Session, req: StatusNotificationRequest) -> list[Transaction]:
    """The lifecycle side of a StatusNotification (after the connector row is saved):
    Available after a reboot interrupts what still runs there. Returns those."""
    if req.status is not ConnectorStatus.AVAILABLE or req.connector_id <= 0:
        return []
    _lock(s, _connector_lock(req.charger_id, req.connector_id))
    rows = _rows(
        s,
        TransactionRow.charger_id == req.charger_id,
        TransactionRow.connector_id == req.connector_id,
        TransactionRow.state == TransactionState.ACTIVE.value,
    )
    if not rows:
        return []
    _, effects = lc.decide(_ledger(s, rows), lc.StatusNotification(request=req))
    _apply(s, effects)
    return [e.transaction for e in effects if isinstance(e, lc.SaveTransaction)]


def close_transaction(
    s: Session,
    transaction_id: int,
    *,
    meter_stop: int | None,
    reason: str | None,
    actor: str,
    at: datetime,
) -> lc.CloseResult:
    """An operator closes an active or interrupted transaction (reconciliation)."""
    ledger = _ledger(s, _own_row(s, transaction_id))
    event = lc.OperatorClose(
        transaction_id=transaction_id, meter_stop=meter_stop, reason=reason, actor=actor, at=at
    )
    _, effects = lc.decide(ledger, event)
    result = _apply(s, effects)
    assert isinstance(result, lc.CloseResult)
    return result


def _store_samples(
    s: Session,
    charger_id: str,
    connector_id: int,
    reported: int,
    linked: int | None,
    values: Sequence[MeterValue],
) -> None:
    rows = _sample_rows(charger_id, connector_id, reported, linked, values)
    if rows:
        connection = s.connection()
        _driver(connection).insert_samples(connection, rows)


def _sample_rows(
    charger_id: str,
    connector_id: int,
    reported: int,
    linked: int | None,
    values: Sequence[MeterValue],
) -> list[tuple[Any, ...]]:
    """One row per sample, in ``_SAMPLE_COLUMNS`` order."""
    return [
        (
            charger_id,
            connector_id,
            reported,
            linked,
            mv.timestamp,
            sv.value,
            sv.context,
            sv.format,
            sv.measurand,
            sv.phase or "",
            sv.location,
            sv.unit,
        )
        for mv in values
        for sv in mv.sampled_values
    ]


def _insert_ignore(
    s: Session, model: type, rows: Sequence[Mapping[str, object]], keys: list[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: a retried message stores nothing twice.

    One cached statement per table, run as executemany (on psycopg 3 a pipeline of one
    statement per row: SQLAlchemy's insertmanyvalues applies only with RETURNING)."""
    connection = s.connection()
    statement = _insert_ignore_statement(connection.dialect.name, model, keys)
    connection.execute(statement, list(rows))


def _insert_ignore_statement(dialect: str, model: type, keys: Sequence[str]) -> Executable:
    table: Table = model.__table__  # type: ignore[attr-defined]
    statement = _INSERT_IGNORE.get((dialect, table.name))
    if statement is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(table).on_conflict_do_nothing(index_elements=list(keys))
        _INSERT_IGNORE[(dialect, table.name)] = statement
    return statement


def _filters(
    active: bool | None,
    charger_id: str | None,
    since: datetime | None,
    until: datetime | None,
    state: TransactionState | None = None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if active is not None:
        # "Not active" is every ended state: completed, interrupted, refused, closed.
        if active:
            conditions.append(TransactionRow.state == TransactionState.ACTIVE.value)
        else:
            conditions.append(TransactionRow.state != TransactionState.ACTIVE.value)
    if state is not None:
        conditions.append(TransactionRow.state == state.value)
    if charger_id is not None:
        conditions.append(TransactionRow.charger_id == charger_id)
    if since is not None:
        conditions.append(TransactionRow.start_time >= since)
    if until is not None:
        conditions.append(TransactionRow.start_time < until)
    return conditions


def list_transactions(
    s: Session,
    *,
    active: bool | None = None,
    charger_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    state: TransactionState | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Transaction]:
    query = (
        select(TransactionRow)
        .where(*_filters(active, charger_id, since, until, state))
        .order_by(TransactionRow.start_time.desc(), TransactionRow.transaction_id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_transaction(r) for r in s.scalars(query)]


def count_transactions(
    s: Session,
    *,
    active: bool | None = None,
    charger_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    state: TransactionState | None = None,
) -> int:
    query = (
        select(func.count())
        .select_from(TransactionRow)
        .where(*_filters(active, charger_id, since, until, state))
    )
    return s.scalar(query) or 0


def export_page(
    s: Session,
    *,
    start_from: datetime | None,
    start_to: datetime | None,
    charger_id: str | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int = 500,
) -> list[Transaction]:
    """One page of sessions for the billing export, in start order (then id), the page
    after ``after`` (the last row's start time and id): keyset paging on
    ix_transactions_start, so a year of sessions is read page by page, never at once."""
    query = select(TransactionRow).where(*_filters(None, charger_id, start_from, start_to))
    if after is not None:
        last_start, last_id = after
        query = query.where(
            or_(
                TransactionRow.start_time > last_start,
                and_(
                    TransactionRow.start_time == last_start,
                    TransactionRow.transaction_id > last_id,
                ),
            )
        )
    query = query.order_by(TransactionRow.start_time, TransactionRow.transaction_id).limit(limit)
    return [_transaction(r) for r in s.scalars(query)]


def get_transaction(s: Session, transaction_id: int) -> Transaction | None:
    if not 0 < transaction_id <= MAX_TRANSACTION_ID:
        return None
    row = s.get(TransactionRow, transaction_id)
    return _transaction(row) if row is not None else None


def transaction_meter_values(s: Session, transaction_id: int) -> list[MeterValue]:
    rows = s.scalars(
        select(MeterValueRow)
        .where(MeterValueRow.transaction_id == transaction_id)
        .order_by(MeterValueRow.at, MeterValueRow.id)
    )
    grouped: dict[datetime, list[SampledValue]] = {}
    for r in rows:
        grouped.setdefault(r.at, []).append(
            SampledValue(
                value=r.value,
                context=r.context,
                format=r.format,
                measurand=r.measurand,
                phase=r.phase or None,
                location=r.location,
                unit=r.unit,
            )
        )
    return [MeterValue(timestamp=at, sampled_values=tuple(v)) for at, v in grouped.items()]


def orphan_stops(
    s: Session, charger_id: str | None = None, *, kind: str | None = None, limit: int | None = None
) -> list[dict[str, object]]:
    """Stops that closed nothing, newest first; ``kind``: unknown, foreign or conflict."""
    query = select(OrphanStopRow).order_by(OrphanStopRow.received_at.desc())
    if charger_id is not None:
        query = query.where(OrphanStopRow.charger_id == charger_id)
    if kind is not None:
        query = query.where(OrphanStopRow.kind == kind)
    if limit is not None:
        query = query.limit(limit)
    return [
        {
            "charger_id": r.charger_id,
            "transaction_id": r.transaction_id,
            "kind": r.kind,
            "meter_stop": r.meter_stop,
            "stop_time": r.stop_time,
            "reason": r.reason,
            "id_tag": r.id_tag,
            "received_at": r.received_at,
        }
        for r in s.scalars(query)
    ]


def live_sessions_of_tag(s: Session, id_tag: str) -> list[tuple[int, str]]:
    """(transaction id, charger id) of the tag's transactions that could still be
    charging (the ConcurrentTx rule's view), for the remote-start check (issue 23.3)."""
    rows = list(
        s.scalars(
            select(TransactionRow).where(
                TransactionRow.tag_key == tag_key(id_tag),
                TransactionRow.state == TransactionState.ACTIVE.value,
            )
        )
    )
    ledger = _ledger(s, rows)
    return [
        (tx.transaction_id, tx.charger_id)
        for tx in ledger.transactions.values()
        if lc.plausibly_live(tx, ledger)
    ]
