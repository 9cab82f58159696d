"""Who is on the other end of the control socket, and what they may do.

The kernel tells us the peer's uid (SO_PEERCRED); we map it through the user's groups to
a role (scale-and-security B6). root and the server's own user are admins; anyone else
who could open the socket (0660, group-owned) is at least a viewer.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from voltaro.control.wire import Role
from voltaro.settings import Settings


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int
    user: str
    groups: tuple[str, ...]


PeerLookup = Callable[[socket.socket], Peer]


def peer_of(sock: socket.socket) -> Peer:
    """The production lookup: SO_PEERCRED on the connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return peer_from_ids(pid, uid, gid)


def peer_from_ids(pid: int, uid: int, gid: int) -> Peer:
    try:
        entry = pwd.getpwuid(uid)
        user = entry.pw_name
        gids = os.getgrouplist(user, entry.pw_gid)
    except KeyError:
        user, gids = f"uid:{uid}", [gid]
    names = []
    for g in gids:
        try:
            names.append(grp.getgrgid(g).gr_name)
        except KeyError:
            continue
    return Peer(pid=pid, uid=uid, gid=gid, user=user, groups=tuple(names))


def role_of(peer: Peer, settings: Settings) -> Role:
    if peer.uid in (0, os.geteuid()):
        return Role.ADMIN
    groups = set(peer.groups)
    if groups & set(settings.admin_groups):
        return Role.ADMIN
    if groups & set(settings.operator_groups):
        return Role.OPERATOR
    return Role.VIEWER
