"""Units of work for Firmware Management: the status history chargers report
(OCPP 1.6 §4.4, §4.5) and firmware campaigns (issue 16)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from voltaro.domain.firmware import (
    FINAL_STATES,
    TargetState,
    TransferKind,
    TransferStatusReport,
    target_state_after,
)
from voltaro.store.schema import CampaignRow, CampaignTargetRow, TransferStatusRow


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferStatusEntry:
    kind: TransferKind
    status: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetChange:
    """A campaign target moved on because of a status report."""

    campaign_id: int
    charger_id: str
    state: TargetState


def record_transfer_status(s: Session, report: TransferStatusReport) -> list[TargetChange]:
    """Keep one status report; move the charger's open campaign targets along with it."""
    s.add(
        TransferStatusRow(
            charger_id=report.charger_id,
            kind=report.kind.value,
            status=report.status,
            at=report.received_at,
        )
    )
    if report.kind is not TransferKind.FIRMWARE:
        return []
    changes = []
    targets = s.scalars(
        select(CampaignTargetRow)
        .join(CampaignRow, CampaignRow.id == CampaignTargetRow.campaign_id)
        .where(
            CampaignTargetRow.charger_id == report.charger_id,
            CampaignRow.finished_at.is_(None),
        )
    )
    for target in targets:
        before = TargetState(target.state)
        after = target_state_after(before, report.status)
        if after is not before:
            target.state, target.updated_at = after.value, report.received_at
            target.detail = None
            changes.append(
                TargetChange(
                    campaign_id=target.campaign_id, charger_id=target.charger_id, state=after
                )
            )
    return changes


def transfer_history(
    s: Session, charger_id: str, *, kind: TransferKind | None = None, limit: int = 20
) -> list[TransferStatusEntry]:
    query = select(TransferStatusRow).where(TransferStatusRow.charger_id == charger_id)
    if kind is not None:
        query = query.where(TransferStatusRow.kind == kind.value)
    rows = s.scalars(
        query.order_by(TransferStatusRow.at.desc(), TransferStatusRow.id.desc()).limit(limit)
    )
    return [TransferStatusEntry(kind=TransferKind(r.kind), status=r.status, at=r.at) for r in rows]


def latest_transfer_status(s: Session, charger_id: str) -> dict[TransferKind, TransferStatusEntry]:
    """The last report of each kind: the charger's current firmware and diagnostics state."""
    out: dict[TransferKind, TransferStatusEntry] = {}
    for kind in TransferKind:
        found = transfer_history(s, charger_id, kind=kind, limit=1)
        if found:
            out[kind] = found[0]
    return out


def is_final(state: str) -> bool:
    return TargetState(state) in FINAL_STATES
