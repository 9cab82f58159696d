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

import trio

from voltaro.domain.commands import (
    CommandError,
    CommandErrorCode,
    CommandOutcome,
    GetDiagnostics,
    GetLog,
    LogType,
    SignedUpdateFirmware,
    UpdateFirmware,
    check_signature,
)
from voltaro.domain.firmware import TransferKind
from voltaro.domain.timestamps import utc_now
from voltaro.service.commands import CommandService
from voltaro.service.files import FileTransfers
from voltaro.service.firmware_signing import (
    SigningError,
    load_certificate,
    sign_image,
    verify_image,
)
from voltaro.store import firmware
from voltaro.store.files import StoredFile

# Where each log type is stored (data_dir/uploads/<purpose>/) and listed (its kind).
LOG_PURPOSES = {LogType.DIAGNOSTICS_LOG: "diagnosticslog", LogType.SECURITY_LOG: "securitylog"}
LOG_KINDS = tuple(LOG_PURPOSES.values())


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
        location, served = await self._upload_to(charger_id, location, "diagnostics")
        command = GetDiagnostics(
            location=location,
            retries=retries,
            retry_interval=retry_interval,
            start_time=start_time,
            stop_time=stop_time,
            served=served,
        )
        return await self._commands.execute(charger_id, command, actor=actor)

    async def _upload_to(
        self, charger_id: str, location: str | None, purpose: str
    ) -> tuple[str, str | None]:
        """Where the charger uploads: ``location`` as given, or (None) a one-time upload
        URL of this server for ``purpose`` (data_dir/uploads/<purpose>/), with what the
        command's ``served`` says of it."""
        if location is not None:
            return location, None
        url = await self._require_files().upload_url(charger_id, purpose)
        return url, f"Voltaro {purpose} upload"

    # --- The 1.6 security extension: GetLog and SignedUpdateFirmware -----------------

    async def _request_id(
        self, charger_id: str, kind: TransferKind, detail: str, actor: str
    ) -> int:
        return await self._commands.database.run(
            firmware.new_request,
            charger_id=charger_id,
            kind=kind,
            detail=detail,
            created_by=actor,
            created_at=utc_now(),
        )

    async def get_log(
        self,
        charger_id: str,
        *,
        actor: str,
        log_type: LogType,
        location: str | None = None,
        oldest: datetime | None = None,
        latest: datetime | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> CommandOutcome:
        """GetLog to ``location``, or (none given) to a one-time upload URL of this server;
        the log is then listed by ``logs list`` (kind diagnosticslog or securitylog).
        The answer's details carry the requestId the LogStatusNotifications refer to."""
        location, served = await self._upload_to(charger_id, location, LOG_PURPOSES[log_type])
        command = GetLog(
            log_type=log_type,
            request_id=await self._request_id(charger_id, TransferKind.LOG, log_type.value, actor),
            remote_location=location,
            oldest_timestamp=oldest,
            latest_timestamp=latest,
            retries=retries,
            retry_interval=retry_interval,
            served=served,
        )
        return await self._commands.execute(charger_id, command, actor=actor)

    async def signed_update(
        self,
        charger_id: str,
        *,
        actor: str,
        signing_certificate: str,
        signature: str | None = None,
        private_key: str | None = None,
        location: str | None = None,
        file: str | None = None,
        retrieve_at: datetime | None = None,
        install_at: datetime | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> CommandOutcome:
        """SignedUpdateFirmware of an image at ``location`` or one this server serves.

        The signature is given (base64), or computed here from ``private_key`` (PEM),
        which needs an image this server serves. For a served image a given signature is
        checked first: one the charger would answer InvalidSignature to is not sent.
        The key is used once and kept nowhere (not in the audit, the log or the store).
        """
        if (signature is None) == (private_key is None):
            raise _bad("give either a signature (base64) or a signing key to compute it")
        if signature is not None:
            check_signature(signature)
        try:
            load_certificate(signing_certificate)  # a clear error before anything is issued
        except SigningError as exc:
            raise _bad(str(exc)) from None
        if private_key is not None and file is None:
            raise _bad(
                "Voltaro signs only firmware it serves (--file): for a --location, "
                "give the --signature"
            )
        base = await self.build_update(
            charger_id,
            location=location,
            file=file,
            retrieve_at=retrieve_at,
            retries=retries,
            retry_interval=retry_interval,
        )
        if file is not None:
            path = self.files_path(await self._require_files().find_firmware(file))
            signature = await trio.to_thread.run_sync(
                self._signature_for, path, signing_certificate, signature, private_key
            )
        assert signature is not None
        command = SignedUpdateFirmware(
            request_id=await self._request_id(
                charger_id, TransferKind.SIGNED_FIRMWARE, base.served or base.location, actor
            ),
            location=base.location,
            retrieve_date=base.retrieve_date,
            install_date=install_at,
            signing_certificate=signing_certificate,
            signature=signature,
            retries=retries,
            retry_interval=retry_interval,
            served=base.served,
        )
        return await self._commands.execute(charger_id, command, actor=actor)

    @staticmethod
    def _signature_for(
        path: Path, certificate: str, signature: str | None, private_key: str | None
    ) -> str:
        try:
            if private_key is not None:
                return sign_image(path, private_key, certificate)
            assert signature is not None
            if not verify_image(path, certificate, signature):
                raise _bad(
                    "the signature does not verify against the signing certificate for "
                    "this image: the charger would report InvalidSignature (not sent)"
                )
            return signature
        except SigningError as exc:
            raise _bad(str(exc)) from None

    def _require_files(self) -> FileTransfers:
        if self._files is None:
            raise _bad(
                "Voltaro serves files over its HTTP server, which is off "
                "(http_enabled = false): give a location URL"
            )
        return self._files
