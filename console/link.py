"""The console's connection to the server: asyncio JSON lines over the control socket.

No Textual here (unit-testable on its own). Requests get futures matched by id; events
go to a callback; `run` reconnects with back-off and reports state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from voltaro.control import wire


def default_socket() -> str:
    """Same rule as the server's default (voltaro.settings.default_control_socket)."""
    configured = os.environ.get("VOLTARO_CONTROL_SOCKET")
    if configured:
        return configured
    if os.geteuid() == 0:
        return "/run/voltaro/control.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return str(Path(runtime) / "voltaro" / "control.sock")
    return f"/tmp/voltaro-{os.geteuid()}/control.sock"


class RequestFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


FrameHandler = Callable[[dict[str, Any]], Awaitable[None] | None]
StateHandler = Callable[[str, dict[str, Any] | None], Awaitable[None] | None]


class ControlLink:
    def __init__(self, path: str) -> None:
        self.path = path
        self.hello: dict[str, Any] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def request(
        self, op: str, args: dict[str, Any] | None = None, timeout: float = 60
    ) -> Any:
        if self._writer is None:
            raise RequestFailed("disconnected", "not connected to the server")
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            self._writer.write(wire.encode(wire.request(rid, op, args)))
            await self._writer.drain()
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(rid, None)

    async def run(self, on_event: FrameHandler, on_state: StateHandler) -> None:
        """Stay connected: (re)connect with back-off, subscribe, dispatch frames."""
        delay = 0.5
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 24)
            except OSError as exc:
                await _call(on_state, f"disconnected: {exc.strerror or exc}", None)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)
                continue
            delay = 0.5
            try:
                self.hello = wire.decode(await reader.readline())
                self._writer = writer
                reading = asyncio.ensure_future(self._read(reader, on_event))
                await self.request("subscribe", {})
                await _call(on_state, "connected", self.hello)
                await reading
            except (OSError, wire.WireError, RequestFailed, TimeoutError) as exc:
                await _call(on_state, f"disconnected: {exc}", None)
            finally:
                self._writer = None
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(RequestFailed("disconnected", "server went away"))
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            await _call(on_state, "disconnected: the server closed the connection", None)
            await asyncio.sleep(delay)

    async def _read(self, reader: asyncio.StreamReader, on_event: FrameHandler) -> None:
        while line := await reader.readline():
            frame = wire.decode(line)
            if frame["type"] == "response":
                future = self._pending.get(frame.get("id"))  # type: ignore[arg-type]
                if future is not None and not future.done():
                    if frame.get("ok"):
                        future.set_result(frame.get("result"))
                    else:
                        error = frame.get("error") or {}
                        future.set_exception(
                            RequestFailed(str(error.get("code")), str(error.get("message")))
                        )
            else:
                await _call(on_event, frame)


async def _call(handler: Callable[..., Any], *args: Any) -> None:
    result = handler(*args)
    if asyncio.iscoroutine(result):
        await result
