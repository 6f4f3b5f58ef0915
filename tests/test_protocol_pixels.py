"""Pixel conversion against a slow per-pixel reference."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from xend_vfb.protocol import fbif
from xend_vfb.protocol.pixels import copyRect


def scale(value: int, bits: int) -> int:
    top = (1 << bits) - 1
    return round(value * 255 / top)


def referencePixel(raw: bytes, depth: int) -> tuple[int, int, int]:
    """(r, g, b) of one guest pixel, the slow obvious way."""
    value = int.from_bytes(raw, "little")
    if depth in (24, 32):
        return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF
    if depth == 16:
        return scale(value >> 11, 5), scale((value >> 5) & 0x3F, 6), scale(value & 0x1F, 5)
    return scale(value >> 5, 3), scale((value >> 2) & 7, 3), scale(value & 3, 2)


def referenceCopy(src, geo: fbif.Geometry, dst: bytearray, dst_width, x, y, w, h) -> None:
    bpp = geo.depth // 8
    for row in range(y, y + h):
        for col in range(x, x + w):
            at = geo.offset + row * geo.stride + col * bpp
            r, g, b = referencePixel(src[at : at + bpp], geo.depth)
            out = (row * dst_width + col) * 4
            dst[out : out + 4] = bytes([b, g, r, 0])


@st.composite
def cases(draw):
    depth = draw(st.sampled_from([8, 16, 24, 32]))
    bpp = depth // 8
    width = draw(st.integers(1, 40))
    height = draw(st.integers(1, 12))
    stride = width * bpp + draw(st.integers(0, 9))
    offset = draw(st.integers(0, 50))
    mem_length = offset + stride * height + draw(st.integers(0, 20))
    geo = fbif.validateResize(fbif.ResizeEvent(width, height, stride, depth, offset), mem_length)
    assert (geo.width, geo.height) == (width, height)
    x = draw(st.integers(0, width - 1))
    y = draw(st.integers(0, height - 1))
    w = draw(st.integers(0, width - x))
    h = draw(st.integers(0, height - y))
    seed = draw(st.integers(0, 2**64))
    return geo, mem_length, (x, y, w, h), seed


@settings(max_examples=1500, deadline=None)
@given(case=cases())
def test_matchesReference(case):
    geo, mem_length, (x, y, w, h), seed = case
    rng = random.Random(seed)
    src = rng.randbytes(mem_length)
    screen = bytearray(rng.randbytes(geo.width * geo.height * 4))
    expected = bytearray(screen)
    referenceCopy(src, geo, expected, geo.width, x, y, w, h)
    copyRect(src, geo.stride, geo.depth, geo.offset, screen, geo.width, x, y, w, h)
    assert screen == expected


def test_fullFrameFromMemoryview():
    """The common case: Linux's 800x600x32 frame, from a memoryview of the mapping."""
    rng = random.Random(1)
    src = memoryview(bytearray(rng.randbytes(2 * 2**20)))
    screen = bytearray(800 * 600 * 4)
    copyRect(src, 3200, 32, 0, screen, 800, 0, 0, 800, 600)
    expected = bytearray(src[: 800 * 600 * 4])
    expected[3::4] = bytes(800 * 600)
    assert screen == expected


def test_whiteStaysWhite():
    for depth, pixel in [(8, b"\xff"), (16, b"\xff\xff"), (24, b"\xff" * 3), (32, b"\xff" * 4)]:
        screen = bytearray(4)
        copyRect(pixel, len(pixel), depth, 0, screen, 1, 0, 0, 1, 1)
        assert screen == b"\xff\xff\xff\x00", depth
