"""Connection limits below the WebSocket handshake (issue 11 item 8).

trio-websocket reads the HTTP upgrade request itself, for up to ``handshake_timeout``,
before the listener's handler sees anything. Without a guard, 2,000 idle sockets from
one address are all accepted and each holds a file descriptor and a task, and when the
process runs out of descriptors trio logs a traceback on every accept attempt.

:class:`GuardedListener` wraps each TCP listener and decides at ``accept``:

- a source address may hold at most ``max_pending_per_ip`` sockets that have not
  finished the upgrade; more are closed at once;
- sockets not yet upgraded count against ``max_connections`` together with the live
  sessions; up to 5 % beyond it they get their HTTP 503 from the handshake, further
  ones are closed at once;
- out of descriptors on accept (EMFILE/ENFILE): the connection waiting in the kernel's
  queue is accepted with a descriptor held in reserve for that purpose and closed at
  once (the "spare descriptor" trick of libev and nginx), so a client is refused
  cleanly instead of hanging in the queue until it times out, and the connections
  already served go on; ENOBUFS/ENOMEM (or no spare): back off (50 ms doubling to 1 s).
  Either way one log line per 10 s with a count, no traceback. When descriptors free
  up, accepting works again by itself. :class:`AcceptGuard` does this for the control
  socket too.

``effective_max_connections`` derives the cap from the open-file limit at start (the
soft limit is raised towards the hard one when that is allowed).
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
from collections.abc import Callable

import trio

log = logging.getLogger("voltaro.net.listener")

# Descriptors kept for everything that is not a charger socket: the database pool,
# the control socket and its clients, the HTTP API, log files, worker threads.
FD_RESERVE = 256
_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def effective_max_connections(configured: int) -> tuple[int, int]:
    """(the connection cap to use, the open-file soft limit after raising it)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return configured, -1
    wanted = configured + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY:
        return configured, soft
    return max(1, min(configured, soft - FD_RESERVE)), soft


class AcceptGuard:
    """``accept`` that survives running out of descriptors (see the module docstring)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._spare: int | None = self._open_spare()
        self._backoff = 0.0
        self._unreported = 0
        self._last_report = -1e9
        self.errors = 0  # accepts that failed for lack of descriptors or memory
        self.refused = 0  # connections closed at once for lack of descriptors

    @staticmethod
    def _open_spare() -> int | None:
        try:
            return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    async def accept(self, inner: trio.SocketListener) -> trio.SocketStream:
        while True:
            try:
                stream = await inner.accept()
            except OSError as exc:
                if exc.errno not in _CAPACITY_ERRNOS:
                    raise
                self._report(exc)
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._refuse_one(inner):
                    await trio.lowlevel.checkpoint()  # a flood of them must not starve others
                    continue
                self._backoff = min(1.0, max(0.05, self._backoff * 2))
                await trio.sleep(self._backoff)
                continue
            self._backoff = 0.0
            return stream

    def _refuse_one(self, inner: trio.SocketListener) -> bool:
        """Accept a waiting connection with the spare descriptor and close it at once."""
        if self._spare is None:
            self._spare = self._open_spare()  # descriptors may have freed up meanwhile
            if self._spare is None:
                return False
        os.close(self._spare)
        self._spare = None
        # The listening descriptor wrapped, not duplicated (that would take the spare):
        # a non-blocking accept, so that nothing is taken that arrives later, when there
        # may be descriptors again.
        raw = socket.socket(fileno=inner.socket.fileno())
        try:
            raw.setblocking(False)
            conn, _ = raw.accept()
            conn.close()
            self.refused += 1
            return True
        except OSError:  # nothing waiting any more, or still no descriptor
            return False
        finally:
            raw.detach()
            self._spare = self._open_spare()

    def _report(self, exc: OSError) -> None:
        self.errors += 1
        self._unreported += 1
        now = trio.current_time()
        if now - self._last_report < 10.0:
            return
        log.error(
            "%s: accept failed: %s (%d times since the last report); refusing new "
            "connections until descriptors free up, the connections being served go on. "
            "Raise the open-file limit or lower max_connections",
            self._what,
            errno.errorcode.get(exc.errno or 0, str(exc.errno)),
            self._unreported,
        )
        self._unreported = 0
        self._last_report = now

    def close(self) -> None:
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None


class GuardedListener(trio.abc.Listener[trio.SocketStream]):
    """A SocketListener that refuses sockets over the per-address and global caps."""

    def __init__(
        self,
        inner: trio.SocketListener,
        *,
        max_pending_per_ip: int,
        max_connections: int,
        live_sessions: Callable[[], int],
        pending: dict[str, dict[int, trio.SocketStream]],
    ) -> None:
        self.inner = inner
        self.socket = inner.socket
        self._max_pending_per_ip = max_pending_per_ip
        # Up to max_connections (+5 %) a socket is accepted and the handshake answers
        # 503 when the sessions are full (chargers back off on it); beyond, closed here.
        self._hard_cap = max_connections + max(1, max_connections // 20)
        self._live_sessions = live_sessions
        # source address -> {remote port: stream}: shared by every listener of a server.
        self._pending = pending
        self.accepting = AcceptGuard("OCPP listener")
        self.refused_per_ip = 0
        self.refused_global = 0

    async def accept(self) -> trio.SocketStream:
        while True:
            stream = await self.accepting.accept(self.inner)
            if self._admit(stream):
                return stream
            await stream.aclose()

    def _admit(self, stream: trio.SocketStream) -> bool:
        try:
            address, port = stream.socket.getpeername()[:2]
        except OSError:
            return False  # already gone
        mine = self._pending.setdefault(address, {})
        for other_port, other in list(mine.items()):
            if other.socket.fileno() == -1:  # closed by trio-websocket or the handler
                del mine[other_port]
        if len(mine) >= self._max_pending_per_ip:
            self.refused_per_ip += 1
            return False
        if self.pending_total() + self._live_sessions() >= self._hard_cap:
            self.refused_global += 1
            return False
        mine[port] = stream
        return True

    def pending_total(self) -> int:
        return sum(len(ports) for ports in self._pending.values())

    async def aclose(self) -> None:
        self.accepting.close()
        await self.inner.aclose()


class PendingSockets:
    """Sockets accepted but not yet upgraded, by source address (shared by listeners)."""

    def __init__(self) -> None:
        self.by_address: dict[str, dict[int, trio.SocketStream]] = {}

    def upgraded(self, address: str, port: int) -> None:
        ports = self.by_address.get(address)
        if ports is not None:
            ports.pop(port, None)
            if not ports:
                del self.by_address[address]

    def sweep(self) -> None:
        """Forget closed sockets everywhere (called periodically)."""
        for address in list(self.by_address):
            ports = self.by_address[address]
            for port, stream in list(ports.items()):
                if stream.socket.fileno() == -1:
                    del ports[port]
            if not ports:
                del self.by_address[address]

    def total(self) -> int:
        return sum(len(ports) for ports in self.by_address.values())
