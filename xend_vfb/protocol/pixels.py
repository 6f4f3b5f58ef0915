"""Guest framebuffer pixels to the backend's XRGB8888 screen copy.

The backend keeps its own copy of the screen, always XRGB8888 little-endian
(bytes B, G, R, 0; stride ``width * 4``), whatever depth the guest draws in,
so the display side deals with one format.  Guest formats, as QEMU's xenfb
backend reads them (Linux's xen-fbfront itself only ever uses depth 32):

- 32: XRGB8888 little-endian (B, G, R, X); the X byte is dropped (set to 0).
- 24: packed 3-byte pixels B, G, R (the value 0xRRGGBB little-endian).
- 16: RGB565 little-endian.
- 8: RGB332 (red in bits 7-5, green 4-2, blue 1-0).

Narrow channels are scaled to 8 bits with rounding (5-bit 31 → 255), so
white stays white.  No per-pixel Python: rows are gathered with memoryview
slices and channels moved with extended-slice assignment, ``bytes.translate``
and, for RGB565's green (split across both bytes), one big-integer OR.
"""

from __future__ import annotations

from collections.abc import Callable

from xend_vfb.protocol.ring import Page

__all__ = ["readRect", "copyRect"]


def _table(f: Callable[[int], int]) -> bytes:
    """A ``bytes.translate`` table: byte ``v`` becomes ``f(v)``."""
    return bytes(f(v) for v in range(256))


def _scale(value: int, bits: int) -> int:
    """A ``bits``-wide channel scaled to 0..255, rounded to nearest."""
    top = (1 << bits) - 1
    return (value * 255 + top // 2) // top


# RGB332: one table per channel, indexed by the pixel byte.
_R332 = _table(lambda p: _scale(p >> 5, 3))
_G332 = _table(lambda p: _scale((p >> 2) & 7, 3))
_B332 = _table(lambda p: _scale(p & 3, 2))
# RGB565: lo = GGGBBBBB, hi = RRRRRGGG.  Green's 6 bits come from both bytes,
# in disjoint positions, so it is put together with one OR of big integers.
_B565 = _table(lambda lo: _scale(lo & 0x1F, 5))
_R565 = _table(lambda hi: _scale(hi >> 3, 5))
_G565_HI = _table(lambda hi: (hi & 7) << 3)
_G565_LO = _table(lambda lo: lo >> 5)
_G6 = _table(lambda g: _scale(g & 0x3F, 6))


def _toXrgb(packed: bytearray, depth: int) -> bytearray:
    """Convert contiguous guest pixels (already copied out of guest memory) to XRGB8888;
    depth 32 is converted in place."""
    if depth == 32:
        packed[3::4] = bytes(len(packed) // 4)
        return packed
    count = len(packed) * 8 // depth
    out = bytearray(count * 4)
    if depth == 24:
        out[0::4] = packed[0::3]
        out[1::4] = packed[1::3]
        out[2::4] = packed[2::3]
    elif depth == 16:
        lo, hi = packed[0::2], packed[1::2]
        out[0::4] = lo.translate(_B565)
        green = int.from_bytes(hi.translate(_G565_HI), "little") | int.from_bytes(
            lo.translate(_G565_LO), "little"
        )
        out[1::4] = green.to_bytes(count, "little").translate(_G6)
        out[2::4] = hi.translate(_R565)
    else:
        out[0::4] = packed.translate(_B332)
        out[1::4] = packed.translate(_G332)
        out[2::4] = packed.translate(_R332)
    return out


def readRect(
    src: Page | bytes,
    src_stride: int,
    src_depth: int,
    src_offset: int,
    x: int,
    y: int,
    w: int,
    h: int,
) -> bytearray:
    """The guest's rectangle (x, y, w, h) as XRGB8888, stride ``w * 4``, in a new buffer.

    Guest memory is read once, row by row, into bytes of our own; everything
    after works on that copy.  The geometry must already be validated
    (`fbif.Geometry`, `fbif.clipUpdate`): this function trusts it, checking
    nothing, to stay fast for full frames.
    """
    if w <= 0 or h <= 0:
        return bytearray()
    bpp = src_depth // 8
    row_bytes = w * bpp
    start = src_offset + y * src_stride + x * bpp
    with memoryview(src) as view:
        if src_stride == row_bytes:  # whole rows: one slice
            packed = bytearray(view[start : start + h * row_bytes])
        else:
            packed = bytearray().join(
                view[row : row + row_bytes]
                for row in range(start, start + h * src_stride, src_stride)
            )
    return _toXrgb(packed, src_depth)


def copyRect(
    src: Page | bytes,
    src_stride: int,
    src_depth: int,
    src_offset: int,
    dst: bytearray,
    dst_width: int,
    x: int,
    y: int,
    w: int,
    h: int,
) -> None:
    """Copy the guest's rectangle (x, y, w, h) into the same place of the XRGB8888 ``dst``
    (`readRect`, then written into ``dst``)."""
    if w <= 0 or h <= 0:
        return
    out = readRect(src, src_stride, src_depth, src_offset, x, y, w, h)
    dst_stride, out_stride = dst_width * 4, w * 4
    first = y * dst_stride + x * 4
    if out_stride == dst_stride:
        dst[first : first + h * dst_stride] = out
        return
    with memoryview(out) as rows:
        for r in range(h):
            at = first + r * dst_stride
            dst[at : at + out_stride] = rows[r * out_stride : (r + 1) * out_stride]
