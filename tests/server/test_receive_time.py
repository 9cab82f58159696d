"""A message read while the reader is held up still counts as traffic (R9 liveness).

The ping rule keeps a charger that never answers pings as long as it sends messages: a
connection is dropped only with no pong and no message *received* for a whole ping
interval before the ping. Issue 14 made TrackedWebSocket stamp the time its reader
*asks* for a message instead of when one arrives. Normally the reader asks again at
once, but with its queue full (the worker is stuck on a slow store, backpressure) it is
held after receiving: the message that arrived meanwhile was not counted, and a deaf
charger that was talking was closed with 1001 (found by review2, issue 14).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import trio
from listener_support import serving
from test_listener_liveness import _connect

from voltaro.net.directory import ChargerRecord, MemoryDirectory
from voltaro.protocol.connection import OcppConnection
from voltaro.settings import Settings

# Margins of ~1 s around each ping (0.5 s was tight on a loaded CI machine).
INTERVAL = 4.0
SETTINGS = Settings(host="127.0.0.1", port=0, ping_interval=INTERVAL, ping_timeout=0.5)
QUEUE = 16  # rpc.TrioChargePoint's incoming queue


class StalledStore:
    """A backend whose Heartbeat store hangs (a database that stopped answering)."""

    def record_frame(self, frame: Any) -> None:
        pass

    async def heartbeat(self, charger_id: str, now: datetime) -> None:
        await trio.sleep(30)


def connection(charger_id: str, ws: Any, backend: Any, *, call_timeout: float) -> Any:
    return OcppConnection(charger_id, ws, StalledStore(), call_timeout=call_timeout)


async def test_a_message_read_while_the_queue_is_full_counts_as_traffic() -> None:
    directory = MemoryDirectory([ChargerRecord("DEAF-BUSY")])
    async with serving(SETTINGS, directory, connection_factory=connection) as srv:
        start = trio.current_time()
        charger = await _connect(srv.base, "DEAF-BUSY")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(charger.read_until_closed)
            # The first ping goes out about INTERVAL after the handshake; traffic just
            # before it keeps the charger: one CALL the worker hangs on, QUEUE queued.
            await trio.sleep_until(start + INTERVAL - 1.0)
            for n in range(QUEUE + 1):
                await charger.send_text(f'[2,"{n}","Heartbeat",{{}}]')
            # After the first ping (and its pong wait) ended, one more message: the
            # reader receives it and waits for room in the queue.
            await trio.sleep_until(start + 2 * INTERVAL - 1.0)
            await charger.send_text('[2,"late","Heartbeat",{}]')
            # The second ping is checked about 2 * (INTERVAL + 0.5) after the handshake:
            # the late message was received less than INTERVAL before it.
            await trio.sleep_until(start + 2 * INTERVAL + 2.0)
            assert charger.pings >= 2
            assert charger.close_code is None, "a talking charger was dropped"
            assert srv.registry.is_connected("DEAF-BUSY")
            nursery.cancel_scope.cancel()
        await charger.stream.aclose()
