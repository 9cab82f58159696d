"""Issue 11.5: a charger cannot fill the disk through the frame log.

The real server (SQLite and PostgreSQL) with small budgets; the chargers are independent
WebSocket clients. Each test checks what was stored, what was counted as shed (through
the control socket's ``status``, as an operator sees it) and that other chargers' frames
are not affected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing
from sqlalchemy import func, select

from tests.e2e.conftest import RunningServer, eventually, serving
from tests.e2e.control_client import ControlClient
from tests.support.charger import RawCharger
from voltaro.store import chargers
from voltaro.store.schema import FrameRow

EVENTUALLY = 10.0


async def booted(server: RunningServer, charger_id: str) -> RawCharger:
    server.run(chargers.add_charger, charger_id)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    assert (await cp.boot())["status"] == "Accepted"
    return cp


def rows_of(server: RunningServer, charger_id: str) -> list[FrameRow]:
    return list(
        server.run(
            lambda s: list(
                s.scalars(
                    select(FrameRow).where(FrameRow.charger_id == charger_id).order_by(FrameRow.id)
                )
            )
        )
    )


def row_count(server: RunningServer) -> int:
    return int(server.run(lambda s: s.scalar(select(func.count()).select_from(FrameRow))))


async def frame_log_status(server: RunningServer) -> dict[str, Any]:
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    try:
        answer = await client.request("status")
    finally:
        await client.aclose()
    assert answer["ok"], answer
    counters: dict[str, Any] = answer["result"]["protection"]["frame_log"]
    return counters


async def test_frames_over_a_chargers_rate_budget_are_dropped_and_counted(
    database_url: str, tmp_path: Path
) -> None:
    # 1 frame/s with 10 s of burst: the first 10 frames of a flood are stored.
    async with serving(database_url, tmp_path, ping_interval=0, frame_log_rate=1.0) as server:
        loud = await booted(server, "LOUD")  # boot: 2 frames of its budget
        started = trio.current_time()
        for _ in range(40):
            await loud.call("Heartbeat", {})  # 80 frames in and out
        elapsed = trio.current_time() - started
        quiet = await booted(server, "QUIET")
        await quiet.call("Heartbeat", {})

        # The quiet charger's 4 frames are all stored: the budget is per charger.
        await eventually(lambda: len(rows_of(server, "QUIET")) == 4)
        # Everything LOUD sent or got is either stored or counted as dropped.
        with trio.fail_after(EVENTUALLY):
            while True:
                counters = await frame_log_status(server)
                stored = len(rows_of(server, "LOUD"))
                if stored + counters["dropped_rate"] == 82:
                    break
                await trio.sleep(0.05)
        # At most the burst plus what the rate refilled while the test ran.
        assert 10 <= stored <= 10 + int(elapsed) + 1, (stored, elapsed)
        assert counters["dropped_rate"] > 0
        for cp in (loud, quiet):
            await cp.close()


MARKER = re.compile(r"\.\.\.\[frame log: truncated, (\d+) of (\d+) characters not kept\]$")


async def test_frames_over_the_byte_budget_are_stored_truncated_with_a_marker(
    database_url: str, tmp_path: Path
) -> None:
    # 100 bytes/s with 10 s of burst (at least 1,024 bytes): one 5 KB frame is over it.
    async with serving(
        database_url, tmp_path, ping_interval=0, frame_log_bytes_per_second=100
    ) as server:
        cp = await booted(server, "BIG")
        data = "x" * 5000
        answer = await cp.call("DataTransfer", {"vendorId": "acme", "data": data})
        assert answer["status"] == "UnknownVendorId"  # the charger is answered as usual

        def big_rows() -> list[FrameRow] | None:
            rows = [r for r in rows_of(server, "BIG") if r.action == "DataTransfer"]
            return rows if len(rows) == 2 else None  # the CALL and its answer

        big = await eventually(big_rows)
        call = next(r for r in big if r.message_type == 2)
        answer_row = next(r for r in big if r.message_type == 3)
        sent = json.dumps([2, "x", "DataTransfer", {"vendorId": "acme", "data": data}])
        match = MARKER.search(call.payload)
        assert match is not None, call.payload[-120:]
        dropped, total = int(match.group(1)), int(match.group(2))
        assert total >= len(sent) - 10  # the whole frame's size is named
        kept = call.payload[: match.start()]
        assert len(kept) == 256
        assert total - dropped == 256
        assert kept.startswith("[2,")
        # The small answer to it is stored whole.
        assert json.loads(answer_row.payload)[2] == {"status": "UnknownVendorId"}
        counters = await frame_log_status(server)
        assert counters["truncated"] == 1
        await cp.close()


async def test_the_global_cap_evicts_the_oldest_frames_first(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path, ping_interval=0, frame_log_max_rows=40) as server:
        cp = await booted(server, "CP-1")

        async def heartbeats(first: int, count: int) -> None:
            for i in range(first, first + count):
                await cp.send_raw(json.dumps([2, f"hb{i}", "Heartbeat", {}]))
                assert (await cp.recv())[1] == f"hb{i}"

        def swept(newest: str) -> Callable[[], set[str | None] | None]:
            def check() -> set[str | None] | None:
                # One read (CP-1's frames are the only ones): the sweep may run between
                # two queries.
                rows = rows_of(server, "CP-1")
                kept = {r.unique_id for r in rows}
                return kept if newest in kept and len(rows) <= 40 else None

            return check

        # Two rounds of 60 frames each: the second must be swept too, long before the
        # 30 s periodic sweep (a flood must not outgrow the cap meanwhile).
        await heartbeats(0, 30)
        await eventually(swept("hb29"))
        await heartbeats(30, 30)
        kept = await eventually(swept("hb59"))
        assert {"hb59", "hb50"} <= kept  # the newest stay
        assert "hb30" not in kept  # the oldest went first
        # Every frame stored is in the table or counted as evicted (the counter follows
        # the delete's commit).
        with trio.fail_after(EVENTUALLY):
            while True:
                counters = await frame_log_status(server)
                if counters["evicted"] + row_count(server) == counters["stored"]:
                    break
                await trio.sleep(0.05)
        assert counters["evicted"] >= 82
        # The server is still logging: a new frame is stored after the sweep.
        await cp.send_raw(json.dumps([2, "after", "Heartbeat", {}]))
        await cp.recv()
        await eventually(lambda: "after" in {r.unique_id for r in rows_of(server, "CP-1")})
        await cp.close()


async def test_the_frame_log_gives_way_to_waiting_writers_then_writes(db: Any) -> None:
    """Diagnostics never delay billing: while every database slot is held and another
    writer waits, the frame log waits aside (not in the queue); it writes as soon as the
    others are done (woken when a slot is given back)."""
    import threading
    from datetime import UTC, datetime

    from voltaro.domain.model import FrameRecord
    from voltaro.service.frame_log import FrameSink
    from voltaro.settings import Settings

    sink = FrameSink(db=db, settings=Settings(), publish=lambda *a: None)
    sink.record(
        FrameRecord(
            charger_id="CP-1", direction="in", at=datetime(2025, 1, 1, tzinfo=UTC), payload="[]"
        )
    )
    go = threading.Event()
    order: list[str] = []

    def hold(_session: Any) -> None:
        go.wait(30)

    def billing(_session: Any) -> None:
        order.append("billing")

    limiter = db.limiter
    async with trio.open_nursery() as nursery:
        for _ in range(int(limiter.total_tokens)):
            nursery.start_soon(db.run, hold)
        await eventually(lambda: limiter.borrowed_tokens == limiter.total_tokens)
        nursery.start_soon(db.run, billing)
        await eventually(lambda: limiter.statistics().tasks_waiting == 1)

        async def flush() -> None:
            await sink.flush()
            order.append("frames")

        nursery.start_soon(flush)
        await trio.testing.wait_all_tasks_blocked()
        # The frame log is not queued for a slot: the billing write keeps its turn.
        assert limiter.statistics().tasks_waiting == 1
        assert order == []
        go.set()
    assert order == ["billing", "frames"]
    assert sink.stats.stored == 1
