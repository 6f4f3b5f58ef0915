"""Tight encoding (RFB encoding 7): fills, palettes, zlib streams and JPEG.

What goes on the wire (the RFB protocol community specification, "Tight"):
each rectangle starts with a compression-control byte.  Its low four bits ask
the client to reset zlib streams 0-3; its high four bits say what follows:
``8`` a fill (one colour), ``9`` a JPEG image, otherwise "basic" compression
with bits 4-5 the zlib stream and bit 6 "a filter id follows" (filter 1 is a
palette: 2 colours as one bit per pixel, rows padded to a byte; up to 256 as
one byte per pixel).  Data shorter than 12 bytes goes as it is; longer data
is zlib-compressed in its stream, flushed, and preceded by its length in 1-3
bytes (7 bits each, least significant first).  Colours are TPIXELs: R, G, B
bytes when the client's format is 32 bits of depth 24 with 8-bit channels,
its own pixel format otherwise.  A rectangle is at most 2048 pixels wide.

How we use it: a rectangle is read in bands of 64 rows, and each band split
into runs of identical rows (found by halving it, a bytes comparison each) and
the mixed rows between them.  A run is classified and converted from its first
row alone, by bytes operations, and its data repeated; it goes on across bands
(colour bars, ramps, borders and blank areas are one rectangle high).  Mixed
rows with more colours than a tile's palette but at most 256 (a console's
antialiased text) are one palette; otherwise they are cut into 64-pixel tiles
classified with Pillow's `getcolors` (C): one colour, a few (a palette), or
many.  Neighbouring tiles of the same colour become one fill, neighbouring
palettes one palette while their colours fit, and neighbouring many-colour
tiles one rectangle.  Photo-like many-colour tiles (most pixels of the band's
first rows of a colour of their own) stay one rectangle each, in stream 3,
compressed with Huffman codes only: zlib's string matching finds next to
nothing there, and codes fitted to each tile compress better than one band's.
Stream 0 carries other full colour, 1 two-colour palettes, 2 larger ones.

Nothing is done per pixel in Python: Pillow maps the bands in place
(`getcolors`, the R, G, B bytes that are Tight's TPIXELs, JPEG).  The padding
byte of the screen's pixels is no colour (colours found that differ only there
are one), but rows or tiles differing only there are not found identical.
Palette indices: when one channel tells the colours apart (greys, ramps), its
bytes are mapped to the index by `bytes.translate`; otherwise each channel's
bytes are mapped to the rank of their value among the palette's values for that
channel, the three ranks combined into one number by big-integer arithmetic
whose per-byte results never carry, and that number mapped to the palette index
by a last `translate`.  This needs the product of the three channels' distinct
value counts to stay under 256; otherwise the piece goes as full colour.  Two
colours of one row are bits by `int(..., 2)`.
"""

from __future__ import annotations

import io
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

from PIL import Image

from xend_vfb.display.screen import BYTES_PER_PIXEL
from xend_vfb.rfb.pixels import PixelFormat, Translator, gatherRect

__all__ = ["TightEncoder", "MAX_WIDTH", "JPEG_QUALITIES"]

MAX_WIDTH = 2048
_TILE = 64
_MIN_TO_COMPRESS = 12
_FILL, _JPEG = 0x80, 0x90
_FILTER = 0x40
_PALETTE_FILTER = 1
_FULL_STREAM, _MONO_STREAM, _INDEXED_STREAM, _PHOTO_STREAM = 0, 1, 2, 3
_SAMPLE_ROWS = 8
_MIN_SPAN = 8
#: The most rows of a run in one rectangle: its data (up to 2048 x 4 bytes a row, sent
#: uncompressed at CompressLevel 0) must stay under the 4 MB a compact length can say.
_MAX_RUN = 256
_MAX_PALETTE = 256
#: JPEG quality for each client QualityLevel 0-9.
JPEG_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 88, 95)
_RGB_888 = PixelFormat(24, 24, True, True, 255, 255, 255, 16, 8, 0)  # bytes R, G, B


