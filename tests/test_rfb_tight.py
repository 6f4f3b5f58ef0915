"""Tight (7) and Zlib (6) against the reference client of `tests.rfb_reference`.

vncdotool has neither encoding, so the decoder is the test's own, written from the
specification; JPEG rectangles are decoded by Pillow.  Every pixel format a client can
ask (32, 16 and 8 bits per pixel, both byte orders, a 30-bit depth) is checked pixel for
pixel against the screen converted by the specification's formula.  Synchronisation is by
protocol round trips; the lossless refresh of JPEG areas runs on a `Clock` the test
advances.
"""

import random

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from tests.helpers_rfb import fill, startDisplay
from tests.rfb_reference import (
    FORMATS,
    TIGHT,
    ZLIB,
    close,
    expected,
    referenceConnect,
    significant,
)
from xend_vfb.display.screen import Screen
from xend_vfb.rfb.server import LOSSLESS_REFRESH_SECONDS

pytestmark = [pytest.mark.timeout(60)]

QUALITY = -32  # + level 0-9
COMPRESS = -256  # + level 0-9


def console(screen: Screen, seed: int = 1) -> None:
    """An fbcon-like screen: a red bar, black, grey 8x16 "glyphs", coloured ones on the left."""
    rng = random.Random(seed)
    screen.buffer[:] = bytes(len(screen.buffer))
    colours = [b"\xaa\xaa\xaa\x00"] * 6 + [b"\x55\xff\x55\x00", b"\xff\x55\x55\x00"]
    stride = screen.width * 4
    for cy in range(0, screen.height - 16, 16):
        for cx in range(0, screen.width - 8, 8):
            if rng.random() < 0.5:
                continue
            colour = rng.choice(colours) if cx < screen.width // 2 else colours[0]
            for row in range(16):
                bits = rng.getrandbits(8)
                for col in range(8):
                    if bits >> col & 1:
                        at = (cy + row) * stride + (cx + col) * 4
                        screen.buffer[at : at + 4] = colour
    for row in range(min(5, screen.height)):
        screen.buffer[row * stride : row * stride + stride] = b"\x00\x00\xcc\x00" * screen.width


