"""The live connections of this process: charge point id -> the link that reaches it.

One entry per id. A newer authenticated connection for the same id replaces the older
one atomically (R11, scale-and-security RT7): the registry hands back the displaced
session so the listener can close it, and a session can only remove its own entry, so
the old connection's cleanup never unregisters its successor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from voltaro.domain.ports import ChargerLink


@dataclass(eq=False, slots=True)
class Session:
    """One accepted connection: its link, where it came from and how to end it."""

    charger_id: str
    link: ChargerLink
    remote: str = ""
    connected_at: float = field(default_factory=trio.current_time)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    close_code: int = 1000
    close_reason: str = ""
    # Several nodes (issue 18): the ownership epoch this connection was claimed with
    # (charger_owners.epoch, the fencing token); a routed command is only sent when it
    # was addressed to this epoch. 0 on a single node.
    epoch: int = 0
    # Several nodes: the node whose newer claim superseded this connection ("" until
    # then). Its close is a move, not a disconnection (see ChargerDirectory).
    moved_to: str = ""

    def going_away(self, code: int, reason: str) -> None:
        """The close code and reason for when the session ends by itself (draining)."""
        if not self.scope.cancel_called:
            self.close_code = code
            self.close_reason = reason

    def close(self, code: int, reason: str) -> None:
        """End this session: its task cancels its nursery and sends a Close with ``code``.

        The first close wins: a session replaced and then caught by shutdown keeps the
        code it was first given.
        """
        if not self.scope.cancel_called:
            self.close_code = code
            self.close_reason = reason
        self.scope.cancel()


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    connected: int
    takeovers: int
    peak: int
    sessions: int = 0  # sessions started since the server started (reconnects included)


class Registry:
    """Charge point id -> live session. Synchronous: every change is atomic under trio."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._takeovers = 0
        self._peak = 0
        self._claims = 0

    def get(self, charger_id: str) -> ChargerLink | None:
        session = self._sessions.get(charger_id)
        return session.link if session is not None else None

    def session(self, charger_id: str) -> Session | None:
        return self._sessions.get(charger_id)

    def connected(self) -> list[str]:
        return sorted(self._sessions)

    def is_connected(self, charger_id: str) -> bool:
        return charger_id in self._sessions

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    def statistics(self) -> RegistryStatistics:
        return RegistryStatistics(
            connected=len(self._sessions),
            takeovers=self._takeovers,
            peak=self._peak,
            sessions=self._claims,
        )

    def claim(self, session: Session) -> Session | None:
        """Make ``session`` the live one for its id; return the session it displaced."""
        previous = self._sessions.get(session.charger_id)
        self._sessions[session.charger_id] = session
        self._claims += 1
        if previous is not None:
            self._takeovers += 1
        self._peak = max(self._peak, len(self._sessions))
        return previous

    def release(self, session: Session) -> bool:
        """Remove ``session`` if it is still the live one; False if a successor took over."""
        if self._sessions.get(session.charger_id) is session:
            del self._sessions[session.charger_id]
            return True
        return False
