"""Units of work for Firmware Management: the status history chargers report
(OCPP 1.6 §4.4, §4.5) and firmware campaigns (issue 16)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from voltaro.domain.firmware import (
    FINAL_STATES,
    TargetState,
    TransferKind,
    TransferStatusReport,
    target_state_after,
)
from voltaro.store.schema import (
    CampaignRow,
    CampaignTargetRow,
    TransferRequestRow,
    TransferStatusRow,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferStatusEntry:
    kind: TransferKind
    status: str
    at: datetime
    request_id: int | None = None


def new_request(
    s: Session,
    *,
    charger_id: str,
    kind: TransferKind,
    detail: str | None,
    created_by: str,
    created_at: datetime,
) -> int:
    """A requestId for a GetLog or SignedUpdateFirmware (unique on this database)."""
    row = TransferRequestRow(
        charger_id=charger_id,
        kind=kind.value,
        detail=detail,
        created_by=created_by,
        created_at=created_at,
    )
    s.add(row)
    s.flush()
    return row.id


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
            request_id=report.request_id,
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
    return [
        TransferStatusEntry(
            kind=TransferKind(r.kind), status=r.status, at=r.at, request_id=r.request_id
        )
        for r in rows
    ]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignTarget:
    charger_id: str
    state: TargetState
    detail: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    id: int
    pattern: str
    location: str | None
    file_id: int | None
    retrieve_at: datetime
    retries: int | None
    retry_interval: int | None
    max_parallel: int
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    targets: tuple[CampaignTarget, ...]


def _campaign(s: Session, row: CampaignRow) -> Campaign:
    targets = s.scalars(
        select(CampaignTargetRow)
        .where(CampaignTargetRow.campaign_id == row.id)
        .order_by(CampaignTargetRow.charger_id)
    )
    return Campaign(
        id=row.id,
        pattern=row.pattern,
        location=row.location,
        file_id=row.file_id,
        retrieve_at=row.retrieve_at,
        retries=row.retries,
        retry_interval=row.retry_interval,
        max_parallel=row.max_parallel,
        created_by=row.created_by,
        created_at=row.created_at,
        finished_at=row.finished_at,
        targets=tuple(
            CampaignTarget(
                charger_id=t.charger_id,
                state=TargetState(t.state),
                detail=t.detail,
                updated_at=t.updated_at,
            )
            for t in targets
        ),
    )


def create_campaign(
    s: Session,
    *,
    pattern: str,
    charger_ids: list[str],
    location: str | None,
    file_id: int | None,
    retrieve_at: datetime,
    retries: int | None,
    retry_interval: int | None,
    max_parallel: int,
    created_by: str,
    created_at: datetime,
) -> Campaign:
    row = CampaignRow(
        pattern=pattern,
        location=location,
        file_id=file_id,
        retrieve_at=retrieve_at,
        retries=retries,
        retry_interval=retry_interval,
        max_parallel=max_parallel,
        created_by=created_by,
        created_at=created_at,
    )
    s.add(row)
    s.flush()
    for charger_id in charger_ids:
        s.add(
            CampaignTargetRow(
                campaign_id=row.id,
                charger_id=charger_id,
                state=TargetState.WAITING.value,
                updated_at=created_at,
            )
        )
    s.flush()
    return _campaign(s, row)


def get_campaign(s: Session, campaign_id: int) -> Campaign | None:
    row = s.get(CampaignRow, campaign_id)
    return None if row is None else _campaign(s, row)


def list_campaigns(s: Session, *, open_only: bool = False, limit: int = 50) -> list[Campaign]:
    query = select(CampaignRow)
    if open_only:
        query = query.where(CampaignRow.finished_at.is_(None))
    rows = s.scalars(query.order_by(CampaignRow.id.desc()).limit(limit)).all()
    return [_campaign(s, r) for r in rows]


def set_target(
    s: Session,
    campaign_id: int,
    charger_id: str,
    state: TargetState,
    *,
    detail: str | None,
    at: datetime,
    only_from: TargetState | None = None,
) -> bool:
    """Move a target; with ``only_from``, only if it is still in that state (a status
    report may have moved it on meanwhile)."""
    # One conditional UPDATE, not a read then a write: a cancel (cancel_waiting) or a
    # status report committed meanwhile must win over a round that read the old state.
    query = update(CampaignTargetRow).where(
        CampaignTargetRow.campaign_id == campaign_id,
        CampaignTargetRow.charger_id == charger_id,
    )
    if only_from is not None:
        query = query.where(CampaignTargetRow.state == only_from.value)
    result = s.execute(
        query.values(state=state.value, detail=detail, updated_at=at),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish_campaign(s: Session, campaign_id: int, at: datetime) -> None:
    row = s.get(CampaignRow, campaign_id)
    if row is not None and row.finished_at is None:
        row.finished_at = at


def cancel_waiting(s: Session, campaign_id: int, *, detail: str, at: datetime) -> list[str]:
    """Cancel every target not sent yet (one transaction: a round that sends to one of
    them meanwhile finds it no longer waiting, see set_target's ``only_from``); the ids
    of the chargers cancelled."""
    rows = s.scalars(
        select(CampaignTargetRow)
        .where(
            CampaignTargetRow.campaign_id == campaign_id,
            CampaignTargetRow.state == TargetState.WAITING.value,
        )
        .order_by(CampaignTargetRow.charger_id)
        .with_for_update()
    ).all()
    for row in rows:
        row.state, row.detail, row.updated_at = TargetState.CANCELLED.value, detail, at
    return [r.charger_id for r in rows]
