"""The local list rules (domain/local_list.py): what is sent, Full or Differential, split
by SendLocalListMaxLength, refused over LocalAuthListMaxLength (OCPP 1.6 §5.15)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from voltaro.domain.local_list import (
    ListLimits,
    LocalListError,
    UpdateType,
    check_group,
    desired_list,
    limits_from_configuration,
    on_list_of,
    plan_sync,
)
from voltaro.domain.model import AuthorizationStatus, IdTag

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def tags(*names: str, status: AuthorizationStatus = AuthorizationStatus.ACCEPTED) -> list[IdTag]:
    return [IdTag(id_tag=n, status=status) for n in names]


def test_desired_list_has_each_tag_with_what_authorize_answers() -> None:
    lapsed = IdTag(id_tag="OLD", expiry_date=NOW - timedelta(days=1))
    listed = desired_list(
        [
            *tags("a1"),
            *tags("B2", status=AuthorizationStatus.BLOCKED),
            *tags("X", status=AuthorizationStatus.INVALID),
            lapsed,
        ],
        NOW,
    )
    assert sorted(listed) == ["A1", "B2", "OLD"]  # keyed case-insensitively; Invalid left out
    assert listed["B2"].info is not None
    assert listed["B2"].info.status is AuthorizationStatus.BLOCKED
    assert listed["OLD"].info is not None
    assert listed["OLD"].info.status is AuthorizationStatus.EXPIRED
    assert listed["A1"].id_tag == "a1"  # sent as registered


def test_first_sync_is_full_with_every_tag() -> None:
    desired = desired_list(tags("A", "B"), NOW)
    plan = plan_sync(
        charger_id="CP",
        desired=desired,
        known=None,
        known_version=None,
        charger_version=0,
        limits=ListLimits(),
    )
    assert plan.full
    (update,) = plan.updates
    assert update.update_type is UpdateType.FULL
    assert update.version == 1
    assert [e.id_tag for e in update.entries] == ["A", "B"]
    assert update.after == desired


def test_empty_table_sends_an_empty_full_list() -> None:
    plan = plan_sync(
        charger_id="CP",
        desired={},
        known=None,
        known_version=None,
        charger_version=3,
        limits=ListLimits(),
    )
    (update,) = plan.updates
    assert update.update_type is UpdateType.FULL
    assert update.entries == ()
    assert update.version == 4


def test_in_step_charger_gets_only_the_differences() -> None:
    before = desired_list(tags("A", "B", "C"), NOW)
    after = desired_list(
        [*tags("A"), *tags("B", status=AuthorizationStatus.BLOCKED), *tags("D")], NOW
    )
    plan = plan_sync(
        charger_id="CP",
        desired=after,
        known=before,
        known_version=7,
        charger_version=7,
        limits=ListLimits(),
    )
    assert not plan.full
    (update,) = plan.updates
    assert update.update_type is UpdateType.DIFFERENTIAL
    assert update.version == 8
    changes = {e.id_tag: (e.info.status if e.info else None) for e in update.entries}
    assert changes == {
        "B": AuthorizationStatus.BLOCKED,
        "C": None,
        "D": AuthorizationStatus.ACCEPTED,
    }
    assert update.after == after


def test_nothing_changed_sends_nothing() -> None:
    listed = desired_list(tags("A"), NOW)
    plan = plan_sync(
        charger_id="CP",
        desired=listed,
        known=listed,
        known_version=2,
        charger_version=2,
        limits=ListLimits(),
    )
    assert plan.updates == ()
    assert "up to date" in plan.reason


def test_version_mismatch_falls_back_to_full() -> None:
    listed = desired_list(tags("A"), NOW)
    plan = plan_sync(
        charger_id="CP",
        desired=listed,
        known=listed,
        known_version=2,
        charger_version=5,
        limits=ListLimits(),
    )
    assert plan.full
    assert plan.updates[0].update_type is UpdateType.FULL
    assert plan.updates[0].version == 6  # above both versions
    assert "holds version 5, last sent 2" in plan.reason


def test_full_update_is_split_by_send_local_list_max_length() -> None:
    desired = desired_list(tags("A", "B", "C", "D", "E"), NOW)
    plan = plan_sync(
        charger_id="CP",
        desired=desired,
        known=None,
        known_version=None,
        charger_version=0,
        limits=ListLimits(max_send=2),
    )
    assert [(u.update_type, u.version, len(u.entries)) for u in plan.updates] == [
        (UpdateType.FULL, 1, 2),
        (UpdateType.DIFFERENTIAL, 2, 2),
        (UpdateType.DIFFERENTIAL, 3, 1),
    ]
    assert plan.updates[-1].after == desired


def test_differential_update_is_split_too() -> None:
    known = desired_list(tags("A"), NOW)
    desired = desired_list(tags("A", "B", "C", "D"), NOW)
    plan = plan_sync(
        charger_id="CP",
        desired=desired,
        known=known,
        known_version=1,
        charger_version=1,
        limits=ListLimits(max_send=2),
    )
    assert [(u.version, len(u.entries)) for u in plan.updates] == [(2, 2), (3, 1)]
    assert all(u.update_type is UpdateType.DIFFERENTIAL for u in plan.updates)


def test_list_longer_than_the_charger_holds_is_refused() -> None:
    with pytest.raises(LocalListError, match="3 tags; CP holds at most 2"):
        plan_sync(
            charger_id="CP",
            desired=desired_list(tags("A", "B", "C"), NOW),
            known=None,
            known_version=None,
            charger_version=0,
            limits=ListLimits(max_list=2),
        )


def test_charger_without_local_list_is_refused() -> None:
    with pytest.raises(LocalListError, match="does not support"):
        plan_sync(
            charger_id="CP",
            desired={},
            known=None,
            known_version=None,
            charger_version=-1,
            limits=ListLimits(),
        )


def test_limits_are_read_leniently() -> None:
    limits = limits_from_configuration(
        {
            "localauthlistenabled": "True",
            "LocalAuthListMaxLength": " 50 ",
            "SendLocalListMaxLength": "x",
        }
    )
    assert limits == ListLimits(enabled=True, max_list=50, max_send=None)
    assert limits_from_configuration({}) == ListLimits()


def test_groups_decide_which_lists_carry_a_tag() -> None:
    """Issue 16, a list per group: tags limited to no group are on every list; tags
    limited to groups only on the lists of chargers in one of them."""
    everywhere = IdTag(id_tag="ALL")
    north = IdTag(id_tag="N1", groups=("north",))
    both = IdTag(id_tag="NS", groups=("north", "south"))
    assert [on_list_of(t, None) for t in (everywhere, north, both)] == [True, False, False]
    assert [on_list_of(t, "north") for t in (everywhere, north, both)] == [True, True, True]
    assert [on_list_of(t, "south") for t in (everywhere, north, both)] == [True, False, True]
    assert sorted(desired_list([everywhere, north, both], NOW, "south")) == ["ALL", "NS"]
    assert sorted(desired_list([everywhere, north, both], NOW)) == ["ALL"]


@pytest.mark.parametrize("name", ["", "a b", "no,comma", "-dash-first", "x" * 65, "é"])
def test_bad_group_names_are_refused(name: str) -> None:
    with pytest.raises(LocalListError):
        check_group(name)
    assert check_group("depot-2.north_1") == "depot-2.north_1"
