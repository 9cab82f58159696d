"""The Local Authorization List (OCPP 1.6 §3.4.3, §5.7 GetLocalListVersion, §5.15
SendLocalList, §9.3 configuration keys): what each charger should hold, and the
smallest sequence of SendLocalList messages that brings it there. Pure.

The list is derived from the tag table: every tag with what an Authorize would answer
for it now (status, expiry, parent). What a charger holds is known from the last list it
accepted, kept with its version; a charger reporting another version than the one we
last gave it holds something we do not know, and gets a Full update.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from voltaro.domain.authorization import decide, tag_key
from voltaro.domain.model import AuthorizationStatus, IdTag, IdTagInfo

# GetLocalListVersion's listVersion: 0 is an empty list, -1 a charger without local list
# support (OCPP 1.6 §5.7, §6.24).
VERSION_EMPTY = 0
VERSION_NOT_SUPPORTED = -1

KEY_ENABLED = "LocalAuthListEnabled"
KEY_MAX_LIST = "LocalAuthListMaxLength"
KEY_MAX_SEND = "SendLocalListMaxLength"
CONFIGURATION_KEYS = (KEY_ENABLED, KEY_MAX_LIST, KEY_MAX_SEND)


class UpdateType(StrEnum):
    """UpdateType (OCPP 1.6 §7.45)."""

    FULL = "Full"
    DIFFERENTIAL = "Differential"


class UpdateStatus(StrEnum):
    """UpdateStatus, SendLocalList's answer (OCPP 1.6 §7.46)."""

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_SUPPORTED = "NotSupported"
    VERSION_MISMATCH = "VersionMismatch"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListEntry:
    """AuthorizationData (OCPP 1.6 §7.3). ``info`` None removes the tag (Differential)."""

    id_tag: str
    info: IdTagInfo | None


LocalList = Mapping[str, ListEntry]  # keyed by tag_key(): IdToken ignores case (§7.28)


@dataclass(frozen=True, slots=True, kw_only=True)
class ListLimits:
    """What the charger's configuration says (None: the key is unknown or unreadable)."""

    enabled: bool | None = None
    max_list: int | None = None  # LocalAuthListMaxLength: entries the charger holds
    max_send: int | None = None  # SendLocalListMaxLength: entries in one SendLocalList


@dataclass(frozen=True, slots=True, kw_only=True)
class Update:
    """One SendLocalList, and what the charger holds once it accepted it."""

    version: int
    update_type: UpdateType
    entries: tuple[ListEntry, ...]
    after: dict[str, ListEntry]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    updates: tuple[Update, ...]
    full: bool
    reason: str  # one line for the operator: why Full, or "up to date"


class LocalListError(ValueError):
    """A list that cannot be sent (too long for the charger); nothing is sent."""


GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_group(name: str) -> str:
    """A charger group's name: 1-64 letters, digits, ``.``, ``_``, ``-`` (it is kept
    comma-separated on tags).

    Raises:
        LocalListError: any other name.
    """
    if not GROUP_NAME.fullmatch(name):
        raise LocalListError(
            f"group {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def on_list_of(tag: IdTag, group: str | None) -> bool:
    """Whether ``tag`` belongs on the list of a charger in ``group``: a tag limited to
    no group is on every charger's list; one limited to groups only on theirs (a
    charger in no group gets the all-chargers list)."""
    return not tag.groups or (group is not None and group in tag.groups)


def desired_list(
    tags: Iterable[IdTag], now: datetime, group: str | None = None
) -> dict[str, ListEntry]:
    """Every tag of the charger's group with what an Authorize answers for it now
    (§3.4.3: the list holds identifiers with their IdTagInfo, including blocked and
    expired ones, so that a charger refuses them offline too). Invalid tags are left
    out: unknown is Invalid."""
    out: dict[str, ListEntry] = {}
    for tag in tags:
        if not on_list_of(tag, group):
            continue
        info = decide(tag, now)
        if info.status is AuthorizationStatus.INVALID:
            continue
        out[tag_key(tag.id_tag)] = ListEntry(id_tag=tag.id_tag, info=info)
    return out


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    text = value.strip().lower()
    return True if text == "true" else False if text == "false" else None


def _count(value: str | None) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def limits_from_configuration(values: Mapping[str, str | None]) -> ListLimits:
    """Read the three keys leniently (R95: any case of true/false, integers with spaces)."""
    lowered = {k.lower(): v for k, v in values.items()}
    return ListLimits(
        enabled=_bool(lowered.get(KEY_ENABLED.lower())),
        max_list=_count(lowered.get(KEY_MAX_LIST.lower())),
        max_send=_count(lowered.get(KEY_MAX_SEND.lower())),
    )


def _chunks(entries: list[ListEntry], size: int | None) -> list[list[ListEntry]]:
    if not entries:
        return [[]]
    step = size if size and size > 0 else len(entries)
    return [entries[i : i + step] for i in range(0, len(entries), step)]


def _check_length(desired: LocalList, limits: ListLimits, charger_id: str) -> None:
    if limits.max_list is not None and len(desired) > limits.max_list:
        raise LocalListError(
            f"the list has {len(desired)} tags; {charger_id} holds at most {limits.max_list} "
            f"({KEY_MAX_LIST}): nothing sent"
        )
    if limits.max_send == 0:
        raise LocalListError(f"{charger_id} accepts no entries in SendLocalList ({KEY_MAX_SEND}=0)")


def plan_sync(
    *,
    charger_id: str,
    desired: LocalList,
    known: LocalList | None,
    known_version: int | None,
    charger_version: int,
    limits: ListLimits,
    force_full: bool = False,
) -> Plan:
    """The SendLocalList messages that bring the charger from what it holds to ``desired``.

    ``known``/``known_version``: the list and version the charger last accepted from us
    (None: never, or unknown after a Failed answer). ``charger_version``: what
    GetLocalListVersion answered now. Differential when the charger still holds what we
    know; Full otherwise (§5.15: a Full update replaces the whole list). Each message
    carries at most SendLocalListMaxLength entries: a long Full update is a Full
    message followed by Differential ones, each with the next version number.

    Raises:
        LocalListError: the list is longer than LocalAuthListMaxLength, or the charger
            does not support local lists.
    """
    if charger_version == VERSION_NOT_SUPPORTED:
        raise LocalListError(f"{charger_id} does not support a local list (version -1)")
    _check_length(desired, limits, charger_id)
    base = max(charger_version, known_version or 0)
    in_step = known is not None and known_version == charger_version
    if force_full or not in_step:
        reason = (
            "Full update requested"
            if force_full
            else (
                "Full update: nothing sent to this charger before"
                if known is None
                else f"Full update: the charger holds version {charger_version}, "
                f"last sent {known_version}"
            )
        )
        ordered = [desired[k] for k in sorted(desired)]
        updates: list[Update] = []
        after: dict[str, ListEntry] = {}
        for i, chunk in enumerate(_chunks(ordered, limits.max_send)):
            for entry in chunk:
                after[tag_key(entry.id_tag)] = entry
            updates.append(
                Update(
                    version=base + i + 1,
                    update_type=UpdateType.FULL if i == 0 else UpdateType.DIFFERENTIAL,
                    entries=tuple(chunk),
                    after=dict(after),
                )
            )
        return Plan(updates=tuple(updates), full=True, reason=reason)
    assert known is not None
    changes: list[ListEntry] = []
    for key in sorted(set(desired) | set(known)):
        want, have = desired.get(key), known.get(key)
        if want is None and have is not None:
            changes.append(ListEntry(id_tag=have.id_tag, info=None))
        elif want is not None and (have is None or have.info != want.info):
            changes.append(want)
    if not changes:
        return Plan(updates=(), full=False, reason=f"up to date (version {charger_version})")
    updates = []
    current = dict(known)
    for i, chunk in enumerate(_chunks(changes, limits.max_send)):
        for entry in chunk:
            if entry.info is None:
                current.pop(tag_key(entry.id_tag), None)
            else:
                current[tag_key(entry.id_tag)] = entry
        updates.append(
            Update(
                version=base + i + 1,
                update_type=UpdateType.DIFFERENTIAL,
                entries=tuple(chunk),
                after=dict(current),
            )
        )
    return Plan(
        updates=tuple(updates), full=False, reason=f"Differential update: {len(changes)} change(s)"
    )
