"""An independent charger for TLS tests: the `ocpp` library's asyncio ChargePoint over the
`websockets` asyncio client, with an `ssl` context, run in a worker thread with its own
event loop so that trio tests can drive it (`trio.to_thread.run_sync`).

It shares no code with the server: `ws://` or `wss://`, Basic auth, client certificates
are all the client libraries' own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from ocpp.v16 import ChargePoint, call
from websockets.asyncio.client import ClientConnection


def client_context(
    ca: Path | None,
    cert: Path | None = None,
    key: Path | None = None,
    *,
    maximum_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    if maximum_version is not None:
        with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum_version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


@dataclass
class Outcome:
    """What happened: booted (with the BootNotification status) or refused (why)."""

    boot_status: str | None = None
    http_status: int | None = None
    error: str | None = None
    tls_version: str | None = None
    cipher: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.boot_status == "Accepted"


def _headers(charger_id: str, password: bytes | None) -> dict[str, str]:
    if password is None:
        return {}
    token = base64.b64encode(charger_id.encode() + b":" + password).decode()
    return {"Authorization": f"Basic {token}"}


async def _session(
    url: str,
    charger_id: str,
    context: ssl.SSLContext | None,
    password: bytes | None,
    then: Callable[[ChargePoint, ClientConnection], Awaitable[dict[str, Any]]] | None,
    charge_point: Callable[[str, ClientConnection], ChargePoint] = ChargePoint,
    boot_fields: dict[str, Any] | None = None,
) -> Outcome:
    try:
        ws = await websockets.connect(
            f"{url}/{charger_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            ssl=context,
            additional_headers=_headers(charger_id, password),
            open_timeout=10,
        )
    except websockets.InvalidStatus as exc:
        return Outcome(http_status=exc.response.status_code)
    except (OSError, ssl.SSLError, websockets.InvalidHandshake, EOFError) as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}")
    outcome = Outcome()
    tls = ws.transport.get_extra_info("ssl_object")
    if tls is not None:
        outcome.tls_version = tls.version()
        outcome.cipher = tls.cipher()[0]
    cp = charge_point(charger_id, ws)
    runner = asyncio.create_task(cp.start())
    try:
        response = await cp.call(
            call.BootNotification(
                charge_point_vendor="Acme", charge_point_model="TLS-1", **(boot_fields or {})
            )
        )
        outcome.boot_status = response.status
        if then is not None:
            outcome.extra = await then(cp, ws)
    except Exception as exc:  # the connection closed under us: say so, the test decides
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
        await ws.close()
    return outcome


def boot(
    url: str,
    charger_id: str,
    *,
    context: ssl.SSLContext | None = None,
    password: bytes | None = None,
    then: Callable[[ChargePoint, ClientConnection], Awaitable[dict[str, Any]]] | None = None,
    charge_point: Callable[[str, ClientConnection], ChargePoint] = ChargePoint,
    boot_fields: dict[str, Any] | None = None,
) -> Outcome:
    """Connect, send BootNotification, optionally run ``then``; blocking (use a thread).
    ``charge_point``: a ChargePoint subclass with @on handlers for our CALLs."""
    return asyncio.run(
        _session(url, charger_id, context, password, then, charge_point, boot_fields)
    )
