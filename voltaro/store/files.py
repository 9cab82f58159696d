"""Units of work for files Voltaro keeps (firmware images, charger uploads) and the URL
tokens that let one charger download or upload one file (docs/firmware.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from voltaro.store.schema import CampaignRow, FileTokenRow, StoredFileRow


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredFile:
    id: int
    kind: str
    name: str
    path: str  # relative to the data directory
    size: int
    sha256: str
    charger_id: str | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class NewFile:
    kind: str
    name: str
    path: str
    size: int
    sha256: str
    charger_id: str | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenGrant:
    """What a valid URL token allows."""

    direction: str  # download | upload
    purpose: str
    charger_id: str
    file: StoredFile | None  # download: the file to serve


def _file(row: StoredFileRow) -> StoredFile:
    return StoredFile(
        id=row.id,
        kind=row.kind,
        name=row.name,
        path=row.path,
        size=row.size,
        sha256=row.sha256,
        charger_id=row.charger_id,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def add_file(s: Session, new: NewFile) -> StoredFile:
    row = StoredFileRow(
        kind=new.kind,
        name=new.name,
        path=new.path,
        size=new.size,
        sha256=new.sha256,
        charger_id=new.charger_id,
        created_by=new.created_by,
        created_at=new.created_at,
    )
    s.add(row)
    s.flush()
    return _file(row)


def get_file(s: Session, file_id: int) -> StoredFile | None:
    row = s.get(StoredFileRow, file_id)
    return None if row is None else _file(row)


def find_file(s: Session, kind: str, ref: str) -> StoredFile | None:
    """By id (``12`` or ``#12``), else the newest file of that kind with that name."""
    text = ref.strip().removeprefix("#")
    if text.isdigit():
        row = s.get(StoredFileRow, int(text))
        if row is not None and row.kind == kind:
            return _file(row)
    found = s.scalars(
        select(StoredFileRow)
        .where(StoredFileRow.kind == kind, StoredFileRow.name == ref)
        .order_by(StoredFileRow.id.desc())
        .limit(1)
    ).first()
    return None if found is None else _file(found)


def list_files(
    s: Session, kind: str, *, charger_id: str | None = None, limit: int = 100
) -> list[StoredFile]:
    query = select(StoredFileRow).where(StoredFileRow.kind == kind)
    if charger_id is not None:
        query = query.where(StoredFileRow.charger_id == charger_id)
    rows = s.scalars(query.order_by(StoredFileRow.id.desc()).limit(limit))
    return [_file(r) for r in rows]


def list_files_of_kinds(
    s: Session, kinds: tuple[str, ...], *, charger_id: str | None = None, limit: int = 100
) -> list[StoredFile]:
    """Files of any of ``kinds`` (the two GetLog log types), newest first."""
    query = select(StoredFileRow).where(StoredFileRow.kind.in_(kinds))
    if charger_id is not None:
        query = query.where(StoredFileRow.charger_id == charger_id)
    rows = s.scalars(query.order_by(StoredFileRow.id.desc()).limit(limit))
    return [_file(r) for r in rows]


def issue_token(
    s: Session,
    *,
    token_hash: str,
    direction: str,
    purpose: str,
    charger_id: str,
    file_id: int | None,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    s.add(
        FileTokenRow(
            token_hash=token_hash,
            direction=direction,
            purpose=purpose,
            charger_id=charger_id,
            file_id=file_id,
            created_at=created_at,
            expires_at=expires_at,
        )
    )


def check_token(s: Session, token_hash: str, direction: str, now: datetime) -> TokenGrant | str:
    """The grant of a usable token, or why it is not: unknown, used or expired."""
    row = s.get(FileTokenRow, token_hash)
    if row is None or row.direction != direction:
        return "unknown"
    if row.used_at is not None:
        return "used"
    if row.expires_at <= now:
        return "expired"
    stored = None
    if row.file_id is not None:
        file_row = s.get(StoredFileRow, row.file_id)
        if file_row is None:
            return "unknown"
        stored = _file(file_row)
    return TokenGrant(
        direction=row.direction, purpose=row.purpose, charger_id=row.charger_id, file=stored
    )


def spend_token(s: Session, token_hash: str, now: datetime) -> bool:
    """Mark a download token used by a complete transfer; False if it already was."""
    result = s.execute(
        update(FileTokenRow)
        .where(FileTokenRow.token_hash == token_hash, FileTokenRow.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def complete_upload(s: Session, token_hash: str, new: NewFile) -> StoredFile | None:
    """Spend an upload token and record what arrived, in one transaction; None (nothing
    recorded) if another upload spent the token first."""
    if not spend_token(s, token_hash, new.created_at):
        return None
    stored = add_file(s, new)
    s.execute(
        update(FileTokenRow)
        .where(FileTokenRow.token_hash == token_hash)
        .values(result_file_id=stored.id)
    )
    return stored


@dataclass(frozen=True, slots=True, kw_only=True)
class FileReferences:
    """What still needs a firmware file: unfinished campaigns, and download URLs handed
    to chargers that are neither spent nor expired (an UpdateFirmware still pending)."""

    campaigns: tuple[int, ...]
    downloads: tuple[tuple[str, datetime], ...]  # (charger id, URL valid until)


def file_references(s: Session, file_id: int, now: datetime) -> FileReferences:
    campaigns = s.scalars(
        select(CampaignRow.id)
        .where(CampaignRow.file_id == file_id, CampaignRow.finished_at.is_(None))
        .order_by(CampaignRow.id)
    ).all()
    pending = s.execute(
        select(FileTokenRow.charger_id, FileTokenRow.expires_at)
        .where(
            FileTokenRow.file_id == file_id,
            FileTokenRow.direction == "download",
            FileTokenRow.used_at.is_(None),
            FileTokenRow.expires_at > now,
        )
        .order_by(FileTokenRow.charger_id)
    ).all()
    return FileReferences(campaigns=tuple(campaigns), downloads=tuple((c, at) for c, at in pending))


def remove_file(s: Session, file_id: int) -> StoredFile | None:
    """Delete a file's row and its URL tokens (its bytes are the caller's, after the
    commit); None if gone. Its download URLs then answer 404."""
    row = s.get(StoredFileRow, file_id)
    if row is None:
        return None
    stored = _file(row)
    # Its URLs go with it: SQLite may give a later file the same id, and an old URL must
    # never serve a different image.
    s.execute(delete(FileTokenRow).where(FileTokenRow.file_id == file_id))
    s.delete(row)
    return stored


def uploads_older_than(s: Session, cutoff: datetime, limit: int) -> list[StoredFile]:
    """Files chargers uploaded (every kind but firmware) before ``cutoff``, oldest first."""
    rows = s.scalars(
        select(StoredFileRow)
        .where(StoredFileRow.kind != "firmware", StoredFileRow.created_at < cutoff)
        .order_by(StoredFileRow.created_at, StoredFileRow.id)
        .limit(limit)
    )
    return [_file(r) for r in rows]


def remove_files(s: Session, file_ids: list[int]) -> int:
    result = s.execute(delete(StoredFileRow).where(StoredFileRow.id.in_(file_ids)))
    return int(result.rowcount)  # type: ignore[attr-defined]


def remove_unless_used(
    s: Session, file_id: int, now: datetime, *, force: bool
) -> StoredFile | FileReferences | None:
    """One unit of work: the file's row deleted, or what still uses it (unfinished
    campaigns always; pending downloads unless ``force``); None if it is gone."""
    uses = file_references(s, file_id, now)
    if uses.campaigns or (uses.downloads and not force):
        return uses
    return remove_file(s, file_id)
