"""The VNC server against vncdotool, a real, independently written RFB client.

The server runs in the test's reactor; vncdotool's Twisted client connects to
it over 127.0.0.1.  Synchronisation is by protocol round trips: the server
handles a client's messages in order, so once the reply to a framebuffer
update request has arrived, every key and pointer event sent before it has
reached the input sink.
"""

import socket

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from vncdotool import rfb
from vncdotool.client import AuthenticationError
from zope.interface.verify import verifyObject

from tests.helpers_display import pixelsOf
from tests.helpers_rfb import (
    BTN_LEFT,
    BTN_MIDDLE,
    BTN_RIGHT,
    KEY_1,
    KEY_A,
    KEY_H,
    KEY_I,
    KEY_LEFTSHIFT,
    KEY_Q,
    KEY_RIGHTALT,
    KEY_Y,
    KEY_Z,
    VNCDOTOOL_WARNINGS,
    Client,
    FakeSink,
    connect,
    expectedImage,
    fill,
    hangUp,
    leaveMidUpdate,
    loggedProblems,
    roundTrip,
    roundTripWithoutUpdate,
    startDisplay,
)
from xend_vfb.display.screen import IDisplay, IScreenObserver, Screen
from xend_vfb.errors import ConfigError, DeviceError
from xend_vfb.rfb.server import VNC_BASE_PORT, RFBServerProtocol
from xend_vfb.rfb.vncdisplay import VNCDisplay

pytestmark = [pytest.mark.timeout(30), *VNCDOTOOL_WARNINGS]


def test_interfaces():
    screen = Screen(8, 8)
    display = VNCDisplay(screen, FakeSink(), reactor=MemoryReactorClock())
    verifyObject(IDisplay, display)
    verifyObject(IScreenObserver, RFBServerProtocol(display))


@pytest_twisted.ensureDeferred
async def test_capture_matches_screen_pixel_for_pixel():
    screen = Screen(97, 61)
    fill(screen)
    display, port = await startDisplay(screen)
    client = await connect(port)
    assert (client.width, client.height) == (97, 61)
    assert display.viewers == 1
    await client.refreshScreen()
    assert client.screen.tobytes() == expectedImage(screen).tobytes()
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("encoding", [rfb.Encoding.RAW, rfb.Encoding.HEXTILE, rfb.Encoding.ZRLE])
async def test_encodings(encoding):
    screen = Screen(150, 83)  # not a multiple of either tile size
    fill(screen, seed=2)
    display, port = await startDisplay(screen)
    client = await connect(port, encoding=encoding)
    await client.refreshScreen()
    assert client.screen.tobytes() == expectedImage(screen).tobytes()
    # A second update on the same connection (ZRLE keeps one zlib stream); only the
    # rectangle reported changed reaches the client.
    before = expectedImage(screen)
    fill(screen, seed=3)
    screen.update(10, 5, 120, 70)
    await client.refreshScreen(incremental=True)
    expected = before.copy()
    expected.paste(expectedImage(screen).crop((10, 5, 130, 75)), (10, 5))
    assert client.screen.tobytes() == expected.tobytes()
    await hangUp(client)
    await display.stop()


