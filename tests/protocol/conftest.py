"""A bare trio-websocket server running OcppConnection with an in-memory backend fake."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketRequest, serve_websocket

from voltaro.domain.firmware import TransferStatusReport
from voltaro.domain.model import (
    AuthorizationStatus,
    BootDecision,
    BootRequest,
    DataTransferRequest,
    DataTransferResult,
    DataTransferStatus,
    FrameRecord,
    IdTagInfo,
    MeterValuesRequest,
    RegistrationStatus,
    StartTransactionRequest,
    StartTransactionResult,
    StatusNotificationRequest,
    StopTransactionRequest,
    StopTransactionResult,
)
from voltaro.domain.ports import StorageUnavailable
from voltaro.protocol import ConnectionLimits, OcppConnection


@dataclass
class FakeBackend:
    """Records what the handlers asked for; can be told to fail."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    frames: list[FrameRecord] = field(default_factory=list)
    storage_failures: int = 0  # raise StorageUnavailable this many times
    crash: bool = False

    def _note(self, name: str, request: Any) -> None:
        if self.crash:
            raise RuntimeError("backend bug")
        if self.storage_failures > 0:
            self.storage_failures -= 1
            raise StorageUnavailable("database down")
        self.calls.append((name, request))

    async def boot_notification(self, request: BootRequest) -> BootDecision:
        self._note("boot", request)
        return BootDecision(
            status=RegistrationStatus.ACCEPTED,
            interval=300,
            current_time=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        )

    async def heartbeat(self, charger_id: str, received_at: datetime) -> None:
        self._note("heartbeat", charger_id)

    async def authorize(self, charger_id: str, id_tag: str, received_at: datetime) -> IdTagInfo:
        self._note("authorize", id_tag)
        return IdTagInfo(status=AuthorizationStatus.ACCEPTED, parent_id_tag="PARENT")

    async def start_transaction(self, request: StartTransactionRequest) -> StartTransactionResult:
        self._note("start", request)
        return StartTransactionResult(
            transaction_id=42, id_tag_info=IdTagInfo(status=AuthorizationStatus.ACCEPTED)
        )

    async def stop_transaction(self, request: StopTransactionRequest) -> StopTransactionResult:
        self._note("stop", request)
        return StopTransactionResult(
            id_tag_info=IdTagInfo(status=AuthorizationStatus.ACCEPTED) if request.id_tag else None,
            outcome="stopped",
        )

    async def meter_values(self, request: MeterValuesRequest) -> None:
        self._note("meter", request)

    async def status_notification(self, request: StatusNotificationRequest) -> None:
        self._note("status", request)

    async def data_transfer(self, request: DataTransferRequest) -> DataTransferResult:
        self._note("data", request)
        return DataTransferResult(status=DataTransferStatus.UNKNOWN_VENDOR_ID)

    async def transfer_status(self, report: TransferStatusReport) -> None:
        self._note("transfer_status", report)

    def record_frame(self, frame: FrameRecord) -> None:
        self.frames.append(frame)

    def requests(self, name: str) -> list[Any]:
        return [r for n, r in self.calls if n == name]


@dataclass
class AdapterServer:
    url: str
    backend: FakeBackend
    connections: dict[str, OcppConnection]
    call_timeout: float

    arrived: trio.Event = field(default_factory=trio.Event)
    limits: ConnectionLimits | None = None  # for connections accepted from now on

    async def connection(self, charger_id: str) -> OcppConnection:
        with trio.fail_after(5):
            while charger_id not in self.connections:
                await self.arrived.wait()
                self.arrived = trio.Event()
        return self.connections[charger_id]


@pytest.fixture
async def adapter_server(nursery: trio.Nursery) -> AdapterServer:
    backend = FakeBackend()
    connections: dict[str, OcppConnection] = {}
    state = AdapterServer(url="", backend=backend, connections=connections, call_timeout=1.0)

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="ocpp1.6")
        charger_id = request.path.rsplit("/", 1)[-1]
        conn = OcppConnection(
            charger_id, ws, backend, call_timeout=state.call_timeout, limits=state.limits
        )
        connections[charger_id] = conn
        state.arrived.set()
        await conn.run()

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    state.url = f"ws://127.0.0.1:{server.port}/ocpp"
    return state
