"""Charge point rows locked in charger id order (PostgreSQL).

The group commit takes charger rows in charger id order (group_commit.lock_order), so
its batches never wait on each other in a cycle. A writer of several charge point rows
outside it (connected flags, reconciles, a node's release of its chargers) must take
them in the same order: an UPDATE alone locks rows in the order it scans the table, and
one that took CP-B and then waited for CP-A, while a batch held CP-A and wanted CP-B,
was a deadlock (seen at a cluster's start). On SQLite (one writer) the lock clause is
not rendered and nothing changes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def lock_charge_points(s: Session, where: str, params: dict[str, Any]) -> list[str]:
    """Lock the charge point rows ``where`` selects, in charger id order; their ids.

    FOR NO KEY UPDATE, the lock an UPDATE of non-key columns takes anyway: FOR UPDATE
    would also block the KEY SHARE lock that a batch's insert of a row referring to the
    charger (a connector, a transaction) takes, a deadlock with a batch that locked
    another charger's row first (its boots' read).
    """
    if s.get_bind().dialect.name != "postgresql":
        return []
    rows = s.execute(
        text(
            f"SELECT charger_id FROM charge_points WHERE {where} "
            "ORDER BY charger_id FOR NO KEY UPDATE OF charge_points"
        ),
        params,
    )
    return [str(r[0]) for r in rows]
