"""Id tag decisions (OCPP 1.6 §3.4-§3.5, §4.1, §4.8, §7.2)."""

from __future__ import annotations

from datetime import datetime

from voltaro.domain.model import AuthorizationStatus, IdTag, IdTagInfo


def tag_key(id_tag: str) -> str:
    """IdToken is a CiString20: lookups ignore case (§7.28, R51)."""
    return id_tag.strip().upper()


def decide(tag: IdTag | None, now: datetime) -> IdTagInfo:
    """What an Authorize answers for a tag: unknown is Invalid; a lapsed Accepted tag is
    Expired; expiry and parent are returned when set (R50, R53). Never ConcurrentTx
    (that is only for StartTransaction, R52)."""
    if tag is None:
        return IdTagInfo(status=AuthorizationStatus.INVALID)
    status = tag.status
    if status is AuthorizationStatus.CONCURRENT_TX:
        status = AuthorizationStatus.ACCEPTED
    if (
        status is AuthorizationStatus.ACCEPTED
        and tag.expiry_date is not None
        and tag.expiry_date <= now
    ):
        status = AuthorizationStatus.EXPIRED
    return IdTagInfo(status=status, expiry_date=tag.expiry_date, parent_id_tag=tag.parent_id_tag)


def decide_start(
    tag: IdTag | None, now: datetime, *, busy_elsewhere: bool, allow_concurrent: bool
) -> IdTagInfo:
    """StartTransaction's idTagInfo: the Authorize decision, or ConcurrentTx for an
    accepted tag that already has an active transaction when that is not allowed (R58)."""
    info = decide(tag, now)
    if info.status is AuthorizationStatus.ACCEPTED and busy_elsewhere and not allow_concurrent:
        return IdTagInfo(
            status=AuthorizationStatus.CONCURRENT_TX,
            expiry_date=info.expiry_date,
            parent_id_tag=info.parent_id_tag,
        )
    return info