def _reference(screen: Screen, pf: rfb.PixelFormat) -> bytes:
    """The screen in `pf`, pixel by pixel: the definition, not the server's tables."""
    out = bytearray()
    for i in range(0, len(screen.buffer), 4):
        b, g, r = screen.buffer[i], screen.buffer[i + 1], screen.buffer[i + 2]
        value = 0
        for channel, maximum, shift in ((r, pf.redmax, pf.redshift), (g, pf.greenmax,
                                        pf.greenshift), (b, pf.bluemax, pf.blueshift)):
            value |= ((channel * maximum + 127) // 255) << shift
        out += value.to_bytes(pf.bypp, "big" if pf.bigendian else "little")
    return bytes(out)


FORMATS = {
    "rgbx32": rfb.PixelFormat(32, 24, False, True, 255, 255, 255, 0, 8, 16),
    "xrgb32-big-endian": rfb.PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0),
    "rgb24": rfb.PixelFormat(24, 24, False, True, 255, 255, 255, 0, 8, 16),
    "rgb565": rfb.PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0),
    "rgb565-big-endian": rfb.PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0),
    "rgb555": rfb.PixelFormat(16, 15, False, True, 31, 31, 31, 10, 5, 0),
    "bgr233": rfb.PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6),
}


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", sorted(FORMATS))
async def test_pixel_formats(name):
    pf = FORMATS[name]
    screen = Screen(33, 21)
    fill(screen, seed=4)
    display, port = await startDisplay(screen)
    client = await connect(port, pixelFormat=pf)
    await client.refreshScreen()
    assert bytes(client.raw) == _reference(screen, pf)
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_colour_map_client_gets_bgr233_map():
    screen = Screen(16, 4)
    fill(screen)
    display, port = await startDisplay(screen)
    maps = []
    client = await connect(port, pixelFormat=rfb.PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0))
    client.set_color_map = lambda first, colours: maps.append((first, colours))
    await client.refreshScreen()
    assert maps and maps[0][0] == 0 and len(maps[0][1]) == 256
    assert maps[0][1][0b11_111_111] == (0xFFFF, 0xFFFF, 0xFFFF)
    assert bytes(client.raw) == _reference(screen, FORMATS["bgr233"])
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_incremental_updates_send_only_what_changed():
    screen = Screen(120, 90)
    fill(screen)
    display, port = await startDisplay(screen)
    client = await connect(port)
    await client.refreshScreen()
    # Nothing changed: an incremental request stays unanswered until something does.
    update = client.nextUpdate()
    client.framebufferUpdateRequest(incremental=True)
    await roundTripWithoutUpdate(client)
    assert not update.called
    screen.buffer[:4] = b"\x01\x02\x03\x00"
    screen.update(0, 0, 1, 1)
    assert await update == [(0, 0, 1, 1)]
    # Changes made while no request is outstanding are coalesced: one update, each
    # changed pixel in exactly one rectangle, nothing else.
    changed = [(10, 10, 20, 20), (20, 20, 20, 20), (15, 15, 5, 5), (100, 80, 5, 5)]
    for rect in changed:
        screen.update(*rect)
    client.framebufferUpdateRequest(incremental=True)
    rects = await client.nextUpdate()
    assert pixelsOf(rects) == pixelsOf(changed)
    assert sum(w * h for _, _, w, h in rects) == len(pixelsOf(changed))
    assert client.screen.tobytes() == expectedImage(screen).tobytes()
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "keymap, text, expected",
    [
        ("en-us", "Hi!", [
            (KEY_LEFTSHIFT, True), (KEY_H, True), (KEY_LEFTSHIFT, False), (KEY_H, False),
            (KEY_I, True), (KEY_I, False),
            (KEY_LEFTSHIFT, True), (KEY_1, True), (KEY_LEFTSHIFT, False), (KEY_1, False),
        ]),
        ("de", "zy@", [
            (KEY_Y, True), (KEY_Y, False), (KEY_Z, True), (KEY_Z, False),
            (KEY_RIGHTALT, True), (KEY_Q, True), (KEY_RIGHTALT, False), (KEY_Q, False),
        ]),
        ("fr", "aQ", [
            (KEY_Q, True), (KEY_Q, False),
            (KEY_LEFTSHIFT, True), (KEY_A, True), (KEY_LEFTSHIFT, False), (KEY_A, False),
        ]),
    ],
)
async def test_typing(keymap, text, expected):
    sink = FakeSink()
    display, port = await startDisplay(Screen(16, 16), sink, keymap=keymap)
    client = await connect(port)
    for char in text:
        client.keyPress(char)
    await roundTrip(client)
    assert sink.events == [("key", code, pressed) for code, pressed in expected]
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_shift_sent_by_the_client_is_not_doubled():
    sink = FakeSink()
    display, port = await startDisplay(Screen(16, 16), sink)
    client = await connect(port)
    client.keyDown("shift")
    client.keyPress("A")
    client.keyUp("shift")
    await roundTrip(client)
    assert sink.events == [
        ("key", KEY_LEFTSHIFT, True), ("key", KEY_A, True), ("key", KEY_A, False),
        ("key", KEY_LEFTSHIFT, False),
    ]
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_pointer_relative():
    sink = FakeSink(absolute=False)
    display, port = await startDisplay(Screen(200, 100), sink)
    client = await connect(port)
    client.mouseMove(10, 20)  # the first position is only the starting point
    client.mouseMove(15, 18)
    client.mousePress(1)
    client.mousePress(3)
    client.mouseDown(2)
    client.mouseMove(25, 38)
    client.mouseUp(2)
    client.mousePress(4)
    client.mousePress(5)
    await roundTrip(client)
    assert sink.events == [
        ("motion", 5, -2, 0),
        ("key", BTN_LEFT, True), ("key", BTN_LEFT, False),
        ("key", BTN_RIGHT, True), ("key", BTN_RIGHT, False),
        ("key", BTN_MIDDLE, True),
        ("motion", 10, 20, 0),
        ("key", BTN_MIDDLE, False),
        ("motion", 0, 0, -1),
        ("motion", 0, 0, 1),
    ]
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_pointer_absolute():
    sink = FakeSink(absolute=True)
    display, port = await startDisplay(Screen(200, 100), sink)
    client = await connect(port)
    client.mouseMove(10, 20)
    client.mousePress(1)
    client.mouseMove(199, 99)
    client.mousePress(5)
    await roundTrip(client)
    assert sink.events == [
        ("pos", 10, 20, 0),
        ("key", BTN_LEFT, True), ("key", BTN_LEFT, False),
        ("pos", 199, 99, 0),
        ("pos", 199, 99, 1),
    ]
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_keys_and_buttons_held_by_a_leaving_viewer_are_released():
    sink = FakeSink()
    display, port = await startDisplay(Screen(16, 16), sink)
    gone = Deferred()
    display.screen.onViewersChanged = lambda count: count == 0 and gone.callback(None)
    client = await connect(port)
    client.keyDown("a")
    client.mouseDown(1)
    await roundTrip(client)
    client.transport.abortConnection()
    await gone
    assert sink.events[-2:] == [("key", KEY_A, False), ("key", BTN_LEFT, False)]
    await display.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("version", [(3, 3), (3, 7), (3, 8)])
