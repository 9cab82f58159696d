"""Server-side WebSocket pings that do not drop a charger that is still talking.

trio-websocket sends no pings of its own (trio-and-the-ocpp-library §7.10). Half-open TCP
connections are common after network loss and pings are the only way to notice them
(R9), but some chargers never answer pings (EN+ AC7000, mobilityhouse/ocpp#338): a
connection that carried OCPP traffic since the last ping is alive whatever its pongs do.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

log = logging.getLogger(__name__)


class TrackedWebSocket:
    """A WebSocketConnection that remembers when it last received a message.

    Everything else is delegated unchanged, so the OCPP adapter sees the real socket.
    """

    def __init__(self, websocket: WebSocketConnection) -> None:
        self._ws = websocket
        self.last_received = trio.current_time()

    @property
    def websocket(self) -> WebSocketConnection:
        return self._ws

    async def get_message(self) -> str | bytes:
        message: str | bytes = await self._ws.get_message()
        self.last_received = trio.current_time()
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


class PingTimeout(Exception):
    """No pong and no traffic for a whole ping interval plus the pong wait."""


async def keep_alive(ws: TrackedWebSocket, interval: float, pong_wait: float) -> None:
    """Ping every ``interval`` seconds; raise PingTimeout when the peer is silent.

    Returns when the socket closes. ``interval`` 0 disables pings (returns at once).
    """
    if interval <= 0:
        return
    while True:
        await trio.sleep(interval)
        sent_at = trio.current_time()
        try:
            with trio.move_on_after(pong_wait) as waiting:
                await ws.websocket.ping()
        except ConnectionClosed:
            return
        if not waiting.cancelled_caught:
            continue
        if ws.last_received >= sent_at - interval:
            # Traffic within the last interval: alive, even if it never answers pings.
            log.debug("no pong from a connection that is still sending; keeping it")
            continue
        raise PingTimeout(f"no pong within {pong_wait:g} s and no traffic for {interval:g} s")
