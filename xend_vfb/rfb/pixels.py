"""RFB pixel formats, and fast translation from the screen's XRGB8888 into them.

A true-colour pixel value is ``(r * redMax // 255) << redShift | ...`` stored
in 1-4 bytes in either byte order.  Each byte of that value depends on the
source channels only through fixed 256-entry tables, so a whole rectangle is
translated one output byte lane at a time: extended slices pick a channel out
of the source (``src[2::4]`` is every red byte), `bytes.translate` maps it,
big-integer OR merges channels sharing a byte, and a slice assignment puts the
lane in place.  All of it runs in C: no per-pixel Python loop, for any format.
The screen's own format needs no translation at all.

Colour-map clients (true-colour flag 0, 8 bits per pixel) are given a fixed
BGR233 map, the classic choice, and then translated as true colour.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from xend_vfb.display.screen import BYTES_PER_PIXEL

__all__ = [
    "PixelFormat", "NATIVE", "Translator", "rectRows", "gatherRect", "colourMapEntries",
]

# Byte offset of each channel within a screen pixel (B, G, R, X in memory).
_BLUE, _GREEN, _RED = 0, 1, 2


@dataclass(frozen=True)
class PixelFormat:
    """RFB PIXEL_FORMAT (RFC 6143 7.4)."""

    bitsPerPixel: int
    depth: int
    bigEndian: bool
    trueColour: bool
    redMax: int
    greenMax: int
    blueMax: int
    redShift: int
    greenShift: int
    blueShift: int

    STRUCT: ClassVar[struct.Struct] = struct.Struct("!BB??HHHBBB3x")

    @classmethod
    def fromBytes(cls, data: bytes) -> PixelFormat:
        """Parse the 16-byte wire form; ValueError for one we cannot produce."""
        pf = cls(*cls.STRUCT.unpack(data))
        if pf.bitsPerPixel not in (8, 16, 24, 32):
            raise ValueError(f"unsupported bits-per-pixel {pf.bitsPerPixel}")
        if not pf.trueColour:
            if pf.bitsPerPixel != 8:
                raise ValueError("colour maps are supported with 8 bits per pixel only")
            return BGR233
        for maximum, shift in pf._channels():
            if maximum == 0 or shift >= pf.bitsPerPixel:
                raise ValueError(f"unusable colour channel (max {maximum}, shift {shift})")
        return pf

    def toBytes(self) -> bytes:
        """The 16-byte wire form."""
        return self.STRUCT.pack(
            self.bitsPerPixel, self.depth, self.bigEndian, self.trueColour, self.redMax,
            self.greenMax, self.blueMax, self.redShift, self.greenShift, self.blueShift,
        )

    @property
    def bytesPerPixel(self) -> int:
        """Bytes per pixel on the wire."""
        return self.bitsPerPixel // 8

    def _channels(self) -> tuple[tuple[int, int], ...]:
        return (
            (self.redMax, self.redShift),
            (self.greenMax, self.greenShift),
            (self.blueMax, self.blueShift),
        )

    def compactPixelBytes(self) -> tuple[int, ...]:
        """Which wire bytes of a pixel make up ZRLE's CPIXEL (RFC 6143 7.7.6)."""
        every = tuple(range(self.bytesPerPixel))
        if not (self.trueColour and self.bitsPerPixel == 32 and self.depth <= 24):
            return every
        values = [maximum << shift for maximum, shift in self._channels()]
        if all(value < 1 << 24 for value in values):
            low = 0  # the three least significant bytes
        elif all(shift >= 8 for _, shift in self._channels()):
            low = 1
        else:
            return every
        # Wire byte j holds value byte j (little-endian) or 3 - j (big-endian).
        return tuple(sorted(j if not self.bigEndian else 3 - j for j in range(low, low + 3)))


NATIVE = PixelFormat(32, 24, False, True, 255, 255, 255, 16, 8, 0)
"""The screen's own format (XRGB8888 little-endian), announced in ServerInit."""

BGR233 = PixelFormat(8, 8, False, False, 7, 7, 3, 0, 3, 6)
"""What a colour-map client gets; `colourMapEntries` describes its map."""


def colourMapEntries() -> list[tuple[int, int, int]]:
    """The 256 16-bit (r, g, b) colours of the map that makes BGR233 values true colour."""
    def scale(value: int, maximum: int) -> int:
        return value * 0xFFFF // maximum

    return [(scale(i & 7, 7), scale((i >> 3) & 7, 7), scale(i >> 6, 3)) for i in range(256)]


_Lane = tuple[tuple[int, bytes | None], ...]  # (source offset, table or None = identity)
_IDENTITY = bytes(range(256))


class Translator:
    """Translates packed XRGB8888 pixels to a pixel format (or some of its bytes)."""

    def __init__(self, pf: PixelFormat, wireBytes: tuple[int, ...] | None = None) -> None:
        size = pf.bytesPerPixel
        positions = wireBytes if wireBytes is not None else tuple(range(size))
        lanes: list[_Lane] = []
        for position in positions:
            valueByte = size - 1 - position if pf.bigEndian else position
            lane = []
            for offset, (maximum, shift) in zip((_RED, _GREEN, _BLUE), pf._channels(), strict=True):
                table = bytes(
                    (((v * maximum + 127) // 255) << shift >> (8 * valueByte)) & 0xFF
                    for v in range(256)
                )
                if any(table):
                    lane.append((offset, None if table == _IDENTITY else table))
            lanes.append(tuple(lane))
        self.pixelSize = len(positions)
        self._lanes = lanes
        # The screen's own layout (B, G, R, and an unused byte): copied as it is.
        self.identity = lanes == [((_BLUE, None),), ((_GREEN, None),), ((_RED, None),), ()]

    def translate(self, src: bytes) -> bytes:
        """Translate `src` (whole XRGB8888 pixels) into packed pixels of this format."""
        if self.identity:
            return src
        count = len(src) // BYTES_PER_PIXEL
        out = bytearray(count * self.pixelSize)
        for position, lane in enumerate(self._lanes):
            if not lane:
                continue
            if len(lane) == 1:
                offset, table = lane[0]
                data = src[offset::BYTES_PER_PIXEL]
                if table is not None:
                    data = data.translate(table)
            else:
                merged = 0
                for offset, table in lane:
                    channel = src[offset::BYTES_PER_PIXEL]
                    if table is not None:
                        channel = channel.translate(table)
                    merged |= int.from_bytes(channel, "little")
                data = merged.to_bytes(count, "little")
            out[position :: self.pixelSize] = data
        return bytes(out)


def rectRows(pixels: memoryview, width: int, x: int, y: int, w: int, h: int) -> list[memoryview]:
    """Views of a rectangle's rows in a screen's pixels (one view when rows are whole)."""
    stride = width * BYTES_PER_PIXEL
    if x == 0 and w == width:
        return [pixels[y * stride : (y + h) * stride]]
    start = x * BYTES_PER_PIXEL
    end = start + w * BYTES_PER_PIXEL
    return [pixels[row * stride + start : row * stride + end] for row in range(y, y + h)]


def gatherRect(pixels: memoryview, width: int, x: int, y: int, w: int, h: int) -> bytes:
    """Copy a rectangle out of a screen's pixels, rows packed together."""
    return b"".join(rectRows(pixels, width, x, y, w, h))
