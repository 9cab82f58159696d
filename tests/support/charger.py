"""An independent charger for tests: raw JSON frames over the `websockets` library.

It never imports voltaro.protocol, so a misunderstanding shared with the server's
adapter cannot make a test pass. The blocking `websockets.sync` client runs in a worker
thread (`trio.to_thread.run_sync`), so trio tests can drive it directly.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Sequence
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect


class HandshakeRefused(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers or {}


class RawCharger:
    """A charger that speaks raw OCPP-J frames. Every method is async (thread-backed)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.subprotocol = ws.subprotocol
        self.unanswered: list[Any] = []  # server CALLs that arrived while we waited

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        subprotocols: Sequence[str] | None = ("ocpp1.6",),
        password: bytes | str | None = None,
        username: str | None = None,
        timeout: float = 5.0,
    ) -> RawCharger:
        headers: dict[str, str] = {}
        if password is not None:
            user = username if username is not None else url.rstrip("/").rsplit("/", 1)[-1]
            secret = password.encode() if isinstance(password, str) else password
            token = base64.b64encode(user.encode() + b":" + secret).decode()
            headers["Authorization"] = f"Basic {token}"

        def _open() -> ClientConnection:
            try:
                return connect(
                    url,
                    subprotocols=list(subprotocols) if subprotocols else None,  # type: ignore[arg-type]
                    additional_headers=headers,
                    open_timeout=timeout,
                    max_size=None,
                    compression=None,
                    legacy=True,
                )
            except InvalidStatus as exc:
                raise HandshakeRefused(
                    exc.response.status_code,
                    {k.lower(): v for k, v in exc.response.headers.raw_items()},
                ) from None

        return cls(await trio.to_thread.run_sync(_open))

    async def send_raw(self, text: str) -> None:
        await trio.to_thread.run_sync(self.ws.send, text)

    async def recv(self, timeout: float = 5.0) -> Any:
        """The next frame, parsed. Raises TimeoutError if none arrives in time."""
        text = await trio.to_thread.run_sync(self.ws.recv, timeout)
        return json.loads(text)

    async def expect_silence(self, seconds: float = 0.3) -> None:
        try:
            frame = await self.recv(timeout=seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected no frame, got {frame!r}")

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 5.0) -> Any:
        """Send a CALL and return the CALLRESULT payload, or the whole CALLERROR frame."""
        uid = f"m-{next(self._ids)}"
        await self.send_raw(json.dumps([2, uid, action, payload]))
        while True:
            frame = await self.recv(timeout)
            if frame[0] == 2:  # a CALL from the server: leave it to the test
                self.unanswered.append(frame)
                continue
            assert frame[1] == uid, f"answer for another id: {frame!r}"
            return frame[2] if frame[0] == 3 else frame

    async def boot(self, vendor: str = "Acme", model: str = "X1", **extra: Any) -> Any:
        return await self.call(
            "BootNotification", {"chargePointVendor": vendor, "chargePointModel": model, **extra}
        )

    async def next_call(self, timeout: float = 5.0) -> list[Any]:
        """The next CALL the server sends us (CALLs that arrived during call() first)."""
        if self.unanswered:
            return self.unanswered.pop(0)
        while True:
            frame = await self.recv(timeout)
            if frame[0] == 2:
                return list(frame)

    async def answer(self, call_frame: list[Any], payload: dict[str, Any]) -> None:
        await self.send_raw(json.dumps([3, call_frame[1], payload]))

    async def answer_error(self, call_frame: list[Any], code: str, description: str = "") -> None:
        await self.send_raw(json.dumps([4, call_frame[1], code, description, {}]))

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.ws.close)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        """Wait until the server closes the socket; returns the close code."""

        def _wait() -> int | None:
            try:
                while True:
                    self.ws.recv(timeout)
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

        return await trio.to_thread.run_sync(_wait)
