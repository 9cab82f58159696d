"""The charger simulator against the real server: boot to stop, and remote commands."""

from __future__ import annotations

import sys

import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.support.simulator import SIMULATE, one_charger, wait_booted
from voltaro.domain.model import TransactionState
from voltaro.store import chargers, tags, transactions


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
    # A session that starts just before --duration ends is stopped at once (0 Wh).
    assert all(t.energy_wh is not None and t.energy_wh >= 0 for t in done)
    assert any(t.energy_wh for t in done)
    measurands = {
        sv.measurand
        for t in done
        for mv in server.run(transactions.transaction_meter_values, t.transaction_id)
        for sv in mv.sampled_values
    }
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
                one_charger(server.url, session_length="1", meter_interval="0.3", duration="8"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

        nursery.start_soon(simulate)
        client = await ControlClient.connect(server.addresses.control_socket or "")
        await wait_booted(server, "SIM-1", 10)
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


async def test_n_chargers_with_n_tags_charge_in_parallel(server: RunningServer) -> None:
    """Issue 13: every charger used the first tag, so all but one session was refused."""
    ids = ["SIM-1", "SIM-2", "SIM-3"]
    tag_ids = ["TAG-A", "TAG-B", "TAG-C"]
    for charger_id in ids:
        server.run(chargers.add_charger, charger_id)
    for tag in tag_ids:
        server.run(tags.add_tag, tag)
    result = await trio.run_process(
        [
            sys.executable,
            str(SIMULATE),
            server.url,
            "--chargers",
            "3",
            "--connectors",
            "1",
            "--tag",
            ",".join(tag_ids),
            "--session-every",
            "0.2",
            "--session-length",
            "4",
            "--meter-interval",
            "0.5",
            "--duration",
            "8",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    stored = server.run(transactions.list_transactions, limit=100)
    assert stored, result.stdout.decode()
    assert all(t.id_tag_status.value == "Accepted" for t in stored), [
        (t.charger_id, t.id_tag, t.id_tag_status) for t in stored
    ]
    assert all(t.stop_reason != "DeAuthorized" for t in stored)
    assert {t.charger_id for t in stored} == set(ids)
    assert {t.id_tag for t in stored} == set(tag_ids)
    charged = [t for t in stored if t.energy_wh]  # not those cut short by --duration
    # At some moment the three chargers were charging at once (a sweep over the sessions).
    edges = sorted(
        [(t.start_time, 1) for t in charged] + [(t.stop_time, -1) for t in charged if t.stop_time]
    )
    active, most = 0, 0
    for _, step in edges:
        active += step
        most = max(most, active)
    assert most == 3


async def test_without_local_sessions_the_simulator_heartbeats_at_its_interval(
    server: RunningServer,
) -> None:
    """--session-every 0 (remote starts only): a heartbeat every HeartbeatInterval, not
    one every 50 ms (the wait for the next local session was taken as due at once)."""
    server.run(chargers.add_charger, "SIM-1")
    result = await trio.run_process(
        [
            sys.executable, str(SIMULATE), server.url, "--chargers", "1", "--connectors", "1",
            "--session-every", "0", "--duration", "3", "--summary-every", "1",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    done = result.stdout.decode().splitlines()[-1]
    assert "messages=" in done, done
    messages = int(done.split("messages=")[1].split()[0])
    # BootNotification and StatusNotification for connectors 0 and 1: nothing else in 3 s.
    assert messages <= 5, done
