"""The RFB tests' vncdotool side: a client that also keeps raw pixels and rectangles,
connecting with per-connection choices, round trips, and the fake input sink and
screens the displays under test serve.

vncdotool is a real, independently written RFB client; `tests.rfb_reference` is the
one written from the specification, for what vncdotool does not speak (Tight, Zlib,
pseudo-encodings, the shared flag).  Both connect to a `VNCDisplay` started with
`startDisplay`.
"""

import random
import warnings
from contextlib import contextmanager

import pytest
from PIL import Image
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import LogLevel, globalLogPublisher
from vncdotool import rfb
from vncdotool.client import VNCDoToolClient, VNCDoToolFactory
from zope.interface import implementer

from xend_vfb.display.screen import IInputSink, Screen
from xend_vfb.rfb.vncdisplay import VNCDisplay

#: Marks for a module whose tests run vncdotool.
VNCDOTOOL_WARNINGS = [
    # vncdotool answers VNC authentication through cryptography's (deprecated) TripleDES.
    pytest.mark.filterwarnings("ignore:TripleDES has been moved"),
    # vncdotool flags subclasses overriding its update hooks, as `connect` makes.
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

KEY_LEFTSHIFT, KEY_RIGHTALT = 42, 100
KEY_A, KEY_H, KEY_I, KEY_Q, KEY_Y, KEY_Z, KEY_1 = 30, 35, 23, 16, 21, 44, 2
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE = 0x110, 0x111, 0x112


@implementer(IInputSink)
class FakeSink:
    """Records what the display sends to the guest's keyboard and pointer."""

    def __init__(self, absolute: bool = False) -> None:
        self.absolute = absolute
        self.events: list[tuple] = []

    def keyEvent(self, keycode, pressed):
        self.events.append(("key", keycode, pressed))

    def pointerMotion(self, dx, dy, dz):
        self.events.append(("motion", dx, dy, dz))

    def pointerPosition(self, x, y, dz):
        self.events.append(("pos", x, y, dz))


with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # vncdotool flags overridden update hooks

    class Client(VNCDoToolClient):
        """vncdotool's client, also keeping the raw pixels and rectangles of each update."""

        def __init__(self) -> None:
            super().__init__()
            self.updates: list[list[tuple[int, int, int, int]]] = []
            self.raw: bytearray | None = None
            self._waiters: list[Deferred] = []

        def setImageMode(self) -> None:
            wanted = self.factory.pixelFormat
            if wanted is None:
                super().setImageMode()
            else:
                self.setPixelFormat(wanted)

        def updateRectangle(self, x, y, width, height, data):
            size = self.pixel_format.bypp
            if self.raw is None or len(self.raw) != self.width * self.height * size:
                self.raw = bytearray(self.width * self.height * size)
            for row in range(height):
                start = ((y + row) * self.width + x) * size
                self.raw[start : start + width * size] = data[
                    row * width * size : (row + 1) * width * size
                ]
            if self.factory.pixelFormat is None:
                super().updateRectangle(x, y, width, height, data)

        def updateDesktopSize(self, width, height):
            self.width, self.height = width, height
            super().updateDesktopSize(width, height)

        def commitUpdate(self, rectangles=None):
            self.updates.append(list(rectangles or []))
            waiters, self._waiters = self._waiters, []
            super().commitUpdate(rectangles)
            for d in waiters:
                d.callback(list(rectangles or []))

        def nextUpdate(self) -> Deferred:
            d = Deferred()
            self._waiters.append(d)
            return d


class Factory(VNCDoToolFactory):
    protocol = Client
    pixelFormat = None


def fill(screen: Screen, seed: int = 1) -> None:
    """Random pixels, with a solid block so that tile encoders take both paths."""
    screen.buffer[:] = random.Random(seed).randbytes(len(screen.buffer))
    stride = screen.width * 4
    for row in range(min(40, screen.height)):
        screen.buffer[row * stride : row * stride + 4 * min(70, screen.width)] = (
            b"\x10\x80\xf0\x00" * min(70, screen.width)
        )


def expectedImage(screen: Screen) -> Image.Image:
    return Image.frombuffer(
        "RGB", (screen.width, screen.height), bytes(screen.buffer), "raw", "BGRX", 0, 1
    )


async def startDisplay(screen, sink=None, **kwargs):
    display = VNCDisplay(screen, sink or FakeSink(), **kwargs)
    host, port = await display.start()
    assert host == "127.0.0.1"
    return display, port


async def connect(port, password=None, encoding=rfb.Encoding.RAW, pixelFormat=None,
                  version=(3, 8), pseudodesktop=True, qemuExtendedKey=True) -> Client:
    factory = Factory()
    factory.qemu_extended_key = qemuExtendedKey
    factory.password = password
    factory.pixelFormat = pixelFormat
    factory.pseudodesktop = pseudodesktop
    # Per-connection choices go on a subclass, so clients in one test do not share them.
    factory.protocol = type("Client", (Client,), {
        "encoding": encoding, "MAX_CLIENT_VERSION": version,
    })
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    return await factory.deferred


async def roundTrip(client: Client) -> None:
    """Wait until the server handled everything the client sent so far."""
    await client.refreshScreen(incremental=False)


async def roundTripWithoutUpdate(client: Client) -> None:
    """A round trip that asks for no pixels: a second client's full capture, in order
    (the server handles its clients' messages in the order they arrive)."""
    other = await connect(client.transport.getPeer().port)
    await other.refreshScreen()
    await hangUp(other)


@contextmanager
def loggedProblems():
    """Log events of level warn and above while the block runs."""
    events = []

    def observe(event):
        if event.get("log_level", LogLevel.info) >= LogLevel.warn or event.get("isError"):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observe)


def hangUp(client: Client) -> Deferred:
    d = Deferred()
    client.factory._disconnect_callbacks.append(lambda reason: d.callback(None))
    client.transport.loseConnection()
    return d


def leaveMidUpdate(client: Client) -> Deferred:
    """Ask for a full update and drop the connection at its first bytes (a large
    screen's update is then still being written); fires once it is dropped."""
    first: Deferred = Deferred()
    received = client.dataReceived

    def dataReceived(data):
        received(data)
        if not first.called:
            first.callback(None)

    client.dataReceived = dataReceived
    client.framebufferUpdateRequest(incremental=False)
    return first.addCallback(lambda _: client.transport.abortConnection())
