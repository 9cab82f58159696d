"""Charger ownership across nodes, as the listener needs it (issue 18).

Several nodes share one PostgreSQL; each charger is held by at most one of them. The
listener claims a charger after its authentication succeeded (never before: a charger
id is public, scale-and-security A2 "Duplicate-connection policy" §1) and releases it
when the socket closes. The composition root implements this with
voltaro.service.cluster_node.ClusterNode; a single node has none (every epoch is 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Fenced(Exception):
    """This node's lease is not known valid: it may not take chargers now."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claim: the epoch (fencing token) and the node incarnation it was made under."""

    epoch: int
    incarnation: str
    # When the claim was asked for (trio clock): an eviction notice that arrived before
    # it concerns an earlier connection of the charger, never this one.
    at: float = 0.0


class Ownership(Protocol):
    def fenced(self) -> bool:
        """True while this node's lease is not known valid (it sends nothing then)."""
        ...

    def holds(self, claimed: Claimed) -> bool:
        """Whether a claim made earlier is still this node's to serve (not fenced, and
        made by the incarnation that is live now)."""
        ...

    def superseded(self, charger_id: str, claimed: Claimed) -> str | None:
        """Asked when the socket of ``claimed`` is registered (after the WebSocket
        handshake, some time after the claim): the node whose newer claim already
        superseded it (its eviction notice arrived while no socket was registered to
        close), or None. A superseded socket is closed at once."""
        ...

    async def claim(self, charger_id: str, remote: str) -> Claimed:
        """Take the charger with epoch + 1; the node that held it is told to let go.

        Raises:
            Fenced: this node may not take chargers now (HTTP 503).
            StorageUnavailable: the database cannot record it (HTTP 503).
        """
        ...

    async def release(self, charger_id: str, claimed: Claimed) -> None:
        """The socket of ``claimed`` closed: give the charger up if still ours with that
        epoch (never raises; a release the database cannot take now is retried)."""
        ...
