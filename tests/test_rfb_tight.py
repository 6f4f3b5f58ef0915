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
