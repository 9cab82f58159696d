"""Issue 16 with the simulator (the `ocpp` library's own asyncio ChargePoint over
`websockets`) as the independent charger, driven by `voltaro ctl` as an operator would:
local lists kept in sync (Full, then Differential, split by SendLocalListMaxLength),
a reservation honoured and ended by the StartTransaction that uses it."""

from __future__ import annotations

import json
from typing import Any

import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.e2e.test_ctl import ctl
from tests.support.simulator import one_charger, remote_start_and_meter, wait_booted
from voltaro.domain.reservations import ReservationState
from voltaro.store import chargers, local_lists, reservations, tags, transactions


async def test_local_list_and_reservation_with_the_simulator(server: RunningServer) -> None:
    server.run(chargers.add_charger, "SIM-1")
    for n in range(25):  # more than the simulator's SendLocalListMaxLength (20)
        server.run(tags.add_tag, f"TAG-{n:02d}")
    async with trio.open_nursery() as nursery:

        async def simulate() -> None:
            await trio.run_process(
                # --duration 120: the test cancels it when done.
                one_charger(server.url, session_length="1", meter_interval="0.3", duration="120"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

        nursery.start_soon(simulate)
        await wait_booted(server, "SIM-1", 10)

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


def _phase_currents(server: RunningServer, transaction_id: int) -> list[tuple[str | None, float]]:
    return [
        (sv.phase, float(sv.value))
        for mv in server.run(transactions.transaction_meter_values, transaction_id)
        for sv in mv.sampled_values
        if sv.measurand == "Current.Import"
    ]


async def test_simulator_obeys_stacked_profiles(server: RunningServer) -> None:
    """OCPP 1.6 §3.13 in the simulator: a ChargePointMaxProfile caps a TxDefaultProfile
    in A on one phase; a TxProfile on the running transaction overrides the default.
    GetCompositeSchedule answers the composite, and MeterValues follow it (power and
    the current of the phases the limit allows)."""
    server.run(chargers.add_charger, "SIM-1")
    server.run(tags.add_tag, "T1")
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    async with trio.open_nursery() as nursery:

        async def simulate() -> None:
            await trio.run_process(
                one_charger(server.url, session_length="60", meter_interval="0.2", duration="120"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

        nursery.start_soon(simulate)
        await wait_booted(server, "SIM-1", 10)

        async def set_profile(connector: int, data: dict[str, Any]) -> None:
            response = await client.request(
                "profiles.set", {"charger_id": "SIM-1", "connector_id": connector, "profile": data}
            )
            assert response["ok"], response
            assert response["result"]["status"] == "Accepted", response

        async def composite(unit: str) -> list[dict[str, Any]]:
            response = await client.command(
                "SIM-1", "GetCompositeSchedule", connector_id=1, duration=600, unit=unit
            )
            assert response["ok"], response
            periods: list[dict[str, Any]] = response["result"]["details"]["charging_schedule"][
                "charging_schedule_period"
            ]
            return periods

        await set_profile(
            0,
            {
                "chargingProfileId": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "ChargePointMaxProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 3000.0}],
                },
            },
        )
        await set_profile(
            0,
            {
                "chargingProfileId": 2,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": 10.0, "numberPhases": 1},
                        {"startPeriod": 300, "limit": 16.0, "numberPhases": 1},
                    ],
                },
            },
        )
        # 10 A x 230 V = 2300 W for 5 minutes, then 16 A = 3680 W, capped at 3000 W.
        assert await composite("W") == [
            {"start_period": 0, "limit": 2300.0, "number_phases": 1},
            {"start_period": 300, "limit": 3000.0},
        ]
        tx = await remote_start_and_meter(
            server, client, "SIM-1", "T1", lambda tx: _phase_currents(server, tx), 10
        )
        currents = _phase_currents(server, tx)
        assert {phase for phase, _ in currents} == {"L1"}  # one phase, as the limit says
        assert max(value for _, value in currents) <= 10.0

        # A TxProfile for this transaction overrides the default (stack levels aside).
        await set_profile(
            1,
            {
                "chargingProfileId": 3,
                "stackLevel": 1,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative",
                "transactionId": tx,
                "chargingSchedule": {
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1500.0}],
                },
            },
        )
        assert await composite("W") == [{"start_period": 0, "limit": 1500.0}]
        assert await composite("A") == [{"start_period": 0, "limit": 2.2}]  # 1500/(230x3)
        seen = len(_phase_currents(server, tx))
        with trio.fail_after(10):
            while len(_phase_currents(server, tx)) < seen + 6:  # noqa: ASYNC110
                await trio.sleep(0.1)
        latest = _phase_currents(server, tx)[-3:]
        assert {phase for phase, _ in latest} == {"L1", "L2", "L3"}
        assert all(value <= 2.2 for _, value in latest)
        nursery.cancel_scope.cancel()
    await client.aclose()
