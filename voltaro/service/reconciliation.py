"""Operator reconciliation of billing data: closing a transaction by hand.

A transaction whose StopTransaction never came (its charger lost it, or it was
interrupted by a later start or a reboot) is closed by an operator with
``transactions close`` (control op ``transactions.close``, ``voltaro ctl transactions
close``, ``POST /sessions/{id}/close``). The rule itself is in
domain/transaction_lifecycle.py; here it is audited like a command (who, when, what,
outcome, in the same database transaction as the change) and published.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from voltaro.control.wire import Event
from voltaro.domain.timestamps import utc_now
from voltaro.domain.transaction_lifecycle import CloseResult
from voltaro.service.hub import EventHub
from voltaro.service.ingest import ended_event
from voltaro.store import commands, transactions
from voltaro.store.db import Database

AUDIT_ACTION = "transactions.close"


def _close_audited(
    s: Session,
    transaction_id: int,
    meter_stop: int | None,
    reason: str | None,
    actor: str,
    at: datetime,
) -> CloseResult:
    existing = transactions.get_transaction(s, transaction_id)
    audit = commands.record_command(
        s,
        charger_id=existing.charger_id if existing is not None else "",
        action=AUDIT_ACTION,
        request={"transaction_id": transaction_id, "meter_stop": meter_stop, "reason": reason},
        actor=actor,
    )
    result = transactions.close_transaction(
        s, transaction_id, meter_stop=meter_stop, reason=reason, actor=actor, at=at
    )
    commands.finish_command(s, audit, status=result.outcome, error=result.message or None)
    return result


class Reconciliation:
    def __init__(self, db: Database, hub: EventHub | None) -> None:
        self._db = db
        self._hub = hub

    async def close(
        self, transaction_id: int, *, meter_stop: int | None, reason: str | None, actor: str
    ) -> CloseResult:
        result: CloseResult = await self._db.run(
            _close_audited, transaction_id, meter_stop, reason, actor, utc_now()
        )
        if result.outcome == "closed" and result.transaction is not None and self._hub:
            self._hub.publish(Event.TRANSACTION_ENDED, ended_event(result.transaction))
        return result
