"""A small async client for the control socket, speaking only the wire format."""

from __future__ import annotations

import itertools
import json
from typing import Any

import trio

from voltaro.control import wire


class ControlClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = b""
        self._ids = itertools.count(1)
        self.hello: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, path: str) -> ControlClient:
        client = cls(await trio.open_unix_socket(path))
        client.hello = await client.read()
        return client

    async def read(self, timeout: float = 10) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while b"\n" not in self._buffer:
                chunk = await self._stream.receive_some(65536)
                if not chunk:
                    raise EOFError("server closed the connection")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))

    async def request(
        self, op: str, args: dict[str, Any] | None = None, timeout: float = 10
    ) -> dict[str, Any]:
        rid = next(self._ids)
        await self._stream.send_all(wire.encode(wire.request(rid, op, args)))
        while True:
            frame = await self.read(timeout)
            if frame.get("type") == "response" and frame.get("id") == rid:
                return frame
            if frame.get("type") in ("event", "resync"):
                self.events.append(frame)

    async def command(self, charger_id: str, action: str, **args: Any) -> dict[str, Any]:
        return await self.request(
            "command", {"charger_id": charger_id, "action": action, "args": args}
        )

    async def aclose(self) -> None:
        await self._stream.aclose()
