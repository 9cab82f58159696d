"""UpdateFirmware and GetDiagnostics for operators (OCPP 1.6 §5.9, §5.19).

Both go through the CommandService (checks, audit, routing) like every Core command.
What this adds is where the file lives: an operator's URL (HTTP, HTTPS, FTP, FTPS, passed
through unchanged), a firmware image Voltaro serves itself, or an upload URL Voltaro
hands out for the diagnostics file (service/files.py builds those, one token per
charger and request).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from voltaro.domain.commands import (
    CommandError,
    CommandErrorCode,
    CommandOutcome,
    GetDiagnostics,
    UpdateFirmware,
)
from voltaro.domain.timestamps import utc_now
from voltaro.service.commands import CommandService
from voltaro.service.files import FileTransfers
from voltaro.store.files import StoredFile


def _bad(message: str) -> CommandError:
    return CommandError(CommandErrorCode.BAD_ARGUMENTS, message)


class FirmwareService:
    def __init__(self, commands: CommandService, files: FileTransfers | None = None) -> None:
        self._commands = commands
        self._files = files

    @property
    def files(self) -> FileTransfers | None:
        return self._files

    @property
    def commands(self) -> CommandService:
        return self._commands

    def files_path(self, stored: StoredFile) -> Path:
        return self._require_files().path_of(stored)

    async def build_update(
        self,
        charger_id: str,
        *,
        location: str | None = None,
        file: str | None = None,
        retrieve_at: datetime | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> UpdateFirmware:
        """The UpdateFirmware for one charger: with a fresh download URL when the firmware
        is a file Voltaro serves (one token per charger and command)."""
        if (location is None) == (file is None):
            raise _bad("give either a location (URL) or a firmware file Voltaro serves")
        at = retrieve_at or utc_now()
        served = None
        if file is not None:
            files = self._require_files()
            stored = await files.find_firmware(file)
            location = await files.download_url(charger_id, stored, not_before=at)
            served = f"firmware #{stored.id} {stored.name}"
        assert location is not None
        return UpdateFirmware(
            location=location,
            retrieve_date=at,
            retries=retries,
            retry_interval=retry_interval,
            served=served,
        )

    async def update(
        self,
        charger_id: str,
        *,
        actor: str,
        location: str | None = None,
        file: str | None = None,
        retrieve_at: datetime | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> CommandOutcome:
        command = await self.build_update(
            charger_id,
            location=location,
            file=file,
            retrieve_at=retrieve_at,
            retries=retries,
            retry_interval=retry_interval,
        )
        return await self._commands.execute(charger_id, command, actor=actor)

    async def diagnostics(
        self,
        charger_id: str,
        *,
        actor: str,
        location: str | None = None,
        start_time: datetime | None = None,
        stop_time: datetime | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> CommandOutcome:
        """GetDiagnostics to ``location``, or (none given) to an upload URL of this server."""
        served = None
        if location is None:
            location = await self._require_files().upload_url(charger_id, "diagnostics")
            served = "Voltaro diagnostics upload"
        command = GetDiagnostics(
            location=location,
            retries=retries,
            retry_interval=retry_interval,
            start_time=start_time,
            stop_time=stop_time,
            served=served,
        )
        return await self._commands.execute(charger_id, command, actor=actor)

    def _require_files(self) -> FileTransfers:
        if self._files is None:
            raise _bad(
                "Voltaro serves files over its HTTP server, which is off "
                "(http_enabled = false): give a location URL"
            )
        return self._files