def compactLength(n: int) -> bytes:
    """Tight's 1-3 byte length: 7 bits per byte, least significant first."""
    out = bytearray([n & 0x7F])
    if n > 0x7F:
        out[0] |= 0x80
        out.append((n >> 7) & 0x7F)
        if n > 0x3FFF:
            out[1] |= 0x80
            out.append((n >> 14) & 0xFF)
    return bytes(out)


def tightPixelFormat(pf: PixelFormat) -> PixelFormat:
    """The format of TPIXELs for a client using `pf`."""
    if (pf.trueColour and pf.bitsPerPixel == 32 and pf.depth == 24
            and pf.redMax == pf.greenMax == pf.blueMax == 255):
        return _RGB_888
    return pf


@dataclass(frozen=True)
class _Piece:
    """Part of a band of tiles: `kind` is 'fill', 'palette', 'full' or 'photo'."""

    kind: str
    x: int  # in the band
    w: int
    colours: tuple[tuple[int, int, int], ...] = ()


class TightEncoder:
    """Tight rectangles for one client: its four zlib streams, levels and pixel format."""

    def __init__(self, pf: PixelFormat) -> None:
        self._streams: list[zlib._Compress | None] = [None] * 4
        self._level = 1
        self._reset = 0  # streams the next rectangles using them ask the client to reset
        self.setPixelFormat(pf)

    def setPixelFormat(self, pf: PixelFormat) -> None:
        """Take a client's new pixel format."""
        self._pf = pf
        self._translator = Translator(tightPixelFormat(pf))
        self._rgb = tightPixelFormat(pf) == _RGB_888
        # JPEG only with 16 or 32 bits per pixel (the Tight specification's rule).
        self.jpegPossible = pf.trueColour and pf.bitsPerPixel in (16, 32)

    def setCompressLevel(self, level: int) -> None:
        """CompressLevel 0-9: zlib's level from then on; the streams are restarted with it."""
        if level != self._level:
            self._level = level
            for stream in range(4):
                if self._streams[stream] is not None:
                    self._streams[stream] = None
                    self._reset |= 1 << stream

    def _maxColours(self) -> int:
        # A larger palette is worth its analysis when the client asks for more compression.
        return 16 if self._level >= 4 else 8

    def encode(
        self, pixels: memoryview, width: int, x: int, y: int, w: int, h: int,
        jpegQuality: int | None,
    ) -> tuple[int, list[bytes], bool]:
        """The rectangle as Tight rectangles: (count, chunks with headers, whether lossy)."""
        rowBytes = w * BYTES_PER_PIXEL
        out: list[bytes] = []
        lossy = False
        # Identical rows (bars, ramps, borders, blank lines) are classified and converted
        # from their first row only, whose result is repeated; a run goes on across bands.
        run: tuple[int, int, bytes] | None = None  # top, rows, the row
        for ty in range(y, y + h, _TILE):
            th = min(_TILE, y + h - ty)
            data = gatherRect(pixels, width, x, ty, w, th)
            for top, rows, identical in _spans(data, rowBytes, 0, th):
                start = top * rowBytes
                if identical:
                    row = data[start : start + rowBytes]
                    if run is not None and run[2] == row and run[1] + rows <= _MAX_RUN:
                        run = (run[0], run[1] + rows, row)
                        continue
                if run is not None:
                    lossy |= self._encodeSpan(out, run[2], 1, x, run[0], w, run[1], jpegQuality)
                    run = None
                if identical:
                    run = (ty + top, rows, row)
                else:
                    part = data[start : start + rows * rowBytes]
                    lossy |= self._encodeSpan(out, part, rows, x, ty + top, w, rows, jpegQuality)
        if run is not None:
            lossy |= self._encodeSpan(out, run[2], 1, x, run[0], w, run[1], jpegQuality)
        return len(out) // 2, out, lossy

    def _encodeSpan(
        self, out: list[bytes], part: bytes, mapped: int, x: int, y: int, w: int, h: int,
        jpegQuality: int | None,
    ) -> bool:
        """Rows y to y+h as Tight rectangles (header, body) appended to `out`; `part`
        holds `mapped` of them (all, or the first when they are identical).  Whether any
        is lossy."""
        from xend_vfb.rfb.encodings import RECT_HEADER, Encoding

        jpeg = jpegQuality is not None and self.jpegPossible
        band = Image.frombuffer("RGBX", (w, mapped), part, "raw", "RGBX", 0, 1)
        lossy = False
        for piece in self._pieces(band, part[: w * BYTES_PER_PIXEL], jpeg):
            if mapped == 1:
                bgrx = part[piece.x * BYTES_PER_PIXEL : (piece.x + piece.w) * BYTES_PER_PIXEL]
            elif piece.w == w:
                bgrx = part
            else:
                bgrx = band.crop((piece.x, 0, piece.x + piece.w, mapped)).tobytes()
            body, pieceLossy = self._encodePiece(bgrx, mapped, h, piece, jpegQuality)
            out += (RECT_HEADER.pack(x + piece.x, y, piece.w, h, Encoding.TIGHT), body)
            lossy |= pieceLossy
        return lossy

    def _pieces(self, band: Image.Image, row: bytes, jpeg: bool) -> Iterator[_Piece]:
        """A band as one palette when it has more colours than a tile's palette but at
        most 256 (a console's antialiased text), else its tiles classified, neighbours of
        the same kind merged (fewer colours: fills and small palettes compress better).
        A band of one row repeated (bars, ramps) is classified by the bytes of its
        first row, `row`."""
        maxColours = self._maxColours()
        w, rows = band.size
        if rows > 1 and w <= MAX_WIDTH:
            found = band.getcolors(_MAX_PALETTE)
            if found is not None and len(found) > maxColours:
                yield _fromColours(found, 0, w)
                return
        # Full colour is photo-like by the band's first rows, looked at once, if at all;
        # repeated rows never are.
        photo = None if rows > 1 and not jpeg else False
        current: _Piece | None = None
        for tx in range(0, w, _TILE):
            tw = min(_TILE, w - tx)
            if rows == 1:
                piece = _rowPiece(row[tx * BYTES_PER_PIXEL : (tx + tw) * BYTES_PER_PIXEL], tx,
                                  maxColours)
            else:
                piece = _classified(band.crop((tx, 0, tx + tw, rows)), tx, maxColours)
                if piece.kind == "full":
                    if photo is None:
                        photo = _photoLike(band)
                    if photo:
                        piece = _Piece("photo", tx, tw)
            merged = _merged(current, piece, maxColours) if current is not None else None
            if merged is not None:
                current = merged
                continue
            if current is not None:
                yield current
            current = piece
        if current is not None:
            yield current

    def _encodePiece(
        self, bgrx: bytes, mapped: int, th: int, piece: _Piece, jpegQuality: int | None
    ) -> tuple[bytes, bool]:
        """One piece `th` rows high; `bgrx` holds `mapped` rows of its pixels as the screen
        has them (B, G, R, X): all its rows, or only the first when they are all the same."""
        repeat = th // mapped
        if piece.kind == "fill":
            return bytes((_FILL | self._takeReset(),)) + self._tpixels(piece.colours), False
        if piece.kind == "full" and jpegQuality is not None and self.jpegPossible:
            out = io.BytesIO()
            quality = JPEG_QUALITIES[jpegQuality]
            rgb = Image.frombytes("RGB", (piece.w, th), _rgb(bgrx, piece.w, mapped) * repeat)
            rgb.save(out, "JPEG", quality=quality, subsampling=0 if quality >= 88 else 2)
            data = out.getvalue()
            return bytes((_JPEG | self._takeReset(),)) + compactLength(len(data)) + data, True
        if piece.kind == "palette":
            indices = _paletteIndices(bgrx, piece.w, mapped, piece.colours)
            if indices is not None:
                stream = _MONO_STREAM if len(piece.colours) == 2 else _INDEXED_STREAM
                control = bytes((
                    (stream << 4) | _FILTER | self._takeReset(),
                    _PALETTE_FILTER,
                    len(piece.colours) - 1,
                ))
                return control + self._tpixels(piece.colours) + self._compressed(
                    stream, indices * repeat), False
        if self._rgb:
            data = _rgb(bgrx, piece.w, mapped)  # R, G, B: the TPIXELs themselves
        else:
            data = self._translator.translate(bgrx)
        stream = _PHOTO_STREAM if piece.kind == "photo" else _FULL_STREAM
        control = bytes(((stream << 4) | self._takeReset(),))
        return control + self._compressed(stream, data * repeat), False

    def _takeReset(self) -> int:
        """The reset bits to send now: all pending ones go with the next rectangle."""
        bits, self._reset = self._reset, 0
        return bits

    def _tpixels(self, colours: tuple[tuple[int, int, int], ...]) -> bytes:
        if self._rgb:
            return bytes(chain.from_iterable(colours))
        return self._translator.translate(b"".join(bytes((b, g, r, 0)) for r, g, b in colours))

    def _compressed(self, stream: int, data: bytes) -> bytes:
        if len(data) < _MIN_TO_COMPRESS:
            return data
        compressor = self._streams[stream]
        if compressor is None:
            strategy = zlib.Z_HUFFMAN_ONLY if stream == _PHOTO_STREAM else zlib.Z_DEFAULT_STRATEGY
            compressor = zlib.compressobj(self._level, zlib.DEFLATED, 15, 8, strategy)
            self._streams[stream] = compressor
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return compactLength(len(out)) + out


