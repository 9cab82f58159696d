"""The site load screen (`l`, issue 17) against a real server on loopback: circuits
configured over the control socket, independent chargers (raw OCPP-J frames) that
start and stop sessions, one that refuses profiles. What the 80x24 terminal shows is
asserted: the bars and amps per phase against the limit, offered and drawn current,
a parked session with its reason, a refusing charger and what it is counted at, and
the values changing when a session stops, without a key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from console.app import ConsoleApp
from console.load_screen import LoadScreen
from console.load_view import EMPTY
from tests.console.support import (
    RawCharger,
    Server,
    press_for_screen,
    running_server,
    screen_text,
    until,
)

pytestmark = pytest.mark.asyncio

ACCEPT = {"SetChargingProfile": {"status": "Accepted"}}
REFUSE = {"SetChargingProfile": {"status": "Rejected"}}


async def ok(server: Server, op: str, args: dict[str, Any]) -> Any:
    answer = await server.ctl(op, args)
    assert answer["ok"], answer
    return answer["result"]


async def add_chargers(server: Server) -> None:
    for charger_id in ("CP-A", "CP-B", "CP-C", "CP-D"):
        await ok(server, "chargers.add", {"charger_id": charger_id})
        await ok(server, "tags.add", {"id_tag": f"T-{charger_id}"})


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as server:
        await add_chargers(server)
        yield server


async def wire_site(server: Server) -> None:
    """A 16 A site: CP-A and CP-B three-phase, CP-C single-phase on the site's L3, CP-D
    (4 A) refuses profiles, so it is counted at its rating on every phase."""
    await ok(server, "circuits.add", {"name": "site", "limit_amps": 16})
    for charger_id in ("CP-A", "CP-B"):
        await ok(server, "circuits.assign", {"charger_id": charger_id, "circuit": "site"})
    await ok(
        server, "circuits.assign", {"charger_id": "CP-C", "circuit": "site", "phases": "L1=L3"}
    )
    await ok(
        server,
        "circuits.assign",
        {"charger_id": "CP-D", "circuit": "site", "max_amps": 4, "fallback_amps": 4},
    )


async def start(charger: RawCharger, tag: str) -> int:
    await charger.status(1, "Preparing")
    answer = await charger.call(
        "StartTransaction",
        {"connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": stamp()},
    )
    await charger.status(1, "Charging")
    return int(answer["transactionId"])


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def draw(charger: RawCharger, tx: int, amps: float) -> None:
    await charger.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [
                {
                    "timestamp": stamp(),
                    "sampledValue": [
                        {
                            "value": f"{amps}",
                            "measurand": "Current.Import",
                            "phase": "L1",
                            "unit": "A",
                        },
                        {
                            "value": "1200",
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                        },
                    ],
                }
            ],
        },
    )


async def open_load(pilot: Any, app: ConsoleApp) -> LoadScreen:
    async with asyncio.timeout(10):
        await until(pilot, lambda: not app.stale)
    return await press_for_screen(pilot, app, "l", LoadScreen, lambda s: s.reads >= 1)


def line_with(text: str, *needles: str) -> str:
    found = [line for line in text.splitlines() if all(n in line for n in needles)]
    assert found, f"no line with {needles} in:\n{text}"
    return found[0]


async def shows(pilot: Any, app: ConsoleApp, *needles: str, within: float = 10.0) -> str:
    """Wait until one line of the screen holds every needle; the screen's text."""

    def present() -> bool:
        return any(all(n in line for n in needles) for line in screen_text(app).splitlines())

    try:
        async with asyncio.timeout(within):
            await until(pilot, present)
    except TimeoutError:
        raise AssertionError(f"never showed {needles}:\n{screen_text(app)}") from None
    return screen_text(app)


