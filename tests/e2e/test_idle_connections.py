"""What an idle charger connection keeps running (issue 14 step 5: memory per connection).

Each trio task, with its cancel status and coroutine frames, costs about 2-3 KiB of every
idle connection. An idle connection keeps only the two tasks the stack needs: trio's
handler task (the session) and trio-websocket's reader; pings come from one scheduler
and a CALL gets a worker only while it is being answered.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from tests.e2e.conftest import server_settings, start_server
from tests.support.charger import RawCharger
from voltaro.service.local_list import MAX_PARALLEL

CHARGERS = 4


def task_names() -> Counter[str]:
    """Every task of this trio run, by name."""
    names: Counter[str] = Counter()
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        names[task.name] += 1
        todo.extend(t for n in task.child_nurseries for t in n.child_tasks)
    return names


async def settled(before: Counter[str], expected: int) -> Counter[str]:
    """The tasks added since ``before`` once their number is ``expected``, or after
    10 s (the @after hooks of a boot run a moment longer than its answer, longer on a
    loaded machine; a task that stays makes the count differ either way)."""
    with trio.move_on_after(10):
        while sum((task_names() - before).values()) != expected:  # noqa: ASYNC110 - tasks come and go without an event
            await trio.sleep(0.05)
    return task_names() - before


async def test_an_idle_connection_runs_two_tasks(database_url: str, tmp_path: Path) -> None:
    # The client answers the pings; a pong seconds late on a loaded machine must not
    # close a connection (and change the count).
    settings = server_settings(
        database_url, tmp_path, ping_interval=0.3, ping_timeout=5.0, unknown_chargers="accept"
    )
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            await trio.sleep(0.2)
            before = task_names()
            chargers = [await RawCharger.connect(f"{server.url}/IDLE-{n}") for n in range(CHARGERS)]
            for cp in chargers:
                assert (await cp.boot())["status"] == "Accepted"
                assert "currentTime" in await cp.call("Heartbeat", {})
            # Pings went out meanwhile (the client answers them): the connections stay.
            await trio.sleep(1.0)
            added = await settled(before, 2 * CHARGERS)
            assert added == Counter(
                {
                    "trio._highlevel_serve_listeners._run_handler": CHARGERS,
                    "trio_websocket._impl.WebSocketConnection._reader_task": CHARGERS,
                }
            ), added
            # Idle, and still answered: each CALL gets its worker again.
            for cp in chargers:
                assert "currentTime" in await cp.call("Heartbeat", {})
            for cp in chargers:
                await cp.close()
        finally:
            stop.set()
            server.db.dispose()


def voltaro_frames(task: trio.lowlevel.Task) -> list[str]:
    """The coroutines of our code a task is suspended in, outermost first."""
    names: list[str] = []
    awaiting: object = task.coro
    while awaiting is not None:
        code = getattr(awaiting, "cr_code", None) or getattr(awaiting, "gi_code", None)
        if code is not None and "/voltaro/" in code.co_filename:
            names.append(code.co_qualname)
        awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "gi_yieldfrom", None)
    return names


async def test_an_idle_session_waits_in_four_coroutines_of_ours(
    database_url: str, tmp_path: Path
) -> None:
    """Every coroutine in an idle connection's chain is kept for the connection's life
    (issue 14, memory per connection): the socket's handler serves the session itself
    once the handshake's coroutine has ended, and the session waits in the RPC reader
    with no wrapper coroutine between it and trio-websocket."""
    settings = server_settings(database_url, tmp_path, unknown_chargers="accept")
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            cp = await RawCharger.connect(f"{server.url}/IDLE-CHAIN")
            assert (await cp.boot())["status"] == "Accepted"
            expected = [
                [
                    "OcppListener._handle",
                    "OcppListener._serve_session",
                    "TrioChargePoint.start",
                    "TrioChargePoint._reader",
                ]
            ]
            # Settled once the boot's answer is sent (well under a second; up to 10 s
            # on a loaded machine): the chain is read until it is what an idle one is.
            with trio.move_on_after(10):
                while True:
                    await trio.sleep(0.1)
                    todo = [trio.lowlevel.current_root_task()]
                    chains = []
                    while todo:
                        task = todo.pop()
                        if task.name == "trio._highlevel_serve_listeners._run_handler":
                            chains.append(voltaro_frames(task))
                        todo.extend(t for n in task.child_nurseries for t in n.child_tasks)
                    if chains == expected:
                        break
            assert chains == expected, chains
            await cp.close()
        finally:
            stop.set()
            server.db.dispose()


async def test_local_list_syncs_on_connect_wait_without_a_task_each(
    database_url: str, tmp_path: Path
) -> None:
    """A first-contact storm makes every charger due for a local list sync; at most
    MAX_PARALLEL run at a time and the others wait in a queue, not as tasks."""
    settings = server_settings(
        database_url,
        tmp_path,
        unknown_chargers="accept",
        local_list_sync_on_connect=True,
        local_list_sync_delay=0.1,
        call_timeout=5.0,
    )
    many = MAX_PARALLEL + 6
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        try:
            chargers = [await RawCharger.connect(f"{server.url}/LL-{n}") for n in range(many)]
            for cp in chargers:
                assert (await cp.boot())["status"] == "Accepted"
            # The first MAX_PARALLEL are asked (and get no answer: syncs in flight).
            asked = [await cp.next_call() for cp in chargers[:MAX_PARALLEL]]
            assert {frame[2] for frame in asked} == {"GetConfiguration"}
            names = task_names()
            local_list = sum(
                count
                for name, count in names.items()
                # A _sync_due per batch of arrivals reads the database (not per charger).
                if name.startswith("voltaro.service.local_list") and "_sync_due" not in name
            )
            # run, _follow_connections, _sync_arrivals and at most MAX_PARALLEL syncers.
            assert local_list <= MAX_PARALLEL + 3, sorted(names.items())
            for cp in chargers:
                await cp.close()
        finally:
            stop.set()
            server.db.dispose()