def _spans(data: bytes, rowBytes: int, top: int, rows: int) -> list[tuple[int, int, bool]]:
    """Rows `top` to `top + rows` of `data` as spans (top, rows, whether all identical):
    runs of identical rows found by halving, down to `_MIN_SPAN` rows; mixed neighbours
    are one span again.  Each test is one bytes comparison, in C."""
    start = top * rowBytes
    if data[start : start + rowBytes] * rows == data[start : start + rows * rowBytes]:
        return [(top, rows, True)]
    if rows < 2 * _MIN_SPAN:
        return [(top, rows, False)] if (runs := _twoRuns(data, rowBytes, top, rows)) is None \
            else [(runTop, runRows, True) for runTop, runRows in runs]
    half = rows // 2
    spans: list[tuple[int, int, bool]] = []
    for span in _spans(data, rowBytes, top, half) + _spans(data, rowBytes, top + half,
                                                           rows - half):
        if spans and not spans[-1][2] and not span[2]:
            spans[-1] = (spans[-1][0], spans[-1][1] + span[1], False)
        else:
            spans.append(span)
    return spans


def _twoRuns(data: bytes, rowBytes: int, top: int, rows: int) -> list[tuple[int, int]] | None:
    """Rows `top` to `top + rows` as two runs of identical rows (a boundary between
    bars or ramps), or None: row by row, given up at the third run."""
    runs = [(top, 1)]
    for row in range(top + 1, top + rows):
        at = row * rowBytes
        if data[at : at + rowBytes] == data[at - rowBytes : at]:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        elif len(runs) == 2:
            return None
        else:
            runs.append((row, 1))
    return runs


