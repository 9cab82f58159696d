#!/usr/bin/env python3
"""How much NOTIFY costs committing transactions on this PostgreSQL (issue 18).

    .venv/bin/python scripts/notify_ceiling.py [--postgres URL] [--threads 8] [--seconds 5]

PostgreSQL takes one global lock at the commit of every transaction that issued a
NOTIFY, so such commits are serialised across the whole server (docs/scaling.md,
"Limits"). This measures small write transactions per second (one INSERT, commit) from
``--threads`` connections, without and then with a NOTIFY in each, and one LISTEN
connection draining the notifications, on a throwaway database it creates and drops.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import threading
import time

import psycopg


def run(url: str, threads: int, seconds: float, notify: bool) -> float:
    done = [0] * threads
    stop = threading.Event()

    def worker(i: int) -> None:
        with psycopg.connect(url) as conn:
            while not stop.is_set():
                with conn.transaction():
                    conn.execute("INSERT INTO t (v) VALUES (%s)", (i,))
                    if notify:
                        conn.execute("SELECT pg_notify('ceiling', %s)", (str(done[i]),))
                done[i] += 1

    received = [0]

    def listener() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("LISTEN ceiling")
            for _ in conn.notifies(stop_after=None, timeout=seconds + 2):
                received[0] += 1
                if stop.is_set():
                    break

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    drain = threading.Thread(target=listener)
    drain.start()
    time.sleep(0.2)
    started = time.monotonic()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    took = time.monotonic() - started
    drain.join(timeout=seconds + 5)
    return sum(done) / took


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument(
        "--postgres",
        default=os.environ.get("VOLTARO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test"),
    )
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    admin_url = args.postgres.replace("postgresql+psycopg://", "postgresql://")
    name = f"voltaro_notify_{secrets.token_hex(4)}"
    url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"load before: {uptime.strip()}")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v int)")
        for r in range(args.rounds):
            plain = run(url, args.threads, args.seconds, notify=False)
            notified = run(url, args.threads, args.seconds, notify=True)
            print(
                f"round {r + 1}: {args.threads} connections, commits/s without NOTIFY "
                f"{plain:.0f}, with NOTIFY {notified:.0f} ({notified / plain:.0%})"
            )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"load after: {uptime.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