async def test_circuit_per_phase_parked_session_and_a_stop_at_80x24(server: Server) -> None:
    await wire_site(server)
    chargers = {
        cid: await RawCharger.connect(server.port, cid, REFUSE if cid == "CP-D" else ACCEPT)
        for cid in ("CP-A", "CP-B", "CP-C", "CP-D")
    }
    try:
        for charger in chargers.values():
            await charger.boot()
            await charger.status(1, "Available")
        app = ConsoleApp(server.socket)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_load(pilot, app)
            # The footer names the screen's keys; the main screen's footer named `l`.
            text = await shows(pilot, app, "CP-D", "refuses profiles")
            assert "4.0 A on L1 L2 L3" in line_with(text, "CP-D")
            tx_a = await start(chargers["CP-A"], "T-CP-A")
            tx_b = await start(chargers["CP-B"], "T-CP-B")
            await start(chargers["CP-C"], "T-CP-C")
            # 16 A less CP-D's 4 A on every phase: CP-A and CP-B get 6 A each, the
            # minimum; CP-C's 6 A on the site's L3 no longer fits: it is parked.
            text = await shows(pilot, app, "CP-C", "no-capacity")
            await shows(pilot, app, "CP-A", " 6.0 ")
            text = await shows(pilot, app, " L3 ", "16.0/16 A", "full")
            lines = text.splitlines()
            assert len(lines) == 24, text
            assert all(len(line) <= 80 for line in lines), text
            l1 = line_with(text, " L1 ")
            assert l1.startswith("site"), text
            assert "16.0/16 A full" in l1, text
            assert "█" * 10 in l1  # the bar, full
            assert "16.0/16 A full" in line_with(text, " L2 ")
            parked = line_with(text, "CP-C", "no-capacity")
            assert parked.split()[:4] == ["CP-C", "1", "0.0", "-"], parked
            assert "circuit site L3 (16 A) is full" in parked, parked
            assert line_with(text, "CP-A").split()[:4] == ["CP-A", "1", "6.0", "-"]
            assert "1 parked" in line_with(text, "equal · round")
            # The sparkline: the circuit at its limit now.
            assert l1.rstrip().endswith("█"), l1
            # What CP-A draws (its Current.Import meter values) shows next to its offer.
            await draw(chargers["CP-A"], tx_a, 5.2)
            text = await shows(pilot, app, "CP-A", "5.2")
            assert line_with(text, "CP-A").split()[:4] == ["CP-A", "1", "6.0", "5.2"]
            # CP-A stops: CP-C gets its turn (6 A on L3 next to CP-B), L1 and L2 drop
            # to CP-D's 4 A and CP-B's 6 A. No key is pressed: the events redraw it.
            rounds = screen.rounds
            stopped = await chargers["CP-A"].call(
                "StopTransaction",
                {"transactionId": tx_a, "meterStop": 1500, "timestamp": stamp()},
            )
            assert stopped.get("idTagInfo", {}).get("status") in (None, "Accepted"), stopped
            text = await shows(pilot, app, " L1 ", "10.0/16 A")
            assert screen.rounds > rounds
            assert "16.0/16 A full" in line_with(text, " L3 ")
            assert "10.0/16 A" in line_with(text, " L2 ")
            assert line_with(text, "CP-C").split()[:5] == ["CP-C", "1", "6.0", "-", "-"]
            assert not [line for line in text.splitlines() if line.startswith("CP-A ")], text
            assert "parked" not in line_with(text, "equal · round")
            assert tx_b  # still charging
            # CP-B's link drops mid-session: it is listed as offline with what it is
            # counted at (its fallback or the limit it last accepted, 6 A either way).
            await chargers["CP-B"].close()
            text = await shows(pilot, app, "CP-B", "offline")
            assert "6.0 A on L1 L2 L3: offline" in line_with(text, "CP-B", "offline"), text
            # An operator lowers the site's limit under what CP-B and CP-D alone are
            # counted at: the site is overloaded, said in words and marked on every bar.
            await ok(server, "circuits.set_limit", {"name": "site", "limit_amps": 8})
            text = await shows(pilot, app, "OVERLOADED site")
            l1 = line_with(text, " L1 ")
            assert "/8 A OVER" in l1, text
            assert "█!" in l1, l1
            assert "OVERLOADED" in line_with(text, "equal · round")
            # Both are alerts on the main screen too (the site bar's count, F7).
            active = {key for key, alert in app.site.alerts.items() if alert.active}
            assert {":load:site:overloaded", "CP-D:load:refuses-profiles"} <= active
            await pilot.press("escape")
            async with asyncio.timeout(5):
                await until(pilot, lambda: not isinstance(app.screen, LoadScreen))
    finally:
        for charger in chargers.values():
            await charger.close()


