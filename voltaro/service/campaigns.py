"""Firmware campaigns: one firmware for many chargers, a few at a time (issue 16).

``voltaro ctl firmware update --chargers 'ACME-*' --file fw.bin --at TIME --max-parallel N``
records a campaign with one target per registered charger that matches. From ``TIME``
on, the runner sends UpdateFirmware (through the command layer, audited as
``campaign#ID:<who>``) to at most N chargers at once; each target then follows its
charger's FirmwareStatusNotification (store.firmware.record_transfer_status): sent,
Downloading, Downloaded, Installing, Installed, or DownloadFailed/InstallationFailed.
A charger that is offline waits for a later round; one that never reports is given up
after ``campaign_target_timeout`` (timed_out) so that it does not hold a slot for ever.
The runner wakes every ``campaign_poll`` seconds, and at once when a campaign is made.
Cancelling a campaign cancels the targets not sent yet; those sent go on to the end.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import trio

from voltaro.background import LoopGuard
from voltaro.control.wire import Event
from voltaro.domain.commands import CommandError, CommandErrorCode, UpdateFirmware, validate
from voltaro.domain.firmware import TargetState, plan_round
from voltaro.domain.timestamps import utc_now
from voltaro.service.firmware import FirmwareService
from voltaro.settings import Settings
from voltaro.store import chargers
from voltaro.store import firmware as store
from voltaro.store.db import Database
from voltaro.store.errors import TransientStorageError

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], None]


def _bad(message: str) -> CommandError:
    return CommandError(CommandErrorCode.BAD_ARGUMENTS, message)


def matching_chargers(pattern: str, charger_ids: Collection[str]) -> list[str]:
    """The ids that match ``pattern``: shell-style patterns separated by commas
    (``ACME-*,CP-7``), in id order."""
    patterns = [p.strip() for p in pattern.split(",") if p.strip()]
    return sorted(c for c in charger_ids if any(fnmatch.fnmatchcase(c, p) for p in patterns))


class CampaignRunner:
    def __init__(
        self,
        db: Database,
        firmware: FirmwareService,
        *,
        is_connected: Callable[[str], bool],
        publish: Publish,
        settings: Settings,
    ) -> None:
        self._db = db
        self._firmware = firmware
        self._is_connected = is_connected
        self._publish = publish
        self._settings = settings
        self._wake = trio.Event()
        self.guard = LoopGuard("firmware campaigns", log)

    async def create(
        self,
        *,
        pattern: str | None = None,
        charger_ids: Sequence[str] | None = None,
        actor: str,
        location: str | None = None,
        file: str | None = None,
        retrieve_at: datetime | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
        max_parallel: int = 5,
    ) -> store.Campaign:
        """Record a campaign over the registered chargers whose id matches ``pattern``
        (shell-style: ``ACME-*``, ``CP-1?``; several separated by commas), or over the
        chargers ``charger_ids`` names exactly. Nothing is sent here: the runner does it.

        Raises:
            CommandError: BAD_ARGUMENTS (no charger matches, an unknown charger in
            ``charger_ids``, both or neither of pattern and charger_ids, of location and
            file, an unknown file, max_parallel < 1).
        """
        if (pattern is None) == (charger_ids is None):
            raise _bad("give either a charger pattern or a list of charger ids")
        if (location is None) == (file is None):
            raise _bad("give either a location (URL) or a firmware file Voltaro serves")
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
            raise _bad("max-parallel must be a whole number, 1 or more")
        file_id = None
        if file is not None:
            files = self._firmware.files
            if files is None:
                raise _bad("Voltaro serves no files here (http_enabled = false)")
            file_id = (await files.find_firmware(file)).id
            files.public_base()  # refuse now rather than at every send
        else:
            assert location is not None
        # Checked as every UpdateFirmware is, before anything is stored.
        validate(
            UpdateFirmware(
                location=location or "http://voltaro.invalid/",
                retrieve_date=retrieve_at or utc_now(),
                retries=retries,
                retry_interval=retry_interval,
            )
        )
        registered = {c.charger_id for c in await self._db.run(chargers.list_chargers)}
        if charger_ids is not None:
            unknown = sorted(set(charger_ids) - registered)
            if unknown:
                raise _bad(f"unknown charger {', '.join(unknown[:5])}")
            matching = sorted(set(charger_ids))
            if not matching:
                raise _bad("the list of chargers is empty")
            pattern = ",".join(matching)
        else:
            assert pattern is not None
            matching = matching_chargers(pattern, registered)
            if not matching:
                raise _bad(f"no registered charger matches {pattern!r}")
        campaign = await self._db.run(
            lambda s: store.create_campaign(
                s,
                pattern=pattern,
                charger_ids=matching,
                location=location,
                file_id=file_id,
                retrieve_at=retrieve_at or utc_now(),
                retries=retries,
                retry_interval=retry_interval,
                max_parallel=max_parallel,
                created_by=actor,
                created_at=utc_now(),
            )
        )
        log.info(
            "firmware campaign #%d by %s: %d chargers matching %r, %d at a time",
            campaign.id,
            actor,
            len(matching),
            pattern,
            max_parallel,
        )
        self._wake.set()
        return campaign

    async def cancel(self, campaign_id: int, *, actor: str) -> store.Campaign:
        """Stop a campaign: the chargers not sent UpdateFirmware yet are cancelled and
        never will be. Those already sent it go on (OCPP 1.6 has no message that stops
        a firmware update once accepted) and are followed until they report a final
        status; the campaign is finished when they have.

        Raises:
            CommandError: NOT_FOUND (unknown campaign), NOT_ALLOWED (already finished).
        """
        campaign = await self._db.run(store.get_campaign, campaign_id)
        if campaign is None:
            raise CommandError(CommandErrorCode.NOT_FOUND, f"unknown campaign {campaign_id}")
        if campaign.finished_at is not None:
            raise CommandError(
                CommandErrorCode.NOT_ALLOWED, f"campaign {campaign_id} has already finished"
            )
        detail = f"cancelled by {actor}"
        cancelled = await self._db.run(
            lambda s: store.cancel_waiting(s, campaign_id, detail=detail, at=utc_now())
        )
        log.info(
            "firmware campaign #%d cancelled by %s: %d chargers not sent it",
            campaign_id,
            actor,
            len(cancelled),
        )
        for charger_id in cancelled:
            self._publish(
                Event.CAMPAIGN_PROGRESS,
                {
                    "campaign_id": campaign_id,
                    "charger_id": charger_id,
                    "state": TargetState.CANCELLED.value,
                    "detail": detail,
                },
            )
        self._wake.set()  # the round that finishes it, at once
        after = await self._db.run(store.get_campaign, campaign_id)
        assert after is not None
        return after

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self.step()
            except TransientStorageError:
                # The database is unavailable: its health report logs the outage once;
                # the next round picks up where this one stopped (issue 21 item 5).
                pass
            except Exception as exc:  # never the root nursery (issue 11.1)
                await self.guard.after_failure(exc, "running a round")
            else:
                self.guard.succeeded()
            with trio.move_on_after(self._settings.campaign_poll):
                await self._wake.wait()
            self._wake = trio.Event()

    async def step(self) -> None:
        """One round over every open campaign."""
        for campaign in await self._db.run(store.list_campaigns, open_only=True):
            await self._round(campaign)

    async def _round(self, campaign: store.Campaign) -> None:
        now = utc_now()
        plan = plan_round(
            [(t.charger_id, t.state, t.updated_at) for t in campaign.targets],
            max_parallel=campaign.max_parallel,
            connected={t.charger_id for t in campaign.targets if self._is_connected(t.charger_id)},
            now=now,
            started=now >= campaign.retrieve_at,
            timeout=timedelta(seconds=self._settings.campaign_target_timeout),
        )
        for charger_id in plan.timed_out:
            await self._move(
                campaign.id, charger_id, TargetState.TIMED_OUT, "no final status in time"
            )
        if plan.send:
            async with trio.open_nursery() as nursery:
                for charger_id in plan.send:
                    nursery.start_soon(self._send, campaign, charger_id)
        if plan.finished:
            await self._db.run(store.finish_campaign, campaign.id, utc_now())
            log.info("firmware campaign #%d finished", campaign.id)
            self._publish(Event.CAMPAIGN_FINISHED, {"campaign_id": campaign.id})

    async def _move(
        self,
        campaign_id: int,
        charger_id: str,
        state: TargetState,
        detail: str | None,
        *,
        only_from: TargetState | None = None,
    ) -> bool:
        moved = await self._db.run(
            lambda s: store.set_target(
                s, campaign_id, charger_id, state, detail=detail, at=utc_now(), only_from=only_from
            )
        )
        if moved:
            data = {"campaign_id": campaign_id, "charger_id": charger_id, "state": state.value}
            if detail:
                data["detail"] = detail
            self._publish(Event.CAMPAIGN_PROGRESS, data)
        return moved

    async def _send(self, campaign: store.Campaign, charger_id: str) -> None:
        # Marked sent first: the charger may report Downloading before its answer is
        # processed here, and that report must find the target in progress.
        if not await self._move(
            campaign.id, charger_id, TargetState.SENT, None, only_from=TargetState.WAITING
        ):
            return
        actor = f"campaign#{campaign.id}:{campaign.created_by}"
        try:
            command = await self._firmware.build_update(
                charger_id,
                location=campaign.location,
                file=None if campaign.file_id is None else str(campaign.file_id),
                retrieve_at=max(utc_now(), campaign.retrieve_at),
                retries=campaign.retries,
                retry_interval=campaign.retry_interval,
            )
            await self._firmware.commands.execute(charger_id, command, actor=actor)
        except CommandError as exc:
            if exc.code in (CommandErrorCode.OFFLINE, CommandErrorCode.BUSY):
                state, detail = TargetState.WAITING, None  # try again in a later round
            else:
                state, detail = TargetState.SEND_FAILED, f"{exc.code}: {exc.message}"
            await self._move(campaign.id, charger_id, state, detail, only_from=TargetState.SENT)
