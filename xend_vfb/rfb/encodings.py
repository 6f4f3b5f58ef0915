"""Encoding screen rectangles for one RFB client: Raw, Hextile and ZRLE.

The client lists the encodings it accepts, most preferred first; we use the
first of ZRLE, Hextile and Raw it names (Raw when it names none).  ZRLE is the
compact one (zlib over 64x64 tiles); Hextile suits clients without zlib.  Both
send a one-colour tile as one pixel and every other tile as it is: finding
sub-rectangles or palettes would need per-pixel Python work costing more than
it saves on the links a VNC display of a local guest uses, and ZRLE's zlib
already squeezes repeated content.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from enum import IntEnum

from xend_vfb.rfb.pixels import NATIVE, PixelFormat, Translator, gatherRect, rectRows

__all__ = ["Encoding", "RectEncoder", "RECT_HEADER"]

RECT_HEADER = struct.Struct("!HHHHi")
_LENGTH = struct.Struct("!I")
_ZLIB_LEVEL = 1  # fast; level 6 costs several times the CPU for a few percent


class Encoding(IntEnum):
    """RFB encoding numbers (RFC 6143 7.7, 7.8) this server knows."""

    RAW = 0
    HEXTILE = 5
    ZRLE = 16
    DESKTOP_SIZE = -223
    QEMU_EXTENDED_KEY_EVENT = -258


_PIXEL_ENCODINGS = (Encoding.ZRLE, Encoding.HEXTILE, Encoding.RAW)

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

    def __init__(self) -> None:
        self.encoding = Encoding.RAW
        self.desktopSize = False
        #: Every encoding and pseudo-encoding the client listed.
        self.accepted: frozenset[int] = frozenset()
        self.pixelFormat = NATIVE
        self._translators: dict[Encoding, Translator] = {}
        # One zlib stream for the connection's whole life, as ZRLE requires.
        self._zlib = zlib.compressobj(_ZLIB_LEVEL)

    def setEncodings(self, encodings: Iterable[int]) -> None:
        """Take a client's SetEncodings list (most preferred first)."""
        listed = list(encodings)
        self.accepted = frozenset(listed)
        self.desktopSize = Encoding.DESKTOP_SIZE in listed
        self.encoding = next((Encoding(e) for e in listed if e in _PIXEL_ENCODINGS), Encoding.RAW)

    def setPixelFormat(self, pf: PixelFormat) -> None:
        """Take a client's SetPixelFormat."""
        self.pixelFormat = pf
        self._translators.clear()

    def _translator(self) -> Translator:
        translator = self._translators.get(self.encoding)
        if translator is None:
            wire = self.pixelFormat.compactPixelBytes() if self.encoding == Encoding.ZRLE else None
            translator = self._translators[self.encoding] = Translator(self.pixelFormat, wire)
        return translator

    def encode(
        self, pixels: memoryview, width: int, x: int, y: int, w: int, h: int
    ) -> list[bytes | memoryview]:
        """One rectangle of the screen (pixels, width), with its header, to be joined at once.

        In the screen's own format, Raw data is views of the screen's rows: the one copy
        is the caller's join, made before the screen can change.
        """
        header = RECT_HEADER.pack(x, y, w, h, self.encoding)
        translator = self._translator()
        if self.encoding == Encoding.ZRLE:
            return [header, *self._zrle(pixels, width, translator, x, y, w, h)]
        if self.encoding == Encoding.HEXTILE:
            return [header, *self._hextile(pixels, width, translator, x, y, w, h)]
        if translator.identity:
            return [header, *rectRows(pixels, width, x, y, w, h)]
        return [header, translator.translate(gatherRect(pixels, width, x, y, w, h))]

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
        data = self._zlib.compress(b"".join(parts)) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        return [_LENGTH.pack(len(data)), data]

    def pseudoRect(self, encoding: Encoding, width: int = 0, height: int = 0) -> bytes:
        """A pseudo-rectangle without data (e.g. QEMU's extended key event acknowledgement)."""
        return RECT_HEADER.pack(0, 0, width, height, encoding)

    def desktopSizeRect(self, width: int, height: int) -> bytes:
        """The DesktopSize pseudo-rectangle announcing a new screen size."""
        return RECT_HEADER.pack(0, 0, width, height, Encoding.DESKTOP_SIZE)
