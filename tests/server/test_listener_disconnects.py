"""Issue 10 §2.5: a charger that hangs up while we answer, or during the handshake, is a
normal disconnect: logged at INFO, never 1011, never an ERROR with a traceback, never
counted as a crash. Real sockets that hang up at exactly those moments."""

from __future__ import annotations

import json
import logging
from dataclasses import replace as dc_replace
from datetime import datetime

import pytest
import trio
from listener_support import serving, wait_for

from tests.support.rawsocket import RawSocketCharger
from voltaro.domain.model import (
    AuthorizationStatus,
    FrameRecord,
    IdTagInfo,
    RegistrationStatus,
    StopTransactionRequest,
    StopTransactionResult,
)
from voltaro.net.directory import ChargerRecord, MemoryDirectory
from voltaro.protocol import OcppConnection
from voltaro.settings import Settings

QUEUE = 16  # TrioChargePoint's default incoming queue
BASE = Settings(host="127.0.0.1", port=0, ping_interval=0, handshake_timeout=5)


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


class SlowStopBackend:
    """A backend whose StopTransaction write is in progress until the test releases it.

    The wait is shielded, as Database.run never abandons a write on cancel."""

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.release = trio.Event()
        self.stored: list[StopTransactionRequest] = []
        self.heartbeats_read = 0

    async def stop_transaction(self, request: StopTransactionRequest) -> StopTransactionResult:
        self.entered.set()
        with trio.CancelScope(shield=True):
            await self.release.wait()
        self.stored.append(request)
        return StopTransactionResult(
            id_tag_info=IdTagInfo(status=AuthorizationStatus.ACCEPTED), outcome="stopped"
        )

    async def heartbeat(self, charger_id: str, received_at: datetime) -> None:
        pass

    def record_frame(self, frame: FrameRecord) -> None:
        if frame.direction == "in" and frame.action == "Heartbeat":
            self.heartbeats_read += 1


async def test_charger_hangs_up_while_its_stop_is_being_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    backend = SlowStopBackend()
    directory = MemoryDirectory([ChargerRecord("CP-1", RegistrationStatus.ACCEPTED)])
    async with serving(
        BASE,
        directory,
        connection_factory=OcppConnection,
        backend_factory=lambda charger_id: backend,
    ) as srv:
        cp = await RawSocketCharger.open(int(srv.base.rsplit(":", 1)[1]))
        await cp.upgrade("/ocpp/CP-1")
        stop = {"transactionId": 7, "meterStop": 10, "timestamp": "2025-01-01T10:00:00Z"}
        await cp.send_text(json.dumps([2, "s1", "StopTransaction", stop]))
        await backend.entered.wait()
        # More CALLs than the per-connection queue holds: the reader is then parked on
        # the full queue and will not see the hang-up before the worker answers.
        for i in range(QUEUE + 1):
            await cp.send_text(json.dumps([2, f"h{i}", "Heartbeat", {}]))
        await wait_for(lambda: backend.heartbeats_read == QUEUE + 1)
        cp.reset()  # gone (RST) while the StopTransaction answer is being prepared
        backend.release.set()
        await wait_for(lambda: not srv.registry.connected())
        assert srv.listener.crashed == 0
        assert len(backend.stored) == 1  # the write itself completed
    assert _errors(caplog) == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("hung up before the answer to StopTransaction s1" in m for m in messages)


class BlockingDirectory(MemoryDirectory):
    """Holds the handshake in the directory lookup until the test releases it."""

    def __init__(self, *records: ChargerRecord) -> None:
        super().__init__(records)
        self.entered = trio.Event()
        self.release = trio.Event()

    async def lookup(self, charger_id: str) -> ChargerRecord | None:
        self.entered.set()
        await self.release.wait()
        return await super().lookup(charger_id)


@pytest.mark.parametrize("known", [True, False], ids=["known-accept", "unknown-refuse"])
async def test_charger_hangs_up_during_the_handshake(
    caplog: pytest.LogCaptureFixture, known: bool
) -> None:
    caplog.set_level(logging.INFO)
    records = [ChargerRecord("CP-1", RegistrationStatus.ACCEPTED)] if known else []
    directory = BlockingDirectory(*records)
    async with serving(dc_replace(BASE), directory) as srv:
        cp = await RawSocketCharger.open(int(srv.base.rsplit(":", 1)[1]))
        await cp.send_upgrade("/ocpp/CP-1")
        await directory.entered.wait()
        cp.reset()  # RST: the server's getpeername() now fails with ENOTCONN
        directory.release.set()
        await wait_for(lambda: srv.listener.open_connections == 0)
        assert srv.listener.crashed == 0
        assert srv.registry.connected() == []
    assert _errors(caplog) == []
    assert any("hung up during the handshake" in r.getMessage() for r in caplog.records)