async def test_password_accepted(version):
    screen = Screen(20, 10)
    fill(screen)
    display, port = await startDisplay(screen, password="s3cr3t!x")
    client = await connect(port, password="s3cr3t!x", version=version)
    await client.refreshScreen()
    assert client.screen.tobytes() == expectedImage(screen).tobytes()
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("version", [(3, 3), (3, 7), (3, 8)])
async def test_password_refused(version):
    display, port = await startDisplay(Screen(20, 10), password="right")
    with loggedProblems() as problems:
        with pytest.raises(AuthenticationError):
            await connect(port, password="wrong", version=version)
    assert display.viewers == 0
    assert any("failed authentication" in e.get("log_format", "") for e in problems)
    assert not any("right" in str(e) for e in problems)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_no_password_version_3_3_and_3_7():
    for version in [(3, 3), (3, 7)]:
        display, port = await startDisplay(Screen(20, 10))
        client = await connect(port, version=version)
        await client.refreshScreen()
        await hangUp(client)
        await display.stop()


@pytest_twisted.ensureDeferred
async def test_resize_reaches_the_client():
    screen = Screen(64, 48)
    fill(screen)
    sizes = []
    display, port = await startDisplay(screen)
    client = await connect(port)
    await client.refreshScreen()
    client.updateDesktopSize = lambda w, h: (sizes.append((w, h)),
                                             Client.updateDesktopSize(client, w, h))
    screen.resize(80, 30)
    fill(screen, seed=9)
    screen.update(0, 0, 80, 30)
    await client.refreshScreen(incremental=True)
    assert sizes == [(80, 30)]
    assert client.screen.size == (80, 30)
    assert client.screen.tobytes() == expectedImage(screen).tobytes()
    await hangUp(client)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_resize_drops_a_client_without_desktop_size():
    screen = Screen(64, 48)
    display, port = await startDisplay(screen)
    client = await connect(port, pseudodesktop=False)
    await client.refreshScreen()
    lost = Deferred()
    client.factory._disconnect_callbacks.append(lambda reason: lost.callback(None))
    screen.resize(32, 32)
    await lost
    assert display.viewers == 0
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_two_clients_at_once():
    screen = Screen(50, 40)
    fill(screen)
    sink = FakeSink()
    counts = []
    screen.onViewersChanged = counts.append
    display, port = await startDisplay(screen, sink)
    first = await connect(port)
    second = await connect(port, encoding=rfb.Encoding.ZRLE)
    assert display.viewers == 2
    await first.refreshScreen()
    await second.refreshScreen()
    fill(screen, seed=5)
    screen.update(0, 0, 50, 40)
    await first.refreshScreen(incremental=True)
    await second.refreshScreen(incremental=True)
    for client in (first, second):
        assert client.screen.tobytes() == expectedImage(screen).tobytes()
    first.keyPress("a")
    second.keyPress("i")
    await roundTrip(first)
    await roundTrip(second)
    assert ("key", KEY_A, True) in sink.events and ("key", KEY_I, True) in sink.events
    await hangUp(first)
    await hangUp(second)
    await display.stop()
    assert counts == [1, 2, 1, 0]


