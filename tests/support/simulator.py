"""scripts/simulate.py as the independent charger in tests: the command line of one
simulated charger that starts sessions only when told (remote starts), and the waits
for it to boot and for a remote-started session to meter."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any

import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from voltaro.store import chargers, transactions

SIMULATE = Path(__file__).resolve().parents[2] / "scripts" / "simulate.py"


def one_charger(
    url: str,
    *,
    session_length: str,
    meter_interval: str,
    duration: str,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """One simulated charger (SIM-1) with no sessions of its own (--session-every 0)."""
    return [
        sys.executable,
        str(SIMULATE),
        url,
        "--chargers",
        "1",
        "--session-every",
        "0",
        "--session-length",
        session_length,
        "--meter-interval",
        meter_interval,
        "--duration",
        duration,
        *extra,
    ]


async def wait_booted(server: RunningServer, charger_id: str, seconds: float) -> None:
    """Until the charger has reported its connectors (it booted and sent its statuses)."""
    with trio.fail_after(seconds):
        while not server.run(chargers.get_charger, charger_id).connectors:  # noqa: ASYNC110
            await trio.sleep(0.1)


async def remote_start_and_meter(
    server: RunningServer,
    client: ControlClient,
    charger_id: str,
    id_tag: str,
    samples: Callable[[int], Sized],
    seconds: float,
) -> int:
    """RemoteStartTransaction on connector 1 (Accepted), then wait for the session and
    for two of its ``samples``; its transaction id."""
    started: Any = await client.command(charger_id, "remote-start", id_tag=id_tag, connector_id=1)
    assert started["result"]["status"] == "Accepted", started
    with trio.fail_after(seconds):
        while not (active := server.run(transactions.list_transactions, active=True)):  # noqa: ASYNC110
            await trio.sleep(0.1)
    tx: int = active[0].transaction_id
    with trio.fail_after(seconds):
        while len(samples(tx)) < 2:  # noqa: ASYNC110
            await trio.sleep(0.1)
    return tx
