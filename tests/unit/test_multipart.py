"""The streaming multipart/form-data reader used for charger uploads (RFC 7578)."""

from __future__ import annotations

import pytest

from voltaro.api.multipart import MultipartError, MultipartFile, boundary_of

BOUNDARY = "----voltaro-test-7d3"
CONTENT = b"line one\r\n--not-a-boundary\r\n" + bytes(range(256)) * 8 + b"\r\n-- end"


def form(content: bytes = CONTENT, *, with_field: bool = True) -> bytes:
    parts = [b"preamble to ignore\r\n"]
    if with_field:
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'.encode()
        )
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="diag CP-1.zip"\r\nContent-Type: application/zip\r\n\r\n'.encode()
    )
    parts.append(content)
    parts.append(f"\r\n--{BOUNDARY}--\r\nepilogue".encode())
    return b"".join(parts)


def read_all(body: bytes, step: int) -> tuple[bytes, MultipartFile]:
    reader = MultipartFile(boundary_of(f"multipart/form-data; boundary={BOUNDARY}"))
    out = b"".join(b"".join(reader.feed(body[i : i + step])) for i in range(0, len(body), step))
    reader.finish()
    return out, reader


@pytest.mark.parametrize("step", [1, 2, 3, 7, 31, 64, 1000, 100000])
def test_the_file_part_whatever_the_chunking(step: int) -> None:
    out, reader = read_all(form(), step)
    assert out == CONTENT
    assert reader.filename == "diag CP-1.zip"


def test_quoted_boundary_and_empty_file() -> None:
    assert boundary_of(f'multipart/form-data; boundary="{BOUNDARY}"') == BOUNDARY.encode()
    out, _ = read_all(form(b"", with_field=False), 5)
    assert out == b""


def test_errors() -> None:
    with pytest.raises(MultipartError):
        boundary_of("multipart/form-data")
    reader = MultipartFile(BOUNDARY.encode())
    reader.feed(form()[:100])
    with pytest.raises(MultipartError, match="ended early"):
        reader.finish()
    no_file = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n--{BOUNDARY}--'
    reader = MultipartFile(BOUNDARY.encode())
    assert reader.feed(no_file.encode()) == []
    with pytest.raises(MultipartError, match="no file"):
        reader.finish()
    reader = MultipartFile(BOUNDARY.encode())
    with pytest.raises(MultipartError, match="malformed"):
        reader.feed(f"--{BOUNDARY}XX".encode())
