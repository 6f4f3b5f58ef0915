"""Encoding screen rectangles for one RFB client: Raw, Hextile, Zlib, ZRLE and Tight.

The client lists the encodings it accepts, most preferred first; we use the
first of Tight, ZRLE, Zlib, Hextile and Raw it names (Raw when it names none).
Tight (`tight`) is the compact one: fills, palettes, zlib and, when allowed,
JPEG.  ZRLE is zlib over 64x64 tiles; Zlib is Raw through one zlib stream;
Hextile suits clients without zlib.  ZRLE and Hextile send a one-colour tile
as one pixel and every other tile as it is.

The client's CompressLevel pseudo-encoding (0-9) is zlib's level: for Tight
at once (its streams are restarted), for ZRLE and Zlib from the start of their
one stream (Python's zlib cannot change a stream's level).  Its QualityLevel
(0-9) turns JPEG on, but only where the display allows lossy encoding.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from enum import IntEnum
from typing import Any

from xend_vfb.rfb.pixels import NATIVE, PixelFormat, Translator, gatherRect, rectRows
from xend_vfb.rfb.tight import TightEncoder

__all__ = ["Encoding", "RectEncoder", "RECT_HEADER"]

RECT_HEADER = struct.Struct("!HHHHi")
_LENGTH = struct.Struct("!I")
_SCREENS = struct.Struct("!B3x")  # ExtendedDesktopSize: number of screens
_SCREEN = struct.Struct("!IHHHHI")  # id, x, y, width, height, flags
_ZLIB_LEVEL = 1  # fast; level 6 costs several times the CPU for a few percent


class Encoding(IntEnum):
    """RFB encoding numbers (RFC 6143 7.7, 7.8) this server knows."""

    RAW = 0
    HEXTILE = 5
    ZLIB = 6
    TIGHT = 7
    ZRLE = 16
    LAST_RECT = -224
    DESKTOP_SIZE = -223
    QEMU_EXTENDED_KEY_EVENT = -258
    QEMU_LED_STATE = -261
    EXTENDED_DESKTOP_SIZE = -308
    #: Power control from the viewer (shutdown, reboot, reset).
    XVP = -309
    #: Pseudo-encodings -32 .. -23: JPEG quality level 0-9 (Tight).
    QUALITY_LEVEL_0 = -32
    #: Pseudo-encodings -256 .. -247: compression level 0-9.
    COMPRESS_LEVEL_0 = -256


_PIXEL_ENCODINGS = (Encoding.TIGHT, Encoding.ZRLE, Encoding.ZLIB, Encoding.HEXTILE, Encoding.RAW)

_HEXTILE_RAW = b"\x01"
_HEXTILE_BACKGROUND = 2
_HEXTILE_SAME_BACKGROUND = b"\x00"
_ZRLE_RAW = b"\x00"
_ZRLE_SOLID = b"\x01"


def _tiles(
    pixels: memoryview, width: int, translator: Translator,
    x: int, y: int, w: int, h: int, size: int,
) -> Iterator[tuple[bytes, int]]:
    """Translated tiles of a rectangle, left to right then top to bottom, with pixel counts."""
    bpp = translator.pixelSize
    rowBytes = w * bpp
    for ty in range(y, y + h, size):
        th = min(size, y + h - ty)
        band = translator.translate(gatherRect(pixels, width, x, ty, w, th))
        for tx in range(0, w, size):
            tw = min(size, w - tx)
            start, end = tx * bpp, (tx + tw) * bpp
            tile = b"".join([band[r * rowBytes + start : r * rowBytes + end] for r in range(th)])
            yield tile, tw * th


class RectEncoder:
    """What one client accepts (encodings, pixel format), and rectangles encoded for it."""

    def __init__(self, lossyAllowed: bool = False) -> None:
        self.encoding = Encoding.RAW
        #: Whether the client takes a new screen size (DesktopSize or ExtendedDesktopSize).
        self.desktopSize = False
        self.extendedDesktopSize = False
        #: Every encoding and pseudo-encoding the client listed.
        self.accepted: frozenset[int] = frozenset()
        self.pixelFormat = NATIVE
        #: Whether JPEG may be used at all (the display's setting).
        self.lossyAllowed = lossyAllowed
        #: The client's QualityLevel (0-9), None when it sent none.
        self.quality: int | None = None
        self.compressLevel = _ZLIB_LEVEL
        self._translators: dict[Encoding, Translator] = {}
        # One zlib stream each for the connection's whole life, as ZRLE and Zlib require;
        # made at first use, with the compression level asked by then.
        self._zrleStream: Any = None
        self._zlibStream: Any = None
        self._tight = TightEncoder(self.pixelFormat)

    def setEncodings(self, encodings: Iterable[int]) -> None:
        """Take a client's SetEncodings list (most preferred first)."""
        listed = list(encodings)
        self.accepted = frozenset(listed)
        self.extendedDesktopSize = Encoding.EXTENDED_DESKTOP_SIZE in listed
        self.desktopSize = self.extendedDesktopSize or Encoding.DESKTOP_SIZE in listed
        self.encoding = next((Encoding(e) for e in listed if e in _PIXEL_ENCODINGS), Encoding.RAW)
        self.quality = next((e - Encoding.QUALITY_LEVEL_0 for e in listed
                             if 0 <= e - Encoding.QUALITY_LEVEL_0 <= 9), None)
        level = next((e - Encoding.COMPRESS_LEVEL_0 for e in listed
                      if 0 <= e - Encoding.COMPRESS_LEVEL_0 <= 9), None)
        if level is not None:
            self.compressLevel = level
            self._tight.setCompressLevel(level)

    def setPixelFormat(self, pf: PixelFormat) -> None:
        """Take a client's SetPixelFormat."""
        self.pixelFormat = pf
        self._translators.clear()
        self._tight.setPixelFormat(pf)

    @property
    def jpegQuality(self) -> int | None:
        """The JPEG quality level to use now, or None for lossless only."""
        if not self.lossyAllowed or self.encoding != Encoding.TIGHT:
            return None
        return self.quality

    def _translator(self) -> Translator:
        translator = self._translators.get(self.encoding)
        if translator is None:
            wire = self.pixelFormat.compactPixelBytes() if self.encoding == Encoding.ZRLE else None
            translator = self._translators[self.encoding] = Translator(self.pixelFormat, wire)
        return translator

    def encode(
        self, pixels: memoryview, width: int, x: int, y: int, w: int, h: int,
        lossless: bool = False,
    ) -> tuple[int, list[bytes | memoryview], bool]:
        """One rectangle of the screen (pixels, width): (how many RFB rectangles, their
        chunks with headers, to be joined at once, whether any is lossy).

        `lossless` forbids JPEG for this rectangle (a refresh of a lossy area).  In the
        screen's own format, Raw data is views of the screen's rows: the one copy is the
        caller's join, made before the screen can change.
        """
        if self.encoding == Encoding.TIGHT:
            quality = None if lossless else self.jpegQuality
            count, tight, lossy = self._tight.encode(pixels, width, x, y, w, h, quality)
            return count, list(tight), lossy
        header = RECT_HEADER.pack(x, y, w, h, self.encoding)
        translator = self._translator()
        if self.encoding == Encoding.ZRLE:
            return 1, [header, *self._zrle(pixels, width, translator, x, y, w, h)], False
        if self.encoding == Encoding.HEXTILE:
            return 1, [header, *self._hextile(pixels, width, translator, x, y, w, h)], False
        if self.encoding == Encoding.ZLIB:
            if self._zlibStream is None:
                self._zlibStream = zlib.compressobj(self.compressLevel)
            raw = translator.translate(gatherRect(pixels, width, x, y, w, h))
            data = self._zlibStream.compress(raw) + self._zlibStream.flush(zlib.Z_SYNC_FLUSH)
            return 1, [header, _LENGTH.pack(len(data)), data], False
        if translator.identity:
            return 1, [header, *rectRows(pixels, width, x, y, w, h)], False
        return 1, [header, translator.translate(gatherRect(pixels, width, x, y, w, h))], False

    def _hextile(self, pixels: memoryview, width: int, translator: Translator,
                 x: int, y: int, w: int, h: int) -> list[bytes]:
        out = []
        background = None
        bpp = translator.pixelSize
        for tile, count in _tiles(pixels, width, translator, x, y, w, h, 16):
            first = tile[:bpp]
            if tile != first * count:
                out += (_HEXTILE_RAW, tile)
                background = None  # undefined after a raw tile
            elif first == background:
                out.append(_HEXTILE_SAME_BACKGROUND)
            else:
                out.append(bytes((_HEXTILE_BACKGROUND,)) + first)
                background = first
        return out

    def _zrle(self, pixels: memoryview, width: int, translator: Translator,
              x: int, y: int, w: int, h: int) -> list[bytes]:
        parts = []
        bpp = translator.pixelSize
        for tile, count in _tiles(pixels, width, translator, x, y, w, h, 64):
            first = tile[:bpp]
            if tile == first * count:
                parts += (_ZRLE_SOLID, first)
            else:
                parts += (_ZRLE_RAW, tile)
        if self._zrleStream is None:
            self._zrleStream = zlib.compressobj(self.compressLevel)
        stream = self._zrleStream
        data = stream.compress(b"".join(parts)) + stream.flush(zlib.Z_SYNC_FLUSH)
        return [_LENGTH.pack(len(data)), data]

    def pseudoRect(self, encoding: Encoding, width: int = 0, height: int = 0) -> bytes:
        """A pseudo-rectangle without data (e.g. QEMU's extended key event acknowledgement)."""
        return RECT_HEADER.pack(0, 0, width, height, encoding)

    def desktopSizeRect(self, width: int, height: int, reason: int = 0, status: int = 0) -> bytes:
        """The pseudo-rectangle announcing the screen size: ExtendedDesktopSize (with why,
        whether a client's request failed, and the one screen) if the client takes it,
        DesktopSize otherwise."""
        if not self.extendedDesktopSize:
            return RECT_HEADER.pack(0, 0, width, height, Encoding.DESKTOP_SIZE)
        return (RECT_HEADER.pack(reason, status, width, height, Encoding.EXTENDED_DESKTOP_SIZE)
                + _SCREENS.pack(1) + _SCREEN.pack(0, 0, 0, width, height, 0))
