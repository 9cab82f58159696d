"""Units of work for the quarantine: charger messages kept as their raw frames.

A permanent database error on a charger's message (issue 10 §2.3) must neither block
the charger's queue (it would retry forever) nor lose the data: the raw frame is kept
here with the error (kind ``refused``), for an operator to read (`voltaro ctl quarantine
list`) and reconcile (docs/operations.md).

A message whose text no column can hold as sent (NUL, lone surrogates) is stored with
U+FFFD in their place and its raw frame kept here too (kind ``repaired``): the frame
has the original strings as JSON escapes, so nothing is lost (docs/security.md).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voltaro.store.schema import QuarantineRow, TransactionRow

MAX_TRANSACTION_ID = 2**31 - 1  # the same range as transactions.start_transaction uses
_INT8 = 2**63


REFUSED = "refused"  # not stored: the database refused it for good
REPAIRED = "repaired"  # stored with U+FFFD; the frame holds the original text


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineEntry:
    charger_id: str
    unique_id: str | None
    action: str | None
    frame: str
    error: str
    transaction_id: int | None
    at: datetime
    id: int | None = None
    kind: str = REFUSED


def add(s: Session, entry: QuarantineEntry) -> int:
    """Keep ``entry``; a ``repaired`` frame kept already (the charger's retry of a
    message whose first attempt was not stored) is not kept twice."""
    if entry.kind == REPAIRED:
        kept = s.scalar(
            select(QuarantineRow.id).where(
                QuarantineRow.charger_id == entry.charger_id,
                QuarantineRow.kind == REPAIRED,
                QuarantineRow.unique_id == entry.unique_id,
                QuarantineRow.frame == entry.frame,
            )
        )
        if kept is not None:
            return int(kept)
    tx = entry.transaction_id
    row = QuarantineRow(
        charger_id=entry.charger_id,
        unique_id=entry.unique_id,
        action=entry.action,
        frame=entry.frame,
        error=entry.error,
        # An id the database cannot hold is in the frame anyway.
        transaction_id=tx if tx is not None and -_INT8 <= tx < _INT8 else None,
        at=entry.at,
        kind=entry.kind,
    )
    s.add(row)
    s.flush()
    return row.id


def reserve_transaction_id(s: Session) -> int:
    """An id for a StartTransaction that could not be stored: unused by any transaction
    or earlier quarantined start (random, like the ids of stored transactions)."""
    while True:
        candidate = secrets.randbelow(MAX_TRANSACTION_ID) + 1
        taken = s.get(TransactionRow, candidate) is not None or s.scalar(
            select(func.count())
            .select_from(QuarantineRow)
            .where(QuarantineRow.transaction_id == candidate)
        )
        if not taken:
            return candidate


def list_entries(
    s: Session, *, charger_id: str | None = None, limit: int = 100
) -> list[QuarantineEntry]:
    """The newest entries first."""
    query = select(QuarantineRow)
    if charger_id is not None:
        query = query.where(QuarantineRow.charger_id == charger_id)
    rows = s.scalars(query.order_by(QuarantineRow.at.desc(), QuarantineRow.id.desc()).limit(limit))
    return [
        QuarantineEntry(
            id=r.id,
            charger_id=r.charger_id,
            unique_id=r.unique_id,
            action=r.action,
            frame=r.frame,
            error=r.error,
            transaction_id=r.transaction_id,
            at=r.at,
            kind=r.kind,
        )
        for r in rows
    ]


def count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(QuarantineRow)) or 0
