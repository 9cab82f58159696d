"""Units of work for node leases (issue 18; scale-and-security A2 "Design for PostgreSQL").

PostgreSQL only (cluster = true refuses SQLite). Every time is the DATABASE clock:
``lease_until`` is written as ``now() + lease`` and compared with ``now()``, so the nodes'
own clocks never matter. Times are stored as naive UTC like every other column
(schema.UtcDateTime), hence ``now() AT TIME ZONE 'UTC'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from voltaro.store.row_locks import lock_charge_points

# The database clock as the naive UTC the columns hold.
DB_NOW = "(now() AT TIME ZONE 'UTC')"


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as ``status`` shows it."""

    node_id: str
    incarnation: str
    address: str | None
    started_at: datetime
    lease_until: datetime
    live: bool  # lease_until > now() on the database clock
    lease_left: float  # seconds (negative: expired that long ago)
    chargers: int  # charger_owners rows held by this node (this incarnation)


def register(s: Session, node_id: str, incarnation: str, address: str, lease: float) -> list[str]:
    """Make ``incarnation`` the live one for ``node_id`` with a fresh lease, and release
    what earlier incarnations of this node held (they are dead: a node id runs once).

    Returns the chargers released (their connected flags are cleared here too, unless a
    newer owner holds them)."""
    s.execute(
        text(
            "INSERT INTO cluster_nodes (node_id, incarnation, address, started_at, lease_until) "
            f"VALUES (:node, :inc, :address, {DB_NOW}, {DB_NOW} + make_interval(secs => :lease)) "
            "ON CONFLICT (node_id) DO UPDATE SET incarnation = EXCLUDED.incarnation, "
            "address = EXCLUDED.address, started_at = EXCLUDED.started_at, "
            "lease_until = EXCLUDED.lease_until"
        ),
        {"node": node_id, "inc": incarnation, "address": address or None, "lease": lease},
    )
    released = list(
        s.scalars(
            text(
                "DELETE FROM charger_owners WHERE node_id = :node AND incarnation <> :inc "
                "RETURNING charger_id"
            ),
            {"node": node_id, "inc": incarnation},
        )
    )
    clear_flags(s, released)
    return sorted(released)


