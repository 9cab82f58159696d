"""The OCPP-J WebSocket listener: handshake checks, then one supervised task per charger.

The handshake decides everything before the upgrade (OCPP-J 1.6 §3; R2-R6, R11, R29):
connection cap (503), identity (400), subprotocol (400), unknown ids (404 or register),
HTTP Basic auth for chargers with a password (401). Accepted sockets are served by the
connection factory (voltaro.protocol.OcppConnection) inside the session's own cancel
scope; a failure there is logged with the charger id and closes that socket only (1011).
trio-websocket ends the whole server if a handler raises (trio-and-the-ocpp-library
§7.10), so nothing but cancellation leaves :meth:`OcppListener._handle`.
"""

from __future__ import annotations

import logging
import resource
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import trio
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
)

from voltaro.background import LoopGuard
from voltaro.domain.certificates import identity_matches, organization_matches
from voltaro.domain.model import RegistrationStatus
from voltaro.domain.ports import StorageUnavailable
from voltaro.logs import CHARGER_ID
from voltaro.net.admission import (
    FD_RESERVE,
    GuardedListener,
    PendingSockets,
    effective_max_connections,
)
from voltaro.net.auth import PasswordChecker, parse_basic_auth
from voltaro.net.directory import BackendFactory, ChargerDirectory, ConnectionFactory
from voltaro.net.identity import InvalidIdentity, charger_id_from_path
from voltaro.net.liveness import PingScheduler, PingTimeout, TrackedWebSocket
from voltaro.net.ownership import Claimed, Fenced, Ownership
from voltaro.net.registry import Registry, Session
from voltaro.net.security_events import SecurityEvents
from voltaro.net.tls import PeerCertificate, TlsConfigError, TlsListener, server_context
from voltaro.settings import Settings, UnknownChargers

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
# How long a displaced or failed session may take to send its Close frame.
CLOSE_BUDGET = 1.0


@dataclass(frozen=True, slots=True)
class Admission:
    charger_id: str
    subprotocol: str | None
    # First contact: the registration it got (said in the one INFO line of the connect).
    registered: RegistrationStatus | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    # Why, as a stable key: the operator's counters (``status``: protection.handshakes).
    kind: str = "other"


# What a charger is told when the database cannot take it now (RFC 9110 §10.2.3).
RETRY_AFTER_SECONDS = 10


def database_unavailable() -> Refusal:
    return Refusal(
        503,
        "database unavailable, retry later",
        ((b"Retry-After", str(RETRY_AFTER_SECONDS).encode()),),
        kind="database_unavailable",
    )


def node_fenced() -> Refusal:
    """This node holds no valid cluster lease (issue 18): the load balancer's next
    choice, or this node once it joined again, takes the charger."""
    return Refusal(
        503,
        "this node is not serving (cluster lease lost), retry later",
        ((b"Retry-After", b"1"),),
        kind="node_fenced",
    )


def unauthorized(reason: str, *, kind: str) -> Refusal:
    return Refusal(
        401, reason, ((b"WWW-Authenticate", b'Basic realm="OCPP", charset="UTF-8"'),), kind=kind
    )


def endpoint_text(remote: Endpoint | str) -> str:
    """ "address:port" of a peer."""
    if isinstance(remote, Endpoint):
        return f"{remote.address}:{remote.port}"
    return str(remote)


def _log_unopened_registration(charger_id: str, registration: RegistrationStatus) -> None:
    log.info(
        "registered unknown charge point %r as %s (its connection did not open)",
        charger_id,
        registration.value,
    )


def _source_address(remote: str) -> str:
    """The address part of ``endpoint_text``'s "address:port" (for per-source limits)."""
    return remote.rsplit(":", 1)[0] if ":" in remote else remote


