"""Every screen size the vfb protocol validation accepts can be announced over RFB.

RFB carries sizes in 16 bits (ServerInit, DesktopSize); a guest's page or
RESIZE may ask for anything a 32-bit field holds.  The property: whatever
`FbPage.read` or `validateResize` lets through, a viewer is told exactly, at
ClientInit and as a DesktopSize update.  And a size beyond RFB, should one
ever reach the server, ends that viewer's connection instead of raising.
The server runs on a `StringTransport` with a `MemoryReactorClock`; the
screen has a size but no pixels (16384x16384 would be a 1 GiB buffer), which
is enough: announcing a size never reads pixels.
"""

import struct

from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface import implementer
from zope.interface.verify import verifyObject

from xend_vfb.display.screen import IInputSink, IScreen
from xend_vfb.errors import GuestError
from xend_vfb.protocol import fbif
from xend_vfb.rfb.server import RFBServerProtocol
from xend_vfb.rfb.vncdisplay import VNCDisplay

MiB = 2**20
#: Sizes around every bound that matters: ours (16384), RFB's (65535), s32's.
SIZE = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-2, 70000),
    st.sampled_from([0, 1, 16383, 16384, 16385, 65535, 65536, 70000]),
)
LENGTH = st.one_of(st.integers(0, 2**32 - 1), st.integers(1, 70000 * 4),
                   st.integers(0, 300 * MiB))
DEPTH = st.sampled_from(sorted(fbif.VALID_DEPTHS))

#: The server's side of the handshake up to ServerInit: version, one security type,
#: SecurityResult OK.
_HANDSHAKE = len(b"RFB 003.008\n") + 2 + 4
#: The client's: version 3.8, security None, ClientInit (shared).
_CLIENT_HELLO = b"RFB 003.008\n" + b"\x01" + b"\x01"
_DESKTOP_SIZE = -223


@implementer(IScreen)
class SizeOnlyScreen:
    """A screen with a size and observers but no pixels."""

    def __init__(self, width, height):
        self.width, self.height = width, height
        self.observers = []

    stale = False

    def pixels(self):
        raise AssertionError("announcing a size must not read pixels")

    def sync(self):
        pass

    def addObserver(self, observer):
        self.observers.append(observer)

    def removeObserver(self, observer):
        if observer in self.observers:
            self.observers.remove(observer)


@implementer(IInputSink)
class NoInput:
    absolute = False

    def keyEvent(self, keycode, pressed):
        pass

    def pointerMotion(self, dx, dy, dz):
        pass

    def pointerPosition(self, x, y, dz):
        pass


def viewer(screen):
    """A connection past ClientInit; returns (protocol, transport, clock)."""
    clock = MemoryReactorClock()
    protocol = RFBServerProtocol(VNCDisplay(screen, NoInput(), reactor=clock))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(_CLIENT_HELLO)
    return protocol, transport, clock


def announcedAtInit(width, height):
    """The size a new viewer of a width x height screen is told in ServerInit."""
    protocol, transport, clock = viewer(SizeOnlyScreen(width, height))
    assert not transport.disconnecting
    return struct.unpack_from("!HH", transport.value(), _HANDSHAKE)


def announcedByResize(width, height):
    """The size a viewer of a small screen is told in DesktopSize when it becomes
    width x height; None if the viewer was disconnected instead."""
    before = (2, 2) if (width, height) == (1, 1) else (1, 1)
    screen = SizeOnlyScreen(*before)
    protocol, transport, clock = viewer(screen)
    # SetEncodings [Raw, DesktopSize], then an incremental update request.
    protocol.dataReceived(struct.pack("!BxHii", 2, 2, 0, _DESKTOP_SIZE)
                          + struct.pack("!BBHHHH", 3, 1, 0, 0, *before))
    transport.clear()
    screen.width, screen.height = width, height
    protocol.screenResized(width, height)
    clock.advance(0)
    if transport.disconnecting:
        return None
    count, x, y, w, h, encoding = struct.unpack("!xxHHHHHi", transport.value())
    assert (count, x, y, encoding) == (1, 0, 0, _DESKTOP_SIZE)
    return w, h


