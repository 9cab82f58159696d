"""Firmware downloads and charger uploads over the HTTP server (docs/firmware.md).

An ASGI middleware in front of the API: ``/files/...`` never reaches FastAPI or the
bearer-token guard (a charger has no API token: the URL token is its credential) and its
bodies are streamed to disk, never buffered, with their own size limit.

- ``GET|HEAD /files/firmware/{token}[/{name}]``: the firmware image of a download token.
  A complete download spends the token; an interrupted one does not.
- ``PUT|POST /files/upload/{token}[/{name}]``: one upload (raw body, or multipart/form-data
  with one file field), at most ``upload_max_bytes``.

Answers: 200/201, 404 unknown token, 410 used or expired, 405, 411 (none), 413 too
large, 400 malformed multipart, 503 too many transfers, 507 disk full.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, unquote

import trio

from voltaro.api.multipart import MultipartError, MultipartFile, boundary_of
from voltaro.domain.timestamps import utc_now
from voltaro.service.files import CHUNK, DISK_FULL, FileTransfers, hash_token, safe_name
from voltaro.store import files as store
from voltaro.store.files import NewFile, StoredFile, TokenGrant

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
OnUpload = Callable[[StoredFile], None]

PREFIX = "/files/"
MAX_TRANSFERS = 32


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Gone(Exception):
    """The client went away mid-request."""


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


_REASONS = {
    "unknown": (404, "not_found", "unknown file URL"),
    "used": (410, "gone", "this file URL was already used"),
    "expired": (410, "gone", "this file URL has expired"),
}


class FileTransferApp:
    def __init__(
        self,
        app: App,
        files: FileTransfers | None = None,
        *,
        on_upload: OnUpload | None = None,
        max_transfers: int = MAX_TRANSFERS,
    ) -> None:
        self._app = app
        self._files = files
        self._on_upload = on_upload
        self._max = max_transfers
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self._app(scope, receive, send)
            return
        if self._files is None:
            await _answer(send, 404, {"error": {"code": "not_found", "message": "no files"}})
            return
        if self.in_flight >= self._max:
            await _answer(
                send, 503, {"error": {"code": "busy", "message": "too many file transfers"}}
            )
            return
        self.in_flight += 1
        try:
            await self._route(self._files, scope, receive, send)
        except _Refused as exc:
            await _answer(send, exc.status, {"error": {"code": exc.code, "message": exc.message}})
        except _Gone:
            return
        finally:
            self.in_flight -= 1

    async def _route(
        self, files: FileTransfers, scope: Scope, receive: Receive, send: Send
    ) -> None:
        parts = scope["path"][len(PREFIX) :].split("/")
        kind, token = parts[0], parts[1] if len(parts) > 1 else ""
        name = unquote(parts[2]) if len(parts) > 2 and parts[2] else None
        method = scope["method"]
        if kind == "firmware" and token:
            if method not in ("GET", "HEAD"):
                raise _Refused(405, "method_not_allowed", "firmware is fetched with GET")
            await self._download(files, token, method == "HEAD", receive, send)
        elif kind == "upload" and token:
            if method not in ("PUT", "POST"):
                raise _Refused(405, "method_not_allowed", "upload with PUT or POST")
            await self._upload(files, token, name, scope, receive, send)
        else:
            raise _Refused(404, "not_found", "unknown file URL")

    async def _grant(self, files: FileTransfers, token: str, direction: str) -> TokenGrant:
        grant = await files.db.run(store.check_token, hash_token(token), direction, utc_now())
        if isinstance(grant, str):
            status, code, message = _REASONS[grant]
            raise _Refused(status, code, message)
        return grant

    # --- downloads ----------------------------------------------------------------------

    async def _download(
        self, files: FileTransfers, token: str, head: bool, receive: Receive, send: Send
    ) -> None:
        grant = await self._grant(files, token, "download")
        assert grant.file is not None
        stored = grant.file
        try:
            handle = await trio.open_file(files.path_of(stored), "rb")
        except OSError as exc:
            log.error("firmware #%d %s cannot be read: %s", stored.id, stored.path, exc)
            raise _Refused(500, "internal", "the firmware file is missing on the server") from None
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(stored.size).encode()),
            (b"content-disposition", f"attachment; filename={quote(stored.name)}".encode()),
            (b"x-checksum-sha256", stored.sha256.encode()),
        ]
        complete = False
        async with handle:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if head:
                await send({"type": "http.response.body", "body": b""})
                return
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    # The request is read to its end; what comes next is the disconnect.
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    if not complete:  # after the last byte, the end of the stream is fine
                        nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                sent = 0
                held = b""
                while True:
                    chunk = await handle.read(CHUNK)
                    if not chunk:
                        break
                    if held:
                        await send({"type": "http.response.body", "body": held, "more_body": True})
                        sent += len(held)
                    held = chunk
                # The last piece is held back until the URL is spent: a client that has
                # every byte can never find the URL still valid (one complete download).
                if sent + len(held) == stored.size:
                    await files.db.run(store.spend_token, hash_token(token), utc_now())
                    complete = True
                await send({"type": "http.response.body", "body": held})
                nursery.cancel_scope.cancel()
        if complete:
            log.info(
                "charger=%s downloaded firmware #%d %s (%d bytes)",
                grant.charger_id,
                stored.id,
                stored.name,
                stored.size,
            )
        else:
            log.warning(
                "charger=%s firmware #%d download interrupted; its URL stays valid",
                grant.charger_id,
                stored.id,
            )

    # --- uploads ------------------------------------------------------------------------

    async def _upload(
        self,
        files: FileTransfers,
        token: str,
        name: str | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        grant = await self._grant(files, token, "upload")
        limit = files.settings.upload_max_bytes
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise _Refused(413, "too_large", f"uploads are limited to {limit} bytes")
        content_type = headers.get("content-type", "")
        form: MultipartFile | None = None
        if content_type.lower().startswith("multipart/form-data"):
            try:
                form = MultipartFile(boundary_of(content_type))
            except MultipartError as exc:
                raise _Refused(400, "bad_request", str(exc)) from None
        # The quota (data_dir_max_bytes) is met like a full disk: the same answer (507)
        # and the same clean-up, so the test that fills it exercises both.
        room = await trio.to_thread.run_sync(files.room)
        if room is not None and length is not None and int(length) > room:
            log.error(
                "upload from charger=%s refused: data_dir_max_bytes reached (%s bytes, "
                "%d bytes of room)",
                grant.charger_id,
                length,
                room,
            )
            raise _Refused(507, "disk_full", "the server has no room for this file")
        directory = files.upload_directory(grant.purpose)
        incoming = directory / ".incoming" / secrets.token_hex(8)
        digest = hashlib.sha256()
        size = 0
        received = 0
        try:
            await trio.to_thread.run_sync(
                lambda: incoming.parent.mkdir(parents=True, exist_ok=True)
            )
            async with await trio.open_file(incoming, "xb") as out:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Gone
                    chunk = message.get("body", b"")
                    received += len(chunk)
                    if received > limit:
                        raise _Refused(413, "too_large", f"uploads are limited to {limit} bytes")
                    if room is not None and received > room:
                        raise OSError(errno.ENOSPC, "data_dir_max_bytes reached")
                    pieces = [chunk] if form is None else form.feed(chunk)
                    for piece in pieces:
                        if piece:
                            size += len(piece)
                            digest.update(piece)
                            await out.write(piece)
                    if not message.get("more_body", False):
                        break
                if form is not None:
                    form.finish()
                await out.flush()
        except MultipartError as exc:
            files.discard(incoming)
            raise _Refused(400, "bad_request", str(exc)) from None
        except OSError as exc:
            files.discard(incoming)
            if exc.errno in DISK_FULL:
                log.error("upload from charger=%s refused: disk full (%s)", grant.charger_id, exc)
                raise _Refused(507, "disk_full", "the server has no room for this file") from None
            log.error("upload from charger=%s failed: %s", grant.charger_id, exc)
            raise _Refused(500, "internal", "the upload could not be stored") from None
        except BaseException:
            files.discard(incoming)
            if received and scope.get("method"):
                log.warning(
                    "upload from charger=%s not stored (%d bytes received)",
                    grant.charger_id,
                    received,
                )
            raise
        shown = safe_name((form.filename if form is not None else None) or name or "", "")
        shown = shown or f"{grant.purpose}.bin"
        now = utc_now()
        final = (
            directory
            / safe_name(grant.charger_id, "charger")
            / f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}-{shown}"
        )
        await trio.to_thread.run_sync(files.move, incoming, final)
        stored = await files.db.run(
            store.complete_upload,
            hash_token(token),
            NewFile(
                kind=grant.purpose,
                name=shown,
                path=str(final.relative_to(files.data_dir)),
                size=size,
                sha256=digest.hexdigest(),
                charger_id=grant.charger_id,
                created_by=f"charger:{grant.charger_id}",
                created_at=now,
            ),
        )
        if stored is None:
            files.discard(final)
            raise _Refused(410, "gone", "this file URL was already used")
        log.info(
            "charger=%s uploaded %s #%d %s (%d bytes)",
            grant.charger_id,
            grant.purpose,
            stored.id,
            stored.name,
            stored.size,
        )
        if self._on_upload is not None:
            self._on_upload(stored)
        await _answer(
            send,
            201,
            {"id": stored.id, "name": stored.name, "size": stored.size, "sha256": stored.sha256},
        )
