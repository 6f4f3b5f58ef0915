"""Pixels on demand through the VNC server: a screen with a source (a stand-in guest
framebuffer) is read only when a viewer is about to be sent pixels, and a viewer
is sent only the 16-pixel tiles that differ from what it was sent before.

vncdotool is the independent client; every picture it ends with is compared
with the guest's whole framebuffer.
"""

import pytest
import pytest_twisted
from PIL import Image

from tests.helpers_display import Guest
from tests.helpers_rfb import (
    VNCDOTOOL_WARNINGS,
    connect,
    hangUp,
    roundTripWithoutUpdate,
    startDisplay,
)
from xend_vfb.display.screen import Screen

pytestmark = [pytest.mark.timeout(60), *VNCDOTOOL_WARNINGS]

WIDTH, HEIGHT = 120, 90


def guestImage(guest: Guest) -> bytes:
    return Image.frombuffer("RGB", (WIDTH, HEIGHT), bytes(guest.pixels), "raw", "BGRX",
                            0, 1).tobytes()


@pytest_twisted.ensureDeferred
async def test_nothing_is_read_without_viewers_then_only_changed_tiles_are_sent():
    screen = Screen(WIDTH, HEIGHT)
    guest = screen.source = Guest(WIDTH, HEIGHT)
    display, port = await startDisplay(screen)
    # Nobody watches: the guest's updates are only marked.
    for _ in range(3):
        guest.draw(5, 5)
        screen.invalidate(0, 0, WIDTH, HEIGHT)
    assert guest.reads == []

    client = await connect(port)
    await client.refreshScreen()
    assert client.screen.tobytes() == guestImage(guest)
    assert guest.reads == [(0, 0, WIDTH, HEIGHT)]  # once, for the first picture

    # One pixel changes, the guest reports its whole screen: one tile goes out.
    guest.draw(37, 21, b"\xff\x00\x00\x00")
    screen.invalidate(0, 0, WIDTH, HEIGHT)
    client.framebufferUpdateRequest(incremental=True)
    assert await client.nextUpdate() == [(32, 16, 16, 16)]
    assert client.screen.tobytes() == guestImage(guest)

    # Reported but not changed: read, compared, nothing sent.
    update = client.nextUpdate()
    client.framebufferUpdateRequest(incremental=True)
    reads = len(guest.reads)
    screen.invalidate(0, 0, WIDTH, HEIGHT)
    await roundTripWithoutUpdate(client)
    assert not update.called
    assert len(guest.reads) > reads
    guest.draw(119, 89, b"\x00\xff\x00\x00")
    screen.invalidate(100, 80, 20, 10)
    assert await update == [(112, 80, 8, 10)]
    assert client.screen.tobytes() == guestImage(guest)
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_tiles_one_viewer_copied_reach_the_other():
    screen = Screen(WIDTH, HEIGHT)
    guest = screen.source = Guest(WIDTH, HEIGHT)
    screen.invalidate(0, 0, WIDTH, HEIGHT)
    display, port = await startDisplay(screen)
    first, second = await connect(port), await connect(port)
    await first.refreshScreen()
    await second.refreshScreen()
    # The second asks first; the first's request then syncs (the copy is shared): the
    # second is sent the changed tile all the same.
    pending = second.nextUpdate()
    second.framebufferUpdateRequest(incremental=True)
    guest.draw(70, 50, b"\x10\x20\x30\x00")
    screen.invalidate(64, 48, 16, 16)
    await first.refreshScreen(incremental=True)
    assert await pending == [(64, 48, 16, 16)]
    assert first.screen.tobytes() == second.screen.tobytes() == guestImage(guest)
    await hangUp(first)
    await hangUp(second)
    await display.stop()
