"""Line charts as small PNG files in pure Python (zlib and struct): the load demo's plot
without a plotting library as a dependency.

A Canvas is a palette image (one byte per pixel, at most 256 colours): lines of any
width (dashed or not), filled rectangles and text in a 5x7 bitmap font (upper case,
digits and a few signs; scaled by whole numbers). ``chart`` draws one panel: axes with
ticks and labels, series of (x, y) points and a legend. ``Canvas.png`` encodes it
(PNG colour type 3, filter 0 per row, zlib level 9): a white chart of a few thin lines
is some tens of KB at 1000 x 1000.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

# 5x7 glyphs, rows top to bottom, "1" is ink. Lower case is drawn as upper case.
_GLYPHS = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    ";": "00000 01100 01100 00000 01100 00100 01000",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "%": "11000 11001 00010 00100 01000 10011 00011",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "<": "00010 00100 01000 10000 01000 00100 00010",
    ">": "01000 00100 00010 00001 00010 00100 01000",
    "[": "01110 01000 01000 01000 01000 01000 01110",
    "]": "01110 00010 00010 00010 00010 00010 01110",
    "'": "00100 00100 01000 00000 00000 00000 00000",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}
GLYPH_W, GLYPH_H = 5, 7


def _bits(rows: str) -> list[list[bool]]:
    return [[c == "1" for c in row] for row in rows.split()]


_FONT = {ch: _bits(rows) for ch, rows in _GLYPHS.items()}


def text_width(text: str, scale: int = 1) -> int:
    return len(text) * (GLYPH_W + 1) * scale


class Canvas:
    def __init__(self, width: int, height: int, palette: Sequence[tuple[int, int, int]]) -> None:
        if not 1 <= len(palette) <= 256:
            raise ValueError("a palette has 1 to 256 colours")
        self.width, self.height = width, height
        self.palette = list(palette)
        self.pixels = bytearray(width * height)  # colour 0 everywhere: the background

    def pixel(self, x: int, y: int, colour: int) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            self.pixels[y * self.width + x] = colour

    def rect(self, x0: int, y0: int, x1: int, y1: int, colour: int) -> None:
        """Fill [x0, x1] x [y0, y1] (inclusive, clipped)."""
        x0, x1 = max(0, min(x0, x1)), min(self.width - 1, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.height - 1, max(y0, y1))
        if x0 > x1:
            return
        run = bytes([colour]) * (x1 - x0 + 1)
        for y in range(y0, y1 + 1):
            start = y * self.width + x0
            self.pixels[start : start + len(run)] = run

    def line(
        self, x0: float, y0: float, x1: float, y1: float, colour: int, width: int = 1, dash: int = 0
    ) -> None:
        """A straight line, ``width`` pixels thick; ``dash`` > 0: on and off that long."""
        steps = max(1, math.ceil(max(abs(x1 - x0), abs(y1 - y0))))
        half = (width - 1) // 2
        for i in range(steps + 1):
            if dash and (i // dash) % 2:
                continue
            x = round(x0 + (x1 - x0) * i / steps)
            y = round(y0 + (y1 - y0) * i / steps)
            if width == 1:
                self.pixel(x, y, colour)
            else:
                self.rect(x - half, y - half, x - half + width - 1, y - half + width - 1, colour)

    def text(self, x: int, y: int, text: str, colour: int, scale: int = 1) -> None:
        """``text`` with its top left corner at (x, y); unknown characters as '?'."""
        for i, ch in enumerate(text.upper()):
            glyph = _FONT.get(ch, _FONT["?"])
            left = x + i * (GLYPH_W + 1) * scale
            for row, bits in enumerate(glyph):
                for col, ink in enumerate(bits):
                    if ink:
                        self.rect(
                            left + col * scale,
                            y + row * scale,
                            left + col * scale + scale - 1,
                            y + row * scale + scale - 1,
                            colour,
                        )

    def png(self) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        raw = bytearray()
        for y in range(self.height):
            raw.append(0)  # filter: none
            raw += self.pixels[y * self.width : (y + 1) * self.width]
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 3, 0, 0, 0)
        palette = b"".join(bytes(rgb) for rgb in self.palette)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"PLTE", palette)
            + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
            + chunk(b"IEND", b"")
        )


@dataclass(frozen=True)
class Series:
    label: str
    colour: int
    points: Sequence[tuple[float, float]]
    width: int = 1
    dash: int = 0
    step: bool = False  # drawn as steps (a limit), not as straight segments


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    width: int
    height: int


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(1, ticks)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def chart(
    canvas: Canvas,
    box: Box,
    title: str,
    series: Sequence[Series],
    *,
    x_max: float,
    y_max: float,
    x_label: str,
    y_label: str,
    ink: int,
    grid: int,
) -> None:
    """One panel: title, axes with ticks, the series clipped to the box, a legend."""
    canvas.text(box.left, box.top, title, ink, scale=2)
    plot = Box(box.left + 40, box.top + 22, box.width - 50, box.height - 46)
    bottom = plot.top + plot.height

    def px(x: float) -> float:
        return plot.left + plot.width * min(max(x, 0.0), x_max) / x_max

    def py(y: float) -> float:
        return bottom - plot.height * min(max(y, 0.0), y_max) / y_max

    step = _nice_step(y_max, 5)
    value = 0.0
    while value <= y_max + 1e-9:
        y = round(py(value))
        canvas.line(plot.left, y, plot.left + plot.width, y, grid)
        label = f"{value:g}"
        canvas.text(plot.left - 6 - text_width(label), y - 3, label, ink)
        value += step
    x_step = _nice_step(x_max, 10)
    value = 0.0
    while value <= x_max + 1e-9:
        x = round(px(value))
        canvas.line(x, plot.top, x, bottom, grid)
        label = f"{value:g}"
        canvas.text(x - text_width(label) // 2, bottom + 5, label, ink)
        value += x_step
    canvas.text(plot.left + plot.width - text_width(x_label), bottom + 15, x_label, ink)
    if y_label:
        canvas.text(plot.left - 36, plot.top - 12, y_label, ink)
    canvas.line(plot.left, plot.top, plot.left, bottom, ink)
    canvas.line(plot.left, bottom, plot.left + plot.width, bottom, ink)
    for s in series:
        previous: tuple[float, float] | None = None
        for x, y in s.points:
            if previous is not None:
                if s.step:
                    canvas.line(
                        px(previous[0]),
                        py(previous[1]),
                        px(x),
                        py(previous[1]),
                        s.colour,
                        s.width,
                        s.dash,
                    )
                    canvas.line(px(x), py(previous[1]), px(x), py(y), s.colour, s.width, s.dash)
                else:
                    canvas.line(
                        px(previous[0]), py(previous[1]), px(x), py(y), s.colour, s.width, s.dash
                    )
            previous = (x, y)
    # The legend, right-aligned above the plot.
    right = plot.left + plot.width
    for s in reversed(series):
        width = text_width(s.label) + 22
        left = right - width
        canvas.line(left, plot.top - 8, left + 14, plot.top - 8, s.colour, max(2, s.width), s.dash)
        canvas.text(left + 18, plot.top - 11, s.label, ink)
        right = left - 12


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, palette indices) of a PNG this module wrote: for tests."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG")
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"bad CRC in {kind!r}")
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    if len(raw) != height * (width + 1):
        raise ValueError("pixel data does not match the size")
    rows = b"".join(raw[y * (width + 1) + 1 : (y + 1) * (width + 1)] for y in range(height))
    return width, height, rows
