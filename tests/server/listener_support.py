"""Helpers for the listener tests: a stand-in OCPP connection and a sync charger client.

The charger side is the independent ``websockets`` client (sync API, run in a worker
thread), never the server's own classes.
"""

from __future__ import annotations

import base64
import select
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
from trio_websocket import ConnectionClosed
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from voltaro.net.directory import MemoryDirectory
from voltaro.net.listener import OcppListener
from voltaro.net.registry import Registry
from voltaro.settings import Settings


class EchoConnection:
    """Stand-in for voltaro.protocol.OcppConnection: echoes text frames.

    ``crash`` raises a non-OCPP error from inside the connection's task, the way a bug
    in a connection's code would.
    """

    instances: list[EchoConnection] = []

    def __init__(self, charger_id: str, websocket: Any, backend: Any, *, call_timeout: float):
        self.charger_id = charger_id
        self.websocket = websocket
        self.backend = backend
        self.call_timeout = call_timeout
        self._draining = trio.CancelScope()

    def drain(self) -> None:
        self._draining.cancel()

    async def run(self) -> None:
        try:
            with self._draining:
                await self._echo()
        except ConnectionClosed:
            return

    async def _echo(self) -> None:
        try:
            while True:
                message = await self.websocket.get_message()
                if message == "crash":
                    raise ValueError("a bug in one connection")
                await self.websocket.send_message(message)
        except ConnectionClosed:
            return

    async def send_command(self, command: Any) -> Any:
        raise NotImplementedError

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.websocket.aclose(code, reason)


def basic(username: bytes, password: bytes) -> dict[str, str]:
    token = base64.b64encode(username + b":" + password).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class Handshake:
    """The outcome of one connection attempt: a client connection or an HTTP status."""

    client: ClientConnection | None
    status: int

    async def __aenter__(self) -> Handshake:
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Closing blocks until the server answers: never on the trio thread.
        if self.client is not None:
            await trio.to_thread.run_sync(self.client.close)


def _open(
    url: str, subprotocols: Sequence[str] | None, headers: dict[str, str] | None
) -> Handshake:
    try:
        client = connect(
            url,
            subprotocols=list(subprotocols) if subprotocols is not None else None,  # type: ignore[misc]
            additional_headers=headers,
            proxy=None,
            open_timeout=5,
            ping_interval=None,
            close_timeout=2,
            compression=None,
            legacy=True,
        )
    except InvalidStatus as exc:
        return Handshake(None, exc.response.status_code)
    return Handshake(client, 101)


async def open_charger(
    url: str,
    *,
    subprotocols: Sequence[str] | None = ("ocpp1.6",),
    headers: dict[str, str] | None = None,
) -> Handshake:
    return await trio.to_thread.run_sync(_open, url, subprotocols, headers)


async def roundtrip(client: ClientConnection, text: str) -> str:
    def go() -> str:
        client.send(text)
        reply = client.recv(timeout=5)
        assert isinstance(reply, str)
        return reply

    return await trio.to_thread.run_sync(go)


async def close_code(client: ClientConnection, timeout: float = 5) -> int | None:
    """Wait for the server to close the socket; the code it sent (None: no Close frame)."""

    def go() -> int | None:
        try:
            while True:
                client.recv(timeout=timeout)
        except ClientClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None

    return await trio.to_thread.run_sync(go)


@dataclass
class Served:
    listener: OcppListener
    registry: Registry
    directory: MemoryDirectory
    base: str

    def url(self, path: str) -> str:
        return self.base + path


@asynccontextmanager
async def serving(
    settings: Settings, directory: MemoryDirectory, **listener_args: Any
) -> AsyncIterator[Served]:
    registry = Registry()
    listener = OcppListener(
        settings,
        registry=registry,
        directory=directory,
        backend_factory=listener_args.pop(
            "backend_factory",
            lambda charger_id: object(),
        ),
        connection_factory=listener_args.pop("connection_factory", EchoConnection),
        **listener_args,
    )
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(listener.run)
        host, port = bound[0]
        yield Served(listener, registry, directory, f"ws://{host}:{port}")
        nursery.cancel_scope.cancel()


async def wait_for(predicate: Any, timeout: float = 5) -> None:
    """Wait until ``predicate()`` holds, checking at each scheduling point; fail on timeout."""
    with trio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - state owned by other tasks, with a deadline
            await trio.sleep(0.01)


def closed_by_server(sockets: list[socket.socket], expected: int, timeout: float) -> int:
    """Wait until ``expected`` sockets see EOF/reset (or the timeout); how many did."""
    closed: set[socket.socket] = set()
    end = time.monotonic() + timeout
    while len(closed) < expected and time.monotonic() < end:
        readable, _, _ = select.select(
            [s for s in sockets if s not in closed], [], [], max(0.0, end - time.monotonic())
        )
        for sock in readable:
            try:
                if sock.recv(1) == b"":
                    closed.add(sock)
            except ConnectionResetError:
                closed.add(sock)
    return len(closed)
