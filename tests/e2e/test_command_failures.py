"""Issue 10 §2.10 and §3: operator commands and the control socket when things fail.

What the operator gets, that the server stays up, and what the command audit says
afterwards; the database made unavailable for real (tests/support/outage.py), the
charger an independent raw-frame client.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer, server_settings, start_server
from tests.e2e.control_client import ControlClient
from tests.e2e.test_ctl import ctl
from tests.support.charger import RawCharger
from tests.support.outage import Outage
from voltaro.store import chargers, commands


async def control(server: RunningServer) -> ControlClient:
    assert server.addresses.control_socket is not None
    return await ControlClient.connect(server.addresses.control_socket)


async def online(server: RunningServer, charger_id: str = "CP-1") -> RawCharger:
    server.run(chargers.add_charger, charger_id)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    await cp.boot()
    return cp


POLL_DEADLINE = 10.0  # seconds


async def poll(predicate: Any) -> None:
    with trio.fail_after(POLL_DEADLINE):
        while not predicate():  # noqa: ASYNC110 - state owned by the server, with a deadline
            await trio.sleep(0.02)


async def test_queued_command_is_never_a_timeout_without_being_sent(
    database_url: str, tmp_path: Path
) -> None:
    """A command waiting behind others has its own bound and error ("busy", not sent);
    "timeout" means the CALL went out and the charger did not answer it."""
    settings = server_settings(database_url, tmp_path, call_timeout=1.0, command_queue_timeout=1.5)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        cp = await online(server)
        received: list[Any] = []
        results: list[dict[str, Any]] = []
        done = trio.Event()

        async def read_calls() -> None:  # a charger that never answers
            while not done.is_set():
                try:
                    frame = await cp.recv(timeout=0.2)
                except TimeoutError:
                    continue
                if frame[0] == 2:
                    received.append(frame)

        async def one(i: int) -> None:
            client = await control(server)
            results.append(await client.command("CP-1", "clear-cache"))
            await client.aclose()

        async with trio.open_nursery() as inner:
            inner.start_soon(read_calls)
            async with trio.open_nursery() as commands_:
                for i in range(8):
                    commands_.start_soon(one, i)
            done.set()
        codes = [r["error"]["code"] for r in results]
        assert set(codes) <= {"timeout", "busy"}, results
        assert "busy" in codes
        # Every "timeout" is a CALL the charger got; every "busy" was never sent.
        assert codes.count("timeout") == len(received)
        busy = [r for r in results if r["error"]["code"] == "busy"]
        assert all("not sent" in r["error"]["message"] for r in busy)
        audit = server.run(commands.list_commands, "CP-1")
        assert len(audit) == 8
        assert all(a["finished_at"] is not None for a in audit)
        assert sorted(a["error"].split(":")[0] for a in audit) == sorted(codes)
        stop.set()
        server.db.dispose()


async def test_cancelled_command_finishes_its_audit_row(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.command, "CP-1", "clear-cache")
        await cp.next_call()  # sent; the operator's ctl goes away before the answer
        nursery.cancel_scope.cancel()
    await client.aclose()

    def finished() -> bool:
        rows = server.run(commands.list_commands, "CP-1")
        return bool(rows) and rows[0]["finished_at"] is not None

    await poll(finished)
    (row,) = server.run(commands.list_commands, "CP-1")
    assert row["status"] is None
    assert row["error"].startswith("internal: cancelled before it completed")
    # The server is fine: the next command goes through.
    client = await control(server)
    async with trio.open_nursery() as nursery:
        results: list[dict[str, Any]] = []

        async def send() -> None:
            results.append(await client.command("CP-1", "clear-cache"))

        nursery.start_soon(send)
        call = await cp.next_call()
        await cp.answer(call, {"status": "Accepted"})
    assert results[0]["result"]["status"] == "Accepted"
    await client.aclose()
    await cp.close()


async def test_accepted_but_not_stored_is_reported_as_such(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    settings = server_settings(database_url, tmp_path, db_retry_seconds=3.0)
    async with trio.open_nursery() as nursery:
        server, stop = await start_server(nursery, settings)
        cp = await online(server)
        await cp.call(
            "StatusNotification", {"connectorId": 1, "status": "Available", "errorCode": "NoError"}
        )
        client = await control(server)
        outage = Outage(database_url)
        results: list[dict[str, Any]] = []
        async with trio.open_nursery() as inner:

            async def send() -> None:
                results.append(
                    await client.command("CP-1", "availability", connector_id=1, type="Inoperative")
                )

            inner.start_soon(send)
            call = await cp.next_call()
            outage.start()
            try:
                await cp.answer(call, {"status": "Accepted"})
                await poll(
                    lambda: any("outcome was not stored" in r.getMessage() for r in caplog.records)
                )
            finally:
                outage.end()  # back before the audit row is finished
        reply = results[0]
        assert reply["ok"], reply
        assert reply["result"]["status"] == "Accepted"
        assert reply["result"]["applied"] is False
        assert reply["result"]["warning"].startswith("Accepted, outcome not applied")
        (row,) = server.run(commands.list_commands, "CP-1")
        assert row["status"] == "Accepted"
        assert row["error"].startswith("Accepted, outcome not applied")
        assert row["finished_at"] is not None
        # Nothing was stored as done, and the server carries on.
        (conn,) = [
            c for c in server.run(chargers.get_charger, "CP-1").connectors if c.connector_id == 1
        ]
        assert conn.availability == "Operative"
        async with trio.open_nursery() as inner:
            results.clear()

            async def again() -> None:
                results.append(
                    await client.command("CP-1", "availability", connector_id=1, type="Inoperative")
                )

            inner.start_soon(again)
            call = await cp.next_call()
            await cp.answer(call, {"status": "Accepted"})
        assert "applied" not in results[0]["result"]
        (conn,) = [
            c for c in server.run(chargers.get_charger, "CP-1").connectors if c.connector_id == 1
        ]
        assert conn.availability == "Inoperative"
        await client.aclose()
        await cp.close()
        stop.set()
        server.db.dispose()


async def test_database_down_before_sending(server: RunningServer) -> None:
    cp = await online(server)
    client = await control(server)
    outage = Outage(server.settings.database_url)
    outage.start()
    try:
        reply = await client.command("CP-1", "clear-cache")
        run = await ctl(server, "tags", "add", "NEWTAG")
        listed = await client.request("tags.list")
    finally:
        outage.end()
    assert reply["error"]["code"] == "unavailable", reply
    assert "not sent" in reply["error"]["message"]
    assert run.returncode == 11
    assert run.stderr.decode().strip().splitlines() == [
        "voltaro ctl: unavailable: the database is unavailable; retry later"
    ]
    if not outage.sqlite:  # SQLite still reads while write-locked
        assert listed["error"]["code"] == "unavailable"
    # Nothing was sent or recorded; the server is up and everything works again.
    assert server.run(commands.list_commands, "CP-1") == []
    assert (await ctl(server, "tags", "add", "NEWTAG")).returncode == 0
    async with trio.open_nursery() as nursery:
        results: list[dict[str, Any]] = []

        async def send() -> None:
            results.append(await client.command("CP-1", "clear-cache"))

        nursery.start_soon(send)
        call = await cp.next_call()  # the first CALL the charger ever gets
        assert call[2] == "ClearCache"
        await cp.answer(call, {"status": "Accepted"})
    assert results[0]["result"]["status"] == "Accepted"
    await client.aclose()
    await cp.close()
