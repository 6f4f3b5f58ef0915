"""The seam between a framebuffer backend and whatever shows the screen.

The backend owns a `Screen`: it copies guest pixels into `Screen.buffer` and
calls `Screen.update` for the rectangle it copied.  Displays (the VNC server,
screenshots) read the screen through `IScreen` and watch it through
`IScreenObserver`; input from a display goes back through `IInputSink`.

Pixels are XRGB8888 little-endian: bytes B, G, R, X per pixel, rows of
``width * 4`` bytes with no padding, the layout a Linux guest's 32-bit
framebuffer uses.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike

from PIL import Image
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

__all__ = [
    "BYTES_PER_PIXEL",
    "IScreen",
    "IScreenObserver",
    "IInputSink",
    "IDisplay",
    "Screen",
    "screenshot",
]

BYTES_PER_PIXEL = 4

log = Logger()


class IScreenObserver(Interface):
    """Something that shows a screen and wants to know when it changes."""

    def screenUpdated(x: int, y: int, w: int, h: int) -> None:
        """Called after new pixels were written to the rectangle (already clipped to the screen)."""

    def screenResized(width: int, height: int) -> None:
        """Called after the screen took a new size; its pixels are then all new."""


class IScreen(Interface):
    """A framebuffer in XRGB8888 little-endian, stride ``width * 4``."""

    width = Attribute("Width in pixels; changes only before screenResized is called.")
    height = Attribute("Height in pixels; changes only before screenResized is called.")

    def pixels() -> memoryview:
        """The current pixels, ``width * height * 4`` bytes; fetch again after a resize."""

    def addObserver(observer: IScreenObserver) -> None:
        """Start telling `observer` about updates and resizes."""

    def removeObserver(observer: IScreenObserver) -> None:
        """Stop telling `observer`; removing one not added is a no-op."""


class IInputSink(Interface):
    """Where keyboard and pointer input from a display goes (a vkbd device)."""

    absolute = Attribute("True when the guest asked for an absolute pointer (pointerPosition).")

    def keyEvent(keycode: int, pressed: bool) -> None:
        """A Linux input key (KEY_*, or BTN_LEFT/RIGHT/MIDDLE) was pressed or released."""

    def pointerMotion(dx: int, dy: int, dz: int) -> None:
        """Relative pointer motion in pixels; dz is the wheel (-1 up, +1 down)."""

    def pointerPosition(x: int, y: int, dz: int) -> None:
        """Absolute pointer position in screen pixels; dz as for pointerMotion."""


class IDisplay(Interface):
    """A way to show a screen to people (e.g. a VNC server), started and stopped by its owner."""

    viewers = Attribute("How many viewers are connected and past authentication.")

    def start() -> Deferred[tuple[str, int]]:
        """Start listening; fires with the (host, port) actually used."""

    def stop() -> Deferred[None]:
        """Stop listening and disconnect every viewer; fires when all are gone."""


@implementer(IScreen)
class Screen:
    """The one concrete screen: a bytearray the backend fills, plus its observers.

    `onViewersChanged` is a hook called with the number of observers whenever
    it changes; the backend sets it to send the guest its refresh-period hint
    (0 when nobody watches).  It does nothing by default.
    """

    def __init__(self, width: int, height: int) -> None:
        self._observers: list[IScreenObserver] = []
        self.onViewersChanged: Callable[[int], None] = lambda count: None
        self._allocate(width, height)

    def _allocate(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"screen size must be positive, not {width}x{height}")
        self.width = width
        self.height = height
        # A new buffer rather than a resized one: readers may still hold views of the old one.
        self.buffer = bytearray(width * height * BYTES_PER_PIXEL)

    def pixels(self) -> memoryview:
        """See `IScreen.pixels`."""
        return memoryview(self.buffer)

    def addObserver(self, observer: IScreenObserver) -> None:
        """See `IScreen.addObserver`."""
        if observer not in self._observers:
            self._observers.append(observer)
            self.onViewersChanged(len(self._observers))

    def removeObserver(self, observer: IScreenObserver) -> None:
        """See `IScreen.removeObserver`."""
        if observer in self._observers:
            self._observers.remove(observer)
            self.onViewersChanged(len(self._observers))

    def update(self, x: int, y: int, w: int, h: int) -> None:
        """Tell observers that `buffer` has new pixels in the rectangle (clipped; empty ignored)."""
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        for observer in list(self._observers):
            try:
                observer.screenUpdated(x0, y0, x1 - x0, y1 - y0)
            except Exception:
                log.failure("screen observer {observer!r} failed an update", observer=observer)

    def resize(self, width: int, height: int) -> None:
        """Take a new size with a new, black buffer, and tell observers."""
        self._allocate(width, height)
        for observer in list(self._observers):
            try:
                observer.screenResized(width, height)
            except Exception:
                log.failure("screen observer {observer!r} failed a resize", observer=observer)


def screenshot(screen: IScreen, path: str | PathLike[str]) -> None:
    """Write the screen's current pixels to `path` as a PNG."""
    stride = screen.width * BYTES_PER_PIXEL
    image = Image.frombuffer(
        "RGB", (screen.width, screen.height), bytes(screen.pixels()), "raw", "BGRX", stride, 1
    )
    image.save(path, "PNG")
