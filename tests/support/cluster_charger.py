"""Independent chargers for the multi-node tests: raw OCPP-J frames over the
`websockets` asyncio client, in the test process (never voltaro's own classes).

:class:`Link` is one WebSocket connection: it answers every CALL the server sends
(recorded per unique message id, so a test can assert that a command was executed
once), sends CALLs of its own and records how the socket was closed.
:class:`Charger` keeps one link alive across nodes: when its socket closes (or a
WebSocket ping goes unanswered) it waits a jittered 0.5-1 s and connects to the NEXT
node of its list, then boots again, like a real charger behind a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

# What a charger answers to each server CALL (OCPP 1.6 §6: the .conf payloads).
DEFAULT_ANSWERS: dict[str, dict[str, Any]] = {
    "RemoteStartTransaction": {"status": "Accepted"},
    "RemoteStopTransaction": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "ChangeAvailability": {"status": "Accepted"},
    "ChangeConfiguration": {"status": "Accepted"},
    "ClearCache": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
    "TriggerMessage": {"status": "Accepted"},
    "DataTransfer": {"status": "Accepted"},
    "GetConfiguration": {"configurationKey": [], "unknownKey": []},
    "GetLocalListVersion": {"listVersion": 0},
    "SendLocalList": {"status": "Accepted"},
    "ReserveNow": {"status": "Accepted"},
    "CancelReservation": {"status": "Accepted"},
    "SetChargingProfile": {"status": "Accepted"},
    "ClearChargingProfile": {"status": "Accepted"},
}

Answer = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


@dataclass(frozen=True)
class ReceivedCall:
    """A CALL the server sent us: on which node (index), when (monotonic), what."""

    node: int
    at: float
    message_id: str
    action: str
    payload: dict[str, Any]


class CallLog:
    """Every CALL a charger received, across all its connections."""

    def __init__(self) -> None:
        self.calls: list[ReceivedCall] = []
        self.per_message_id: Counter[str] = Counter()

    def add(self, call: ReceivedCall) -> None:
        self.calls.append(call)
        self.per_message_id[call.message_id] += 1

    def of(self, action: str, **match: Any) -> list[ReceivedCall]:
        """The CALLs of one action whose payload has every ``match`` field equal."""
        return [
            c
            for c in self.calls
            if c.action == action and all(c.payload.get(k) == v for k, v in match.items())
        ]

    def duplicates(self) -> dict[str, int]:
        """Message ids received more than once (a retry executed twice)."""
        return {mid: n for mid, n in self.per_message_id.items() if n > 1}


class Link:
    """One WebSocket connection of a charger to one node."""

    def __init__(
        self,
        charger_id: str,
        ws: ClientConnection,
        node: int,
        log: CallLog,
        answer: Answer | None = None,
    ) -> None:
        self.charger_id = charger_id
        self.ws = ws
        self.node = node
        self.log = log
        self.answer = answer
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_at: float | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        charger_id: str,
        *,
        node: int = 0,
        log: CallLog | None = None,
        answer: Answer | None = None,
        ping_interval: float | None = 1.0,
        ping_timeout: float | None = 2.0,
        open_timeout: float = 5.0,
    ) -> Link:
        ws = await websockets.connect(
            f"{url.rstrip('/')}/{charger_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            open_timeout=open_timeout,
            close_timeout=2,
            max_size=None,
            compression=None,
        )
        link = cls(charger_id, ws, node, log or CallLog(), answer)
        link._reader = asyncio.create_task(link._read(), name=f"link-{charger_id}-{node}")
        return link

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                frame = json.loads(text)
                if frame[0] == 2:
                    await self._on_call(frame)
                elif frame[0] in (3, 4):
                    future = self._pending.pop(frame[1], None)
                    if future is not None and not future.done():
                        future.set_result(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closed_at = time.monotonic()
            if self.ws.close_code is not None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("closed"))
            self._pending.clear()
            self.closed.set()

    async def _on_call(self, frame: list[Any]) -> None:
        _, message_id, action, payload = frame
        self.log.add(ReceivedCall(self.node, time.monotonic(), message_id, action, payload))
        if self.answer is not None:
            result = self.answer(action, payload)
            body = await result if asyncio.iscoroutine(result) else result
        else:
            body = DEFAULT_ANSWERS.get(action, {"status": "Accepted"})
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps([3, message_id, body]))

    async def call(self, action: str, payload: dict[str, Any], within: float = 10.0) -> Any:
        """Send a CALL; return the CALLRESULT payload (raise on a CALLERROR)."""
        message_id = f"{self.charger_id}-{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        async with asyncio.timeout(within):
            frame = await future
        if frame[0] == 4:
            raise RuntimeError(f"{action}: CALLERROR {frame[2]} {frame[3]}")
        return frame[2]

    async def boot(self, within: float = 10.0) -> str:
        result = await self.call(
            "BootNotification",
            {"chargePointVendor": "Voltaro", "chargePointModel": "cluster-test"},
            within=within,
        )
        return str(result["status"])

    async def close(self, code: int = 1000) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


@dataclass
class Connection:
    """One connection of a :class:`Charger`'s life: where, when, how it ended."""

    node: int
    opened_at: float
    booted_at: float | None = None
    boot_status: str | None = None
    closed_at: float | None = None
    close_code: int | None = None


