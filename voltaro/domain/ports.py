"""The seams between the protocol layer and the rest of the server, as Protocols.

The OCPP handlers (voltaro.protocol) know only these interfaces; the service layer
implements them with the store and the event hub, and tests can fake them.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from voltaro.domain.commands import Command, CommandOutcome
from voltaro.domain.firmware import TransferStatusReport
from voltaro.domain.model import (
    BootDecision,
    BootRequest,
    ChargerSecurityEvent,
    DataTransferRequest,
    DataTransferResult,
    FrameRecord,
    IdTagInfo,
    MeterValuesRequest,
    StartTransactionRequest,
    StartTransactionResult,
    StatusNotificationRequest,
    StopTransactionRequest,
    StopTransactionResult,
)


class StorageUnavailable(Exception):
    """The database could not take a write in time; the charger must retry later.

    The protocol layer answers the CALL with a CALLERROR (InternalError) so that the
    charger keeps the message queued (OCPP 1.6 §3.7.1) instead of losing it.
    """


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """The charger's CALL being answered, as it came off the wire."""

    unique_id: str
    action: str
    frame: str  # the raw text frame
    # Paths of the strings the edge repaired (NUL, lone surrogates -> U+FFFD): the raw
    # frame is then kept before the message is stored (voltaro/protocol/edge.py).
    repaired: tuple[str, ...] = ()


# Set by the protocol layer while a charger's CALL is answered, so that the backend can
# keep the raw frame when it cannot store what the message says (quarantine).
CURRENT_CALL: ContextVar[IncomingCall | None] = ContextVar("voltaro_current_call", default=None)


class ChargerBackend(Protocol):
    """Everything one charger connection's handlers need. One instance per connection."""

    async def boot_notification(self, request: BootRequest) -> BootDecision: ...

    async def heartbeat(self, charger_id: str, received_at: datetime) -> None: ...

    async def authorize(self, charger_id: str, id_tag: str, received_at: datetime) -> IdTagInfo: ...

    async def start_transaction(
        self, request: StartTransactionRequest
    ) -> StartTransactionResult: ...

    async def stop_transaction(self, request: StopTransactionRequest) -> StopTransactionResult: ...

    async def meter_values(self, request: MeterValuesRequest) -> None: ...

    async def status_notification(self, request: StatusNotificationRequest) -> None: ...

    async def data_transfer(self, request: DataTransferRequest) -> DataTransferResult: ...

    async def transfer_status(self, report: TransferStatusReport) -> None:
        """A FirmwareStatusNotification or DiagnosticsStatusNotification (§4.4, §4.5)."""

    async def security_event(self, event: ChargerSecurityEvent) -> None:
        """A SecurityEventNotification: stored before it is answered (1.6 security ext.)."""

    async def sign_certificate(self, csr: str, received_at: datetime) -> bool:
        """A SignCertificate CSR: checked and recorded; True to answer Accepted."""

    async def certificate_request_answered(self, csr: str) -> None:
        """After the SignCertificate answer went out: sign an accepted CSR and send
        CertificateSigned (whitepaper A02/A03: never before the answer)."""

    def record_frame(self, frame: FrameRecord) -> None:
        """Queue a raw frame for the frame log and the live feed. Must not block."""


class ChargerLink(Protocol):
    """A live connection to one charger, as the command layer sees it."""

    charger_id: str

    async def send_command(self, command: Command) -> CommandOutcome:
        """Send one command and wait for the answer.

        Raises:
            CommandError: TIMEOUT, CALL_ERROR or DISCONNECTED.
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    def drain(self) -> None:
        """Graceful shutdown: stop reading, finish the answers in flight, then end."""
        ...
