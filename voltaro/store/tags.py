"""Units of work for id tags (OCPP 1.6 §3.4, §7.27-§7.28)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from voltaro.domain.authorization import tag_key
from voltaro.domain.model import AuthorizationStatus, IdTag
from voltaro.store.errors import AlreadyExists, NotFound
from voltaro.store.schema import IdTagRow

_UNSET: Any = object()


def _tag(row: IdTagRow) -> IdTag:
    return IdTag(
        id_tag=row.id_tag,
        status=AuthorizationStatus(row.status),
        expiry_date=row.expiry_date,
        parent_id_tag=row.parent_id_tag,
        groups=tuple(row.list_groups.split(",")) if row.list_groups else (),
    )


def _groups(groups: tuple[str, ...]) -> str | None:
    return ",".join(sorted(set(groups))) or None


def list_tags(s: Session) -> list[IdTag]:
    return [_tag(r) for r in s.scalars(select(IdTagRow).order_by(IdTagRow.tag_key))]


def get_tag(s: Session, id_tag: str) -> IdTag | None:
    row = s.get(IdTagRow, tag_key(id_tag))
    return _tag(row) if row is not None else None


def _check_parent(s: Session, parent: str | None) -> None:
    if parent is not None and s.get(IdTagRow, tag_key(parent)) is None:
        raise NotFound(f"parent tag {parent} does not exist")


def add_tag(
    s: Session,
    id_tag: str,
    *,
    status: AuthorizationStatus = AuthorizationStatus.ACCEPTED,
    expiry: datetime | None = None,
    parent: str | None = None,
    groups: tuple[str, ...] = (),
) -> IdTag:
    key = tag_key(id_tag)
    if s.get(IdTagRow, key) is not None:
        raise AlreadyExists(f"tag {id_tag} exists already")
    _check_parent(s, parent)
    row = IdTagRow(
        tag_key=key,
        id_tag=id_tag,
        status=status.value,
        expiry_date=expiry,
        parent_id_tag=parent,
        list_groups=_groups(groups),
    )
    s.add(row)
    return _tag(row)


def update_tag(
    s: Session,
    id_tag: str,
    *,
    status: AuthorizationStatus | None = None,
    expiry: datetime | None = _UNSET,
    parent: str | None = _UNSET,
    groups: tuple[str, ...] | None = None,
) -> IdTag | None:
    """``groups`` None: unchanged; ``()``: on every charger's list again."""
    row = s.get(IdTagRow, tag_key(id_tag))
    if row is None:
        return None
    if status is not None:
        row.status = status.value
    if expiry is not _UNSET:
        row.expiry_date = expiry
    if parent is not _UNSET:
        _check_parent(s, parent)
        row.parent_id_tag = parent
    if groups is not None:
        row.list_groups = _groups(groups)
    return _tag(row)


def block_tag(s: Session, id_tag: str) -> IdTag | None:
    return update_tag(s, id_tag, status=AuthorizationStatus.BLOCKED)


def remove_tag(s: Session, id_tag: str) -> bool:
    row = s.get(IdTagRow, tag_key(id_tag))
    if row is None:
        return False
    s.delete(row)
    return True
