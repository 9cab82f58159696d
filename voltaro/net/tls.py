"""``wss://`` for OCPP security profiles 2 and 3 (OCPP 1.6 security whitepaper, edition 3).

- TLS 1.2 and 1.3 only (A00.FR.301/302), no TLS compression (A00.FR.320). For TLS 1.2
  the cipher suites are the whitepaper's four (A00.FR.304-307: ECDHE-ECDSA with
  AES-128/256-GCM for an ECDSA certificate, RSA with AES-128/256-GCM for an RSA one) plus
  their ECDHE-RSA forms, which give forward secrecy to clients that refuse plain RSA key
  exchange (Python's and most TLS stacks' defaults do). TLS 1.3 uses OpenSSL's suites.
- A client certificate is asked for but optional (profile 2 chargers have none); when
  one is sent it must verify against ``tls_client_ca`` or the handshake fails. Whether a
  charger *needs* one, and whose it must be, is decided per charger at the WebSocket
  handshake (voltaro.net.listener), where the identity in the URL is known.
- The TLS handshake runs before trio-websocket sees the socket, one task per socket,
  bounded by ``handshake_timeout``: a failure (an expired certificate, another CA) is
  logged as a security event with the address and the reason, and costs nobody else.
- :meth:`TlsListener.reload` swaps in a context built from the files again (SIGHUP):
  new handshakes use it, established connections keep theirs and are never dropped. A
  context that cannot be built is logged and the old one kept.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from voltaro.net.admission import GuardedListener

log = logging.getLogger("voltaro.net.listener")

# OpenSSL names: TLS_ECDHE_ECDSA_WITH_AES_{128,256}_GCM_SHA{256,384},
# TLS_ECDHE_RSA_WITH_..., TLS_RSA_WITH_AES_{128,256}_GCM_SHA{256,384}.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
    )
)


class TlsConfigError(Exception):
    """The certificate, key or CA bundle cannot be used; the message says which and why."""


def server_context(certfile: str, keyfile: str = "", client_ca: str = "") -> ssl.SSLContext:
    """The listener's TLS context. Raises TlsConfigError naming the file and the reason."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(certfile, keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(
            f"cannot use the certificate {certfile}"
            + (f" with the key {keyfile}" if keyfile else "")
            + f" (settings tls_certfile, tls_keyfile): {_reason(exc)}"
        ) from exc
    if client_ca:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(
                f"cannot use the client CA bundle {client_ca} (setting tls_client_ca): "
                f"{_reason(exc)}"
            ) from exc
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What the handshake established about the client's certificate."""

    verified: bool  # a certificate was sent and verified against tls_client_ca
    common_names: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    serial_number: str | None = None
    not_after: str | None = None


def peer_certificate(stream: trio.SSLStream[Any]) -> PeerCertificate:
    cert = stream.getpeercert()
    if not cert:
        return PeerCertificate(verified=False)
    names = tuple(
        value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"
    )
    organizations = tuple(
        value for rdn in cert.get("subject", ()) for key, value in rdn if key == "organizationName"
    )
    return PeerCertificate(
        verified=True,
        common_names=names,
        organizations=organizations,
        serial_number=cert.get("serialNumber"),
        not_after=cert.get("notAfter"),
    )


TlsStream = trio.SSLStream[trio.SocketStream]
SecurityEventSink = Callable[[str, str, str], None]  # (kind, remote, detail)


class TlsListener(trio.abc.Listener[trio.SSLStream[trio.SocketStream]]):
    """Accepts TCP sockets from a guarded listener and hands out finished TLS streams."""

    def __init__(
        self,
        inner: GuardedListener,
        context: ssl.SSLContext,
        *,
        handshake_timeout: float,
        on_security_event: SecurityEventSink | None = None,
    ) -> None:
        self.inner = inner
        self.socket = inner.socket
        self.context = context
        self._handshake_timeout = handshake_timeout
        self._on_security_event = on_security_event or (lambda kind, remote, detail: None)
        self._ready_send, self._ready_receive = trio.open_memory_channel[
            trio.SSLStream[trio.SocketStream]
        ](math.inf)
        # (address, port) -> what the handshake established, until the WebSocket
        # handshake of that socket asks for it (take_peer).
        self._peers: dict[
            tuple[str, int], tuple[trio.SSLStream[trio.SocketStream], PeerCertificate]
        ] = {}
        self.handshake_failures = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await self.inner.accept()
                nursery.start_soon(self._handshake, stream)

    async def _handshake(self, raw: trio.SocketStream) -> None:
        try:
            address, port = raw.socket.getpeername()[:2]
        except OSError:
            await raw.aclose()
            return
        remote = f"{address}:{port}"
        stream = trio.SSLStream(raw, self.context, server_side=True, https_compatible=True)
        with trio.move_on_after(self._handshake_timeout) as scope:
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._failed(remote, exc.__cause__ or exc)
                await trio.aclose_forcefully(stream)
                return
        if scope.cancelled_caught:
            log.info("TLS handshake from %s took too long; closed", remote)
            await trio.aclose_forcefully(stream)
            return
        self._peers[(str(address), int(port))] = (stream, peer_certificate(stream))
        await self._ready_send.send(stream)

    def _failed(self, remote: str, cause: BaseException) -> None:
        self.handshake_failures += 1
        if isinstance(cause, ssl.SSLCertVerificationError):
            # A client certificate that does not verify: expired, another CA, revoked
            # (A00.FR.407: the connection is terminated and a security event logged).
            self._on_security_event("invalid_client_certificate", remote, _reason(cause))
        elif isinstance(cause, ssl.SSLError):
            log.info("TLS handshake from %s failed: %s", remote, _reason(cause))
        # Anything else: the client went away during the handshake.

    def take_peer(self, address: str, port: int) -> PeerCertificate | None:
        """What the TLS handshake of this socket established (None: not a TLS socket)."""
        entry = self._peers.pop((address, port), None)
        return entry[1] if entry is not None else None

    def sweep(self) -> None:
        """Forget sockets that closed before their WebSocket handshake asked."""
        for key, (stream, _) in list(self._peers.items()):
            if stream.transport_stream.socket.fileno() == -1:
                del self._peers[key]

    def reload(self, context: ssl.SSLContext) -> None:
        self.context = context

    async def accept(self) -> trio.SSLStream[trio.SocketStream]:
        return await self._ready_receive.receive()

    async def aclose(self) -> None:
        await self.inner.aclose()
