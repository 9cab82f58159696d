"""The raw frame log: every frame in and out, buffered in memory, written in batches,
published live to consoles. It is diagnostics, never billing data, so it is the one
writer that may be shed under load (counted in ``dropped``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio
from sqlalchemy.exc import SQLAlchemyError

from voltaro.control.wire import Event
from voltaro.domain.model import FrameRecord
from voltaro.domain.timestamps import format_utc
from voltaro.settings import Settings
from voltaro.store import frames
from voltaro.store.db import Database

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]


class FrameSink:
    """The raw frame log: buffered in memory, written in batches, published live."""

    def __init__(
        self, *, db: Database, settings: Settings, publish: Publish, max_buffer: int = 50_000
    ) -> None:
        self._db = db
        self._enabled = settings.frame_log
        self._publish = publish
        self._buffer: list[FrameRecord] = []
        self._max_buffer = max_buffer
        self._wake = trio.Event()
        self.dropped = 0

    def record(self, frame: FrameRecord) -> None:
        self._publish(
            Event.FRAME,
            {
                "charger_id": frame.charger_id,
                "direction": frame.direction,
                "action": frame.action,
                "unique_id": frame.unique_id,
                "payload": frame.payload,
                "at": format_utc(frame.at),
            },
        )
        if not self._enabled:
            return
        if len(self._buffer) >= self._max_buffer:
            self.dropped += 1  # the log is diagnostics; never let it grow without bound
            return
        self._buffer.append(frame)
        if len(self._buffer) >= 500:
            self._wake.set()

    async def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if batch:
            try:
                await self._db.run(frames.append_frames, batch)
            except SQLAlchemyError as exc:
                log.warning("frame log: %d frames not written: %s", len(batch), exc)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                with trio.move_on_after(1.0):
                    await self._wake.wait()
                self._wake = trio.Event()
                await self.flush()
        finally:
            with trio.CancelScope(shield=True):
                await self.flush()
