"""Commands routed between nodes (issue 18; scale-and-security A2 "Design for PostgreSQL"
step 5): one ``routed_commands`` row per request id, the owner lookup, and the
conditional updates that make a request execute at most once.

The row is the truth; NOTIFY only wakes the other node (voltaro.store.notify). Status:

- ``queued``: written by the origin, addressed to ``owner_node``; only the origin may
  re-address it (to a new owner), only while still queued;
- ``routed``: claimed by the owner (``queued -> routed``, conditional: a second claim,
  a duplicate notification or a retry with the same id finds nothing to claim);
- ``answered`` / ``error`` / ``timeout`` / ``offline``: final, ``result`` holds the answer
  or the error (voltaro.domain.command_codec).

Every function runs inside one unit of work (``Database.run``); the NOTIFY it issues is
sent when that transaction commits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from voltaro.domain.timestamps import utc_now
from voltaro.store.notify import channel_name, notify

FINAL = frozenset({"answered", "error", "timeout", "offline"})
# Error codes after which the command was certainly not sent (voltaro.domain.commands):
# a retry with the same request id may run it (once) instead of repeating the error.
NOT_SENT = frozenset({"offline", "owner_unreachable", "busy", "unavailable"})


@dataclass(frozen=True, slots=True)
class Owner:
    node_id: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Routed:
    """One routed_commands row, as the router needs it."""

    id: str
    charger_id: str
    action: str
    payload: dict[str, Any]
    origin_node: str
    owner_node: str | None
    owner_epoch: int | None
    status: str
    result: dict[str, Any] | None


def _naive(when: datetime) -> datetime:
    """As UtcDateTime stores it (naive UTC), for the parameters of plain SQL."""
    return when.astimezone(UTC).replace(tzinfo=None)


# A reply's NOTIFY carries the answer when it is this small (most are): the origin then
# needs no read of the row. Larger answers (GetConfiguration of every key) stay in it.
_RESULT_IN_REPLY_BYTES = 4000


def message(kind: str, request_id: str, result: dict[str, Any] | None = None) -> str:
    """A NOTIFY payload on a "cmd" channel: ``req`` (origin -> owner), ``ack`` and ``rep``
    (owner -> origin). The id, and with ``rep`` a small answer (a copy of the committed,
    final ``result``; the command itself always stays in the row)."""
    data: dict[str, Any] = {"kind": kind, "id": request_id}
    if result is not None:
        encoded = json.dumps(result)
        if len(encoded.encode()) <= _RESULT_IN_REPLY_BYTES:
            data["result"] = result
    return json.dumps(data)


def _owner(s: Session, charger_id: str) -> Owner | None:
    # The owner's lease is compared with the database clock (now()), never a node's;
    # lease_until is stored as naive UTC (UtcDateTime), hence AT TIME ZONE.
    row = (
        s.connection()
        .execute(
            text(
                "SELECT o.node_id, o.epoch FROM charger_owners o JOIN cluster_nodes n "
                "ON n.node_id = o.node_id AND n.incarnation = o.incarnation "
                "WHERE o.charger_id = :c AND n.lease_until > (now() AT TIME ZONE 'UTC')"
            ),
            {"c": charger_id},
        )
        .first()
    )
    return None if row is None else Owner(str(row[0]), int(row[1]))


def owner(s: Session, charger_id: str) -> Owner | None:
    """The node that holds ``charger_id`` under a live lease, and its epoch; None: nobody."""
    return _owner(s, charger_id)


def owned(s: Session) -> dict[str, str]:
    """charger_id -> owner node, for every charger held under a live lease."""
    rows = s.connection().execute(
        text(
            "SELECT o.charger_id, o.node_id FROM charger_owners o JOIN cluster_nodes n "
            "ON n.node_id = o.node_id AND n.incarnation = o.incarnation "
            "WHERE n.lease_until > (now() AT TIME ZONE 'UTC')"
        )
    )
    return {str(c): str(n) for c, n in rows}


def retryable(row: Routed) -> bool:
    """Ended without being sent: a retry with its id runs it after all."""
    if row.status not in FINAL or row.result is None:
        return False
    return not_sent(row.result)


def not_sent(result: dict[str, Any]) -> bool:
    """A stored result that says the command was certainly not sent."""
    error = result.get("error")
    return isinstance(error, dict) and error.get("code") in NOT_SENT


def get(s: Session, request_id: str) -> Routed | None:
    found = (
        s.connection()
        .execute(text(f"SELECT {_COLUMNS} FROM routed_commands WHERE id = :id"), {"id": request_id})
        .first()
    )
    return None if found is None else _routed(found)


_COLUMNS = "id, charger_id, action, payload, origin_node, owner_node, owner_epoch, status, result"

# The owner under a live lease (database clock), in the statement that writes the row.
_INSERT = text(
    "INSERT INTO routed_commands (id, charger_id, action, payload, origin_node, "
    "owner_node, owner_epoch, requested_by, status, result, created_at, answered_at) "
    "SELECT :id, :c, :action, :payload, :origin, o.node_id, o.epoch, :by, "
    "CASE WHEN o.node_id IS NULL THEN 'offline' ELSE 'queued' END, NULL, :now, "
    "CASE WHEN o.node_id IS NULL THEN CAST(:now AS timestamp) END "
    "FROM (SELECT 1) AS one LEFT JOIN ("
    "SELECT o.node_id, o.epoch FROM charger_owners o JOIN cluster_nodes n "
    "ON n.node_id = o.node_id AND n.incarnation = o.incarnation "
    "WHERE o.charger_id = :c AND n.lease_until > (now() AT TIME ZONE 'UTC')) AS o ON true "
    "ON CONFLICT (id) DO NOTHING RETURNING owner_node, owner_epoch"
)


def _routed(found: Any) -> Routed:
    return Routed(
        id=str(found.id),
        charger_id=str(found.charger_id),
        action=str(found.action),
        payload=json.loads(found.payload),
        origin_node=str(found.origin_node),
        owner_node=found.owner_node,
        owner_epoch=found.owner_epoch,
        status=str(found.status),
        result=None if found.result is None else json.loads(found.result),
    )


def start(
    s: Session,
    *,
    request_id: str,
    charger_id: str,
    action: str,
    payload: dict[str, Any],
    origin_node: str,
    requested_by: str,
) -> tuple[Routed | None, Owner | None]:
    """Write the request and address it to the charger's owner, in one transaction.

    Returns (the row that already had this id, None) for a retry; otherwise (None, the
    owner). A retry of a request that ended unsent (:func:`retryable`) starts it again.
    No owner: the row is final at once (``offline``). An owner other than the origin is
    notified with the id (``req``) when this transaction commits.

    A new id (the usual case) costs one statement, plus the NOTIFY: the row is written
    with the owner looked up in the same INSERT. A concurrent first attempt with the same
    id is waited for by ON CONFLICT and then read like any existing row."""
    params = {
        "id": request_id,
        "c": charger_id,
        "action": action,
        "payload": json.dumps(payload),
        "origin": origin_node,
        "by": requested_by,
        "now": _naive(utc_now()),
    }
    written = s.connection().execute(_INSERT, params).first()
    tries = 3
    while written is None and tries > 0:
        tries -= 1
        existing = (
            s.connection()
            .execute(
                text(f"SELECT {_COLUMNS} FROM routed_commands WHERE id = :id FOR UPDATE"),
                {"id": request_id},
            )
            .first()
        )
        if existing is None:
            # Gone while this waited for its lock: trimmed, or a concurrent retry of an
            # unsent request replaced it with a new attempt (committed after this
            # statement's snapshot, READ COMMITTED). Insert again: that writes the row,
            # or conflicts with the new attempt, which the next read finds and follows
            # (never "offline" for a command another attempt is carrying out).
            written = s.connection().execute(_INSERT, params).first()
            continue
        earlier = _routed(existing)
        if not retryable(earlier):
            return earlier, None
        s.connection().execute(
            text("DELETE FROM routed_commands WHERE id = :id"), {"id": request_id}
        )
        written = s.connection().execute(_INSERT, params).first()
    if written is None or written.owner_node is None:
        return None, None
    found = Owner(str(written.owner_node), int(written.owner_epoch))
    if found.node_id != origin_node:
        notify(s, channel_name("cmd", found.node_id), message("req", request_id))
    return None, found


def readdress(s: Session, request_id: str, old_node: str, new: Owner, origin_node: str) -> bool:
    """Send a request that was never claimed to a new owner (the old one died before it
    acknowledged). False: the old owner claimed it after all, or it is final. The new
    owner is notified unless it is the origin itself (which runs it in the caller)."""
    done = s.connection().execute(
        text(
            "UPDATE routed_commands SET owner_node = :new, owner_epoch = :epoch "
            "WHERE id = :id AND status = 'queued' AND owner_node = :old"
        ),
        {"id": request_id, "old": old_node, "new": new.node_id, "epoch": new.epoch},
    )
    if done.rowcount != 1:
        return False
    if new.node_id != origin_node:
        notify(s, channel_name("cmd", new.node_id), message("req", request_id))
    return True


def give_up(s: Session, request_id: str, status: str, result: dict[str, Any]) -> bool:
    """The origin ends a request nobody claimed (``queued -> status``): from now on no
    owner can claim it, so it is certainly not sent. False: it was claimed meanwhile."""
    done = s.connection().execute(
        text(
            "UPDATE routed_commands SET status = :status, result = :result, "
            "answered_at = :now WHERE id = :id AND status = 'queued'"
        ),
        {
            "id": request_id,
            "status": status,
            "result": json.dumps(result),
            "now": _naive(utc_now()),
        },
    )
    return done.rowcount == 1


def claim(s: Session, request_id: str, node_id: str) -> Routed | None:
    """The owner takes a request (``queued -> routed``) and acknowledges it to the
    origin. None: not queued for this node (already claimed, final, or readdressed)."""
    found = (
        s.connection()
        .execute(
            text(
                "UPDATE routed_commands SET status = 'routed' "
                "WHERE id = :id AND status = 'queued' AND owner_node = :me "
                f"RETURNING {_COLUMNS}"
            ),
            {"id": request_id, "me": node_id},
        )
        .first()
    )
    if found is None:
        return None
    routed = _routed(found)
    if routed.origin_node != node_id:
        notify(s, channel_name("cmd", routed.origin_node), message("ack", request_id))
    return routed


def finish(
    s: Session,
    request_id: str,
    status: str,
    result: dict[str, Any],
    *,
    redacted: dict[str, Any] | None = None,
) -> None:
    """The owner stores the answer (or error) and tells the origin (``rep``).
    ``redacted``: the arguments as the audit keeps them, replacing the full payload (no
    secret stays in the table once the command is done). One conditional UPDATE (a
    final row is never changed again), then the NOTIFY."""
    encoded = json.dumps(result)
    done = (
        s.connection()
        .execute(
            text(
                "UPDATE routed_commands SET status = :status, result = :result, "
                "answered_at = :now, payload = COALESCE(:payload, payload) "
                "WHERE id = :id AND status NOT IN ('answered', 'error', 'timeout', 'offline') "
                "RETURNING origin_node, owner_node"
            ),
            {
                "id": request_id,
                "status": status,
                "result": encoded,
                "now": _naive(utc_now()),
                "payload": None if redacted is None else json.dumps(redacted, default=str),
            },
        )
        .first()
    )
    if done is not None and done.origin_node != done.owner_node:
        notify(s, channel_name("cmd", done.origin_node), message("rep", request_id, result))


def pending_for(s: Session, node_id: str, since: datetime) -> list[str]:
    """Requests queued for ``node_id`` (written since ``since``): what a resync rereads
    when notifications may have been lost."""
    rows = s.connection().execute(
        text(
            "SELECT id FROM routed_commands WHERE owner_node = :me AND status = 'queued' "
            "AND created_at >= :since ORDER BY created_at"
        ),
        {"me": node_id, "since": _naive(since)},
    )
    return [str(r[0]) for r in rows]


def trim(s: Session, older_than: timedelta, batch: int = 1000) -> int:
    """Delete rows created before now - ``older_than`` (a batch at a time)."""
    cutoff = utc_now() - older_than
    done = s.connection().execute(
        text(
            "DELETE FROM routed_commands WHERE id IN (SELECT id FROM routed_commands "
            "WHERE created_at < :cutoff ORDER BY created_at LIMIT :batch)"
        ),
        {"cutoff": _naive(cutoff), "batch": batch},
    )
    return int(done.rowcount)


__all__ = [
    "FINAL",
    "NOT_SENT",
    "Owner",
    "Routed",
    "claim",
    "finish",
    "get",
    "give_up",
    "message",
    "not_sent",
    "owned",
    "owner",
    "pending_for",
    "readdress",
    "retryable",
    "start",
    "trim",
]