async def test_no_circuits_says_so_then_a_new_circuit_shows_live(server: Server) -> None:
    app = ConsoleApp(server.socket)
    async with app.run_test(size=(80, 24)) as pilot:
        async with asyncio.timeout(10):
            await until(pilot, lambda: not app.stale)
        text = await shows(pilot, app, "l Load", "/ Filter")  # the main footer, at 80 columns
        assert "l Load" in text.splitlines()[-1]
        await open_load(pilot, app)
        text = await shows(pilot, app, EMPTY)
        assert "Back" in text.splitlines()[-1]
        # An operator adds a circuit with ctl (another client): the round that follows
        # names it, the screen re-reads the tree and draws it, with no key pressed.
        await ok(server, "circuits.add", {"name": "site", "limit_amps": 63})
        text = await shows(pilot, app, " L1 ", "0.0/63 A")
        assert EMPTY not in text
        assert line_with(text, " L1 ").startswith("site")
        assert "no sessions on managed chargers" in text
        # The building's other load pushed on the site (a meter, the energy manager):
        # stacked in each phase's bar before the chargers', counted against the breaker.
        await ok(
            server,
            "circuits.set_external_load",
            {"circuit": "site", "amps": [12, 6, 0], "valid_for_s": 300},
        )
        text = await shows(pilot, app, " L1 ", "12.0/63 A")
        assert "▒" * 6 in line_with(text, " L1 "), text
        assert "6.0/63 A" in line_with(text, " L2 ")
        assert "▒12 A other" in line_with(text, " L3 ")
        assert "▒ other load" in line_with(text, "CIRCUIT")


def profiled(charger: RawCharger, tx: int) -> bool:
    return any(
        c[2] == "SetChargingProfile" and c[3]["csChargingProfiles"].get("transactionId") == tx
        for c in charger.calls
    )


async def test_a_console_that_stops_reading_does_not_hold_up_the_server(
    tmp_path: Path,
) -> None:
    """A console attached and subscribed that reads nothing while hundreds of rounds
    are published: the chargers' calls are answered at once and a session still gets
    its limit; the stalled console is told to re-read (events dropped), not waited for.
    A small event queue (64) makes the drop happen within a few hundred events."""
    server = Server(tmp_path)
    server.env["VOLTARO_CONTROL_QUEUE_SIZE"] = "64"
    await server.start()
    # asyncio reads ahead into its buffer until 2 x limit: keep that small (16 KiB), so
    # what this client leaves unread stays in the server's socket.
    reader, writer = await asyncio.open_unix_connection(server.socket, limit=1 << 14)
    charger: RawCharger | None = None
    try:
        await add_chargers(server)
        await wire_site(server)
        await reader.readline()  # hello
        # With the raw OCPP frames too, as the console's frame views subscribe.
        request = {"type": "request", "id": 1, "op": "subscribe", "args": {"frames": True}}
        writer.write((json.dumps(request) + "\n").encode())
        await writer.drain()
        # From here on this client reads nothing until the end.
        charger = await RawCharger.connect(server.port, "CP-A", ACCEPT)
        await charger.boot()
        loop = asyncio.get_running_loop()
        slowest = 0.0
        for n in range(600):  # each status change: 2 frames, a status, a round's view
            began = loop.time()
            await charger.status(1, "Available" if n % 2 else "Preparing")
            slowest = max(slowest, loop.time() - began)
        tx = await start(charger, "T-CP-A")
        async with asyncio.timeout(5):
            while not profiled(charger, tx):  # noqa: ASYNC110 (the charger has no event)
                await asyncio.sleep(0.05)
        assert slowest < 2.0, slowest
        status = await server.ctl("status")  # the control socket answers other clients
        assert status["ok"], status
        # What the stalled console finds when it reads again: a resync marker among
        # the frames (the server dropped its backlog rather than wait for it).
        kinds: list[str] = []
        size = 0
        try:
            async with asyncio.timeout(20):
                while "resync" not in kinds:
                    line = await reader.readline()
                    assert line, f"connection closed after {len(kinds)} frames"
                    size += len(line)
                    kinds.append(json.loads(line)["type"])
        except TimeoutError:
            raise AssertionError(f"no resync in {len(kinds)} frames, {size} bytes") from None
        assert kinds.count("event") >= 1
    finally:
        if charger is not None:
            await charger.close()
        writer.close()
        await server.stop()
