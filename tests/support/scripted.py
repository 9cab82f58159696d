"""A scripted charger on top of RawCharger: answers the server's CALLs with handlers.

The handlers see the raw OCPP-J payload (camelCase, as on the wire) and return the
answer payload, ``NO_ANSWER`` to leave the CALL unanswered, or ``HANG_UP`` to close the
connection instead of answering.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from tests.support.charger import RawCharger

NO_ANSWER: Any = object()
HANG_UP: Any = object()

Handler = Callable[[dict[str, Any]], Any]


class Script:
    def __init__(self, cp: RawCharger, handlers: dict[str, Handler]) -> None:
        self.cp = cp
        self.handlers = handlers
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (action, payload) received
        self.closed = False

    def actions(self) -> list[str]:
        return [action for action, _ in self.calls]

    def payloads(self, action: str) -> list[dict[str, Any]]:
        return [payload for a, payload in self.calls if a == action]

    async def _serve(self, done: trio.Event) -> None:
        while not done.is_set() and not self.closed:
            try:
                frame = await self.cp.next_call(timeout=0.1)
            except TimeoutError:
                continue
            action, payload = frame[2], frame[3]
            self.calls.append((action, payload))
            handler = self.handlers.get(action)
            if handler is None:
                await self.cp.answer_error(frame, "NotImplemented", f"no handler for {action}")
                continue
            reply = handler(payload)
            if reply is NO_ANSWER:
                continue
            if reply is HANG_UP:
                self.closed = True
                await self.cp.close()
                return
            await self.cp.answer(frame, reply)


@asynccontextmanager
async def scripted(cp: RawCharger, handlers: dict[str, Handler]) -> AsyncIterator[Script]:
    """Answer CALLs while the block runs."""
    script = Script(cp, handlers)
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(script._serve, done)
        try:
            yield script
        finally:
            done.set()
