#!/usr/bin/env python3
"""What one node's owner-map refresh costs with N charger_owners rows (issue 18).

    .venv/bin/python scripts/owner_map_cost.py [--postgres URL] [--rows 10000] [--reads 50]

Every node of a cluster re-reads the owners of every charger held under a live lease
once a second (voltaro.service.cluster_router: the map behind ``is_connected`` for the
background services and the HTTP API), and a console's ``chargers.list`` reads the same
rows once when asked (voltaro.store.charger_owners.live_owners). This seeds a throwaway
database (migrated, one live node owning ``--rows`` chargers), then times ``--reads``
reads of each: wall time and this process's CPU (building the map), and PostgreSQL's
own execution time (EXPLAIN ANALYZE). The database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy import text

from voltaro.store import charger_owners
from voltaro.store import routed_commands as routed
from voltaro.store.db import Database

QUERY = (
    "SELECT o.charger_id, o.node_id FROM charger_owners o JOIN cluster_nodes n "
    "ON n.node_id = o.node_id AND n.incarnation = o.incarnation "
    "WHERE n.lease_until > (now() AT TIME ZONE 'UTC')"
)


def seed(s: Any, rows: int) -> None:
    s.execute(
        text(
            "INSERT INTO cluster_nodes (node_id, incarnation, address, started_at, lease_until) "
            "VALUES ('n1', 'i1', '', now(), now() + interval '1 hour')"
        )
    )
    s.execute(
        text(
            "INSERT INTO charger_owners (charger_id, node_id, incarnation, epoch, connected_at) "
            "SELECT 'CP-' || g, 'n1', 'i1', 1, now() FROM generate_series(1, :n) g"
        ),
        {"n": rows},
    )


def measure(db: Database, read: Callable[[Any], dict[str, str]], rows: int, reads: int) -> str:
    for _ in range(5):
        db.run_sync(read)  # warm: the connection, the plan, the buffers
    walls, cpus = [], []
    for _ in range(reads):
        cpu, wall = time.process_time(), time.perf_counter()
        got = db.run_sync(read)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        assert len(got) == rows, len(got)
    walls.sort()
    return (
        f"wall p50 {statistics.median(walls) * 1000:.1f} ms, "
        f"p90 {walls[int(len(walls) * 0.9) - 1] * 1000:.1f} ms; "
        f"client CPU p50 {statistics.median(cpus) * 1000:.1f} ms"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--postgres",
        default=os.environ.get("VOLTARO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test"),
    )
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--reads", type=int, default=50)
    args = p.parse_args()
    admin_url = args.postgres.replace("postgresql+psycopg://", "postgresql://")
    base = admin_url.rsplit("/", 1)[0]
    name = f"voltaro_owners_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            db = Database(f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}")
            try:
                db.upgrade()
                db.run_sync(seed, args.rows)
                db.run_sync(lambda s: s.execute(text("ANALYZE")))
                print(f"{args.rows} owner rows, {args.reads} reads each; load {os.getloadavg()}")
                print(
                    f"  owner map (routed.owned, every second per node): "
                    f"{measure(db, routed.owned, args.rows, args.reads)}"
                )
                print(
                    f"  chargers.list (charger_owners.live_owners, when asked): "
                    f"{measure(db, charger_owners.live_owners, args.rows, args.reads)}"
                )
                plan = db.run_sync(
                    lambda s: [r[0] for r in s.execute(text(f"EXPLAIN (ANALYZE) {QUERY}"))]
                )
                for line in plan:
                    if line.startswith(("Planning", "Execution")):
                        print(f"  PostgreSQL: {line}")
            finally:
                db.dispose()
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
