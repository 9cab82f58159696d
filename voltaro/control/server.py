"""The control socket: a Unix socket speaking JSON lines (voltaro/control/wire.py).

Security (scale-and-security B6): the socket lives in a 0750 directory, is created 0660
under a restrictive umask (no chmod window), never in the abstract namespace; each peer
is identified with SO_PEERCRED and its role is checked on every request.
Robustness: requests of one client run concurrently (a slow command does not block a
status), each response is written whole; a client's events go through a bounded queue
(a slow client is told to resync); an abrupt disconnect only ends that session.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import socket
from pathlib import Path
from typing import Any

import trio
from sqlalchemy.exc import SQLAlchemyError

from voltaro import __version__
from voltaro.control import wire
from voltaro.control.ops import ControlOps, OpError
from voltaro.control.peers import Peer, PeerLookup, peer_of, role_of
from voltaro.domain.ports import StorageUnavailable
from voltaro.domain.secrets import redact_value
from voltaro.net.admission import AcceptGuard
from voltaro.service.commands import ALIASES
from voltaro.service.hub import RESYNC, EventHub, HubEvent
from voltaro.settings import Settings

log = logging.getLogger(__name__)

MUTATING = frozenset(op for op, role in wire.OPS.items() if role is not wire.Role.VIEWER) - {
    "subscribe",
    "unsubscribe",
}


def check_directory(directory: Path) -> None:
    """Refuse a socket directory that someone else could control (issue 13, 5.6).

    It must belong to us (or root, as /run does) and be writable by nobody else: another
    local user who pre-created ``/tmp/voltaro-UID`` world-writable could otherwise swap
    in a socket of their own and read what clients send (passwords included).
    """
    info = directory.stat()
    if info.st_uid not in (os.geteuid(), 0):
        raise OSError(
            errno.EPERM,
            f"{directory} belongs to uid {info.st_uid}, not to this user: refusing it "
            "(someone else may control it); remove it or choose another control_socket",
        )
    if info.st_mode & 0o022:
        raise OSError(
            errno.EPERM,
            f"{directory} is writable by others (mode {info.st_mode & 0o7777:o}): refusing it; "
            f"chmod 750 {directory} or choose another control_socket",
        )


def _prepare_path(path: Path) -> bool:
    """Check (or create) the socket's directory and clear a stale socket.

    Returns whether the directory is Voltaro's own (created now, or named voltaro*), which
    is the only kind whose group we change.
    """
    created = not path.parent.exists()
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    check_directory(path.parent)
    own = created or path.parent.name.startswith("voltaro")
    if not path.exists():
        return own
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # a stale socket from a previous run
        return own
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another server is listening on {path}")


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise OSError(errno.EINVAL, f"unknown group {name} (setting control_group)") from None


def bind_control_socket(path: str, group: str = "") -> socket.socket:
    """Create the listening socket: 0750 directory, 0660 socket, no permission window.

    With ``group`` (setting control_group) the socket and its directory belong to that
    group, so its members can reach the socket; their role still comes from the
    viewer/operator/admin group settings.
    """
    target = Path(path)
    gid = _group_id(group) if group else None
    own_directory = _prepare_path(target)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # the socket is born 0660
    try:
        sock.bind(str(target))
    finally:
        os.umask(old_umask)
    if gid is not None:
        os.chown(target, -1, gid)
        if own_directory:  # never regroup a shared directory such as /run or /tmp
            os.chown(target.parent, -1, gid)
            os.chmod(target.parent, 0o750)
    sock.listen(64)
    return sock


class ControlServer:
    def __init__(
        self,
        settings: Settings,
        ops: ControlOps,
        hub: EventHub,
        *,
        peer_lookup: PeerLookup = peer_of,
    ) -> None:
        self._settings = settings
        self._ops = ops
        self._hub = hub
        self._peer_lookup = peer_lookup
        self._clients = 0

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        path = self._settings.control_socket
        sock = bind_control_socket(path, self._settings.control_group)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        log.info("control socket at %s", path)
        # Out of descriptors, a console is refused and the server goes on (issue 11.8).
        accepting = AcceptGuard("control socket")
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(path)
                while True:
                    stream = await accepting.accept(listener)
                    nursery.start_soon(self._serve_client, stream)
        finally:
            accepting.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            with trio.CancelScope(shield=True):
                await listener.aclose()

    async def _serve_client(self, stream: trio.SocketStream) -> None:
        try:
            await self._session(stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; nothing else is affected
        except* Exception:
            log.exception("control session failed")
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _session(self, stream: trio.SocketStream) -> None:
        peer = self._peer_lookup(stream.socket)  # type: ignore[arg-type]
        role = role_of(peer, self._settings)
        send_lock = trio.Lock()

        async def send(frame: dict[str, Any]) -> None:
            async with send_lock:
                await stream.send_all(wire.encode(frame))

        if self._clients >= self._settings.control_max_clients:
            await send(wire.error(None, wire.ErrorCode.BAD_REQUEST, "too many control clients"))
            return
        self._clients += 1
        try:
            await send(wire.hello(server_version=__version__, user=peer.user, role=role))
            async with trio.open_nursery() as nursery:
                state = _SessionState(nursery)
                buffer = b""
                while True:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    buffer += chunk
                    if len(buffer) > wire.MAX_REQUEST_BYTES and b"\n" not in buffer:
                        await send(
                            wire.error(None, wire.ErrorCode.BAD_REQUEST, "request too large")
                        )
                        break
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            await self._request(line, peer, role, send, state)
                nursery.cancel_scope.cancel()
        finally:
            self._clients -= 1

    async def _request(
        self, line: bytes, peer: Peer, role: wire.Role, send: Any, state: _SessionState
    ) -> None:
        if len(line) > wire.MAX_REQUEST_BYTES:
            await send(wire.error(None, wire.ErrorCode.BAD_REQUEST, "request too large"))
            return
        try:
            request = wire.parse_request(wire.decode(line))
        except wire.WireError as exc:
            await send(wire.error(None, wire.ErrorCode.BAD_REQUEST, str(exc)))
            return
        needed = wire.OPS[request.op]
        if request.op == "command":
            action = str(request.args.get("action", ""))
            args = request.args.get("args") or {}
            needed = (
                wire.command_role(
                    ALIASES.get(action, action), args if isinstance(args, dict) else {}
                )
                or needed
            )
        # Raw frames (the frame log, the frame stream and the quarantine, which keeps
        # whole frames) are for operators unless an admin allows viewers (issue 15).
        reads_frames = request.op in ("chargers.frames", "quarantine.list") or (
            request.op == "subscribe" and bool(request.args.get("frames"))
        )
        if reads_frames and not self._settings.viewer_frames:
            needed = max(needed, wire.Role.OPERATOR, key=lambda r: r.rank)
        if not role.allows(needed):
            # Refusals are audited like the allowed mutations (who tried what).
            log.warning(
                "control refused user=%s uid=%d pid=%d op=%s needs=%s role=%s args=%s",
                peer.user,
                peer.uid,
                peer.pid,
                request.op,
                needed,
                role,
                _redacted(request.args),
            )
            await send(
                wire.error(
                    request.id,
                    wire.ErrorCode.FORBIDDEN,
                    f"{request.op} needs the {needed} role; {peer.user} is {role}",
                )
            )
            return
        if request.op == "subscribe":
            charger_id = request.args.get("charger_id")
            kinds_arg = request.args.get("kinds") or []
            try:
                if not isinstance(kinds_arg, list):
                    raise wire.WireError("kinds must be a list of event names or groups")
                kinds = wire.event_kinds(kinds_arg)
                if charger_id is not None and not isinstance(charger_id, str):
                    raise wire.WireError("charger_id must be a string")
            except wire.WireError as exc:
                await send(wire.error(request.id, wire.ErrorCode.BAD_ARGUMENTS, str(exc)))
                return
            # Frames are sent when asked for, or when the kinds name them.
            frames = bool(request.args.get("frames")) or wire.Event.FRAME.value in kinds
            state.subscribe(self._hub, frames, send, charger_id=charger_id, kinds=kinds)
            await send(wire.ok(request.id, {"subscribed": True}))
            return
        if request.op == "unsubscribe":
            state.unsubscribe()
            await send(wire.ok(request.id, {"subscribed": False}))
            return
        if request.op in MUTATING:
            log.info(
                "control user=%s uid=%d pid=%d op=%s args=%s",
                peer.user,
                peer.uid,
                peer.pid,
                request.op,
                _redacted(request.args),
            )
        state.nursery.start_soon(self._answer, request, peer, send)

    async def _answer(self, request: wire.Request, peer: Peer, send: Any) -> None:
        try:
            result = await self._ops.table[request.op](request.args, peer.user)
            frame = wire.ok(request.id, result)
        except OpError as exc:
            frame = wire.error(request.id, exc.code, exc.message)
        except (SQLAlchemyError, StorageUnavailable) as exc:
            # Not a bug: say what happened and that a retry is fine (issue 10 §3). During
            # an outage the outage summary counts it instead of a line per request.
            if not self._ops.db.health.absorb("control requests refused"):
                log.warning("control op %s: database unavailable: %s", request.op, exc)
            frame = wire.error(
                request.id, wire.ErrorCode.UNAVAILABLE, "the database is unavailable; retry later"
            )
        except Exception:
            log.exception("control op %s failed", request.op)
            frame = wire.error(request.id, wire.ErrorCode.INTERNAL, "internal error; see log")
        await send(frame)


def _redacted(args: dict[str, Any]) -> dict[str, Any]:
    # Passwords, and the AuthorizationKey of a set-config command (issue 15).
    return redact_value(args)  # type: ignore[no-any-return]


class _SessionState:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self._pump: trio.CancelScope | None = None

    def subscribe(
        self,
        hub: EventHub,
        frames: bool,
        send: Any,
        *,
        charger_id: str | None = None,
        kinds: tuple[str, ...] = (),
    ) -> None:
        self.unsubscribe()
        scope = trio.CancelScope()
        self._pump = scope

        async def pump() -> None:
            with scope:
                # A console sees every node's chargers (issue 18: the cluster outbox).
                async with hub.subscribe(
                    frames=frames, charger_id=charger_id, kinds=kinds, remote=True
                ) as sub:
                    while True:
                        item = await sub.receive()
                        if item == RESYNC:
                            await send(wire.resync("events were dropped: re-read the state"))
                        elif isinstance(item, HubEvent):
                            await send(
                                wire.event(item.seq, item.name, item.at, item.data, item.node)
                            )

        self.nursery.start_soon(pump)

    def unsubscribe(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