@pytest_twisted.ensureDeferred
async def test_client_disconnecting_mid_update_does_not_disturb_others():
    screen = Screen(1280, 1024)  # 5 MiB a frame: far more than a socket buffer holds
    fill(screen)
    display, port = await startDisplay(screen)
    steady = await connect(port)
    await steady.refreshScreen()
    leaver = await connect(port)
    oneLeft = Deferred()
    screen.onViewersChanged = lambda count: count == 1 and oneLeft.callback(None)
    with loggedProblems() as problems:
        await leaveMidUpdate(leaver)  # in the middle of a 5 MiB update
        await oneLeft
        fill(screen, seed=6)
        screen.update(0, 0, 1280, 1024)
        await steady.refreshScreen(incremental=True)
    assert steady.screen.tobytes() == expectedImage(screen).tobytes()
    assert display.viewers == 1
    assert problems == []
    await hangUp(steady)
    await display.stop()


@pytest_twisted.ensureDeferred
async def test_stop_disconnects_viewers():
    screen = Screen(16, 16)
    display, port = await startDisplay(screen)
    client = await connect(port)
    lost = Deferred()
    client.factory._disconnect_callbacks.append(lambda reason: lost.callback(None))
    await display.stop()
    await lost
    assert display.viewers == 0


def test_unknown_keymap():
    with pytest.raises(ConfigError) as e:
        VNCDisplay(Screen(8, 8), FakeSink(), keymap="xx")
    assert str(e.value) == "unknown keymap 'xx' (known: en-us, en-gb, de, fr, es, it, ja, ...)"


def _busyPort() -> socket.socket:
    """A listening socket on a free port above 5900 (an ephemeral one)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    assert sock.getsockname()[1] > VNC_BASE_PORT
    return sock


@pytest_twisted.ensureDeferred
async def test_display_number_and_find_unused():
    with _busyPort() as busy:
        taken = busy.getsockname()[1]
        number = taken - VNC_BASE_PORT
        with pytest.raises(DeviceError, match="cannot listen"):
            await VNCDisplay(Screen(8, 8), FakeSink(), display=number).start()
        display = VNCDisplay(Screen(8, 8), FakeSink(), display=number, findUnused=True)
        host, port = await display.start()
        assert port > taken
        await display.stop()


def test_warns_without_password_beyond_loopback():
    memory = MemoryReactorClock()
    with loggedProblems() as problems:
        VNCDisplay(Screen(8, 8), FakeSink(), listen="0.0.0.0", reactor=memory).start()
        VNCDisplay(Screen(8, 8), FakeSink(), listen="127.0.0.1", reactor=memory).start()
        VNCDisplay(Screen(8, 8), FakeSink(), listen="0.0.0.0", password="x", reactor=memory).start()
    assert [e["listen"] for e in problems] == ["0.0.0.0"]
    assert "no password" in problems[0]["log_format"]
