"""The charger simulator against the real server: boot to stop, and remote commands."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from voltaro.domain.model import TransactionState
from voltaro.store import chargers, tags, transactions

SIMULATE = Path(__file__).resolve().parents[2] / "scripts" / "simulate.py"


async def test_simulated_sessions_are_stored(server: RunningServer) -> None:
    server.run(chargers.add_charger, "SIM-1")
    server.run(tags.add_tag, "SIMTAG")
    result = await trio.run_process(
        [
            sys.executable,
            str(SIMULATE),
            server.url,
            "--chargers",
            "1",
            "--connectors",
            "1",
            "--session-every",
            "0.5",
            "--session-length",
            "1.5",
            "--meter-interval",
            "0.3",
            "--duration",
            "5",
            "--summary-every",
            "2",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"[simulate] done" in result.stdout
    done = server.run(transactions.list_transactions, active=False)
    assert done, result.stdout.decode()
    assert all(t.state is TransactionState.COMPLETED for t in done)
    assert all(t.energy_wh is not None and t.energy_wh > 0 for t in done)
    values = server.run(transactions.transaction_meter_values, done[0].transaction_id)
    measurands = {sv.measurand for mv in values for sv in mv.sampled_values}
    assert {
        "Energy.Active.Import.Register",
        "Power.Active.Import",
        "Current.Import",
        "Voltage",
    } <= measurands
    assert server.run(transactions.list_transactions, active=True) == []
    connectors = server.run(chargers.get_charger, "SIM-1").connectors
    assert [c.connector_id for c in connectors] == [0, 1]


async def test_simulator_answers_remote_start_and_config(server: RunningServer) -> None:
    server.run(chargers.add_charger, "SIM-1")
    server.run(tags.add_tag, "REMOTE")
    async with trio.open_nursery() as nursery:

        async def simulate() -> None:
            await trio.run_process(
                [
                    sys.executable,
                    str(SIMULATE),
                    server.url,
                    "--chargers",
                    "1",
                    "--session-every",
                    "0",
                    "--session-length",
                    "1",
                    "--meter-interval",
                    "0.3",
                    "--duration",
                    "8",
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

        nursery.start_soon(simulate)
        client = await ControlClient.connect(server.addresses.control_socket or "")
        with trio.fail_after(10):
            while not server.run(chargers.get_charger, "SIM-1").connectors:  # noqa: ASYNC110
                await trio.sleep(0.1)
        config = await client.command("SIM-1", "get-config", keys=["NumberOfConnectors", "X"])
        assert config["result"]["configuration"][0]["value"] == "2"
        assert config["result"]["unknown_keys"] == ["X"]
        rejected = await client.command(
            "SIM-1", "set-config", key="HeartbeatInterval", value="soon"
        )
        assert rejected["result"]["status"] == "Rejected"
        started = await client.command("SIM-1", "remote-start", id_tag="REMOTE", connector_id=1)
        assert started["result"]["status"] == "Accepted"
        with trio.fail_after(10):
            while not server.run(transactions.list_transactions, active=False):  # noqa: ASYNC110
                await trio.sleep(0.1)
        await client.aclose()