def assertAnnounced(geometry) -> None:
    """A geometry the backend accepted reaches viewers as it is, at init and by resize."""
    event("accepted, beyond 4096" if max(geometry.width, geometry.height) > 4096 else "accepted")
    size = (geometry.width, geometry.height)
    assert announcedAtInit(*size) == size
    assert announcedByResize(*size) == size


def test_fakes():
    verifyObject(IScreen, SizeOnlyScreen(1, 1))
    verifyObject(IInputSink, NoInput())


@settings(max_examples=1500, deadline=None)
@example(width=16384, height=1, line_length=16384, mem_length=16384, depth=8, limit=MiB)
@example(width=1, height=16384, line_length=1, mem_length=16384, depth=8, limit=MiB)
@example(width=0, height=0, line_length=70000, mem_length=2 * MiB, depth=8, limit=8 * MiB)
@example(width=70000, height=1, line_length=70000, mem_length=70000, depth=8, limit=MiB)
@given(width=SIZE, height=SIZE, line_length=LENGTH, mem_length=LENGTH, depth=DEPTH,
       limit=st.one_of(st.integers(1, 2**33), st.sampled_from([16 * MiB, 256 * MiB])))
def test_any_page_geometry_accepted_is_announced(width, height, line_length, mem_length,
                                                  depth, limit):
    page = bytearray(4096)
    fbif.writePage(page, "x86_64-abi", width=width, height=height, line_length=line_length,
                   mem_length=mem_length, depth=depth, pd=[])
    try:
        geometry = fbif.FbPage.read(page, "x86_64-abi", limit).geometry
    except GuestError:
        event("refused")
        return
    assertAnnounced(geometry)


@settings(max_examples=1500, deadline=None)
@example(width=16384, height=16384, stride=16384, depth=8, offset=0, mem_length=256 * MiB)
@example(width=0, height=0, stride=1, depth=8, offset=0, mem_length=256 * MiB)
@example(width=70000, height=1, stride=70000, depth=8, offset=0, mem_length=2 * MiB)
@given(width=SIZE, height=SIZE, stride=SIZE, depth=DEPTH, offset=SIZE,
       mem_length=st.one_of(st.integers(1, 2**32 - 1), st.sampled_from([2 * MiB, 256 * MiB])))
def test_any_resize_accepted_is_announced(width, height, stride, depth, offset, mem_length):
    try:
        geometry = fbif.validateResize(fbif.ResizeEvent(width, height, stride, depth, offset),
                                       mem_length)
    except GuestError:
        event("refused")
        return
    assertAnnounced(geometry)


def logged(level):
    events = []

    def observe(entry):
        if entry.get("log_level", LogLevel.info) >= level or entry.get("isError"):
            events.append(entry)

    globalLogPublisher.addObserver(observe)
    return events, lambda: globalLogPublisher.removeObserver(observe)


def test_size_beyond_rfb_drops_the_viewer_instead_of_raising():
    """The 70000x1 screen a guest could once set: a new viewer is disconnected at
    ClientInit, a watching one at the resize, each with the reason and no error."""
    problems, stop = logged(LogLevel.warn)
    infos, stopInfos = logged(LogLevel.info)
    try:
        protocol, transport, clock = viewer(SizeOnlyScreen(70000, 1))
        assert transport.disconnecting
        assert len(transport.value()) == _HANDSHAKE  # no ServerInit
        assert not protocol.viewing
        assert announcedByResize(1, 65536) is None
    finally:
        stop()
        stopInfos()
    assert problems == []
    reasons = [entry.get("why", "") for entry in infos]
    assert "screen 70000x1 is too large for RFB" in reasons
    assert "screen resized to 1x65536, too large for RFB" in reasons