class OcppListener:
    """Serves chargers on settings.host:settings.port until cancelled."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry,
        directory: ChargerDirectory,
        backend_factory: BackendFactory,
        connection_factory: ConnectionFactory,
        password_checker: PasswordChecker | None = None,
        absorb: Callable[[str, str | None], bool] | None = None,
        security_events: SecurityEvents | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        """``absorb(what, charger_id)``: True when a consequence of a database outage is
        reported by the outage summary instead of a line here (issue 21 item 5).
        ``ownership``: several nodes (issue 18): chargers are claimed across the cluster
        after authentication and released when their socket closes."""
        self._ownership = ownership
        self._absorb = absorb or (lambda what, charger_id: False)
        self._settings = settings
        self._registry = registry
        self._directory = directory
        self._backend_factory = backend_factory
        self._connection_factory = connection_factory
        self.passwords = password_checker or PasswordChecker(
            failures_per_identity=settings.auth_failures_per_identity,
            failures_per_source=settings.auth_failures_per_source,
        )
        self._open = 0  # sockets past the HTTP request, handshake or session
        self._closing = False
        self._sessions_done = trio.Event()
        self._sessions_done.set()
        self._live_sessions = 0
        self.refused: dict[int, int] = {}
        self.refused_by_kind: dict[str, int] = {}
        self.cut_off = 0  # sessions closed with 1008 for protocol abuse (issue 11.6)
        self._sweeper = LoopGuard("listener: pending-socket sweep", log)
        self._max_connections = settings.max_connections
        self._pending = PendingSockets()
        self.guards: list[GuardedListener] = []
        # Identities cut off for abuse -> when they may reconnect (trio clock).
        self._abusers: dict[str, float] = {}
        self.crashed = 0
        self.security = security_events or SecurityEvents()
        self.tls_listeners: list[TlsListener] = []
        self.tls_bound: list[tuple[str, int]] = []
        # One task pings every session (R9), not a task per session (issue 14 step 5).
        self._pings = PingScheduler(settings.ping_interval, settings.ping_timeout)

    @property
    def open_connections(self) -> int:
        return self._open

    async def run(
        self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen; ``task_status.started`` gets the bound (host, port) pairs."""
        s = self._settings
        self._max_connections, nofile = effective_max_connections(s.max_connections)
        log.info(
            "max_connections = %d (configured %d, open-file limit %s, %d kept for other use)",
            self._max_connections,
            s.max_connections,
            "unlimited" if nofile == resource.RLIM_INFINITY else nofile,
            FD_RESERVE,
        )
        context = self._tls_context() if s.tls_port is not None else None
        guarded = self._guard(await trio.open_tcp_listeners(s.port, host=s.host))
        tls_guarded = (
            self._guard(await trio.open_tcp_listeners(s.tls_port, host=s.host))
            if s.tls_port is not None
            else []
        )
        self.guards = guarded + tls_guarded
        if context is not None:
            self.tls_listeners = [
                TlsListener(
                    g,
                    context,
                    handshake_timeout=s.handshake_timeout,
                    on_security_event=lambda kind, remote, detail: self.security.record(
                        kind, remote=remote, detail=detail
                    ),
                )
                for g in tls_guarded
            ]
        server = WebSocketServer(
            self._handle,
            [*guarded, *self.tls_listeners],  # type: ignore[list-item]  # Listeners, as it expects
            max_message_size=s.max_message_size,
            connect_timeout=s.handshake_timeout,
            disconnect_timeout=CLOSE_BUDGET * 2,
        )
        async with trio.open_nursery() as nursery:
            for tls in self.tls_listeners:
                await nursery.start(tls.run)
            await nursery.start(self._pings.run)
            await nursery.start(server.run)
            nursery.start_soon(self._sweep_pending)
            if self.tls_listeners:
                nursery.start_soon(self._reload_on_sighup)
            bound = _bound(guarded)
            self.tls_bound = _bound(tls_guarded)
            log.info(
                "listening for OCPP 1.6J chargers on %s",
                ", ".join(
                    [charger_url(host, port) for host, port in bound]
                    + [charger_url(host, port, tls=True) for host, port in self.tls_bound]
                ),
            )
            task_status.started(bound)

    def _guard(self, listeners: list[trio.SocketListener]) -> list[GuardedListener]:
        s = self._settings
        return [
            GuardedListener(
                inner,
                max_pending_per_ip=s.max_pending_per_ip,
                max_connections=self._max_connections,
                live_sessions=lambda: self._live_sessions,
                pending=self._pending.by_address,
            )
            for inner in listeners
        ]

    def _tls_context(self) -> ssl.SSLContext:
        s = self._settings
        return server_context(s.tls_certfile, s.tls_keyfile, s.tls_client_ca)

    def reload_tls(self) -> str:
        """Read the certificate, key and CA bundle again; new handshakes use them,
        established connections keep theirs. On error the current ones are kept."""
        if not self.tls_listeners:
            return "wss:// is not enabled (tls_port)"
        try:
            context = self._tls_context()
        except TlsConfigError as exc:
            log.error("TLS reload failed, keeping the current certificate: %s", exc)
            return f"failed, kept the current certificate: {exc}"
        for tls in self.tls_listeners:
            tls.reload(context)
        log.info("TLS certificate, key and client CA reloaded from %s", self._settings.tls_certfile)
        return "reloaded"

    async def _reload_on_sighup(self) -> None:
        try:
            receiver = trio.open_signal_receiver(signal.SIGHUP)
        except (RuntimeError, ValueError):  # not the main thread: reload by control op only
            return
        with receiver as signals:
            async for _ in signals:
                self.reload_tls()

    async def _sweep_pending(self) -> None:
        while True:
            await trio.sleep(5.0)
            try:
                self._pending.sweep()
                for tls in self.tls_listeners:
                    tls.sweep()
                self._sweeper.succeeded()
            except Exception as exc:
                await self._sweeper.after_failure(exc, "forgetting closed pending sockets")

    def connection_states(self) -> dict[str, int]:
        """Sockets by state now: in a session, or between the HTTP request and the
        upgrade (admission: identity, password, database); and accepted sockets not yet
        upgraded (those in the handshake too), closed ones forgotten within a sweep."""
        return {
            "connected": self._live_sessions,
            "handshake": max(0, self._open - self._live_sessions),
            "pending": self._pending.total(),
            "limit": self._max_connections,
        }

    def counters(self) -> dict[str, Any]:
        """What the listener refused or cut off (process lifetime; issue 11.6-11.9)."""
        return {
            "handshakes_refused": dict(sorted(self.refused_by_kind.items())),
            "connections": {
                "open": self._open,
                "max_connections": self._max_connections,
                "refused_per_ip": sum(g.refused_per_ip for g in self.guards),
                "refused_global": sum(g.refused_global for g in self.guards),
                "accept_errors": sum(g.accepting.errors for g in self.guards),
                "refused_no_descriptor": sum(g.accepting.refused for g in self.guards),
            },
            "auth": {
                "failures": self.passwords.failed,
                "locked_out": self.passwords.throttled,
            },
            "abuse_cut_off": self.cut_off,
            "connections_crashed": self.crashed,
            "background_failures": {self._sweeper.name: self._sweeper.failures},
            "security_events": {k: v for k, v in sorted(self.security.counts.items()) if v},
        }

    async def shutdown(self, *, code: int = CLOSE_GOING_AWAY, grace: float) -> None:
        """Refuse new chargers; let live sessions finish their answers for up to ``grace``;
        close every session with ``code``."""
        self._closing = True
        # As hypercorn does (issue 10 §2.6): every session stops reading and finishes the
        # answers in flight (a StartTransaction being written is committed AND answered),
        # then closes with ``code``; whatever is still running after ``grace`` is cut.
        for session in self._registry.sessions():
            session.going_away(code, "server shutting down")
            session.link.drain()
        with trio.move_on_after(grace):
            await self._sessions_done.wait()
        for session in self._registry.sessions():
            session.close(code, "server shutting down")
        with trio.move_on_after(CLOSE_BUDGET * 2):
            await self._sessions_done.wait()

    # --- one socket --------------------------------------------------------------

    async def _handle(self, request: WebSocketRequest) -> None:
        self._open += 1
        remote: str | None = None
        try:
            try:
                # Read once: getpeername() fails (ENOTCONN) once the peer has hung up,
                # and each read is a system call and a parse (issue 14: a few % of a
                # connect in a storm).
                endpoint = request.remote
                remote = endpoint_text(endpoint)
            except OSError as exc:
                log.info("a client hung up during the handshake (%s)", exc.strerror or exc)
                return
            admitted = await self._handle_request(request, remote, endpoint)
            if admitted is not None:
                # Served from this frame, once the handshake's own has ended: its locals
                # (the decision, the handshake deadline's cancel scope) and its coroutine
                # are not kept for the session's life (issue 14, memory per connection).
                await self._serve_session(*admitted)
        except* Exception:
            # Only a bug of ours gets here (the session has its own boundary): never let
            # it reach serve_websocket, which would end the listener for everyone.
            self.crashed += 1
            log.exception("handshake failed for %s", request.path)
        finally:
            self._open -= 1
            self._forget_pending(remote)

    def _forget_pending(self, remote: str | None) -> None:
        """This socket is upgraded or finished: it no longer counts as pending."""
        if remote is None or ":" not in remote:
            return
        address, _, port = remote.rpartition(":")
        if port.isdigit():
            self._pending.upgraded(address, int(port))

    async def _handle_request(
        self, request: WebSocketRequest, remote: str, endpoint: Endpoint | str
    ) -> tuple[str, WebSocketConnection, str, Claimed | None, RegistrationStatus | None] | None:
        """The handshake: refused here (None), or accepted: what ``_serve_session`` takes,
        with the cluster claim it now releases."""
        with trio.move_on_after(self._settings.handshake_timeout) as handshake:
            decision = await self._admit(request, remote, endpoint)
        # A first contact that does not become a session says its registration here.
        first_contact = (
            (decision.charger_id, decision.registered)
            if isinstance(decision, Admission) and decision.registered is not None
            else None
        )
        served = False
        if handshake.cancelled_caught:
            decision = Refusal(408, "handshake took too long", kind="handshake_timeout")
        if not isinstance(decision, Refusal) and self._closing:
            decision = Refusal(503, "server shutting down", kind="shutting_down")
        claimed: Claimed | None = None
        if not isinstance(decision, Refusal) and self._ownership is not None:
            # Several nodes: the charger authenticated, so it may take itself over from
            # whichever node holds it (A2 "Duplicate-connection policy" §1-2).
            try:
                claimed = await self._ownership.claim(decision.charger_id, remote)
            except (StorageUnavailable, Fenced) as exc:
                await self._notify_disconnected(decision.charger_id, "not admitted")
                decision = node_fenced() if isinstance(exc, Fenced) else database_unavailable()
        try:
            try:
                if isinstance(decision, Refusal):
                    await self._refuse(request, decision, remote)
                    return None
                ws = await request.accept(subprotocol=decision.subprotocol)
                self._forget_pending(remote)
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                # The client gave up during the handshake: a normal disconnect, nothing
                # to answer (issue 10 §2.5).
                log.info("%s hung up during the handshake for %s", remote, request.path[:120])
                if not isinstance(decision, Refusal):
                    # Admitted (and recorded as connected), then gone: record that too.
                    await self._notify_disconnected(decision.charger_id, "hung up in the handshake")
                return None
            handed_over, claimed = claimed, None  # the session releases it from here on
            served = True
            return decision.charger_id, ws, remote, handed_over, decision.registered
        finally:
            if first_contact is not None and not served:
                _log_unopened_registration(*first_contact)
            if claimed is not None and not isinstance(decision, Refusal):
                await self._release(decision.charger_id, claimed)

    async def _refuse(self, request: WebSocketRequest, refusal: Refusal, remote: str) -> None:
        self.refused[refusal.status] = self.refused.get(refusal.status, 0) + 1
        self.refused_by_kind[refusal.kind] = self.refused_by_kind.get(refusal.kind, 0) + 1
        outage = refusal.reason == database_unavailable().reason
        if not (outage and self._absorb("handshakes refused with 503", None)):
            log.info(
                "refused %s from %s: HTTP %d (%s)",
                request.path[:120],
                remote,
                refusal.status,
                refusal.reason,
            )
        body = (refusal.reason + "\n").encode()
        headers = [(b"Content-Type", b"text/plain; charset=utf-8"), *refusal.headers]
        await request.reject(refusal.status, extra_headers=headers, body=body)

    def _peer_certificate(self, endpoint: Endpoint | str) -> PeerCertificate | None:
        """What TLS established for this socket; None for plain ws://."""
        if not isinstance(endpoint, Endpoint) or not endpoint.is_ssl:
            return None
        for tls in self.tls_listeners:
            peer = tls.take_peer(str(endpoint.address), int(endpoint.port))
            if peer is not None:
                return peer
        return PeerCertificate(verified=False)

    async def _admit(
        self, request: WebSocketRequest, remote: str, endpoint: Endpoint | str
    ) -> Admission | Refusal:
        s = self._settings
        tls = self._peer_certificate(endpoint)
        if self._closing:
            return Refusal(503, "server shutting down", kind="shutting_down")
        if self._open > self._max_connections:
            return Refusal(503, "too many connections", kind="connection_cap")
        if self._ownership is not None and self._ownership.fenced():
            return node_fenced()
        try:
            charger_id = charger_id_from_path(request.path)
        except InvalidIdentity as exc:
            return Refusal(400, str(exc), kind="bad_identity")
        # Every log line of this socket's task from here on, and of the connection's
        # tasks (they inherit this context), carries the charger id (issue 19).
        CHARGER_ID.set(charger_id)
        backoff = self._backoff_left(charger_id)
        if backoff > 0:
            return Refusal(
                429,
                "too many protocol errors; retry later",
                ((b"Retry-After", str(int(backoff) + 1).encode()),),
                kind="abuse_backoff",
            )
        offered = request.proposed_subprotocols
        if offered and SUBPROTOCOL not in offered:
            # OCTT TC_088 expects no upgrade at all for an unsupported protocol (R5).
            return Refusal(400, f"subprotocol {SUBPROTOCOL} not offered", kind="subprotocol")
        try:
            record = await self._directory.lookup(charger_id)
        except StorageUnavailable:
            return database_unavailable()
        if record is None and s.unknown_chargers is UnknownChargers.REJECT:
            # OCPP-J 1.6 §3.2 and errata 3.68: unknown identity -> 404, no upgrade.
            return Refusal(404, "unknown charge point", kind="unknown_charger")
        if not offered and not (
            s.allow_missing_subprotocol or (record is not None and record.allow_no_subprotocol)
        ):
            return Refusal(
                400, f"no subprotocol offered; {SUBPROTOCOL} required", kind="subprotocol"
            )
        profile = record.security_profile if record is not None else 0
        refusal = self._check_profile(
            charger_id, profile, tls, remote, record.serial_number if record is not None else None
        )
        if refusal is not None:
            return refusal
        if record is not None and record.password_hash and profile != 3:
            retry = self.passwords.retry_after(charger_id, _source_address(remote))
            if retry > 0:
                # Issue 11.9: too many failures from this source; no KDF is spent.
                return Refusal(
                    429,
                    "too many failed authentications; retry later",
                    ((b"Retry-After", str(int(retry) + 1).encode()),),
                    kind="auth_locked_out",
                )
            credentials = parse_basic_auth(request.headers)
            hashes = (record.password_hash, *record.pending_password_hashes)
            matched = await self.passwords.check_any(
                charger_id, hashes, credentials, _source_address(remote)
            )
            if matched is None:
                # Logged by the checker, summarised per source (a brute force must not
                # write a line per guess); counted with the other security events.
                self.security.counts["auth_failed"] += 1
                return unauthorized("authentication required", kind="auth_failed")
            if matched != record.password_hash:
                # The charger uses the password it was sent (ChangeConfiguration
                # AuthorizationKey): from now on only that one is valid (TC_073).
                try:
                    await self._directory.password_confirmed(charger_id, matched)
                except StorageUnavailable:
                    return database_unavailable()
                log.info("charge point %r now uses its new password", charger_id)
        elif record is not None and record.pending_password_hashes and profile == 0:
            # Onboarding (R36): a charger without a password was sent one; once it
            # logs in with it, it is a profile 1 charger. Without credentials it is
            # still admitted as before (profile 0 asks for nothing).
            credentials = parse_basic_auth(request.headers)
            if credentials is not None:
                matched = await self.passwords.check_any(
                    charger_id, record.pending_password_hashes, credentials, _source_address(remote)
                )
                if matched is not None:
                    try:
                        await self._directory.password_confirmed(charger_id, matched)
                    except StorageUnavailable:
                        return database_unavailable()
                    log.info("charge point %r now uses a password (profile 1)", charger_id)
        registration: RegistrationStatus | None = None
        if record is None:
            registration = (
                RegistrationStatus.PENDING
                if s.unknown_chargers is UnknownChargers.PENDING
                else RegistrationStatus.ACCEPTED
            )
            try:
                await self._directory.register_unknown(charger_id, registration)
            except StorageUnavailable:
                return database_unavailable()
        admitted = False
        try:
            # Issue 10 §2.4: a database that cannot record the connection now (PostgreSQL
            # down, SQLite write-locked) is a 503 before the upgrade, not a 1011 after it.
            await self._directory.admit(charger_id)
            admitted = True
        except StorageUnavailable:
            return database_unavailable()
        finally:
            # An admitted first contact says its registration in the connect's own INFO
            # line (issue 14 step 4: one line per connect); one that goes no further
            # (refused, timed out) says it here.
            if registration is not None and not admitted:
                _log_unopened_registration(charger_id, registration)
        return Admission(charger_id, SUBPROTOCOL if offered else None, registration)

    def _check_profile(
        self,
        charger_id: str,
        profile: int,
        tls: PeerCertificate | None,
        remote: str,
        serial_number: str | None = None,
    ) -> Refusal | None:
        """The charger's stored security profile is the only one it may use (OCPP 1.6
        security whitepaper A00.FR.001-006: no downgrade; A00.FR.401-407: profile 3)."""
        if profile >= 2 and tls is None:
            self.security.record(
                "downgrade",
                charger_id=charger_id,
                remote=remote,
                detail=f"security profile {profile} charger came over plain ws://",
            )
            return unauthorized(
                f"security profile {profile}: connect with wss://", kind="downgrade"
            )
        if profile != 3 or tls is None:
            return None
        if not tls.verified:
            self.security.record(
                "client_certificate_missing",
                charger_id=charger_id,
                remote=remote,
                detail="security profile 3 charger sent no client certificate",
            )
            return unauthorized(
                "security profile 3: a client certificate is required",
                kind="client_certificate_missing",
            )
        if not identity_matches(tls.common_names, charger_id, serial_number):
            self.security.record(
                "certificate_cn_mismatch",
                charger_id=charger_id,
                remote=remote,
                detail=f"certificate CN {', '.join(tls.common_names) or '(none)'}",
            )
            return unauthorized(
                "the client certificate is not this charge point's",
                kind="certificate_cn_mismatch",
            )
        required = self._settings.certificate_organization
        if not organization_matches(tls.organizations, required):
            self.security.record(
                "certificate_organization_mismatch",
                charger_id=charger_id,
                remote=remote,
                detail=f"certificate O {', '.join(tls.organizations) or '(none)'}",
            )
            return unauthorized(
                f"the client certificate's organisation is not {required}",
                kind="certificate_organization_mismatch",
            )
        return None

    def _backoff_left(self, charger_id: str) -> float:
        until = self._abusers.get(charger_id)
        if until is None:
            return 0.0
        left = until - trio.current_time()
        if left <= 0:
            del self._abusers[charger_id]
        return left

    async def _release(self, charger_id: str, claimed: Claimed) -> None:
        if self._ownership is not None:
            with trio.move_on_after(CLOSE_BUDGET * 5, shield=True):
                await self._ownership.release(charger_id, claimed)

    async def _serve_session(
        self,
        charger_id: str,
        ws: WebSocketConnection,
        remote: str,
        claimed: Claimed | None = None,
        registered: RegistrationStatus | None = None,
    ) -> None:
        tracked = TrackedWebSocket(ws)
        backend = self._backend_factory(charger_id)
        link = self._connection_factory(
            charger_id,
            cast(WebSocketConnection, tracked),
            backend,
            call_timeout=self._settings.call_timeout,
        )
        session = Session(
            charger_id=charger_id,
            link=link,
            remote=remote,
            epoch=claimed.epoch if claimed is not None else 0,
        )
        previous = self._registry.claim(session)
        if claimed is not None and self._ownership is not None:
            if not self._ownership.holds(claimed):
                # Fenced (or joined again as a new incarnation) since the claim: the
                # fence closed the sessions it saw; this one was not there yet.
                session.close(1012, "node lost its cluster lease")
            elif (by := self._ownership.superseded(charger_id, claimed)) is not None:
                # Another node took the charger over during the handshake; its eviction
                # notice found no socket here to close (A2 "Duplicate-connection policy").
                session.moved_to = by
                session.close(CLOSE_NORMAL, f"replaced by a new connection on node {by}")
        if previous is not None:
            self.security.record(
                "takeover",
                charger_id=charger_id,
                remote=remote,
                detail=f"replaced the live connection from {previous.remote}",
            )
            previous.close(CLOSE_NORMAL, "replaced by a new connection")
        self._live_sessions += 1
        if self._live_sessions == 1:
            self._sessions_done = trio.Event()
        reason = "closed"
        try:
            with session.scope:
                try:
                    await self._notify_connected(charger_id, remote)
                    if registered is None:
                        log.info("charge point %r connected from %s", charger_id, remote)
                    else:
                        log.info(
                            "charge point %r connected from %s (first contact: registered as %s)",
                            charger_id,
                            remote,
                            registered.value,
                        )
                    watched = self._pings.watch(
                        tracked, lambda exc: self._keep_alive_failed(session, exc)
                    )
                    try:
                        await link.run()
                    finally:
                        watched.stop()
                    if getattr(link, "policy_violation", False):
                        # Issue 11.6: the connection closed itself with 1008; make this
                        # identity wait before it may come back.
                        reason = "policy violation"
                        self.cut_off += 1
                        self._abusers[charger_id] = (
                            trio.current_time() + self._settings.abuse_backoff
                        )
                except* Exception as group:
                    # The boundary of one charger (§7.11 of the adapter notes): log with
                    # the id, close this socket with 1011, leave everyone else alone.
                    self.crashed += 1
                    reason = "internal error"
                    session.close_code, session.close_reason = CLOSE_INTERNAL_ERROR, reason
                    log.error(
                        "connection of charge point %r failed; closing it (1011)",
                        charger_id,
                        exc_info=group,
                    )
            if session.scope.cancelled_caught or session.close_reason:
                reason = session.close_reason or "closed by the server"
            with trio.move_on_after(CLOSE_BUDGET, shield=True):
                await ws.aclose(session.close_code, session.close_reason or None)
        finally:
            still_current = self._registry.release(session)
            if claimed is not None:
                await self._release(charger_id, claimed)
            if still_current:
                with trio.move_on_after(CLOSE_BUDGET * 5, shield=True):
                    await self._notify_disconnected(charger_id, reason, session.moved_to)
            log.info("charge point %r disconnected (%s)", charger_id, reason)
            self._live_sessions -= 1
            if self._live_sessions == 0:
                self._sessions_done.set()

    def _keep_alive_failed(self, session: Session, exc: Exception) -> None:
        if isinstance(exc, PingTimeout):
            # A half-open TCP connection (R9): nothing else would ever notice it.
            log.info("charge point %r: %s; closing", session.charger_id, exc)
            session.close(CLOSE_GOING_AWAY, "ping timeout")
            return
        # A bug of ours while pinging: this socket only, as at the session's boundary.
        self.crashed += 1
        log.error(
            "pinging charge point %r failed; closing it (1011)", session.charger_id, exc_info=exc
        )
        session.close(CLOSE_INTERNAL_ERROR, "internal error")

    async def _notify_connected(self, charger_id: str, remote: str) -> None:
        try:
            await self._directory.connected(charger_id, remote)
        except StorageUnavailable:
            if not self._absorb("connected flags not written yet", charger_id):
                log.warning("could not record that %r connected (database unavailable)", charger_id)

    async def _notify_disconnected(self, charger_id: str, reason: str, moved_to: str = "") -> None:
        try:
            await self._directory.disconnected(charger_id, reason, moved_to=moved_to)
            if self._registry.is_connected(charger_id):
                # A successor arrived while we recorded the disconnect: the write order
                # between the two is not fixed, so state the truth again.
                await self._directory.connected(
                    charger_id,
                    self._registry.session(charger_id).remote,  # type: ignore[union-attr]
                )
        except StorageUnavailable:
            if not self._absorb("connected flags not written yet", charger_id):
                log.warning(
                    "could not record that %r disconnected (database unavailable)", charger_id
                )


def _bound(listeners: list[GuardedListener]) -> list[tuple[str, int]]:
    return [
        (str(address), int(port))
        for address, port, *_ in (g.socket.getsockname() for g in listeners)
    ]


def charger_url(host: str, port: int, *, tls: bool = False) -> str:
    """The URL to configure in chargers; a wildcard bind is shown with this host's name."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{'wss' if tls else 'ws'}://{authority}/ocpp/<charge point id>"
