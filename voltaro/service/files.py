"""Files Voltaro serves to chargers and receives from them, over its own HTTP server.

- Firmware images: an admin adds one (``voltaro ctl firmware add FILE``): it is copied
  under ``data_dir/firmware/`` with its size (``firmware_max_bytes``) and SHA-256. Each
  UpdateFirmware gets its own URL, ``{base}/files/firmware/{token}/{name}``: one charger,
  valid from the retrieve date for ``file_url_ttl`` and spent by the first complete
  download (an interrupted download does not spend it, so the charger's retries work).
- Uploads: each GetDiagnostics (and any other request for a file from a charger, e.g.
  the security extension's GetLog) gets an upload URL ``{base}/files/upload/{token}/``,
  for one upload (HTTP PUT or POST, raw or multipart/form-data) of at most
  ``upload_max_bytes``, stored under ``data_dir/uploads/{purpose}/``.

The token in the URL is the credential (a charger cannot send a bearer token); only its
SHA-256 is stored. ``base`` is ``http_public_base``, or the HTTP server's own address.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import trio

from voltaro.domain.commands import CommandError, CommandErrorCode
from voltaro.domain.timestamps import utc_now
from voltaro.settings import Settings
from voltaro.store import files as store
from voltaro.store.db import Database
from voltaro.store.files import NewFile, StoredFile

log = logging.getLogger(__name__)

FIRMWARE = "firmware"
CHUNK = 64 * 1024
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileError(Exception):
    """A file operation refused; ``code`` is a wire error code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def safe_name(name: str, default: str = "file") -> str:
    """A file name safe on disk and in a URL: no directories, only [A-Za-z0-9._-]."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    clean = _UNSAFE.sub("_", base).strip("._")[:100]
    return clean or default


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CopyResult:
    size: int
    sha256: str


def _copy_hashing(source: Path, target: Path, limit: int) -> CopyResult:
    """Copy ``source`` to ``target`` (a new file), hashing; refuse beyond ``limit``."""
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, target.open("xb") as dst:
        while chunk := src.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                raise FileError(
                    "bad_arguments",
                    f"{source} is larger than firmware_max_bytes ({limit} bytes)",
                )
            digest.update(chunk)
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return CopyResult(size=size, sha256=digest.hexdigest())


def _still_used(stored: StoredFile, uses: store.FileReferences) -> str:
    parts = []
    if uses.campaigns:
        ids = ", ".join(str(c) for c in uses.campaigns)
        parts.append(f"campaign {ids} (cancel it or let it finish)")
    if uses.downloads:
        chargers = ", ".join(c for c, _ in uses.downloads[:5])
        more = f" and {len(uses.downloads) - 5} more" if len(uses.downloads) > 5 else ""
        until = max(at for _, at in uses.downloads).strftime("%Y-%m-%dT%H:%M:%SZ")
        parts.append(
            f"a pending UpdateFirmware on {chargers}{more} (download URL valid until {until}; "
            "--force removes it anyway)"
        )
    return f"firmware #{stored.id} {stored.name} is still used by " + " and ".join(parts)


class FileTransfers:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.data_dir = Path(settings.data_dir).absolute()
        # The HTTP server's bound address, set once it listens (app.py).
        self.http_address: tuple[str, int] | None = None

    # --- URLs ---------------------------------------------------------------------

    def public_base(self) -> str:
        """The base URL chargers are given (no trailing slash).

        Raises:
            CommandError: BAD_ARGUMENTS when no URL a charger could reach can be built.
        """
        configured = self.settings.http_public_base.rstrip("/")
        if configured:
            return configured
        if self.http_address is None:
            raise CommandError(
                CommandErrorCode.BAD_ARGUMENTS,
                "Voltaro serves files over its HTTP server, which is not running "
                "(http_enabled = false): give a location URL",
            )
        host, port = self.http_address
        try:
            wildcard = ipaddress.ip_address(host).is_unspecified
        except ValueError:
            wildcard = False
        if wildcard:
            raise CommandError(
                CommandErrorCode.BAD_ARGUMENTS,
                f"the HTTP server listens on {host} (every address): set http_public_base "
                "to the URL chargers reach it at, e.g. http://192.0.2.10:8080",
            )
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    async def download_url(
        self, charger_id: str, stored: StoredFile, *, not_before: datetime | None = None
    ) -> str:
        token = await self._issue("download", FIRMWARE, charger_id, stored.id, not_before)
        return f"{self.public_base()}/files/firmware/{token}/{quote(stored.name)}"

    async def upload_url(self, charger_id: str, purpose: str) -> str:
        """A one-upload URL for ``charger_id``; ``purpose`` names what is expected
        (diagnostics, securitylog, ...) and the directory it is stored in."""
        token = await self._issue("upload", safe_name(purpose), charger_id, None, None)
        return f"{self.public_base()}/files/upload/{token}/"

    async def _issue(
        self,
        direction: str,
        purpose: str,
        charger_id: str,
        file_id: int | None,
        not_before: datetime | None,
    ) -> str:
        base = self.public_base()  # fail before a token is stored
        del base
        now = utc_now()
        token = secrets.token_urlsafe(24)
        start = max(now, not_before) if not_before is not None else now
        await self.db.run(
            store.issue_token,
            token_hash=hash_token(token),
            direction=direction,
            purpose=purpose,
            charger_id=charger_id,
            file_id=file_id,
            created_at=now,
            expires_at=start + timedelta(seconds=self.settings.file_url_ttl),
        )
        return token

    # --- Firmware images --------------------------------------------------------------

    async def find_firmware(self, ref: str) -> StoredFile:
        found = await self.db.run(store.find_file, FIRMWARE, ref)
        if found is None:
            raise CommandError(
                CommandErrorCode.BAD_ARGUMENTS,
                f"no firmware {ref!r}: add it with `voltaro ctl firmware add FILE` "
                "(`voltaro ctl firmware list` shows what there is)",
            )
        return found

    async def add_firmware(
        self, source: str, *, name: str | None, sha256: str | None, actor: str
    ) -> StoredFile:
        """Copy an image into the data directory (read by the server's own user).

        ``sha256``: what the caller computed; a copy that differs (the file changed while
        it was read) is refused.
        """
        path = Path(source)
        if not path.is_absolute():
            raise FileError("bad_arguments", "the firmware file must be an absolute path")
        shown = safe_name(name or path.name, "firmware.bin")
        directory = self.data_dir / FIRMWARE
        target = directory / f"{secrets.token_hex(6)}-{shown}"
        limit = self.settings.firmware_max_bytes

        def copy() -> CopyResult:
            directory.mkdir(parents=True, exist_ok=True)
            try:
                if not path.is_file():
                    raise FileError("bad_arguments", f"{source} is not a file")
                return _copy_hashing(path, target, limit)
            except FileError:
                target.unlink(missing_ok=True)
                raise
            except OSError as exc:
                target.unlink(missing_ok=True)
                raise FileError(
                    "bad_arguments", f"cannot copy {source}: {exc.strerror or exc}"
                ) from None

        result = await trio.to_thread.run_sync(copy)
        if sha256 is not None and sha256.lower() != result.sha256:
            target.unlink(missing_ok=True)
            raise FileError(
                "conflict", f"{source} changed while it was copied (SHA-256 differs): retry"
            )
        return await self._record_firmware(target, shown, result.size, result.sha256, actor)

    async def add_firmware_stream(
        self,
        chunks: AsyncIterable[bytes],
        *,
        name: str,
        sha256: str | None,
        actor: str,
    ) -> StoredFile:
        """Keep an image sent over HTTP (``POST /firmware``): streamed to
        ``firmware/.incoming/`` (never held in memory), at most ``firmware_max_bytes``,
        moved into place and listed only when complete and, with ``sha256``, equal to
        what the sender computed. Anything else leaves nothing behind.

        Raises:
            FileError: too_large, bad_arguments (empty), conflict (SHA-256 differs),
            disk_full.
        """
        shown = safe_name(name, "firmware.bin")
        directory = self.data_dir / FIRMWARE
        incoming = directory / ".incoming" / secrets.token_hex(8)
        limit = self.settings.firmware_max_bytes
        digest = hashlib.sha256()
        size = 0
        try:
            # data_dir_max_bytes is met like a full disk, as for charger uploads.
            room = await trio.to_thread.run_sync(self.room)
            await trio.to_thread.run_sync(
                lambda: incoming.parent.mkdir(parents=True, exist_ok=True)
            )
            async with await trio.open_file(incoming, "xb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise FileError(
                            "too_large", f"firmware images are limited to {limit} bytes"
                        )
                    if room is not None and size > room:
                        raise OSError(errno.ENOSPC, "data_dir_max_bytes reached")
                    digest.update(chunk)
                    await out.write(chunk)
                await out.flush()
                await trio.to_thread.run_sync(os.fsync, out.fileno())
            if size == 0:
                raise FileError("bad_arguments", "the request body (the image) is empty")
            if sha256 is not None and sha256.lower() != digest.hexdigest():
                raise FileError(
                    "conflict",
                    f"the image received has SHA-256 {digest.hexdigest()}, not {sha256}",
                )
            target = directory / f"{secrets.token_hex(6)}-{shown}"
            await trio.to_thread.run_sync(self.move, incoming, target)
        except OSError as exc:
            self.discard(incoming)
            if exc.errno in DISK_FULL:
                log.error("firmware upload by %s refused: disk full (%s)", actor, exc)
                raise FileError("disk_full", "the server has no room for this image") from None
            raise
        except BaseException:
            self.discard(incoming)  # refused, or the client went away: nothing kept
            raise
        return await self._record_firmware(target, shown, size, digest.hexdigest(), actor)

    async def _record_firmware(
        self, target: Path, shown: str, size: int, sha256: str, actor: str
    ) -> StoredFile:
        stored = await self.db.run(
            store.add_file,
            NewFile(
                kind=FIRMWARE,
                name=shown,
                path=str(target.relative_to(self.data_dir)),
                size=size,
                sha256=sha256,
                charger_id=None,
                created_by=actor,
                created_at=utc_now(),
            ),
        )
        log.info(
            "firmware #%d %s added by %s: %d bytes, sha256 %s",
            stored.id,
            stored.name,
            actor,
            stored.size,
            stored.sha256,
        )
        return stored

    async def remove_firmware(self, ref: str, *, actor: str, force: bool = False) -> StoredFile:
        """Forget an image and delete its bytes. Refused while an unfinished campaign uses
        it, or (unless ``force``) while a charger holds a download URL for it that is
        neither spent nor expired: its UpdateFirmware is still pending.

        Raises:
            FileError: not_found, conflict (what still uses it).
        """
        stored = await self.db.run(store.find_file, FIRMWARE, ref)
        if stored is None:
            raise FileError("not_found", f"no firmware {ref!r} (`voltaro ctl firmware list`)")
        result = await self.db.run(
            lambda s: store.remove_unless_used(s, stored.id, utc_now(), force=force)
        )
        if result is None:
            raise FileError("not_found", f"no firmware {ref!r}")
        if isinstance(result, store.FileReferences):
            raise FileError("conflict", _still_used(stored, result))
        await trio.to_thread.run_sync(self.discard, self.path_of(result))
        log.info("firmware #%d %s removed by %s", result.id, result.name, actor)
        return result

    def path_of(self, stored: StoredFile) -> Path:
        return self.data_dir / stored.path

    def room(self) -> int | None:
        """Bytes uploads may still add under ``data_dir_max_bytes`` (None: no quota).
        Blocking (walks data_dir): run it in a worker thread."""
        quota = self.settings.data_dir_max_bytes
        if quota <= 0:
            return None
        used = 0
        for path in self.data_dir.rglob("*"):
            try:
                if path.is_file():
                    used += path.stat().st_size
            except OSError:
                continue  # removed while we looked
        return max(0, quota - used)

    def upload_directory(self, purpose: str) -> Path:
        return self.data_dir / "uploads" / safe_name(purpose)

    def discard(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            log.warning("could not remove %s", path)

    def move(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
