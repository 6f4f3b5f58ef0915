"""The SDL display, on SDL's ``dummy`` video driver (a window in memory, no X needed)."""

from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.helpers_backend import (
    createDomain,
    status,
    waitKey,
    waitStates,
)
from tests.helpers_wait import waitFor
from xend_vfb.backend.interfaces import IBackendContext
from xend_vfb.backend.vfb import REFRESH_MS, VfbOps
from xend_vfb.display.screen import IDisplay, IInputSink, Screen
from xend_vfb.display.sdl import RATE, SCANCODES, SDLDisplay
from xend_vfb.errors import DeviceError
from xend_vfb.model import VfbConfig
from xend_vfb.rfb.input import BTN_LEFT, BTN_MIDDLE, BTN_RIGHT
from xend_vfb.xenstore.paths import backendPath

pygame = pytest.importorskip("pygame")

TICK = 1 / RATE


@pytest.fixture(autouse=True)
def sdlEnvironment(monkeypatch):
    """SDL on its dummy driver; what SDLDisplay sets in os.environ is put back after."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    for name in ("DISPLAY", "XAUTHORITY", "SDL_NO_SIGNAL_HANDLERS"):
        monkeypatch.setenv(name, "unset-by-test")
    yield
    pygame.display.quit()


@implementer(IInputSink)
class FakeSink:
    def __init__(self, absolute: bool = False) -> None:
        self.absolute = absolute
        self.events: list[tuple] = []

    def keyEvent(self, keycode: int, pressed: bool) -> None:
        self.events.append(("key", keycode, pressed))

    def pointerMotion(self, dx: int, dy: int, dz: int) -> None:
        self.events.append(("motion", dx, dy, dz))

    def pointerPosition(self, x: int, y: int, dz: int) -> None:
        self.events.append(("position", x, y, dz))


class Opened:
    def __init__(self, width: int = 64, height: int = 48, absolute: bool = False) -> None:
        self.screen = Screen(width, height)
        self.sink = FakeSink(absolute)
        self.clock = Clock()
        self.display = SDLDisplay(self.screen, self.sink, ":0", "/tmp/cookie",
                                  title="guest (vfb/0)", reactor=self.clock)
        self.started: list = []
        self.display.start().addCallback(self.started.append)

    def fill(self, seed: int) -> None:
        self.screen.buffer[:] = random.Random(seed).randbytes(len(self.screen.buffer))

    def tick(self) -> None:
        self.clock.advance(TICK)

    def post(self, kind: int, **attributes) -> None:
        pygame.event.post(pygame.event.Event(kind, **attributes))

    def windowPixels(self) -> bytes:
        """The window's pixels as B, G, R, 255 bytes."""
        return pygame.image.tobytes(pygame.display.get_surface(), "BGRA")


