"""Concurrent writers on PostgreSQL (issue 10 §2.9): each transaction decision is atomic.

With a pool of connections, two units of work for the same transaction can run at
once (a charger taking over its own old connection, a retry racing the original).
Each round releases several real worker threads at a barrier so their reads overlap.
SQLite has a single writer (the server runs one unit of work at a time), so these run
on PostgreSQL only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from voltaro.domain.model import (
    AuthorizationStatus,
    MeterValue,
    MeterValuesRequest,
    SampledValue,
    StartTransactionRequest,
    StopTransactionRequest,
    TransactionState,
)
from voltaro.store import chargers, tags, transactions
from voltaro.store.db import Database

pytestmark = pytest.mark.postgres

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROUNDS = 8
WRITERS = 4


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url, pool_size=WRITERS + 2)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()


def at_once(db: Database, works: list[Callable[[Any], Any]]) -> list[Any]:
    """Run each unit of work in its own thread and database transaction, all released
    together."""
    barrier = threading.Barrier(len(works), timeout=30)

    def run(work: Callable[[Any], Any]) -> Any:
        def unit(session: Any) -> Any:
            barrier.wait()
            return work(session)

        return db.run_sync(unit)

    with ThreadPoolExecutor(len(works)) as pool:
        return list(pool.map(run, works))


def start(db: Database, charger: str, connector: int, tag: str = "DRIVER") -> int:
    result = db.run_sync(
        transactions.start_transaction,
        StartTransactionRequest(
            charger_id=charger,
            connector_id=connector,
            id_tag=tag,
            meter_start=1000,
            timestamp=NOW,
            received_at=NOW,
        ),
        allow_concurrent=False,
    )
    return int(result.transaction_id)


def stop_request(tx: int, meter: int = 5000) -> StopTransactionRequest:
    return StopTransactionRequest(
        charger_id="CP-1",
        transaction_id=tx,
        meter_stop=meter,
        timestamp=NOW + timedelta(hours=1),
        received_at=NOW + timedelta(hours=1),
    )


def test_stop_twice_at_once_stops_once(pg: Database) -> None:
    pg.run_sync(chargers.add_charger, "CP-1")
    pg.run_sync(tags.add_tag, "DRIVER")
    for n in range(ROUNDS):
        tx = start(pg, "CP-1", connector=n + 1)
        request = stop_request(tx)
        outcomes = at_once(
            pg,
            [lambda s, r=request: transactions.stop_transaction(s, r).outcome] * WRITERS,
        )
        # Exactly one "stopped" (published once); the others are duplicates.
        assert sorted(outcomes) == ["duplicate"] * (WRITERS - 1) + ["stopped"]
        assert pg.run_sync(transactions.get_transaction, tx).energy_wh == 4000


def test_meter_values_racing_the_stop_never_overwrite_the_final_reading(pg: Database) -> None:
    pg.run_sync(chargers.add_charger, "CP-1")
    pg.run_sync(tags.add_tag, "DRIVER")
    for n in range(ROUNDS):
        tx = start(pg, "CP-1", connector=n + 1)
        reading = MeterValuesRequest(
            charger_id="CP-1",
            connector_id=n + 1,
            transaction_id=tx,
            meter_values=(
                MeterValue(
                    timestamp=NOW + timedelta(minutes=30),
                    sampled_values=(SampledValue(value="4000"),),
                ),
            ),
            received_at=NOW + timedelta(hours=1),
        )
        stop = stop_request(tx)
        works: list[Callable[[Any], Any]] = [
            lambda s, r=reading: transactions.record_meter_values(s, r)
        ] * (WRITERS - 1)
        works.append(lambda s, r=stop: transactions.stop_transaction(s, r))
        at_once(pg, works)
        final = pg.run_sync(transactions.get_transaction, tx)
        assert (final.state, final.meter_stop, final.last_meter_wh, final.energy_wh) == (
            TransactionState.COMPLETED,
            5000,
            5000.0,
            4000,
        )


def test_concurrent_tx_check_is_atomic(pg: Database) -> None:
    names = [f"CP-{i}" for i in range(WRITERS)]
    for name in names:
        pg.run_sync(chargers.add_charger, name)
        pg.run_sync(chargers.mark_connected, name, True, NOW)
    for n in range(ROUNDS):
        tag = f"TAG{n}"
        pg.run_sync(tags.add_tag, tag)
        requests = [
            StartTransactionRequest(
                charger_id=name,
                connector_id=1,
                id_tag=tag,
                meter_start=0,
                timestamp=NOW + timedelta(hours=n),
                received_at=NOW + timedelta(hours=n),
            )
            for name in names
        ]
        results = at_once(
            pg,
            [
                lambda s, r=r: transactions.start_transaction(s, r, allow_concurrent=False)
                for r in requests
            ],
        )
        statuses = sorted(r.id_tag_info.status for r in results)
        assert statuses == [AuthorizationStatus.ACCEPTED] + [AuthorizationStatus.CONCURRENT_TX] * (
            WRITERS - 1
        )
        # Free the tag for the next round's chargers (their connectors are reused).
        winner = next(r for r in results if r.id_tag_info.status is AuthorizationStatus.ACCEPTED)
        pg.run_sync(
            transactions.stop_transaction,
            StopTransactionRequest(
                charger_id=winner.transaction.charger_id,
                transaction_id=winner.transaction_id,
                meter_stop=10,
                timestamp=NOW + timedelta(hours=n, minutes=30),
                received_at=NOW + timedelta(hours=n, minutes=30),
            ),
        )
