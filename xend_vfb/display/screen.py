"""The seam between a framebuffer backend and whatever shows the screen.

The backend owns a `Screen` and gives it a `source` that reads a rectangle of
the guest's framebuffer; when the guest says it drew, the backend only marks
the rectangle stale (`Screen.invalidate`).  Pixels move on demand: a display
about to send or draw calls `IScreen.sync`, which copies the stale region out
of the source once, compares it with the screen's own copy in 16-pixel tiles
and tells observers (`IScreenObserver.screenUpdated`) about the tiles that
differ.  With nobody watching nothing is copied.  Displays (the VNC server,
the SDL window, screenshots) read the screen through `IScreen` and watch it
through `IScreenObserver`; input from a display goes back through `IInputSink`.

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

from xend_vfb.display.region import DirtyRegion, Rect

__all__ = [
    "BYTES_PER_PIXEL",
    "IScreen",
    "IScreenObserver",
    "IInputSink",
    "IDisplay",
    "Screen",
    "Source",
    "TILE",
    "screenshot",
]

BYTES_PER_PIXEL = 4
#: Side of the square tiles in which `Screen.sync` compares new pixels with its copy (as QEMU).
TILE = 16

#: Reads the rectangle (x, y, w, h) of the guest's framebuffer into a new buffer of our
#: own: XRGB8888, stride ``w * 4``.
Source = Callable[[int, int, int, int], bytearray]

log = Logger()


class IScreenObserver(Interface):
    """Something that shows a screen and wants to know when it changes."""

    def screenUpdated(x: int, y: int, w: int, h: int) -> None:
        """Called after new pixels were written to the rectangle (already clipped to the screen)."""

    def screenResized(width: int, height: int) -> None:
        """Called after the screen took a new size; its pixels are then all new."""

    def screenStale() -> None:
        """Called when the source has new pixels not copied yet (the screen became
        `IScreen.stale`); not called again before the next `IScreen.sync`.  A display
        calls `sync` before it next reads pixels, when it is ready to send or draw them."""


class IScreen(Interface):
    """A framebuffer in XRGB8888 little-endian, stride ``width * 4``."""

    width = Attribute("Width in pixels; changes only before screenResized is called.")
    height = Attribute("Height in pixels; changes only before screenResized is called.")

    stale = Attribute("True while the source has pixels `sync` has not copied yet.")

    def pixels() -> memoryview:
        """The current pixels, ``width * height * 4`` bytes; fetch again after a resize."""

    def sync() -> None:
        """Copy the stale pixels from the source, calling `IScreenObserver.screenUpdated`
        (before returning) for the tiles that changed.  Called by a display just before it
        reads pixels to show them; cheap when nothing is stale."""

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
    """The one concrete screen: the copy displays read, its observers, and its source.

    `buffer` is our own copy of the pixels (the server-side surface).  Without
    a `source` its owner writes `buffer` and calls `update`.  With one, its owner
    calls `invalidate` for what the guest redrew, and `sync` copies the stale
    region when a display asks for it.

    `onViewersChanged` is a hook called with the number of observers whenever
    it changes; the backend sets it to send the guest its refresh-period hint
    (0 when nobody watches).  It does nothing by default.
    """

    def __init__(self, width: int, height: int) -> None:
        self._observers: list[IScreenObserver] = []
        self.onViewersChanged: Callable[[int], None] = lambda count: None
        #: Where `sync` reads stale pixels; None: nothing to read (stale marks are dropped).
        self.source: Source | None = None
        self._stale = DirtyRegion()
        self._allocate(width, height)

    def _allocate(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"screen size must be positive, not {width}x{height}")
        self.width = width
        self.height = height
        # A new buffer rather than a resized one: readers may still hold views of the old one.
        self.buffer = bytearray(width * height * BYTES_PER_PIXEL)
        self._stale.clear()

    @property
    def stale(self) -> bool:
        """See `IScreen.stale`."""
        return bool(self._stale)

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
        rect = self._clip(x, y, w, h)
        if rect is not None:
            self._updated([rect])

    def invalidate(self, x: int, y: int, w: int, h: int) -> None:
        """The source has new pixels in the rectangle (clipped; empty ignored): merge it into
        the stale region, for the next `sync`; observers hear of it once (`screenStale`)."""
        rect = self._clip(x, y, w, h)
        if rect is None:
            return
        wasStale = self.stale
        self._stale.add(rect)
        if wasStale:
            return
        for observer in list(self._observers):
            try:
                observer.screenStale()
            except Exception:
                log.failure("screen observer {observer!r} failed a stale mark", observer=observer)

    def sync(self) -> None:
        """See `IScreen.sync`."""
        rects = self._stale.rects()
        self._stale.clear()
        if not rects or self.source is None:
            return
        changed = DirtyRegion()
        for x, y, w, h in rects:
            fresh = self.source(x, y, w, h)
            tiles = _changedTiles(fresh, self.buffer, self.width, x, y, w, h)
            if not tiles:
                continue
            for tile in tiles:
                changed.add(tile)
            stride, rowBytes = self.width * BYTES_PER_PIXEL, w * BYTES_PER_PIXEL
            if w == self.width:  # whole rows: one slice
                self.buffer[y * stride : (y + h) * stride] = fresh
                continue
            for row in range(h):
                at = (y + row) * stride + x * BYTES_PER_PIXEL
                self.buffer[at : at + rowBytes] = fresh[row * rowBytes : (row + 1) * rowBytes]
        if changed:
            self._updated(changed.rects())

    def resize(self, width: int, height: int) -> None:
        """Take a new size with a new, black buffer, and tell observers (nothing is stale)."""
        self._allocate(width, height)
        for observer in list(self._observers):
            try:
                observer.screenResized(width, height)
            except Exception:
                log.failure("screen observer {observer!r} failed a resize", observer=observer)

    def _clip(self, x: int, y: int, w: int, h: int) -> Rect | None:
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x0 or y1 <= y0:
            return None
        return (x0, y0, x1 - x0, y1 - y0)

    def _updated(self, rects: list[Rect]) -> None:
        for observer in list(self._observers):
            try:
                for rect in rects:
                    observer.screenUpdated(*rect)
            except Exception:
                log.failure("screen observer {observer!r} failed an update", observer=observer)


def _changedTiles(
    fresh: bytes | bytearray, surface: bytearray, width: int, x: int, y: int, w: int, h: int,
) -> list[Rect]:
    """The tiles of a `TILE` grid from the screen's corner (clipped to the area) where the
    area (x, y, w, h) of `surface` (stride ``width * 4``) differs from `fresh` (stride
    ``w * 4``): along each tile row, one rectangle per run of changed tiles.

    Bytes compare in C: a band of tile rows first, as a whole; in a band that differs, the
    rows that differ are XORed as big integers, and the result's tile-wide slices show
    which tiles changed (after the first such row, if every tile already has)."""
    stride, rowBytes = width * BYTES_PER_PIXEL, w * BYTES_PER_PIXEL
    zeros = bytes(TILE * BYTES_PER_PIXEL)
    # Each tile column inside the area: its byte range in a row of `fresh`, its pixel range.
    columns = []
    left = x
    while left < x + w:
        right = min(left - left % TILE + TILE, x + w)
        columns.append(((left - x) * BYTES_PER_PIXEL, (right - x) * BYTES_PER_PIXEL, left, right))
        left = right
    rects: list[Rect] = []
    top = y
    while top < y + h:
        bottom = min(top - top % TILE + TILE, y + h)
        new = fresh[(top - y) * rowBytes : (bottom - y) * rowBytes]
        if w == width:
            old = surface[top * stride : bottom * stride]
        else:
            old = b"".join(surface[r * stride + x * BYTES_PER_PIXEL :][:rowBytes]
                           for r in range(top, bottom))
        if new != old:
            diff = _differingBytes(new, old, rowBytes, columns, zeros)
            run: tuple[int, int] | None = None
            for start, end, pixelLeft, pixelRight in columns:
                if diff[start:end] != zeros[: end - start]:
                    run = (run[0] if run else pixelLeft, pixelRight)
                elif run:
                    rects.append((run[0], top, run[1] - run[0], bottom - top))
                    run = None
            if run:
                rects.append((run[0], top, run[1] - run[0], bottom - top))
        top = bottom
    return rects


def _differingBytes(
    new: bytes | bytearray, old: bytes | bytearray, rowBytes: int,
    columns: list[tuple[int, int, int, int]], zeros: bytes,
) -> bytes:
    """A row of bytes, non-zero where any row of the band `new` differs from `old`."""
    mask = 0
    first = True
    for at in range(0, len(new), rowBytes):
        a, b = new[at : at + rowBytes], old[at : at + rowBytes]
        if a == b:
            continue
        mask |= int.from_bytes(a, "little") ^ int.from_bytes(b, "little")
        if first:
            # Most often the whole band changed: no need to look at its other rows.
            first = False
            diff = mask.to_bytes(rowBytes, "little")
            if all(diff[start:end] != zeros[: end - start] for start, end, _, _ in columns):
                return diff
    return mask.to_bytes(rowBytes, "little")


def screenshot(screen: IScreen, path: str | PathLike[str]) -> None:
    """Write the screen's current pixels to `path` as a PNG."""
    stride = screen.width * BYTES_PER_PIXEL
    image = Image.frombuffer(
        "RGB", (screen.width, screen.height), bytes(screen.pixels()), "raw", "BGRX", stride, 1
    )
    image.save(path, "PNG")
