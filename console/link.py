"""The console's connection to the server: asyncio JSON lines over the control socket.

No Textual here (unit-testable on its own). Requests get futures matched by id. The
reader task only reads: every event and link state change is handed to a *synchronous*
callback (the app posts it as a message) and the reader goes straight back to reading.
It must never wait for anything a request needs, because the reader is the only one
who delivers request replies (the cause of the old ~60 s freeze, issue 12 #1).
`run` reconnects with back-off and says in words what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voltaro.control import wire

REQUEST_TIMEOUT = 60.0  # a command waits for the charger (call timeout) plus routing


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


@dataclass(frozen=True, slots=True)
class LinkState:
    """Where the link stands: connected (with the server's hello) or why it is not."""

    connected: bool
    reason: str = ""
    hello: dict[str, Any] | None = None


def explain(exc: BaseException, path: str) -> str:
    """Why the console is not connected, in words an operator can act on."""
    if isinstance(exc, OSError):
        code = exc.errno
        if code in (errno.ENOENT, errno.ENOTDIR):
            return f"the server is not running (no control socket at {path})"
        if code == errno.ECONNREFUSED:
            return f"the server is not accepting connections on {path} (stopped or restarting)"
        if code in (errno.EACCES, errno.EPERM):
            return (
                f"permission denied on {path}: your user needs the server's group "
                "(see docs/control.md)"
            )
        if code in (errno.ECONNRESET, errno.EPIPE):
            return "the server closed the connection (restarting or shutting down)"
        return f"cannot reach the server at {path}: {exc.strerror or exc}"
    if isinstance(exc, wire.WireError):
        return f"the server sent something this console does not understand ({exc})"
    if isinstance(exc, TimeoutError):
        return "the server did not answer in time"
    if isinstance(exc, RequestFailed):
        return f"the server refused the console: {exc.message}"
    return f"lost the server: {exc}"


FrameHandler = Callable[[dict[str, Any]], None]
StateHandler = Callable[[LinkState], None]


class ControlLink:
    def __init__(self, path: str) -> None:
        self.path = path
        self.hello: dict[str, Any] | None = None
        self.request_timeout = REQUEST_TIMEOUT
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def request(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """Send one request and wait for its reply (at most ``request_timeout``).

        Raises:
            RequestFailed: the server refused it, or the link is down or went down.
            TimeoutError: no reply in time.
        """
        if self._writer is None:
            raise RequestFailed("disconnected", "not connected to the server")
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            async with asyncio.timeout(self.request_timeout):
                self._writer.write(wire.encode(wire.request(rid, op, args)))
                await self._writer.drain()
                return await future
        finally:
            self._pending.pop(rid, None)

    async def run(self, on_frame: FrameHandler, on_state: StateHandler) -> None:
        """Stay connected: (re)connect with back-off, subscribe, hand frames over."""
        delay = 0.5
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 24)
            except OSError as exc:
                on_state(LinkState(False, explain(exc, self.path)))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)
                continue
            delay = 0.5
            reason = "the server closed the connection (restarting or shutting down)"
            try:
                async with asyncio.timeout(10):
                    self.hello = wire.decode(await reader.readline())
                if self.hello.get("type") != "hello":
                    error = self.hello.get("error") or {}
                    raise RequestFailed(str(error.get("code")), str(error.get("message")))
                self._writer = writer
                reading = asyncio.ensure_future(self._read(reader, on_frame))
                try:
                    await self.request("subscribe", {})
                    on_state(LinkState(True, "connected", self.hello))
                    await reading
                finally:
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
            except (OSError, wire.WireError, RequestFailed, TimeoutError) as exc:
                reason = explain(exc, self.path)
            finally:
                self._writer = None
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(RequestFailed("disconnected", "server went away"))
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            on_state(LinkState(False, reason))
            await asyncio.sleep(delay)

    async def _read(self, reader: asyncio.StreamReader, on_frame: FrameHandler) -> None:
        """Deliver replies and hand every other frame over; never wait on a handler."""
        while line := await reader.readline():
            frame = wire.decode(line)
            if frame["type"] != "response":
                on_frame(frame)
                continue
            future = self._pending.get(frame.get("id"))  # type: ignore[arg-type]
            if future is None or future.done():
                continue
            if frame.get("ok"):
                future.set_result(frame.get("result"))
            else:
                error = frame.get("error") or {}
                future.set_exception(
                    RequestFailed(str(error.get("code")), str(error.get("message")))
                )
