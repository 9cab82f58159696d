"""Issue 16 with the simulator (the `ocpp` library's own asyncio ChargePoint over
`websockets`) as the independent charger, driven by `voltaro ctl` as an operator would:
local lists kept in sync (Full, then Differential, split by SendLocalListMaxLength),
a reservation honoured and ended by the StartTransaction that uses it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.test_ctl import ctl
from voltaro.domain.reservations import ReservationState
from voltaro.store import chargers, local_lists, reservations, tags, transactions

SIMULATE = Path(__file__).resolve().parents[2] / "scripts" / "simulate.py"


async def test_local_list_and_reservation_with_the_simulator(server: RunningServer) -> None:
    server.run(chargers.add_charger, "SIM-1")
    for n in range(25):  # more than the simulator's SendLocalListMaxLength (20)
        server.run(tags.add_tag, f"TAG-{n:02d}")
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
                    "120",  # the test cancels it when done
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

        nursery.start_soon(simulate)
        with trio.fail_after(10):
            while not server.run(chargers.get_charger, "SIM-1").connectors:  # noqa: ASYNC110
                await trio.sleep(0.1)

        synced = await ctl(server, "--json", "local-list", "sync", "SIM-1")
        assert synced.returncode == 0, synced.stderr
        (first,) = json.loads(synced.stdout)
        assert (first["result"], first["update_type"], first["messages"], first["entries"]) == (
            "Accepted",
            "Full",
            2,
            25,
        )
        version = await ctl(server, "--json", "local-list", "version", "SIM-1")
        assert json.loads(version.stdout)["details"] == {"list_version": first["version"]}

        server.run(tags.block_tag, "TAG-03")
        server.run(tags.remove_tag, "TAG-04")
        human = await ctl(server, "local-list", "sync", "SIM-1")
        assert human.returncode == 0, human.stderr
        assert b"Differential" in human.stdout
        state = server.run(local_lists.list_state, "SIM-1")
        assert (state["version"], state["entries"]) == (first["version"] + 1, 24)

        added = await ctl(
            server, "--json", "reservations", "add", "SIM-1", "TAG-07", "--connector", "1",
            "--minutes", "10",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        reservation = json.loads(added.stdout)
        assert (reservation["state"], reservation["answer"]) == ("accepted", "Accepted")
        # Reserved for TAG-07: another tag is refused on that connector.
        other = await ctl(server, "--json", "remote-start", "SIM-1", "TAG-08", "--connector", "1")
        assert json.loads(other.stdout)["status"] == "Rejected"
        started = await ctl(server, "--json", "remote-start", "SIM-1", "TAG-07", "--connector", "1")
        assert json.loads(started.stdout)["status"] == "Accepted"
        with trio.fail_after(10):
            while (  # noqa: ASYNC110 - the simulator's session, with a deadline
                server.run(reservations.get, reservation["reservation_id"]).state
                is not ReservationState.USED
            ):
                await trio.sleep(0.1)
        used = server.run(reservations.get, reservation["reservation_id"])
        tx = server.run(transactions.get_transaction, used.transaction_id)
        assert tx.reservation_id == reservation["reservation_id"]
        assert tx.id_tag == "TAG-07"

        second = await ctl(
            server, "--json", "reservations", "add", "SIM-1", "TAG-09", "--connector", "2",
            "--minutes", "10",
        )  # fmt: skip
        assert second.returncode == 0, second.stderr
        rid = json.loads(second.stdout)["reservation_id"]
        cancelled = await ctl(server, "--json", "reservations", "cancel", str(rid))
        assert json.loads(cancelled.stdout)["state"] == "cancelled"
        listed = await ctl(server, "reservations", "list", "--charger", "SIM-1")
        assert b"used" in listed.stdout
        assert b"cancelled" in listed.stdout
        nursery.cancel_scope.cancel()
