"""Units of work for charger ownership across nodes (issue 18; scale-and-security A2
"Design for PostgreSQL" §2-4 and "Duplicate-connection policy").

One row per connected charger: the node (and incarnation) holding its socket, and an
``epoch`` that every takeover bumps. The epoch is the fencing token: a release, a flag
write or a command derived from an older connection carries an older epoch and changes
nothing. PostgreSQL only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from voltaro.store.cluster_nodes import DB_NOW
from voltaro.store.notify import channel_name, notify
from voltaro.store.row_locks import lock_charge_points

EVICT = "evict"  # the channel kind: voltaro_evict_<node> tells a node to drop a socket


@dataclass(frozen=True, slots=True)
class Claim:
    epoch: int
    previous_node: str | None  # who held it before this claim (None: nobody)


@dataclass(frozen=True, slots=True)
class Owner:
    charger_id: str
    node_id: str
    incarnation: str
    epoch: int
    live: bool  # the owner's lease is valid on the database clock


def claim(s: Session, charger_id: str, node_id: str, incarnation: str, remote: str | None) -> Claim:
    """Take the charger for this node with epoch + 1 (the newest authenticated connection
    wins). When another node held it, that node is told on its "evict" channel (at
    commit) to close its socket if that socket's epoch is lower.

    The subquery sees the row as it was before this statement (PostgreSQL evaluates it
    on the statement's snapshot; A2 verified it), which gives the previous owner."""
    row = s.execute(
        text(
            "INSERT INTO charger_owners "
            "(charger_id, node_id, incarnation, epoch, connected_at, remote_addr) "
            f"VALUES (:cid, :node, :inc, 1, {DB_NOW}, :remote) "
            "ON CONFLICT (charger_id) DO UPDATE SET node_id = EXCLUDED.node_id, "
            "incarnation = EXCLUDED.incarnation, epoch = charger_owners.epoch + 1, "
            "connected_at = EXCLUDED.connected_at, remote_addr = EXCLUDED.remote_addr "
            "RETURNING epoch, "
            "(SELECT p.node_id FROM charger_owners p WHERE p.charger_id = :cid) AS previous"
        ),
        {"cid": charger_id, "node": node_id, "inc": incarnation, "remote": remote or None},
    ).one()
    epoch, previous = int(row.epoch), row.previous
    if previous is not None and previous != node_id:
        notify(
            s,
            channel_name(EVICT, previous),
            json.dumps({"charger_id": charger_id, "epoch": epoch, "node": node_id}),
        )
    return Claim(epoch, previous)


def release(s: Session, charger_id: str, node_id: str, epoch: int, incarnation: str) -> bool:
    """The socket of ``epoch`` closed: drop the row only if it is still ours with that
    epoch (a successor's claim, here or on another node, is never undone by a late
    close; the old-close-after-new-open race of ev-server PR #2388). The incarnation
    too: epochs restart at 1 once a row is gone, so a node that joined again may hold
    the charger with the same epoch its earlier incarnation's socket had."""
    result = s.execute(
        text(
            "DELETE FROM charger_owners WHERE charger_id = :cid AND node_id = :node "
            "AND epoch = :epoch AND incarnation = :inc"
        ),
        {"cid": charger_id, "node": node_id, "epoch": epoch, "inc": incarnation},
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def owns(s: Session, charger_id: str, node_id: str, epoch: int) -> bool:
    """Whether ``node_id`` still holds the charger with ``epoch`` (the fencing check for
    a write derived from that connection's outbound state)."""
    found = s.scalar(
        text(
            "SELECT 1 FROM charger_owners "
            "WHERE charger_id = :cid AND node_id = :node AND epoch = :epoch"
        ),
        {"cid": charger_id, "node": node_id, "epoch": epoch},
    )
    return found is not None


def owner(s: Session, charger_id: str) -> Owner | None:
    """Who holds the charger, and whether that node's lease is valid now."""
    row = s.execute(
        text(
            "SELECT o.charger_id, o.node_id, o.incarnation, o.epoch, "
            f"coalesce(n.lease_until > {DB_NOW} AND n.incarnation = o.incarnation, false) "
            "AS live FROM charger_owners o LEFT JOIN cluster_nodes n ON n.node_id = o.node_id "
            "WHERE o.charger_id = :cid"
        ),
        {"cid": charger_id},
    ).one_or_none()
    if row is None:
        return None
    return Owner(row.charger_id, row.node_id, row.incarnation, int(row.epoch), bool(row.live))


def set_connected_fenced(s: Session, flags: dict[str, bool], node_id: str) -> None:
    """Write connected flags from this node's view: set for the chargers it holds, and
    cleared for the others only when no other node holds them (a node's late "offline"
    never hides a charger that reconnected elsewhere: A2 §4)."""
    everyone = sorted(flags)
    for start in range(0, len(everyone), 500):
        # Set and cleared ones together, in charger id order (store/row_locks.py).
        lock_charge_points(s, "charger_id = ANY(:ids)", {"ids": everyone[start : start + 500]})
    on = sorted(cid for cid, flag in flags.items() if flag)
    off = sorted(cid for cid, flag in flags.items() if not flag)
    for ids, value in ((on, True), (off, False)):
        for start in range(0, len(ids), 500):
            s.execute(
                text(
                    f"UPDATE charge_points SET connected = :value, last_seen = {DB_NOW} "
                    "WHERE charger_id = ANY(:ids)"
                    + (
                        ""
                        if value
                        else " AND NOT EXISTS (SELECT 1 FROM charger_owners o "
                        "WHERE o.charger_id = charge_points.charger_id AND o.node_id <> :node)"
                    )
                ),
                {"value": value, "ids": ids[start : start + 500], "node": node_id},
            )


def reconcile_connected_fenced(s: Session, held: set[str], node_id: str) -> tuple[int, int]:
    """The cluster form of chargers.reconcile_connected: flags set for what this node
    holds; flags of chargers no node holds cleared (another node's are left alone)."""
    clear_where = (
        "connected AND NOT (charger_id = ANY(:held)) AND NOT EXISTS "
        "(SELECT 1 FROM charger_owners o WHERE o.charger_id = charge_points.charger_id "
        "AND o.node_id <> :node)"
    )
    set_where = "NOT connected AND charger_id = ANY(:held)"
    params = {"held": sorted(held), "node": node_id}
    # Both sets of rows locked first, in charger id order (store/row_locks.py), and only
    # those updated: a row that became one to change meanwhile (another node released
    # it) waits for the next reconcile rather than be locked out of order.
    locked = lock_charge_points(s, f"({clear_where}) OR ({set_where})", params)
    params["locked"] = locked
    only_locked = " AND charger_id = ANY(:locked)"
    cleared = s.execute(
        text(f"UPDATE charge_points SET connected = false WHERE {clear_where}{only_locked}"),
        params,
    )
    set_ = s.execute(
        text(f"UPDATE charge_points SET connected = true WHERE {set_where}{only_locked}"),
        params,
    )
    return int(getattr(cleared, "rowcount", 0)), int(getattr(set_, "rowcount", 0))


def owners_of(s: Session, charger_ids: list[str]) -> dict[str, tuple[str, int]]:
    """charger id -> (owner node, epoch) for those of ``charger_ids`` that have a row."""
    rows = s.execute(
        text("SELECT charger_id, node_id, epoch FROM charger_owners WHERE charger_id = ANY(:ids)"),
        {"ids": charger_ids},
    )
    return {r.charger_id: (r.node_id, int(r.epoch)) for r in rows}


def live_owners(s: Session, charger_ids: list[str] | None = None) -> dict[str, str]:
    """charger id -> owner node, for the chargers held by a node under a live lease on the
    database clock (of ``charger_ids`` only, when given): what a console re-reading the
    state is told, read now (an event it just got was published after its claim or
    release committed, so this read agrees with it)."""
    where = " AND o.charger_id = ANY(:ids)" if charger_ids is not None else ""
    rows = s.execute(
        text(
            "SELECT o.charger_id, o.node_id FROM charger_owners o JOIN cluster_nodes n "
            "ON n.node_id = o.node_id AND n.incarnation = o.incarnation "
            f"WHERE n.lease_until > {DB_NOW}{where}"
        ),
        {"ids": charger_ids} if charger_ids is not None else {},
    )
    return {str(charger): str(node) for charger, node in rows}


def owned_counts(s: Session) -> dict[str, int]:
    """Chargers owned per node (every incarnation)."""
    rows = s.execute(text("SELECT node_id, count(*) AS n FROM charger_owners GROUP BY node_id"))
    return {r.node_id: int(r.n) for r in rows}


__all__ = [
    "EVICT",
    "Claim",
    "Owner",
    "claim",
    "live_owners",
    "owned_counts",
    "owner",
    "owners_of",
    "owns",
    "reconcile_connected_fenced",
    "release",
    "set_connected_fenced",
]
