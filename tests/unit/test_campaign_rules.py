"""The pure rules of a firmware campaign (voltaro.domain.firmware)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from voltaro.domain.firmware import TargetState, plan_round, target_state_after

NOW = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_slots_offline_and_order() -> None:
    targets = [
        ("C", TargetState.WAITING, NOW),
        ("A", TargetState.WAITING, NOW),
        ("B", TargetState.DOWNLOADING, NOW),
        ("D", TargetState.WAITING, NOW),
        ("E", TargetState.INSTALLED, NOW),
    ]
    plan = plan_round(
        targets, max_parallel=2, connected={"A", "C", "D"}, now=NOW, started=True, timeout=HOUR
    )
    assert plan.send == ("A",)  # one slot left (B is downloading), in id order
    assert plan.timed_out == ()
    assert not plan.finished
    offline = plan_round(
        targets, max_parallel=5, connected={"D"}, now=NOW, started=True, timeout=HOUR
    )
    assert offline.send == ("D",)  # A and C are offline: they wait
    early = plan_round(
        targets, max_parallel=5, connected={"A", "C", "D"}, now=NOW, started=False, timeout=HOUR
    )
    assert early.send == ()


def test_a_silent_charger_times_out_and_frees_its_slot() -> None:
    targets = [
        ("A", TargetState.SENT, NOW - 2 * HOUR),
        ("B", TargetState.WAITING, NOW),
    ]
    plan = plan_round(
        targets, max_parallel=1, connected={"A", "B"}, now=NOW, started=True, timeout=HOUR
    )
    assert plan.timed_out == ("A",)
    assert plan.send == ("B",)


def test_finished_when_every_target_is_final() -> None:
    targets = [
        ("A", TargetState.INSTALLED, NOW),
        ("B", TargetState.DOWNLOAD_FAILED, NOW),
        ("C", TargetState.SEND_FAILED, NOW),
    ]
    plan = plan_round(targets, max_parallel=1, connected=set(), now=NOW, started=True, timeout=HOUR)
    assert plan.finished


def test_reports_move_targets_but_never_out_of_a_final_state() -> None:
    assert target_state_after(TargetState.SENT, "Downloading") is TargetState.DOWNLOADING
    assert target_state_after(TargetState.INSTALLING, "Installed") is TargetState.INSTALLED
    assert target_state_after(TargetState.DOWNLOADING, "Idle") is TargetState.DOWNLOADING
    assert target_state_after(TargetState.INSTALLED, "Downloading") is TargetState.INSTALLED
    assert target_state_after(TargetState.WAITING, "Downloading") is TargetState.WAITING
    assert target_state_after(TargetState.SENT, "InstallationFailed") is (
        TargetState.INSTALLATION_FAILED
    )
