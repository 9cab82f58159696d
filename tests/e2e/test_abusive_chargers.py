"""Issue 11 items 6 and 10: an abusive or stuck charger is cut off; nobody else notices.

Real server on SQLite and PostgreSQL; the chargers are independent WebSocket clients
(and, for the charger that stops reading, a raw TCP socket with a tiny receive buffer).
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.conftest import RunningServer, serving
from tests.e2e.control_client import ControlClient
from tests.support.charger import HandshakeRefused, RawCharger
from voltaro.store import chargers


@pytest.fixture
async def strict_server(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with serving(
        database_url,
        tmp_path,
        ping_interval=0,
        protocol_error_limit=20,
        protocol_error_window=60.0,
        abuse_backoff=30.0,
    ) as running:
        yield running


@pytest.fixture
async def impatient_server(database_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    # No protocol-error limit here: only the send timeout may end the stuck charger.
    async with serving(
        database_url,
        tmp_path,
        ping_interval=0,
        protocol_error_limit=0,
        send_timeout=1.0,
        call_timeout=60.0,
    ) as running:
        yield running


async def booted(server: RunningServer, charger_id: str) -> RawCharger:
    server.run(chargers.add_charger, charger_id)
    cp = await RawCharger.connect(f"{server.url}/{charger_id}")
    assert (await cp.boot())["status"] == "Accepted"
    return cp


@pytest.mark.parametrize(
    "abuse",
    [
        "not json at all",
        '[2,"x","NoSuchAction",{}]',
        '[3,"nobody-asked",{}]',
        '[7,"unknown type"]',
    ],
    ids=["malformed", "unknown-action", "stray-answer", "unknown-type"],
)
async def test_protocol_error_flood_is_cut_off_with_1008_and_backed_off(
    strict_server: RunningServer, abuse: str
) -> None:
    server = strict_server
    healthy = await booted(server, "HEALTHY")
    bad = await booted(server, "BAD")

    async def flood() -> None:
        # Frame by frame (reading each answer): a charger whose frames the server has
        # not read when it closes gets a TCP reset instead of the Close frame.
        answered = abuse.startswith(("not", "[2"))
        for _ in range(25):
            try:
                await bad.send_raw(abuse)
                if answered:
                    await bad.recv()
            except Exception:  # the server closed on us, as it should
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        # The healthy charger is answered throughout.
        for _ in range(5):
            assert "currentTime" in await healthy.call("Heartbeat", {})
    assert await bad.wait_closed() == 1008
    with pytest.raises(HandshakeRefused) as refused:
        await RawCharger.connect(f"{server.url}/BAD")
    assert refused.value.status == 429
    # Another identity from the same address is not affected.
    other = await booted(server, "OTHER")
    assert "currentTime" in await other.call("Heartbeat", {})
    for cp in (healthy, other):
        await cp.close()


async def test_errors_below_the_limit_keep_the_connection(strict_server: RunningServer) -> None:
    cp = await booted(strict_server, "CP-1")
    for i in range(15):
        await cp.send_raw(f'[2,"u{i}","NoSuchAction",{{}}]')
        assert (await cp.recv())[2] == "NotImplemented"
    assert "currentTime" in await cp.call("Heartbeat", {})
    await cp.close()


def _stuck_charger(port: int, charger_id: str) -> socket.socket:
    """A charger that completes the upgrade and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ocpp/{charger_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def _masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    header = bytearray([0x81])
    if len(payload) < 126:
        header.append(0x80 | len(payload))
    else:
        header.append(0x80 | 126)
        header += len(payload).to_bytes(2, "big")
    return bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_charger_that_stops_reading_fails_commands_at_the_send_timeout(
    impatient_server: RunningServer,
) -> None:
    server = impatient_server
    server.run(chargers.add_charger, "STUCK")
    sock = await trio.to_thread.run_sync(_stuck_charger, server.addresses.ocpp_port, "STUCK")
    # CALLs whose CALLERROR echoes a 60 KB action: the answers fill every buffer on the
    # way to a charger that does not read, so the server's sends block.
    big = "A" * 60_000
    frame = _masked_text_frame(json.dumps([2, "1", big, {}]))

    def pump() -> None:
        sock.settimeout(0.5)
        for _ in range(200):
            try:
                sock.sendall(frame)
            except OSError:
                return

    assert server.addresses.control_socket is not None
    client = await ControlClient.connect(server.addresses.control_socket)
    results: list[dict[str, Any]] = []
    with trio.fail_after(30):  # a deadline for the test, not a speed assertion
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, pump)

            async def command() -> None:
                results.append(await client.command("STUCK", "clear-cache"))

            nursery.start_soon(command)
    await client.aclose()
    sock.close()
    error = results[0]["error"]
    assert error["code"] in ("disconnected", "offline"), results
    healthy = await booted(server, "HEALTHY")
    assert "currentTime" in await healthy.call("Heartbeat", {})
    await healthy.close()
