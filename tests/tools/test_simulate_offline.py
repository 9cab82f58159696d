"""A simulated charger that loses its connection (issue 17): its car keeps charging by
the profiles it holds, by its own clock, so a leased ChargePointMaxProfile brings it
down to the fallback when the lease runs out; its meter values are queued while it is
offline and sent, in order, once it is back."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import trio

from tests.e2e.conftest import RunningServer
from tests.e2e.control_client import ControlClient
from tests.support.simulator import SIMULATE, one_charger, remote_start_and_meter, wait_booted
from voltaro.store import chargers, tags, transactions

LEASE = 3  # seconds the rating holds before the fallback takes over
OFFLINE = 7  # seconds the charger stays away


def _currents(server: RunningServer, transaction_id: int) -> list[tuple[datetime, float]]:
    """(sample time, the highest phase current) of every MeterValues of a transaction."""
    out = []
    for mv in server.run(transactions.transaction_meter_values, transaction_id):
        values = [float(sv.value) for sv in mv.sampled_values if sv.measurand == "Current.Import"]
        if values:
            at = mv.timestamp if mv.timestamp.tzinfo else mv.timestamp.replace(tzinfo=UTC)
            out.append((at, max(values)))
    return out


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_an_offline_simulator_falls_to_the_fallback_when_its_lease_runs_out(
    server: RunningServer,
) -> None:
    server.run(chargers.add_charger, "SIM-1")
    server.run(tags.add_tag, "T1")
    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    process = await trio.lowlevel.open_process(
        # --duration 90: the test ends it sooner.
        one_charger(
            server.url,
            session_length="120",
            meter_interval="0.25",
            duration="90",
            extra=("--commands-stdin",),
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None
    try:
        await wait_booted(server, "SIM-1", 15)
        tx = await remote_start_and_meter(
            server, client, "SIM-1", "T1", lambda tx: _currents(server, tx), 15
        )
        # The car takes ~7 kW: about 10 A per phase, under the 32 A of the lease.
        assert min(a for _, a in _currents(server, tx)) > 8.0

        # The load manager's lease, as an operator could send it: 32 A until the lease
        # runs out, then 6 A with no end (Absolute from the server's clock).
        start = datetime.now(UTC).replace(microsecond=0)
        lease = {
            "chargingProfileId": 1699,
            "stackLevel": 1,
            "chargingProfilePurpose": "ChargePointMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "startSchedule": _utc(start),
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 32.0},
                    {"startPeriod": LEASE, "limit": 6.0},
                ],
            },
        }
        answer = await client.request(
            "profiles.set", {"charger_id": "SIM-1", "connector_id": 0, "profile": lease}
        )
        assert answer["result"]["status"] == "Accepted", answer
        await process.stdin.send_all(f"offline SIM-1 {OFFLINE}\n".encode())
        dropped = datetime.now(UTC)
        expiry = start + timedelta(seconds=LEASE)
        # Back after OFFLINE seconds, with what it measured while away.
        with trio.fail_after(OFFLINE + 20):
            while not any(  # noqa: ASYNC110
                at > dropped + timedelta(seconds=OFFLINE + 1) for at, _ in _currents(server, tx)
            ):
                await trio.sleep(0.2)
        samples = _currents(server, tx)
        away = [(at, a) for at, a in samples if dropped + timedelta(seconds=0.5) < at]
        away = [(at, a) for at, a in away if at < dropped + timedelta(seconds=OFFLINE - 0.5)]
        # Sampled every 0.25 s while offline, queued, and delivered after the reconnect.
        assert len(away) >= 8, samples
        before = [a for at, a in samples if at < expiry - timedelta(seconds=0.5)]
        after = [a for at, a in samples if at >= expiry + timedelta(seconds=1)]
        assert before, samples
        assert min(before) > 8.0, samples  # within the lease: the car's own ~10 A
        assert after, samples
        assert max(after) <= 6.0, samples  # the fallback, offline and after the return
        assert [at for at, _ in samples] == sorted(at for at, _ in samples)
        with trio.fail_after(10):
            while not server.run(transactions.list_transactions, active=True):  # noqa: ASYNC110
                await trio.sleep(0.1)
    finally:
        process.kill()
        await process.wait()
        await client.aclose()


def _parsed_offline(*argv: str) -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys; sys.path.insert(0, {str(SIMULATE.parent)!r}); "
        "from simulate import parse_args; print(parse_args(sys.argv[1:]).offline)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "ws://127.0.0.1:1/ocpp", "--chargers", "3", *argv],
        capture_output=True,
        text=True,
        check=False,
    )


def test_offline_schedule_arguments() -> None:
    """--offline ID@AT+FOR: charger ID drops its link AT seconds after the start, for FOR."""
    ok = _parsed_offline("--offline", "SIM-2@60+120", "--offline", "SIM-3@0.5+2")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "[('SIM-2', 60.0, 120.0), ('SIM-3', 0.5, 2.0)]"
    for bad in ("SIM-2@60", "SIM-9@1+1", "SIM-2@x+1", "SIM-2@5+0"):
        refused = _parsed_offline("--offline", bad)
        assert refused.returncode == 2, (bad, refused.stdout)
        assert "--offline" in refused.stderr
