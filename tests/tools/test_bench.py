"""scripts/bench.py's charger counts a MeterValues as stored only on the CALLRESULT to
that very message, even when the server sends CALLs of its own in between.

The peer is a scripted raw-JSON server on loopback that does what Voltaro does under
load: a GetConfiguration of its own (the local list sync when a charger connects)
before an answer, and a CALLERROR for a message the database could not store in time.
Before the fix the bench took the GetConfiguration for its answer, every later answer
was paired with the wrong message, and a message refused with a CALLERROR was counted
as stored and never retried: the stored-rows check then reported samples "missing".
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"

pytestmark = pytest.mark.asyncio


def load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("voltaro_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class ScriptedServer:
    """Answers MeterValues like Voltaro under load, and keeps what it acknowledged."""

    def __init__(self) -> None:
        self.acknowledged: list[str] = []  # meter timestamps answered with a CALLRESULT
        self.refused: list[str] = []  # ... answered with a CALLERROR (nothing stored)
        self.payloads: dict[str, set[str]] = {}  # timestamp -> every payload sent for it
        self.configuration_answers: list[list[Any]] = []

    async def handler(self, ws: Any) -> None:
        seen: list[str] = []
        async for text in ws:
            frame = json.loads(text)
            if frame[0] == 3:
                self.configuration_answers.append(frame)
                continue
            assert frame[:1] == [2], frame
            assert frame[2] == "MeterValues", frame
            unique_id, payload = frame[1], frame[3]
            stamp = payload["meterValue"][0]["timestamp"]
            self.payloads.setdefault(stamp, set()).add(json.dumps(payload, sort_keys=True))
            first_time = stamp not in seen
            if first_time:
                seen.append(stamp)
            if len(seen) == 1 and first_time:
                # A CALL of our own goes out before the answer (local list sync).
                await ws.send(
                    json.dumps(
                        [2, "srv-1", "GetConfiguration", {"key": ["LocalAuthListEnabled"]}]
                    )
                )
            if len(seen) == 2 and first_time:
                # Not stored within db_retry_seconds: the charger must send it again.
                self.refused.append(stamp)
                await ws.send(
                    json.dumps(
                        [4, unique_id, "InternalError", "Storage temporarily unavailable", {}]
                    )
                )
                continue
            self.acknowledged.append(stamp)
            await ws.send(json.dumps([3, unique_id, {}]))


async def test_answers_are_paired_with_their_call_by_message_id() -> None:
    bench = load_bench()
    scripted = ScriptedServer()
    async with websockets.serve(scripted.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}/cp1") as ws:
            charger = bench.Charger(ws, "cp1")
            charger.transaction_id = 7
            async with asyncio.timeout(20):
                for _ in range(3):
                    await charger.meter_values()
                # Whatever the server still had to say arrives before the check.
                await asyncio.sleep(0.3)
    sent = [bench.stamp(n) for n in (1, 2, 3)]
    # The bench counts exactly the messages the server acknowledged...
    assert charger.answered_meter == 3
    assert sorted(set(scripted.acknowledged)) == sent
    # ...retried the refused one, unchanged, until acknowledged...
    assert scripted.refused == [sent[1]]
    assert len(scripted.payloads[sent[1]]) == 1
    assert charger.call_errors == 1
    # ...and answered the server's own CALL as a charger without a local list.
    assert charger.server_calls == 1
    assert scripted.configuration_answers == [
        [3, "srv-1", {"unknownKey": ["LocalAuthListEnabled"]}]
    ]
