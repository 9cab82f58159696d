#!/usr/bin/env python3
"""What one group commit of N MeterValues costs in the database thread, measured alone
(issue 14): no server, no WebSocket, no trio; the store's own unit of work
(``transactions.record_meter_values``) run through ``Database.run_batch_sync`` exactly as
the group commit runs it, N chargers with an active transaction each, every message
with 3 sampled values and a unique timestamp.

    .venv/bin/python scripts/write_path_cost.py                       # SQLite, temp file
    .venv/bin/python scripts/write_path_cost.py \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test  # a database of its own
                                                                      # there, dropped after

Prints, per batch size, the thread's CPU (``time.thread_time``: user + system, so
SQLite's log writes and fsync count) and wall time per batch and per message, median
[min-max] over ``--repeats`` rounds. After each size it checks what was written: every
sample stored and linked to its transaction, every transaction at its last reading, no
batch fallen back to one unit at a time; otherwise it prints FAILED and exits 1.

The server's WAL checkpointer (voltaro.store.wal_checkpoints) does not run here: a
commit checkpoints by itself once the log holds 10,000 pages, inside the timed work.
With ``--postgres``, the URL names a database on a server where that role may CREATE
DATABASE: the script works in a database of its own there and drops it at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voltaro.domain.model import (
    MeterValue,
    MeterValuesRequest,
    RegistrationStatus,
    SampledValue,
    StartTransactionRequest,
)
from voltaro.store import chargers, tags, transactions
from voltaro.store.db import Database
from voltaro.store.group_commit import Raised

BASE = datetime(2026, 1, 1, tzinfo=UTC)
SAMPLES = 3


def postgres_database(url: str, name: str, *, drop: bool = False) -> str:
    """Create (or drop) database ``name`` on ``url``'s server; its URL."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        if not drop:
            c.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def reading(charger_id: str, tid: int, n: int) -> MeterValuesRequest:
    return MeterValuesRequest(
        charger_id=charger_id,
        connector_id=1,
        transaction_id=tid,
        received_at=BASE,
        meter_values=(
            MeterValue(
                timestamp=BASE + timedelta(seconds=n),
                sampled_values=(
                    SampledValue(value=str(1000 + n)),
                    SampledValue(value="7000", measurand="Power.Active.Import", unit="W"),
                    SampledValue(value="32", measurand="Current.Import", unit="A", phase="L1"),
                ),
            ),
        ),
    )


def stored(db: Database) -> int:
    """Samples stored linked to their transaction."""

    def count(s: Session) -> int:
        return int(
            s.execute(
                text("SELECT count(*) FROM meter_values WHERE transaction_id IS NOT NULL")
            ).scalar_one()
        )

    return db.run_sync(count)


def behind(db: Database, txs: dict[str, int], wh: int) -> int:
    """Transactions whose last meter reading is not the last one sent (``wh``)."""

    def count(s: Session) -> int:
        return sum(
            1
            for tid in txs.values()
            if (tx := transactions.get_transaction(s, tid)) is None or tx.last_meter_wh != wh
        )

    return db.run_sync(count)


def prepare(db: Database, size: int) -> dict[str, int]:
    """``size`` accepted chargers, each with an active transaction: {charger: its id}."""
    ids = [f"WP-{size}-{i}" for i in range(size)]

    def setup(s: Session) -> None:
        for cid in ids:
            chargers.register_unknown(s, cid, RegistrationStatus.ACCEPTED)
            tags.add_tag(s, f"TAG-{cid}")

    db.run_sync(setup)
    txs = {}
    for cid in ids:
        started = db.run_sync(
            transactions.start_transaction,
            StartTransactionRequest(
                charger_id=cid,
                connector_id=1,
                id_tag=f"TAG-{cid}",
                meter_start=0,
                timestamp=BASE,
                received_at=BASE,
            ),
            allow_concurrent=False,
        )
        txs[cid] = int(started.transaction_id)
    return txs


def measure(
    db: Database, txs: dict[str, int], batches: int, clock: list[int]
) -> tuple[float, float]:
    """CPU and wall seconds for ``batches`` batches, one MeterValues per charger each."""

    def one() -> None:
        clock[0] += 1
        units = [
            (transactions.record_meter_values, (reading(cid, tid, clock[0]),))
            for cid, tid in txs.items()
        ]
        for outcome in db.run_batch_sync(units):
            if isinstance(outcome, Exception | Raised):
                raise SystemExit(f"a unit failed: {outcome!r}")

    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(batches):
        one()
    return time.thread_time() - cpu, time.perf_counter() - wall


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--postgres", default="", help="PostgreSQL server URL (default: SQLite)")
    p.add_argument("--sizes", default="1,3,8,32,64", help="MeterValues per batch")
    p.add_argument("--batches", type=int, default=0, help="per round (default: ~2,000 msgs)")
    p.add_argument("--repeats", type=int, default=3, help="rounds per size (the spread)")
    args = p.parse_args()
    name = f"voltaro_write_path_cost_{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            url = postgres_database(args.postgres, name)
        else:
            url = f"sqlite:///{tmp}/write-path.db"
        try:
            return run(Database(url), args)
        finally:
            if args.postgres:
                postgres_database(args.postgres, name, drop=True)


def run(db: Database, args: argparse.Namespace) -> int:
    try:
        db.upgrade()
        print(f"{db.backend}: CPU and wall per batch of N MeterValues ({SAMPLES} samples each)")
        print("| N | CPU per batch, us | CPU per message, us | wall per batch, us |")
        print("|---|---|---|---|")
        clock = [0]
        failed = False
        for size in (int(x) for x in args.sizes.split(",")):
            batches = args.batches or max(20, 2000 // size)
            txs = prepare(db, size)
            measure(db, txs, max(5, batches // 10), clock)  # warm-up (compiles, caches)
            before = stored(db)
            cpu, wall = [], []
            for _ in range(args.repeats):
                c, w = measure(db, txs, batches, clock)
                cpu.append(c / batches * 1e6)
                wall.append(w / batches * 1e6)
            expected = args.repeats * batches * size * SAMPLES
            got = stored(db) - before
            per_msg = [c / size for c in cpu]
            print(f"| {size} | {spread(cpu)} | {spread(per_msg)} | {spread(wall)} |")
            if got != expected:
                print(f"FAILED: {got} of {expected} samples stored for N={size}")
                failed = True
            stale = behind(db, txs, 1000 + clock[0])
            if stale:
                print(f"FAILED: {stale} of {size} transactions not at their last reading")
                failed = True
        if db.group_commit.fallbacks:
            # A batch that fell back ran one unit at a time: not what was to be measured.
            print(f"FAILED: {db.group_commit.fallbacks} batches fell back to one unit at a time")
            failed = True
        return 1 if failed else 0
    finally:
        db.dispose()


if __name__ == "__main__":
    sys.exit(main())
