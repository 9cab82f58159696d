"""One charger's OCPP connection as the rest of the server sees it (a ChargerLink)."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from trio_websocket import WebSocketConnection

from voltaro.domain.commands import (
    ACTION_OF,
    Command,
    CommandError,
    CommandErrorCode,
    CommandOutcome,
)
from voltaro.domain.ports import ChargerBackend, StorageUnavailable
from voltaro.protocol.callerrors import CallErrorLog
from voltaro.protocol.commands import to_call, to_outcome
from voltaro.protocol.errors import (
    CallErrorReceived,
    CallQueueTimeout,
    CallTimeoutError,
    ConnectionLostError,
    InvalidRequestError,
    OcppError,
)
from voltaro.protocol.handlers import CentralSystemHandlers
from voltaro.protocol.normalize import normalize
from voltaro.protocol.rpc import ConnectionLimits, TrioChargePoint
from voltaro.protocol.traffic import Traffic

log = logging.getLogger("voltaro.protocol")


class OcppConnection(CentralSystemHandlers, TrioChargePoint):
    """Serves one charger: answers its CALLs through ``backend``, sends our commands."""

    def __init__(
        self,
        charger_id: str,
        websocket: WebSocketConnection,
        backend: ChargerBackend,
        *,
        call_timeout: float = 30.0,
        call_errors: CallErrorLog | None = None,
        limits: ConnectionLimits | None = None,
        traffic: Traffic | None = None,
    ) -> None:
        self.backend = backend
        super().__init__(
            charger_id,
            websocket,
            call_timeout=call_timeout,
            record_frame=backend.record_frame,
            call_errors=call_errors,
            limits=limits,
            traffic=traffic,
        )

    def run(self) -> Coroutine[Any, Any, None]:
        """Serve the socket until it closes (``start``'s own coroutine: no frame of its
        own in every idle connection's chain, issue 14)."""
        return self.start()

    def normalize_incoming(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        return normalize(action, payload)

    def describe_failure(self, action: str, exc: Exception) -> tuple[str, str]:
        if isinstance(exc, StorageUnavailable):
            # The charger keeps the message and retries (OCPP 1.6 §3.7.1): nothing lost.
            # Not a warning per message: an outage is summarised by the database's health
            # report (issue 21 item 5), not logged once for every retry of every charger.
            log.debug(
                "charger=%s %s not stored, charger will retry: %s", self.charger_id, action, exc
            )
            return "InternalError", "Storage temporarily unavailable; retry later"
        return super().describe_failure(action, exc)

    async def send_command(self, command: Command) -> CommandOutcome:
        action = ACTION_OF[type(command)]
        try:
            result = await self.call(to_call(command))
        except InvalidRequestError as exc:
            raise CommandError(CommandErrorCode.BAD_ARGUMENTS, f"{action}: {exc}") from None
        except CallQueueTimeout as exc:
            raise CommandError(CommandErrorCode.BUSY, str(exc)) from None
        except CallTimeoutError as exc:
            raise CommandError(CommandErrorCode.TIMEOUT, str(exc)) from None
        except ConnectionLostError as exc:
            raise CommandError(CommandErrorCode.DISCONNECTED, str(exc)) from None
        except CallErrorReceived as exc:
            raise CommandError(
                CommandErrorCode.CALL_ERROR, f"{self.charger_id} answered {action} with {exc}"
            ) from None
        except OcppError as exc:
            raise CommandError(
                CommandErrorCode.CALL_ERROR,
                f"{self.charger_id} sent an invalid answer to {action}: {exc.description}",
            ) from None
        return to_outcome(command, result)
