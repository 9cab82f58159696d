"""A streaming reader of one file out of a multipart/form-data body (RFC 7578).

Chargers upload diagnostics either as a raw body or as a form with one file field; the
body is never held in memory: ``feed`` returns the file's bytes as they arrive.
"""

from __future__ import annotations

import re

MAX_HEADER_BYTES = 16 * 1024
_FILENAME = re.compile(r'filename\*?=(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


class MultipartError(ValueError):
    pass


def boundary_of(content_type: str) -> bytes:
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise MultipartError("multipart/form-data without a boundary")
    value = match.group(1) or match.group(2)
    if not value or len(value) > 200:
        raise MultipartError("bad multipart boundary")
    return value.encode("latin-1")


class MultipartFile:
    """Yields the content of the first part that carries a filename; others are skipped."""

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"\r\n--" + boundary
        # The first delimiter has no CRLF before it: pretend it had.
        self._buffer = b"\r\n"
        self._state = "preamble"
        self._target = False
        self.filename: str | None = None
        self.found = False

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        delimiter = self._delimiter
        while True:
            if self._state in ("preamble", "body"):
                index = self._buffer.find(delimiter)
                if index < 0:
                    keep = len(delimiter) - 1
                    safe = len(self._buffer) - keep
                    if safe > 0:
                        if self._state == "body" and self._target:
                            out.append(self._buffer[:safe])
                        self._buffer = self._buffer[safe:]
                    return out
                if self._state == "body" and self._target:
                    out.append(self._buffer[:index])
                    self._target = False
                self._buffer = self._buffer[index + len(delimiter) :]
                self._state = "after"
            elif self._state == "after":
                if len(self._buffer) < 2:
                    return out
                head, self._buffer = self._buffer[:2], self._buffer[2:]
                if head == b"--":
                    self._state = "end"
                elif head == b"\r\n":
                    self._state = "headers"
                else:
                    raise MultipartError("malformed multipart body")
            elif self._state == "headers":
                index = self._buffer.find(b"\r\n\r\n")
                if index < 0:
                    if len(self._buffer) > MAX_HEADER_BYTES:
                        raise MultipartError("multipart part headers too long")
                    return out
                headers = self._buffer[:index].decode("latin-1")
                self._buffer = self._buffer[index + 4 :]
                name = None
                for line in headers.split("\r\n"):
                    key, _, value = line.partition(":")
                    if key.strip().lower() == "content-disposition":
                        match = _FILENAME.search(value)
                        if match is not None:
                            name = match.group(1) or match.group(2) or ""
                self._target = name is not None and not self.found
                if self._target:
                    self.found = True
                    self.filename = name
                self._state = "body"
            else:  # end: the epilogue is ignored
                self._buffer = b""
                return out

    def finish(self) -> None:
        if self._state != "end":
            raise MultipartError("the multipart body ended early")
        if not self.found:
            raise MultipartError("no file in the multipart form")