def renew(s: Session, node_id: str, incarnation: str, lease: float) -> bool:
    """Extend the lease; False when it is lost: another incarnation registered, or it
    already expired on the database clock (the reaper may have released our chargers, so
    an expired lease is never revived: the node registers again as a new incarnation)."""
    result = s.execute(
        text(
            f"UPDATE cluster_nodes SET lease_until = {DB_NOW} + make_interval(secs => :lease) "
            f"WHERE node_id = :node AND incarnation = :inc AND lease_until > {DB_NOW}"
        ),
        {"node": node_id, "inc": incarnation, "lease": lease},
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def leave(s: Session, node_id: str, incarnation: str) -> list[str]:
    """A clean stop: release this incarnation's chargers and end its lease now."""
    released = list(
        s.scalars(
            text(
                "DELETE FROM charger_owners WHERE node_id = :node AND incarnation = :inc "
                "RETURNING charger_id"
            ),
            {"node": node_id, "inc": incarnation},
        )
    )
    clear_flags(s, released)
    # The chargers whose sockets closed while it stopped released their rows already;
    # their "offline" flag writes may not have run before the stop. A flag without an
    # owner row is stale, or its charger is between its admission and its claim on
    # another node: that node writes the flag again when the charger's session starts.
    orphaned = (
        "connected AND NOT EXISTS "
        "(SELECT 1 FROM charger_owners o WHERE o.charger_id = charge_points.charger_id)"
    )
    lock_charge_points(s, orphaned, {})  # in charger id order (store/row_locks.py)
    s.execute(text(f"UPDATE charge_points SET connected = false WHERE {orphaned}"))
    s.execute(
        text(
            f"UPDATE cluster_nodes SET lease_until = {DB_NOW} "
            "WHERE node_id = :node AND incarnation = :inc"
        ),
        {"node": node_id, "inc": incarnation},
    )
    return sorted(released)


def clear_flags(s: Session, charger_ids: list[str]) -> None:
    """Clear the connected flag of chargers nobody owns any more (a charger that another
    node claimed meanwhile keeps its flag: that node's connection is live)."""
    where = (
        "charger_id = ANY(:ids) AND NOT EXISTS "
        "(SELECT 1 FROM charger_owners o WHERE o.charger_id = charge_points.charger_id)"
    )
    ordered = sorted(charger_ids)
    for start in range(0, len(ordered), 500):
        params = {"ids": ordered[start : start + 500]}
        lock_charge_points(s, where, params)  # in charger id order (store/row_locks.py)
        s.execute(text(f"UPDATE charge_points SET connected = false WHERE {where}"), params)


def nodes(s: Session) -> list[NodeView]:
    """Every node known, with its lease on the database clock and the chargers it owns."""
    rows = s.execute(
        text(
            "SELECT n.node_id, n.incarnation, n.address, n.started_at, n.lease_until, "
            f"n.lease_until > {DB_NOW} AS live, "
            f"EXTRACT(EPOCH FROM (n.lease_until - {DB_NOW}))::float AS left_s, "
            "(SELECT count(*) FROM charger_owners o WHERE o.node_id = n.node_id "
            "AND o.incarnation = n.incarnation) AS owned "
            "FROM cluster_nodes n ORDER BY n.node_id"
        )
    )
    return [
        NodeView(
            node_id=r.node_id,
            incarnation=r.incarnation,
            address=r.address,
            started_at=r.started_at.replace(tzinfo=UTC),
            lease_until=r.lease_until.replace(tzinfo=UTC),
            live=bool(r.live),
            lease_left=float(r.left_s),
            chargers=int(r.owned),
        )
        for r in rows
    ]


def live_incarnations(s: Session) -> dict[str, str]:
    """node id -> its incarnation, for every node whose lease is valid now (database
    clock)."""
    rows = s.execute(
        text(f"SELECT node_id, incarnation FROM cluster_nodes WHERE lease_until > {DB_NOW}")
    )
    return {r.node_id: r.incarnation for r in rows}


@dataclass(frozen=True, slots=True)
class Reaped:
    charger_id: str
    node_id: str


def reap(s: Session, forget_after: float) -> list[Reaped]:
    """Release the chargers of every node whose lease expired (A2 §1, the reaper) and
    clear their connected flags; forget nodes expired for more than ``forget_after``
    seconds. Safe on every node at once: a row is deleted (and returned) once."""
    rows = list(
        s.execute(
            text(
                "DELETE FROM charger_owners o USING cluster_nodes n "
                f"WHERE o.node_id = n.node_id AND n.lease_until < {DB_NOW} "
                "RETURNING o.charger_id, o.node_id"
            )
        ).all()
    )
    # Rows left by an incarnation that is not the node's current one (it registered
    # again; its start released them, unless it crashed in between).
    rows += s.execute(
        text(
            "DELETE FROM charger_owners o USING cluster_nodes n "
            "WHERE o.node_id = n.node_id AND o.incarnation <> n.incarnation "
            "RETURNING o.charger_id, o.node_id"
        )
    ).all()
    reaped = [Reaped(r.charger_id, r.node_id) for r in rows]
    clear_flags(s, [r.charger_id for r in reaped])
    s.execute(
        text(
            "DELETE FROM cluster_nodes "
            f"WHERE lease_until < {DB_NOW} - make_interval(secs => :forget) "
            "AND NOT EXISTS (SELECT 1 FROM charger_owners o "
            "WHERE o.node_id = cluster_nodes.node_id)"
        ),
        {"forget": forget_after},
    )
    return sorted(reaped, key=lambda r: r.charger_id)


__all__ = [
    "DB_NOW",
    "NodeView",
    "Reaped",
    "clear_flags",
    "leave",
    "live_incarnations",
    "nodes",
    "reap",
    "register",
    "renew",
]