def _rowPiece(bgrx: bytes, x: int, maxColours: int) -> _Piece:
    """`_classified` for a tile one row high, by bytes operations alone."""
    w = len(bgrx) // BYTES_PER_PIXEL
    if bgrx == bgrx[:BYTES_PER_PIXEL] * w:
        return _Piece("fill", x, w, ((bgrx[2], bgrx[1], bgrx[0]),))
    values = set(memoryview(bgrx).cast("I"))
    if len(values) > maxColours:
        return _Piece("full", x, w)
    found = [(0, tuple(v.to_bytes(BYTES_PER_PIXEL, sys.byteorder))) for v in values]
    return _fromColours(found, x, w)


def _rgb(bgrx: bytes, w: int, h: int) -> bytes:
    """Pixels as R, G, B bytes."""
    return Image.frombuffer("RGBX", (w, h), bgrx, "raw", "RGBX", 0, 1).tobytes("raw", "BGR")


def _classified(tile: Image.Image, x: int, maxColours: int) -> _Piece:
    """A tile (B, G, R, X) as a fill, a palette of at most `maxColours`, or full colour.
    The padding byte is no colour: colours differing only there are one."""
    found = tile.getcolors(maxColours)
    if found is None:
        return _Piece("full", x, tile.width)
    return _fromColours(found, x, tile.width)