def photo(screen: Screen) -> None:
    """Smooth gradients: many colours, what JPEG is for."""
    w = screen.width
    screen.buffer[:] = b"".join(
        bytes(((x * 3 + y) & 0xFF, (x + y * 2) & 0xFF, (x * y // 64) & 0xFF, 0))
        for y in range(screen.height) for x in range(w)
    )


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("encoding", [TIGHT, ZLIB])
@pytest.mark.parametrize("name", sorted(FORMATS))
async def test_lossless_in_every_pixel_format(encoding, name):
    pf = FORMATS[name]
    screen = Screen(150, 83)  # not a multiple of the tile size
    fill(screen, seed=2)
    display, port = await startDisplay(screen)
    client = await referenceConnect(port, pf, [encoding])
    await client.request()
    assert significant(client.fb, client.pf) == expected(screen.buffer, pf)
    # The same connection again (its zlib streams go on), with a console-like screen
    # (fills and palettes) and then a change to one part only.
    console(screen, seed=3)
    screen.update(0, 0, 150, 83)
    await client.request(incremental=True)
    assert significant(client.fb, client.pf) == expected(screen.buffer, pf)
    before = expected(screen.buffer, pf)
    fill(screen, seed=4)
    screen.update(70, 20, 60, 50)
    update = await client.request(incremental=True)
    # Only the rectangle reported changed was sent: the rest is the old screen.
    after, size = bytearray(before), pf.size
    now = expected(screen.buffer, pf)
    for row in range(20, 70):
        start, end = (row * 150 + 70) * size, (row * 150 + 130) * size
        after[start:end] = now[start:end]
    assert significant(client.fb, client.pf) == bytes(after)
    assert all(70 <= x and x + w <= 130 and 20 <= y and y + h <= 70
               for x, y, w, h, enc, _ in update.rects)
    await close(client)
    await display.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", ["xrgb32", "rgb565-big-endian", "bgr233"])
async def test_tight_uses_fills_and_palettes_and_every_compress_level(name):
    pf = FORMATS[name]
    screen = Screen(300, 140)
    console(screen)
    display, port = await startDisplay(screen)
    client = await referenceConnect(port, pf, [TIGHT, COMPRESS + 0])
    update = await client.request()
    assert significant(client.fb, client.pf) == expected(screen.buffer, pf)
    kinds = {detail[:1] + detail[2:] for *_, enc, detail in update.rects if enc == TIGHT}
    assert ("fill",) in kinds and ("palette", 2) in kinds  # the right half: one bit a pixel
    assert any(kind[0] == "palette" and kind[1] > 2 for kind in kinds)
    assert all(w <= 2048 for _, _, w, *_ in update.rects)
    # A new compression level restarts the streams: the client is told to reset them.
    for level in range(1, 10):
        client.setEncodings([TIGHT, COMPRESS + level])
        console(screen, seed=10 + level)
        screen.update(0, 0, 300, 140)
        await client.request(incremental=True)
        assert significant(client.fb, client.pf) == expected(screen.buffer, pf), level
    await close(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_wide_screen_is_cut_into_rectangles_of_at_most_2048_pixels():
    pf = FORMATS["xrgb32"]
    screen = Screen(4200, 20)
    fill(screen, seed=5)
    display, port = await startDisplay(screen)
    client = await referenceConnect(port, pf, [TIGHT])
    update = await client.request()
    assert significant(client.fb, client.pf) == expected(screen.buffer, pf)
    assert max(w for _, _, w, *_ in update.rects) <= 2048
    await close(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_quality_level_without_lossy_setting_stays_lossless():
    pf = FORMATS["xrgb32"]
    screen = Screen(128, 64)
    photo(screen)
    display, port = await startDisplay(screen)  # lossy off: the default, as QEMU's
    client = await referenceConnect(port, pf, [TIGHT, QUALITY + 5])
    update = await client.request()
    assert significant(client.fb, client.pf) == expected(screen.buffer, pf)
    assert not any(detail == ("jpeg",) for *_, detail in update.rects)
    await close(client)
    await display.stop()


def _meanError(fb: bytes, screen: Screen, pf) -> float:
    total = count = 0
    size = pf.size
    for i in range(len(fb) // size):
        r, g, b = pf.channels(fb[i * size : (i + 1) * size])
        scale = (255 / pf.rmax, 255 / pf.gmax, 255 / pf.bmax)
        want = (screen.buffer[4 * i + 2], screen.buffer[4 * i + 1], screen.buffer[4 * i])
        for got, wanted, k in zip((r, g, b), want, scale, strict=True):
            total += abs(got * k - wanted)
            count += 1
    return total / count


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", ["xrgb32", "xrgb32-big-endian", "rgbx32", "rgb565",
                                  "rgb565-big-endian"])
async def test_jpeg_when_allowed_then_a_lossless_refresh(name):
    pf = FORMATS[name]
    screen = Screen(200, 100)
    photo(screen)
    clock = Clock()
    display, port = await startDisplay(screen, lossy=True, clock=clock)
    client = await referenceConnect(port, pf, [TIGHT, QUALITY + 8])
    update = await client.request()
    assert ("jpeg",) in [detail for *_, detail in update.rects]
    assert significant(client.fb, client.pf) != expected(screen.buffer, pf)
    assert _meanError(client.fb, screen, pf) < 6
    # The area stops changing: after the refresh delay it comes again, losslessly,
    # without the client having asked for a full update.
    pending = client.request(incremental=True)
    clock.advance(LOSSLESS_REFRESH_SECONDS - 0.1)
    await roundTrip(client)
    assert not pending.called
    clock.advance(0.1)
    update = await pending
    assert ("jpeg",) not in [detail for *_, detail in update.rects]
    assert significant(client.fb, client.pf) == expected(screen.buffer, pf)
    await close(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_jpeg_keeps_text_lossless_and_8_bits_never_gets_jpeg():
    screen = Screen(256, 128)
    console(screen)
    clock = Clock()
    display, port = await startDisplay(screen, lossy=True, clock=clock)
    for name in ("xrgb32", "bgr233"):
        pf = FORMATS[name]
        client = await referenceConnect(port, pf, [TIGHT, QUALITY + 3])
        update = await client.request()
        assert ("jpeg",) not in [detail for *_, detail in update.rects]
        assert significant(client.fb, client.pf) == expected(screen.buffer, pf)
        await close(client)
    photo(screen)
    client = await referenceConnect(port, FORMATS["bgr233"], [TIGHT, QUALITY + 3])
    update = await client.request()
    assert ("jpeg",) not in [detail for *_, detail in update.rects]
    assert significant(client.fb, client.pf) == expected(screen.buffer, FORMATS["bgr233"])
    await close(client)
    assert clock.getDelayedCalls() == []  # nothing lossy was sent: no refresh pending
    await display.stop()


async def roundTrip(client) -> None:
    """Everything sent so far was handled: a second client's full update, in order."""
    other = await referenceConnect(client.transport.getPeer().port, client.pf, [0])
    await other.request()
    await close(other)


def mixed(screen: Screen) -> None:
    """What the encoder treats apart, top to bottom (screen 150 wide, 300 high, 64-row
    bands): colour bars over 96 identical rows (across two bands; the bar boundaries inside
    tiles, the last 22 pixels wide), the rest of the second band in 40 greys (a console's
    antialiased text: one palette indexed by one channel), a band of 30 colours no single
    channel tells apart, one of 40 whose channels together take more than 256 values, and
    photo-like noise.  In the 30 colours and the noise, padding bytes vary: they are no
    colour."""
    rng = random.Random(7)
    white, yellow, cyan = b"\xff\xff\xff\x00", b"\x00\xff\xff\x00", b"\xff\xff\x00\x00"
    row = white * 50 + yellow * 90 + cyan * (screen.width - 140)
    greys = [bytes((v, v, v, 0)) for v in range(0, 240, 6)]
    mixedColours = [bytes((c // 16 * 60, c // 4 % 4 * 60, c % 4 * 60, 0))
                    for c in rng.sample(range(64), 30)]
    manyValues = [bytes((c // 49 * 40, c // 7 % 7 * 40, c % 7 * 40, 0))
                  for c in rng.sample(range(343), 40)]
    out = bytearray()
    for y in range(screen.height):
        if y < 96:
            out += row
        elif y < 128:
            out += b"".join(rng.choice(greys) for _ in range(screen.width))
        elif y < 192:
            out += b"".join(rng.choice(mixedColours) for _ in range(screen.width))
        elif y < 256:
            out += b"".join(rng.choice(manyValues) for _ in range(screen.width))
        else:
            out += rng.randbytes(screen.width * 4)
    for i in range(128 * screen.width * 4 + 3, 192 * screen.width * 4, 4):
        out[i] = rng.choice((0, 255))
    for i in range(256 * screen.width * 4 + 3, len(out), 4):
        out[i] = rng.randrange(256)
    screen.buffer[:] = out


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", ["xrgb32", "rgb565-big-endian", "bgr233", "rgb30-in-32"])
async def test_tight_runs_of_rows_big_palettes_and_photo_stream(name):
    pf = FORMATS[name]
    screen = Screen(150, 300)
    mixed(screen)
    display, port = await startDisplay(screen)
    client = await referenceConnect(port, pf, [TIGHT])
    update = await client.request()
    assert significant(client.fb, client.pf) == expected(screen.buffer, pf)
    # The bars: rectangles 96 rows high, the boundaries two-colour palettes.
    assert [(x, w, h, detail) for x, y, w, h, enc, detail in update.rects if y == 0] == [
        (0, 64, 96, ("palette", 1, 2)), (64, 64, 96, ("fill",)), (128, 22, 96, ("palette", 1, 2))]
    rects = [(y, h, detail) for _, y, _, h, enc, detail in update.rects if enc == TIGHT]
    # The greys and the 30 colours: one palette each, beyond a tile's 8 colours.
    assert [detail for y, _, detail in rects if y == 96] == [("palette", 2, 40)]
    assert [detail for y, _, detail in rects if y == 128] == [("palette", 2, 30)]
    # Too many values for a palette index: full colour; the noise: full colour in
    # stream 3 (Huffman codes only), a rectangle per tile.
    assert {detail for y, _, detail in rects if y == 192} == {("copy", 0, None)}
    assert {detail for y, _, detail in rects if y == 256} == {("copy", 3, None)}
    assert len([y for y, _, _ in rects if y == 256]) == 3
    await close(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_jpeg_of_identical_rows():
    """A ramp repeated over every row: its full-colour run goes as JPEG, rows repeated."""
    pf = FORMATS["xrgb32"]
    screen = Screen(200, 100)
    screen.buffer[:] = b"".join(bytes((x, 255 - x, x // 2, 0)) for x in range(200)) * 100
    display, port = await startDisplay(screen, lossy=True, clock=Clock())
    client = await referenceConnect(port, pf, [TIGHT, QUALITY + 8])
    update = await client.request()
    # The last 8 pixels have 8 colours: a palette.
    assert [(w, h, detail) for _, _, w, h, _, detail in update.rects] == [
        (192, 100, ("jpeg",)), (8, 100, ("palette", 2, 8))]
    assert _meanError(client.fb, screen, pf) < 6
    await close(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_a_run_of_identical_rows_is_cut_every_256_rows():
    pf = FORMATS["xrgb32"]
    screen = Screen(40, 300)
    screen.buffer[:] = b"".join(bytes((x * 6, 0, 255 - x * 6, 0)) for x in range(40)) * 300
    display, port = await startDisplay(screen)
    client = await referenceConnect(port, pf, [TIGHT, COMPRESS + 0])
    update = await client.request()
    assert significant(client.fb, client.pf) == expected(screen.buffer, pf)
    assert [(y, h) for _, y, _, h, *_ in update.rects] == [(0, 256), (256, 44)]
    await close(client)
    await display.stop()
