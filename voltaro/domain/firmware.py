"""Firmware Management (OCPP 1.6 §4.4, §4.5, §5.8, §5.17; feature profile FirmwareManagement):
the statuses a charger reports, and the rules of a firmware campaign.

Pure: no IO. The store keeps the reports as history per charger; the campaign runner
asks ``campaign_step`` what to do next.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class TransferKind(StrEnum):
    """Which of the two file transfers a status report is about."""

    FIRMWARE = "firmware"  # FirmwareStatusNotification (§4.5)
    DIAGNOSTICS = "diagnostics"  # DiagnosticsStatusNotification (§4.4)
    # The 1.6 security extension's, each with the requestId of its request:
    LOG = "log"  # LogStatusNotification (after GetLog)
    SIGNED_FIRMWARE = "signed_firmware"  # SignedFirmwareStatusNotification


class FirmwareStatus(StrEnum):
    """FirmwareStatus (OCPP 1.6 §7.25)."""

    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    DOWNLOADING = "Downloading"
    IDLE = "Idle"
    INSTALLATION_FAILED = "InstallationFailed"
    INSTALLING = "Installing"
    INSTALLED = "Installed"


class DiagnosticsStatus(StrEnum):
    """DiagnosticsStatus (OCPP 1.6 §7.24)."""

    IDLE = "Idle"
    UPLOADED = "Uploaded"
    UPLOAD_FAILED = "UploadFailed"
    UPLOADING = "Uploading"


class UploadLogStatus(StrEnum):
    """UploadLogStatusEnumType of LogStatusNotification.req (1.6 security extension)."""

    BAD_MESSAGE = "BadMessage"
    IDLE = "Idle"
    NOT_SUPPORTED_OPERATION = "NotSupportedOperation"
    PERMISSION_DENIED = "PermissionDenied"
    UPLOADED = "Uploaded"
    UPLOAD_FAILURE = "UploadFailure"
    UPLOADING = "Uploading"


class SignedFirmwareStatus(StrEnum):
    """FirmwareStatusEnumType of SignedFirmwareStatusNotification.req (1.6 security
    extension): FirmwareStatus plus the scheduling and signature steps."""

    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    DOWNLOADING = "Downloading"
    DOWNLOAD_SCHEDULED = "DownloadScheduled"
    DOWNLOAD_PAUSED = "DownloadPaused"
    IDLE = "Idle"
    INSTALLATION_FAILED = "InstallationFailed"
    INSTALLING = "Installing"
    INSTALLED = "Installed"
    INSTALL_REBOOTING = "InstallRebooting"
    INSTALL_SCHEDULED = "InstallScheduled"
    INSTALL_VERIFICATION_FAILED = "InstallVerificationFailed"
    INVALID_SIGNATURE = "InvalidSignature"
    SIGNATURE_VERIFIED = "SignatureVerified"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferStatusReport:
    """One Firmware/Diagnostics/Log/SignedFirmware status notification as received."""

    charger_id: str
    kind: TransferKind
    status: str  # a value of the kind's status enum
    received_at: datetime
    # The requestId of GetLog / SignedUpdateFirmware the report is about (the security
    # extension's notifications carry it; it is optional in their schemas).
    request_id: int | None = None


# A firmware update has ended, one way or the other, when the charger reports these.
FIRMWARE_DONE = frozenset({FirmwareStatus.INSTALLED})
FIRMWARE_FAILED = frozenset({FirmwareStatus.DOWNLOAD_FAILED, FirmwareStatus.INSTALLATION_FAILED})


class TargetState(StrEnum):
    """Where one charger of a firmware campaign is."""

    WAITING = "waiting"  # not sent yet (max-parallel, or the charger is offline)
    SENT = "sent"  # UpdateFirmware accepted; no status reported yet
    DOWNLOADING = "Downloading"
    DOWNLOADED = "Downloaded"
    INSTALLING = "Installing"
    INSTALLED = "Installed"  # done
    DOWNLOAD_FAILED = "DownloadFailed"  # failed
    INSTALLATION_FAILED = "InstallationFailed"  # failed
    SEND_FAILED = "send_failed"  # the command could not be sent or was refused
    TIMED_OUT = "timed_out"  # no final status within the campaign's timeout
    CANCELLED = "cancelled"  # the campaign was cancelled before this charger was sent it


FINAL_STATES = frozenset(
    {
        TargetState.INSTALLED,
        TargetState.DOWNLOAD_FAILED,
        TargetState.INSTALLATION_FAILED,
        TargetState.SEND_FAILED,
        TargetState.TIMED_OUT,
        TargetState.CANCELLED,
    }
)
IN_PROGRESS_STATES = frozenset(
    {
        TargetState.SENT,
        TargetState.DOWNLOADING,
        TargetState.DOWNLOADED,
        TargetState.INSTALLING,
    }
)


def target_state_after(current: TargetState, status: str) -> TargetState:
    """A campaign target's state after its charger reports FirmwareStatus ``status``.

    Idle after an update was sent means nothing is going on; keep what we knew (a
    charger that reboots into the new image may report Idle before Installed).
    A final state is never left: a late report cannot undo the campaign's record.
    """
    if current in FINAL_STATES or current is TargetState.WAITING:
        return current
    try:
        return TargetState(status)
    except ValueError:
        return current  # Idle or anything unknown


def campaign_slots(in_progress: int, max_parallel: int) -> int:
    """How many more chargers may be sent UpdateFirmware now."""
    return max(0, max_parallel - in_progress)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundPlan:
    """What a campaign does now: send to these chargers, give up on those."""

    send: tuple[str, ...]
    timed_out: tuple[str, ...]
    finished: bool


def plan_round(
    targets: Sequence[tuple[str, TargetState, datetime]],
    *,
    max_parallel: int,
    connected: Collection[str],
    now: datetime,
    started: bool,
    timeout: timedelta,
) -> RoundPlan:
    """One step of a campaign over ``targets`` (charger id, state, last change).

    - A target in progress with no report for ``timeout`` is given up (timed_out): a
      charger that never reports must not hold a slot for ever.
    - Free slots (``max_parallel`` minus those in progress) go to waiting chargers that
      are connected now, in id order; offline ones wait for a later round.
    - Nothing is sent before the campaign's time (``started`` false).
    - The campaign is finished when every target is in a final state.
    """
    timed_out = tuple(
        cid for cid, state, at in targets if state in IN_PROGRESS_STATES and now - at >= timeout
    )
    in_progress = sum(
        1 for cid, state, _ in targets if state in IN_PROGRESS_STATES and cid not in timed_out
    )
    send: tuple[str, ...] = ()
    if started:
        ready = sorted(cid for cid, state, _ in targets if state is TargetState.WAITING)
        ready = [cid for cid in ready if cid in connected]
        send = tuple(ready[: campaign_slots(in_progress, max_parallel)])
    finished = all(state in FINAL_STATES or cid in timed_out for cid, state, _ in targets)
    return RoundPlan(send=send, timed_out=timed_out, finished=finished)
