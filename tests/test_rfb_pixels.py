"""Pixel formats and their translation, against a pixel-by-pixel definition."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xend_vfb.rfb.pixels import NATIVE, PixelFormat, Translator, colourMapEntries, gatherRect


def reference(src: bytes, pf: PixelFormat, wire=None) -> bytes:
    out = bytearray()
    for i in range(0, len(src), 4):
        b, g, r = src[i], src[i + 1], src[i + 2]
        value = 0
        for channel, maximum, shift in ((r, pf.redMax, pf.redShift), (g, pf.greenMax,
                                        pf.greenShift), (b, pf.blueMax, pf.blueShift)):
            value |= ((channel * maximum + 127) // 255) << shift
        value &= (1 << pf.bitsPerPixel) - 1
        pixel = value.to_bytes(pf.bytesPerPixel, "big" if pf.bigEndian else "little")
        out += pixel if wire is None else bytes(pixel[j] for j in wire)
    return bytes(out)


@st.composite
def formats(draw):
    bits = draw(st.sampled_from([8, 16, 24, 32]))
    channels = []
    for _ in range(3):
        width = draw(st.integers(1, min(bits, 16)))
        channels.append(((1 << width) - 1, draw(st.integers(0, bits - 1))))
    (rm, rs), (gm, gs), (bm, bs) = channels
    return PixelFormat(bits, bits, draw(st.booleans()), True, rm, gm, bm, rs, gs, bs)


@settings(max_examples=200, deadline=None)
@given(formats(), st.binary(min_size=0, max_size=64).map(lambda b: b[: len(b) // 4 * 4]))
def test_translation_matches_definition(pf, src):
    assert Translator(pf).translate(src) == reference(src, pf)


@settings(max_examples=100, deadline=None)
@given(formats(), st.binary(min_size=4, max_size=64).map(lambda b: b[: len(b) // 4 * 4]))
def test_compact_pixels_are_chosen_bytes_of_pixels(pf, src):
    wire = pf.compactPixelBytes()
    assert Translator(pf, wire).translate(src) == reference(src, pf, wire)


def test_native_format_is_passed_through():
    src = bytes(range(256))
    assert Translator(NATIVE).translate(src) is src


@pytest.mark.parametrize(
    "pf, wire",
    [
        (NATIVE, (0, 1, 2)),  # little-endian, colours in the low three bytes
        (PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0), (1, 2, 3)),
        (PixelFormat(32, 24, False, True, 255, 255, 255, 24, 16, 8), (1, 2, 3)),
        (PixelFormat(32, 32, False, True, 255, 255, 255, 16, 8, 0), (0, 1, 2, 3)),
        (PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0), (0, 1)),
    ],
)
def test_compact_pixel_bytes(pf, wire):
    assert pf.compactPixelBytes() == wire


def test_wire_form_round_trip_and_refusals():
    assert PixelFormat.fromBytes(NATIVE.toBytes()) == NATIVE
    bad = PixelFormat(12, 12, False, True, 15, 15, 15, 0, 4, 8).toBytes()
    with pytest.raises(ValueError, match="bits-per-pixel"):
        PixelFormat.fromBytes(bad)
    with pytest.raises(ValueError, match="colour maps"):
        PixelFormat.fromBytes(PixelFormat(16, 16, False, False, 0, 0, 0, 0, 0, 0).toBytes())
    with pytest.raises(ValueError, match="channel"):
        PixelFormat.fromBytes(PixelFormat(16, 16, False, True, 0, 63, 31, 11, 5, 0).toBytes())


def test_colour_map_client_gets_bgr233():
    pf = PixelFormat.fromBytes(PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0).toBytes())
    assert (pf.bitsPerPixel, pf.redMax, pf.greenMax, pf.blueMax) == (8, 7, 7, 3)
    colours = colourMapEntries()
    # Index = its own BGR233 value: translating white gives the map's white entry.
    white = Translator(pf).translate(b"\xff\xff\xff\x00")[0]
    assert colours[white] == (0xFFFF, 0xFFFF, 0xFFFF)
    assert colours[0] == (0, 0, 0)


def test_gather_rect():
    width = 5
    pixels = memoryview(bytes(range(5 * 3 * 4)))
    assert gatherRect(pixels, width, 0, 1, 5, 1) == bytes(range(20, 40))
    assert gatherRect(pixels, width, 1, 1, 2, 2) == bytes(range(24, 32)) + bytes(range(44, 52))
