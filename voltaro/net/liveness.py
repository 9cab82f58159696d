"""Server-side WebSocket pings that do not drop a charger that is still talking.

trio-websocket sends no pings of its own (trio-and-the-ocpp-library §7.10). Half-open TCP
connections are common after network loss and pings are the only way to notice them
(R9), but some chargers never answer pings (EN+ AC7000, mobilityhouse/ocpp#338): a
connection that carried OCPP traffic since the last ping is alive whatever its pongs do.

One scheduler task pings every connection (issue 14 step 5): a task per connection, with
its nursery, cancel scopes and coroutine frames, cost about 3 KiB of every idle
connection. A connection's ping runs as a task of the scheduler's nursery only while it
waits for the pong.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

log = logging.getLogger(__name__)


class TrackedWebSocket:
    """A WebSocketConnection that remembers when it last received a message.

    Everything else is delegated unchanged, so the OCPP adapter sees the real socket.
    """

    __slots__ = ("_ws", "last_received")

    def __init__(self, websocket: WebSocketConnection) -> None:
        self._ws = websocket
        self.last_received = trio.current_time()

    @property
    def websocket(self) -> WebSocketConnection:
        return self._ws

    def get_message(self) -> Awaitable[str | bytes]:
        """The socket's own ``get_message``, stamped when it is asked for. Not a coroutine
        of its own: one more frame in every idle connection's chain, for all of them
        (issue 14, memory per connection). The reader also calls ``message_received``
        when one arrives: it may be held up after taking a message (its queue full while
        a store is slow), and that message is traffic all the same."""
        self.last_received = trio.current_time()
        message: Awaitable[str | bytes] = self._ws.get_message()
        return message

    def message_received(self) -> None:
        """The reader took a message off this socket now (liveness counts it)."""
        self.last_received = trio.current_time()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


class PingTimeout(Exception):
    """No pong and no traffic for a whole ping interval plus the pong wait."""


class Watched:
    """One connection the scheduler pings; ``stop()`` when the connection ends."""

    __slots__ = ("due", "on_dead", "pinging", "ws")

    def __init__(
        self, ws: TrackedWebSocket, due: float, on_dead: Callable[[Exception], None]
    ) -> None:
        self.ws: TrackedWebSocket | None = ws
        self.due = due
        self.on_dead: Callable[[Exception], None] | None = on_dead
        self.pinging: trio.CancelScope | None = None

    def stop(self) -> None:
        """Ping no more; an unanswered ping is given up. The scheduler forgets the
        connection (it keeps no reference to a closed socket)."""
        self.ws = None
        self.on_dead = None
        if self.pinging is not None:
            self.pinging.cancel()


class PingScheduler:
    """Pings each watched connection ``interval`` seconds after its last ping ended.

    Each connection's ping waits up to ``pong_wait`` seconds for its pong; without one,
    and with no message received for a whole ``interval`` before the ping, the
    connection's ``on_dead`` gets a PingTimeout. ``interval`` 0 disables pings.

    Every deadline is "now + interval" when it is set, so deadlines are queued in the
    order they fall due: a FIFO, not a heap, and one sleep for the earliest.
    """

    def __init__(self, interval: float, pong_wait: float) -> None:
        self.interval = interval
        self.pong_wait = pong_wait
        self._queue: deque[Watched] = deque()
        self._queued = trio.Event()

    def watch(self, ws: TrackedWebSocket, on_dead: Callable[[Exception], None]) -> Watched:
        watched = Watched(ws, trio.current_time() + self.interval, on_dead)
        if self.interval > 0:
            self._enqueue(watched)
        return watched

    def _enqueue(self, watched: Watched) -> None:
        self._queue.append(watched)
        self._queued.set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            if self.interval <= 0:
                return
            while True:
                if not self._queue:
                    self._queued = trio.Event()
                    await self._queued.wait()
                    continue
                await trio.sleep_until(self._queue[0].due)
                watched = self._queue.popleft()
                if watched.ws is not None:
                    nursery.start_soon(self._ping, watched)

    async def _ping(self, watched: Watched) -> None:
        ws = watched.ws
        if ws is None:
            return
        sent_at = trio.current_time()
        answered = True
        try:
            with trio.CancelScope() as watched.pinging:
                with trio.move_on_after(self.pong_wait) as waiting:
                    await ws.websocket.ping()
                answered = not waiting.cancelled_caught
        except ConnectionClosed:
            return
        except Exception as exc:  # never end the scheduler: it pings everyone
            self._dead(watched, exc)
            return
        finally:
            watched.pinging = None
        if watched.ws is None:
            return  # stopped while waiting
        if not answered:
            if ws.last_received < sent_at - self.interval:
                self._dead(
                    watched,
                    PingTimeout(
                        f"no pong within {self.pong_wait:g} s and no traffic for "
                        f"{self.interval:g} s"
                    ),
                )
                return
            # Traffic within the last interval: alive, even if it never answers pings.
            log.debug("no pong from a connection that is still sending; keeping it")
        watched.due = trio.current_time() + self.interval
        self._enqueue(watched)

    @staticmethod
    def _dead(watched: Watched, exc: Exception) -> None:
        on_dead = watched.on_dead
        watched.stop()
        if on_dead is not None:
            on_dead(exc)