@dataclass
class Charger:
    """A charger that stays connected: on close it backs off 0.5-1 s (jittered) and
    connects to the next node in ``urls`` (or in ``order``, node indexes into ``urls``,
    when given); each connection boots first. Node numbers are indexes into ``urls``."""

    charger_id: str
    urls: Sequence[str]
    start: int = 0  # position in the order of the first node tried
    order: Sequence[int] | None = None
    backoff: tuple[float, float] = (0.5, 1.0)
    ping_interval: float | None = 1.0
    ping_timeout: float | None = 2.0
    answer: Answer | None = None
    log: CallLog = field(default_factory=CallLog)
    history: list[Connection] = field(default_factory=list)
    link: Link | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    failures: int = 0  # connection attempts that failed (refused, timed out, 503, ...)

    @property
    def node(self) -> int | None:
        """The node index of the live, booted connection (None between connections)."""
        current = self.history[-1] if self.history else None
        if current is None or current.closed_at is not None or current.booted_at is None:
            return None
        return current.node

    def booted_since(self, moment: float) -> bool:
        current = self.history[-1] if self.history else None
        return (
            current is not None
            and current.closed_at is None
            and current.booted_at is not None
            and current.opened_at >= moment
        )

    async def run(self) -> None:
        """Forever (cancel to end): connect, boot, serve until closed, back off, next."""
        order = list(self.order) if self.order is not None else list(range(len(self.urls)))
        index = self.start
        try:
            while True:
                await self._one(order[index % len(order)])
                index += 1
                await asyncio.sleep(random.uniform(*self.backoff))
        finally:
            if self.link is not None:
                await self.link.close()

    async def _one(self, node: int) -> None:
        try:
            link = await Link.open(
                self.urls[node],
                self.charger_id,
                node=node,
                log=self.log,
                answer=self.answer,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
            )
        except (OSError, TimeoutError, InvalidHandshake):
            self.failures += 1
            return
        self.link = link
        connection = Connection(node=node, opened_at=time.monotonic())
        self.history.append(connection)
        try:
            connection.boot_status = await link.boot()
            connection.booted_at = time.monotonic()
            self._changed()
            await link.closed.wait()
        except (ConnectionError, ConnectionClosed, TimeoutError, RuntimeError):
            pass
        finally:
            await link.close()
            connection.closed_at = link.closed_at or time.monotonic()
            connection.close_code = link.close_code
            self.link = None
            self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_booted(self, *, since: float = 0.0, within: float = 15.0) -> int:
        """Until a connection opened at or after ``since`` is booted; its node index."""
        async with asyncio.timeout(within):
            while not self.booted_since(since):
                await self.changed.wait()
        node = self.node
        assert node is not None
        return node


@contextlib.asynccontextmanager
async def running(chargers: Sequence[Charger]) -> Any:
    """Run every charger as a task for the body of an ``async with``; cancel them after."""
    tasks = [asyncio.create_task(c.run(), name=f"charger-{c.charger_id}") for c in chargers]
    try:
        yield chargers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def eventually(
    check: Callable[[], Any], *, within: float, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` (blocking: run in a thread, e.g. a query) until it returns a truthy
    value, which is returned; AssertionError naming ``what`` after ``within`` seconds.
    Polling, not an event: the state lives in other processes (nodes, the database)."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what or check}")
        await asyncio.sleep(interval)