def _fromColours(found: list[tuple[int, tuple[int, ...]]], x: int, w: int) -> _Piece:
    """A fill or palette piece of the colours `getcolors` found, padding bytes ignored."""
    colours = tuple(sorted({(r, g, b) for _, (b, g, r, _x) in found}))
    return _Piece("fill" if len(colours) == 1 else "palette", x, w, colours)


def _photoLike(band: Image.Image) -> bool:
    """Whether most pixels of the band's first rows have a colour of their own: then
    zlib's string matching finds next to nothing, and Huffman coding alone compresses
    as well at a fraction of the time."""
    sample = band.crop((0, 0, band.width, min(_SAMPLE_ROWS, band.height)))
    return sample.getcolors(sample.width * sample.height // 2) is None


def _merged(a: _Piece, b: _Piece, maxColours: int) -> _Piece | None:
    """`a` and the piece right of it as one, when that costs nothing: the same colour, both
    full colour, or palettes whose union still fits (two-colour ones stay two-colour).
    Photo-like tiles stay apart: Huffman codes fitted to each tile's colours compress
    them better than codes for a whole band."""
    if a.kind != b.kind or a.kind == "photo" or a.w + b.w > MAX_WIDTH:
        return None
    colours = a.colours
    if a.kind == "fill" and a.colours != b.colours:
        return None
    if a.kind == "palette":
        colours = tuple(sorted(set(a.colours) | set(b.colours)))
        if len(colours) > maxColours or (len(colours) > 2 and 2 in (len(a.colours),
                                                                    len(b.colours))):
            return None
    return _Piece(a.kind, a.x, a.w + b.w, colours)


def _paletteIndices(bgrx: bytes, w: int, h: int, colours: tuple[tuple[int, int, int], ...]
                    ) -> bytes | None:
    """Each pixel's index in `colours` (1 bit per pixel, rows padded, for two colours).
    Channel c (R, G, B) of the pixels is every fourth byte from 2 - c."""
    if len(colours) == 2:
        (r0, g0, b0), (r1, g1, b1) = colours
        channel, value = next(
            (c, v1) for c, v0, v1 in ((0, r0, r1), (1, g0, g1), (2, b0, b1)) if v0 != v1
        )
        lane = bgrx[2 - channel :: 4]
        if h == 1:  # the bits as the digits of one binary number
            table = bytearray(b"0" * 256)
            table[value] = ord("1")
            bits = int(lane.translate(table), 2) << (-w % 8)
            return bits.to_bytes((w + 7) // 8, "big")
        table = bytearray(256)
        table[value] = 255
        return Image.frombytes("L", (w, h), lane.translate(table)).convert(
            "1", dither=Image.Dither.NONE).tobytes()
    for channel in range(3):  # one channel tells the colours apart (greys, ramps): one lookup
        values = [c[channel] for c in colours]
        if len(set(values)) == len(values):
            table = bytearray(256)
            for index, value in enumerate(values):
                table[value] = index
            return bgrx[2 - channel :: 4].translate(table)
    ranks = [{v: i for i, v in enumerate(sorted({c[p] for c in colours}))} for p in range(3)]
    nr, ng, nb = (len(rank) for rank in ranks)
    if nr * ng * nb > 256:
        return None
    key = 0
    for channel, (rank, weight) in enumerate(zip(ranks, (ng * nb, nb, 1), strict=True)):
        table = bytearray(256)
        for value, r in rank.items():
            table[value] = r
        key += int.from_bytes(bgrx[2 - channel :: 4].translate(table), "little") * weight
    toIndex = bytearray(256)
    for index, (r, g, b) in enumerate(colours):
        toIndex[(ranks[0][r] * ng + ranks[1][g]) * nb + ranks[2][b]] = index
    return key.to_bytes(w * h, "little").translate(toIndex)
