"""Pseudo-encodings: LastRect, ExtendedDesktopSize, QEMU LED state, with the reference client.

The reference client (`tests.rfb_reference`, written from the specification) records
each pseudo-rectangle with what it carries.  Synchronisation is by update round trips.
"""

import pytest
import pytest_twisted

from tests.helpers_rfb import fill, startDisplay
from tests.rfb_reference import (
    DESKTOP_SIZE,
    EXTENDED_DESKTOP_SIZE,
    FORMATS,
    LAST_RECT,
    QEMU_EXTENDED_KEY,
    QEMU_LED_STATE,
    RAW,
    TIGHT,
    close,
    expected,
    referenceConnect,
    significant,
)
from xend_vfb.display.screen import Screen

pytestmark = [pytest.mark.timeout(30)]

PF = FORMATS["xrgb32"]
CAPS_LOCK, NUM_LOCK = 0xFFE5, 0xFF7F
XT_NUM_LOCK, XT_SCROLL_LOCK = 0x45, 0x46


def pseudo(update, encoding):
    return [(x, y, w, h, detail) for x, y, w, h, enc, detail in update.rects if enc == encoding]


@pytest_twisted.ensureDeferred
async def test_last_rect_ends_updates_of_clients_that_list_it():
    screen = Screen(300, 100)
    fill(screen)
    display, port = await startDisplay(screen)
    listing = await referenceConnect(port, PF, [TIGHT, LAST_RECT])
    update = await listing.request()
    assert update.rects[-1][4] == LAST_RECT and len(update.rects) > 2
    assert significant(listing.fb, PF) == expected(screen.buffer, PF)
    plain = await referenceConnect(port, PF, [TIGHT])
    update = await plain.request()  # the count in the header, exact: no LastRect
    assert LAST_RECT not in [r[4] for r in update.rects]
    assert significant(plain.fb, PF) == expected(screen.buffer, PF)
    await close(listing)
    await close(plain)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_extended_desktop_size():
    screen = Screen(64, 48)
    display, port = await startDisplay(screen)
    client = await referenceConnect(port, PF, [RAW, EXTENDED_DESKTOP_SIZE, DESKTOP_SIZE])
    update = await client.request()
    # The layout, in answer to SetEncodings: one screen, id 0, the whole framebuffer.
    assert pseudo(update, EXTENDED_DESKTOP_SIZE) == [(0, 0, 64, 48, [(0, 0, 0, 64, 48, 0)])]
    # The guest resizes: announced by the server (reason 0), not as DesktopSize.
    screen.resize(80, 30)
    fill(screen, seed=2)
    screen.update(0, 0, 80, 30)
    update = await client.request(incremental=True)
    assert pseudo(update, EXTENDED_DESKTOP_SIZE) == [(0, 0, 80, 30, [(0, 0, 0, 80, 30, 0)])]
    assert pseudo(update, DESKTOP_SIZE) == []
    await client.request()
    assert significant(client.fb, PF) == expected(screen.buffer, PF)
    # A viewer asking for another size is told it is prohibited (reason 1, status 1):
    # only the guest chooses its size.
    client.setDesktopSize(1024, 768)
    update = await client.request(incremental=True)
    assert pseudo(update, EXTENDED_DESKTOP_SIZE) == [(1, 1, 80, 30, [(0, 0, 0, 80, 30, 0)])]
    assert (client.width, client.height) == (80, 30)
    await close(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_qemu_led_state_follows_lock_keys_pressed_by_any_viewer():
    screen = Screen(32, 16)
    display, port = await startDisplay(screen)
    watcher = await referenceConnect(port, PF, [RAW, QEMU_LED_STATE])
    typist = await referenceConnect(port, PF, [RAW, QEMU_EXTENDED_KEY])
    update = await watcher.request()
    assert pseudo(update, QEMU_LED_STATE) == [(0, 0, 1, 1, 0)]  # all off: what we know
    await typist.request()
    watching = watcher.request(incremental=True)
    typist.keyEvent(CAPS_LOCK, True)
    typist.keyEvent(CAPS_LOCK, False)
    assert pseudo(await watching, QEMU_LED_STATE) == [(0, 0, 1, 1, 4)]
    watching = watcher.request(incremental=True)
    typist.extendedKeyEvent(XT_NUM_LOCK, NUM_LOCK, True)
    typist.extendedKeyEvent(XT_NUM_LOCK, NUM_LOCK, True)  # auto-repeat: no second toggle
    typist.extendedKeyEvent(XT_NUM_LOCK, NUM_LOCK, False)
    await typist.request()  # all three handled
    assert display.locks.leds == 6
    assert pseudo(await watching, QEMU_LED_STATE) == [(0, 0, 1, 1, 6)]
    # A client that did not list it gets none.
    assert not any(pseudo(u, QEMU_LED_STATE) for u in typist.updates)
    await close(watcher)
    await close(typist)
    await display.stop()