def opaque(bgrx: bytes | bytearray) -> bytes:
    """Screen pixels as the window shows them: the X byte is not drawn."""
    pixels = bytearray(bgrx)
    pixels[3::4] = b"\xff" * (len(pixels) // 4)
    return bytes(pixels)


@pytest.fixture
def opened():
    window = Opened()
    yield window
    window.display.stop()


@pytest.fixture
def absolute():
    window = Opened(absolute=True)
    yield window
    window.display.stop()


def test_interface(opened):
    verifyObject(IDisplay, opened.display)
    assert opened.started == [("sdl", ":0")]
    assert opened.display.viewers == 1


def test_environment_and_title(opened):
    assert os.environ["DISPLAY"] == ":0"
    assert os.environ["XAUTHORITY"] == "/tmp/cookie"
    assert os.environ["SDL_NO_SIGNAL_HANDLERS"] == "unset-by-test"  # setdefault: kept
    assert pygame.display.get_caption()[0] == "guest (vfb/0)"


def test_window_shows_screen(opened):
    assert pygame.display.get_surface().get_size() == (64, 48)
    opened.fill(1)
    opened.screen.update(0, 0, 64, 48)
    opened.tick()
    assert opened.windowPixels() == opaque(opened.screen.buffer)


def test_only_reported_rectangles_are_drawn(opened):
    opened.tick()
    before = opened.windowPixels()
    opened.fill(2)
    opened.screen.update(10, 5, 20, 7)
    opened.screen.update(40, 30, 3, 3)
    opened.tick()
    shown = opened.windowPixels()
    expected = bytearray(before)
    new = opaque(opened.screen.buffer)
    for x, y, w, h in ((10, 5, 20, 7), (40, 30, 3, 3)):
        for row in range(y, y + h):
            start = (row * 64 + x) * 4
            expected[start:start + w * 4] = new[start:start + w * 4]
    assert shown == bytes(expected)
    assert shown != new


def test_resize(opened):
    opened.screen.resize(80, 30)
    opened.fill(3)
    opened.screen.update(0, 0, 80, 30)
    opened.tick()
    assert pygame.display.get_surface().get_size() == (80, 30)
    assert opened.windowPixels() == opaque(opened.screen.buffer)
    # Drawn from the new buffer afterwards too.
    opened.screen.buffer[:4] = b"\x10\x20\x30\x00"
    opened.screen.update(0, 0, 1, 1)
    opened.tick()
    assert opened.windowPixels()[:4] == b"\x10\x20\x30\xff"


def test_keys_by_position(opened):
    for scancode in (4, 29, 40, 225, 100, 230):  # A, Z, Return, left Shift, ISO <>, AltGr
        opened.post(pygame.KEYDOWN, scancode=scancode, key=0, mod=0)
        opened.post(pygame.KEYUP, scancode=scancode, key=0, mod=0)
    opened.post(pygame.KEYDOWN, scancode=0, key=0, mod=0)  # unknown: ignored
    opened.tick()
    codes = [30, 44, 28, 42, 86, 100]
    assert opened.sink.events == [e for c in codes for e in (("key", c, True), ("key", c, False))]


def test_repeated_press_is_sent_once(opened):
    opened.post(pygame.KEYDOWN, scancode=4, key=0, mod=0)
    opened.post(pygame.KEYDOWN, scancode=4, key=0, mod=0)
    opened.post(pygame.KEYUP, scancode=4, key=0, mod=0)
    opened.post(pygame.KEYUP, scancode=4, key=0, mod=0)
    opened.tick()
    assert opened.sink.events == [("key", 30, True), ("key", 30, False)]


def test_relative_pointer(opened):
    opened.post(pygame.MOUSEMOTION, pos=(5, 6), rel=(5, 6), buttons=(0, 0, 0))
    opened.post(pygame.MOUSEMOTION, pos=(3, 10), rel=(-2, 4), buttons=(0, 0, 0))
    for button in (1, 2, 3, 4, 5):  # 4 and 5: the wheel, which comes as MOUSEWHEEL too
        opened.post(pygame.MOUSEBUTTONDOWN, pos=(3, 10), button=button)
        opened.post(pygame.MOUSEBUTTONUP, pos=(3, 10), button=button)
    opened.post(pygame.MOUSEWHEEL, x=0, y=1, flipped=False)
    opened.post(pygame.MOUSEWHEEL, x=0, y=-2, flipped=False)
    opened.post(pygame.MOUSEWHEEL, x=0, y=1, flipped=True)
    opened.tick()
    assert opened.sink.events == [
        ("motion", 5, 6, 0), ("motion", -2, 4, 0),
        ("key", BTN_LEFT, True), ("key", BTN_LEFT, False),
        ("key", BTN_MIDDLE, True), ("key", BTN_MIDDLE, False),
        ("key", BTN_RIGHT, True), ("key", BTN_RIGHT, False),
        ("motion", 0, 0, -1), ("motion", 0, 0, 1), ("motion", 0, 0, 1), ("motion", 0, 0, 1),
    ]


def test_absolute_pointer(absolute):
    absolute.post(pygame.MOUSEMOTION, pos=(5, 6), rel=(5, 6), buttons=(0, 0, 0))
    absolute.post(pygame.MOUSEMOTION, pos=(99, -3), rel=(94, -9), buttons=(0, 0, 0))
    absolute.post(pygame.MOUSEWHEEL, x=0, y=1, flipped=False)
    absolute.tick()
    assert absolute.sink.events == [
        ("position", 5, 6, 0), ("position", 63, 0, 0), ("position", 63, 0, -1),
    ]


def test_focus_lost_releases_what_is_held(opened):
    opened.post(pygame.KEYDOWN, scancode=224, key=0, mod=0)  # left Ctrl
    opened.post(pygame.MOUSEBUTTONDOWN, pos=(0, 0), button=1)
    opened.post(pygame.WINDOWFOCUSLOST)
    opened.tick()
    assert opened.sink.events[2:] == [("key", 29, False), ("key", BTN_LEFT, False)]


def test_close_button_closes_the_window_only(opened):
    counts = []
    opened.screen.onViewersChanged = counts.append
    opened.post(pygame.KEYDOWN, scancode=4, key=0, mod=0)
    opened.post(pygame.QUIT)
    opened.post(pygame.KEYUP, scancode=4, key=0, mod=0)
    opened.tick()
    assert opened.display.viewers == 0
    assert counts == [0]  # no longer a screen observer: the guest may stop refreshing
    assert opened.sink.events == [("key", 30, True), ("key", 30, False)]
    assert not pygame.display.get_init()
    assert not opened.clock.getDelayedCalls()  # no ticks while closed
    opened.screen.update(0, 0, 1, 1)  # nothing watches any more: no error
    opened.display.stop().addCallback(lambda _: None)  # closing twice is fine
    # and it can be opened again
    again = []
    opened.display.start().addCallback(again.append)
    assert again == [("sdl", ":0")] and opened.display.viewers == 1


def test_stop(opened):
    done = []
    opened.display.stop().addCallback(done.append)
    assert done == [None]
    assert opened.display.viewers == 0
    assert not pygame.display.get_init()
    assert not opened.clock.getDelayedCalls()


def test_cannot_open_display(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    display = SDLDisplay(Screen(8, 8), FakeSink(), ":4095", None, reactor=Clock())
    failures = []
    display.start().addErrback(failures.append)
    (failure,) = failures
    assert failure.check(DeviceError)
    assert re.fullmatch(r"SDL display cannot open :4095: .+", str(failure.value))
    assert display.viewers == 0
    assert not pygame.display.get_init()


def test_one_window_per_process(opened):
    second = SDLDisplay(Screen(8, 8), FakeSink(), ":1", None, reactor=Clock())
    failures = []
    second.start().addErrback(failures.append)
    assert str(failures[0].value) == (
        "SDL display cannot open :1: this backend already has an SDL window open (one per process)"
    )
    assert opened.display.viewers == 1


def test_without_pygame(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)
    display = SDLDisplay(Screen(8, 8), FakeSink(), ":0", None, reactor=Clock())
    failures = []
    display.start().addErrback(failures.append)
    assert str(failures[0].value).startswith("SDL display cannot open :0: pygame is not installed")


# -- the scancode table -----------------------------------------------------------

# pygame's names for SDL scancodes -> linux/input-event-codes.h names, where they differ.
_LINUX_NAMES = {
    "RETURN": "ENTER", "ESCAPE": "ESC", "EQUALS": "EQUAL", "LEFTBRACKET": "LEFTBRACE",
    "RIGHTBRACKET": "RIGHTBRACE", "NONUSHASH": "BACKSLASH", "PERIOD": "DOT",
    "PRINTSCREEN": "SYSRQ", "NONUSBACKSLASH": "102ND", "APPLICATION": "COMPOSE",
    "KP_DIVIDE": "KPSLASH", "KP_MULTIPLY": "KPASTERISK", "KP_PERIOD": "KPDOT",
    "KP_EQUALS": "KPEQUAL", "LCTRL": "LEFTCTRL", "LSHIFT": "LEFTSHIFT", "LALT": "LEFTALT",
    "LGUI": "LEFTMETA", "RCTRL": "RIGHTCTRL", "RSHIFT": "RIGHTSHIFT", "RALT": "RIGHTALT",
    "RGUI": "RIGHTMETA", "INTERNATIONAL1": "RO", "INTERNATIONAL2": "KATAKANAHIRAGANA",
    "INTERNATIONAL3": "YEN", "INTERNATIONAL4": "HENKAN", "INTERNATIONAL5": "MUHENKAN",
    "LANG1": "HANGEUL", "LANG2": "HANJA", "NUMLOCKCLEAR": "NUMLOCK", "SCROLLOCK": "SCROLLLOCK",
}
_HEADER = Path("/usr/include/linux/input-event-codes.h")


def test_scancode_table_matches_names():
    """Each entry pairs an SDL scancode with the kernel's KEY_x of the same name."""
    if not _HEADER.exists():
        pytest.skip(f"{_HEADER} not installed")
    kernel = {name: int(value, 0) for name, value in
              re.findall(r"#define KEY_(\w+)\s+(0x[0-9a-fA-F]+|\d+)\b", _HEADER.read_text())}
    # pygame's KSCAN_ names (with aliases), plus SDL's names of the ones pygame lacks.
    sdl: dict[int, set[str]] = {101: {"APPLICATION"}, 127: {"MUTE"}, 128: {"VOLUMEUP"},
                                129: {"VOLUMEDOWN"}, 133: {"KP_COMMA"}}
    sdl.update({104 + i: {f"F{13 + i}"} for i in range(12)})
    for name in dir(pygame):
        if name.startswith("KSCAN_"):
            sdl.setdefault(getattr(pygame, name), set()).add(name[len("KSCAN_"):])
    for scancode, keycode in sorted(SCANCODES.items()):
        names = {_LINUX_NAMES.get(name, name.replace("KP_", "KP")) for name in sdl[scancode]}
        assert keycode in {kernel.get(name) for name in names}, (scancode, names)


def test_scancode_table_covers_a_105_key_keyboard():
    main = [*range(4, 58)]  # letters, digits, Return .. Caps Lock
    others = [*range(58, 100), 100, 101, *range(224, 232)]  # F-keys .. keypad, ISO key, Menu, mods
    assert set(main + others) <= SCANCODES.keys()
    assert len(set(main + others) - {50}) == 105  # NonUS # shares backslash's key position
    codes = [SCANCODES[s] for s in main + others if s != 50]
    assert len(set(codes)) == len(codes)


# -- through the vfb ops -----------------------------------------------------------


@implementer(IBackendContext)
class FakeContext:
    foreignMemory = None  # an SDL display of a device that never connects maps nothing
    eventChannels = None
    runDir = None  # an SDL-only display has no socket to put there

    def __init__(self, config) -> None:
        self.config = config
        self.reactor = Clock()
        self.name = "guest"
        self.sink = FakeSink()

    def deviceConfig(self, device):
        return succeed(self.config)

    def secret(self, device, key):
        return succeed(None)

    def keyboardFor(self, devid):
        return self.sink

    def takeHeld(self, devid):
        return None  # no display held from a previous domain

    def keep(self, devid, held):
        return False  # not holding: a display that goes is stopped

    def requestPower(self, action):
        raise AssertionError("no power request expected")


class FakeDevice:
    devid = 0
    name = "vfb/0"

    def __init__(self, context) -> None:
        self.context = context


def test_vfb_ops_open_and_close_the_window():
    config = VfbConfig.parse("sdl=1,display=:7,xauthority=/root/.Xauthority,width=320,height=200",
                             "vfb")
    device = FakeDevice(FakeContext(config))
    assert verifyObject(IBackendContext, device.context)
    ops = VfbOps()
    done = []
    ops.init(device).addCallback(done.append)
    assert done and ops.sdl is not None and ops.sdl.viewers == 1
    assert pygame.display.get_caption()[0] == "guest (vfb/0)"
    assert pygame.display.get_surface().get_size() == (320, 200)
    freed: list = []
    status = ops.status()
    assert status["sdl_display"] == ":7" and status["viewers"] == 1
    maybeDeferred(ops.free, device).addCallback(freed.append)
    assert freed == [None] and not pygame.display.get_init() and ops.sdl is None


def test_vfb_ops_report_a_window_that_cannot_open(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    config = VfbConfig.parse("sdl=1,display=:4095", "vfb")
    device = FakeDevice(FakeContext(config))
    ops = VfbOps()
    failures = []
    ops.init(device).addErrback(failures.append)
    assert str(failures[0].value).startswith("SDL display cannot open :4095: ")
    ops.free(device)  # what the backend does next: nothing left open


# -- through a real backend process (it inherits SDL_VIDEODRIVER) --------------------


@pytest.mark.timeout(60)
@pytest_twisted.inlineCallbacks
def test_backend_serves_an_sdl_only_display(xs, guestFactory, backendProcess):
    domain, created = yield createDomain(xs, 7, vfbs=[{"vnc": False, "sdl": True,
                                                       "display": ":0"}])
    guest = yield guestFactory(7)
    backend = backendProcess(7)
    yield waitStates(xs, 7, created)
    reply = yield status(backend)
    (vfb,) = [d for d in reply["devices"] if d["class"] == "vfb"]
    assert vfb["sdl_display"] == ":0" and vfb["viewers"] == 1 and vfb["vnc_port"] is None
    # The window is a viewer: the guest is asked to refresh.
    frontend = guest.device("vfb", 0)
    yield waitFor(lambda: frontend.refreshPeriod == REFRESH_MS, "a refresh period", 10)
    backend.assertHealthy()


@pytest.mark.timeout(60)
@pytest_twisted.inlineCallbacks
def test_backend_reports_a_window_it_cannot_open(xs, guestFactory, backendProcess,
                                                 monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    yield createDomain(xs, 8, vfbs=[{"vnc": False, "sdl": True, "display": ":4095"}])
    yield guestFactory(8)
    backendProcess(8)
    area = backendPath(8, "vfb", 0)
    why = yield waitKey(xs, f"{area}/hotplug-error")
    assert why.startswith("SDL display cannot open :4095: "), why
    assert (yield xs.read(f"{area}/hotplug-status")) == "error"
