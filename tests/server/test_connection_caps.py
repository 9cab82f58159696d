"""Issue 11.8: idle sockets that never finish the upgrade cannot crowd chargers out."""

from __future__ import annotations

import resource
import socket

import trio
from listener_support import closed_by_server, open_charger, serving

from voltaro.net.admission import effective_max_connections
from voltaro.net.directory import ChargerRecord, MemoryDirectory
from voltaro.settings import Settings

BASE = Settings(
    host="127.0.0.1", port=0, ping_interval=0, handshake_timeout=30, max_pending_per_ip=5
)


def _idle_sockets(port: int, count: int, source: str) -> list[socket.socket]:
    out = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        out.append(sock)
    return out


async def test_pending_sockets_per_address_are_capped() -> None:
    directory = MemoryDirectory([ChargerRecord("CP-1")])
    async with serving(BASE, directory) as srv:
        port = int(srv.base.rsplit(":", 1)[1])
        idle = await trio.to_thread.run_sync(_idle_sockets, port, 12, "127.0.0.2")
        try:
            closed = await trio.to_thread.run_sync(closed_by_server, idle, 7, 10.0)
            assert closed == 7
            assert sum(g.refused_per_ip for g in srv.listener.guards) == 7
            # The five within the cap are still open (waiting for their HTTP request),
            # and a charger from another address is not affected.
            assert await trio.to_thread.run_sync(closed_by_server, idle, 8, 0.2) == 7
            async with await open_charger(srv.url("/ocpp/CP-1")) as hs:
                assert hs.status == 101
        finally:
            for sock in idle:
                sock.close()


async def test_pending_sockets_count_against_the_global_cap() -> None:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        ping_interval=0,
        handshake_timeout=30,
        max_pending_per_ip=100,
        max_connections=6,
    )
    async with serving(settings, MemoryDirectory([ChargerRecord("CP-1")])) as srv:
        port = int(srv.base.rsplit(":", 1)[1])
        idle = await trio.to_thread.run_sync(_idle_sockets, port, 9, "127.0.0.3")
        try:
            # 6 + 5 % (at least one) are held; the other two are closed at accept.
            assert await trio.to_thread.run_sync(closed_by_server, idle, 2, 10.0) == 2
            assert sum(g.refused_global for g in srv.listener.guards) == 2
        finally:
            for sock in idle:
                sock.close()


def test_max_connections_fits_the_open_file_limit() -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap, limit = effective_max_connections(10**9)
    assert limit >= soft
    if limit != resource.RLIM_INFINITY:
        assert cap <= limit - 256
    assert effective_max_connections(5)[0] == 5
