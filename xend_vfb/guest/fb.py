"""The vfb frontend: a framebuffer in guest memory, UPDATE and RESIZE events out.

Behaves as Linux's xen-fbfront: the shared page, the framebuffer and its
directory pages come from guest memory at probe, the pattern (or image) is
drawn before Initialised, so a backend that maps the framebuffer finds it
complete; UPDATE events are sent only when the backend asked for them
(``request-update``) and while a display watches (REFRESH_PERIOD not 0).

Out-ring rules: rectangles wait in a queue; each flush produces what fits,
advances ``out_prod`` and notifies once.  What does not fit waits for the
backend's next notification, or for a retry timer, which falls back to one
full-screen update.  The queue never grows past the ring's length: beyond
that its updates merge into one full-screen update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall

from xend_vfb.errors import DeviceError, GuestError
from xend_vfb.guest.frontend import Frontend
from xend_vfb.guest.pattern import BYTES_PER_PIXEL, animationBand, loadImage, patternBytes
from xend_vfb.guestmem.interfaces import IGuestPages
from xend_vfb.protocol.fbif import (
    IN_RING,
    NO_REFRESH,
    OUT_RING,
    PAGE_SIZE,
    RefreshPeriodEvent,
    ResizeEvent,
    UpdateEvent,
    decodeInEvent,
    directoryPages,
    writePage,
)
from xend_vfb.xenbus import XenbusState

if TYPE_CHECKING:
    from xend_vfb.guest.interfaces import IGuestContext

__all__ = ["DEPTH", "RETRY_DELAY", "VfbFrontend", "memLength"]

#: The only depth the simulator draws in (XRGB, as Linux's default mode).
DEPTH = 32
#: Seconds before a flush blocked by a full out ring is retried without a notification.
RETRY_DELAY = 0.2
MIB = 1024 * 1024


def memLength(width: int, height: int, videoram: int = 0) -> int:
    """Framebuffer bytes for a mode: one screen rounded up to pages, or `videoram` if more."""
    screen = width * BYTES_PER_PIXEL * height
    return max(-(-screen // PAGE_SIZE) * PAGE_SIZE, videoram)


class VfbFrontend(Frontend):
    """One vfb device; tests draw with `draw`/`redraw`, send with `update`, `resize`."""

    devClass = "vfb"

    shared: IGuestPages | None = None
    framebuffer: IGuestPages | None = None
    directories: IGuestPages | None = None

    def __init__(self, domain: IGuestContext, devid: int,
                 onGone: Callable[[Frontend], None]) -> None:
        super().__init__(domain, devid, onGone)
        options = self.domain.options
        self.originalSize = options.size
        #: (width, height, stride) of what the guest shows now.
        self.geometry = (0, 0, 0)
        self.memLength = 0
        self.updateWanted = False
        self.featureResize = False
        #: The last REFRESH_PERIOD the backend sent, None before any.
        self.refreshPeriod: int | None = None
        self._queue: list[UpdateEvent | ResizeEvent] = []
        self._retry: IDelayedCall | None = None
        self._animation: LoopingCall | None = None
        self._tick = 0

    # -- Frontend hooks ------------------------------------------------------

    @inlineCallbacks
    def allocate(self):
        """Shared page, framebuffer and directory pages; draw before publishing.

        As Linux's xen-fbfront, the framebuffer is the backend's ``videoram`` (MiB)
        when it says so (room to resize into), and at least one screen."""
        options = self.domain.options
        memory = self.domain.memory
        width, height = options.size
        stride = width * BYTES_PER_PIXEL
        videoram = yield self.domain.xs.readOrNone(f"{self.backendPath}/videoram")
        least = int(videoram) * MIB if videoram and videoram.isdigit() else 0
        self.memLength = memLength(width, height, max(options.videoram, least))
        self.shared = memory.allocPages(1)
        self.framebuffer = memory.allocPages(self.memLength // PAGE_SIZE)
        listing = directoryPages(self.framebuffer.frames, options.protocol)
        self.directories = memory.allocPages(len(listing))
        for i, page in enumerate(listing):
            self.directories.view[i * PAGE_SIZE : (i + 1) * PAGE_SIZE] = page
        writePage(
            self.shared.view,
            options.protocol,
            width=width,
            height=height,
            line_length=stride,
            mem_length=self.memLength,
            depth=DEPTH,
            pd=self.directories.frames,
        )
        self.geometry = (width, height, stride)
        self.refreshPeriod = None
        self.redraw()
        return {"page-ref": str(self.shared.frames[0]), "feature-update": "1"}

    @inlineCallbacks
    def backendConnected(self):
        """Read ``request-update`` and ``feature-resize`` (again after a backend restart)."""
        xs = self.domain.xs
        wanted = (yield xs.readOrNone(self.backendPath + "/request-update")) == "1"
        resize = (yield xs.readOrNone(self.backendPath + "/feature-resize")) == "1"
        if (wanted, resize) != (self.updateWanted, self.featureResize):
            self.log(
                "info",
                "backend request-update={wanted} feature-resize={resize}",
                wanted=int(wanted),
                resize=int(resize),
            )
        self.updateWanted, self.featureResize = wanted, resize

    def connected(self) -> None:
        """Send the whole screen once, then animate if asked to."""
        self._queueFull()
        self.flush()
        period = self.domain.options.animate
        if period > 0 and self._animation is None:
            self._animation = LoopingCall(self.animate)
            self._animation.clock = self.domain.reactor
            self._animation.start(period, now=False)

    def eventReceived(self) -> None:
        """Take REFRESH_PERIOD events off the in ring, then flush what waits."""
        try:
            events = IN_RING.consume(self.shared.view)
        except GuestError as e:
            self.log("error", "in ring: {error}", error=e)
            events = []
        for raw in events:
            event = decodeInEvent(raw)
            if isinstance(event, RefreshPeriodEvent):
                self._refreshPeriod(event.period)
            else:
                self.log("warn", "unknown in event type {type}", type=raw[0])
        # One notification for the batch: the slots we freed and the events we produced.
        if self._produce() or events:
            self.notify()

    def release(self) -> None:
        """Stop animating and retrying, give the pages back."""
        if self._animation is not None:
            self._animation.stop()
            self._animation = None
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._queue.clear()
        memory = self.domain.memory
        for name in ("shared", "framebuffer", "directories"):
            pages = getattr(self, name)
            if pages is not None:
                memory.freePages(pages)
                setattr(self, name, None)

    # -- drawing ----------------------------------------------------------------

    def draw(self, x: int, y: int, width: int, height: int, pixels: bytes) -> None:
        """Write a `width` x `height` rectangle of packed XRGB rows at (x, y), then
        queue its UPDATE.  Raises `ValueError` if it does not fit the screen."""
        screenWidth, screenHeight, stride = self.geometry
        if self.framebuffer is None:
            raise DeviceError(f"{self.name} has no framebuffer (not probed)")
        if not (0 <= x and 0 <= y and x + width <= screenWidth and y + height <= screenHeight):
            raise ValueError(f"rectangle {width}x{height}+{x}+{y} is off the screen")
        row = width * BYTES_PER_PIXEL
        if len(pixels) != row * height:
            raise ValueError(f"{len(pixels)} bytes for a {width}x{height} rectangle")
        view = self.framebuffer.view
        if x == 0 and row == stride:
            view[y * stride : (y + height) * stride] = pixels
        else:
            for i in range(height):
                start = (y + i) * stride + x * BYTES_PER_PIXEL
                view[start : start + row] = pixels[i * row : (i + 1) * row]
        self.update(x, y, width, height)

    def redraw(self) -> None:
        """Draw the whole screen: the image if one was given, else the test pattern."""
        width, height, _ = self.geometry
        image = self.domain.options.image
        if image is not None:
            pixels = loadImage(image, width, height)
        else:
            pixels = patternBytes(width, height, self.domain.domid, self.devid)
        self.draw(0, 0, width, height, pixels)

    def animate(self) -> None:
        """Draw the next animation frame (a band at the bottom) and send its UPDATE."""
        width, height, _ = self.geometry
        (x, y, w, h), pixels = animationBand(width, height, self._tick)
        self._tick += 1
        self.draw(x, y, w, h, pixels)

    # -- events out ----------------------------------------------------------------

    def update(self, x: int, y: int, width: int, height: int) -> None:
        """Queue an UPDATE of the rectangle and flush (sent once allowed)."""
        self._queue.append(UpdateEvent(x, y, width, height))
        if len(self._queue) > OUT_RING.length:
            self._queueFull()
        self.flush()

    def resize(self, width: int, height: int) -> None:
        """Switch to a `width` x `height` mode: RESIZE, redraw, full UPDATE.

        Raises `DeviceError` unless Connected to a backend with ``feature-resize``,
        `ValueError` if the mode does not fit the framebuffer memory.
        """
        if self.state != XenbusState.Connected or not self.featureResize:
            raise DeviceError(f"{self.name}: backend does not offer resize (feature-resize)")
        stride = width * BYTES_PER_PIXEL
        if width <= 0 or height <= 0 or stride * height > self.memLength:
            raise ValueError(
                f"{self.name}: {width}x{height} does not fit {self.memLength} bytes of video memory"
            )
        self.log("info", "resizing to {width}x{height}", width=width, height=height)
        self.geometry = (width, height, stride)
        # Rectangles not sent yet belong to the old mode; the redraw covers all.
        self._queue = [ResizeEvent(width, height, stride, DEPTH, 0)]
        self.redraw()

    def flush(self) -> None:
        """Produce what waits into the out ring and notify once, when allowed."""
        if self._produce():
            self.notify()

    def _produce(self) -> bool:
        if (
            not self._queue
            or self.shared is None
            or self.state != XenbusState.Connected
            or not self.updateWanted
            or self.refreshPeriod == NO_REFRESH
        ):
            return False
        try:
            count = OUT_RING.produce(self.shared.view, [e.encode() for e in self._queue])
        except GuestError as e:
            self.log("error", "out ring: {error}; dropping {n} events", error=e, n=len(self._queue))
            self._queue.clear()
            return False
        produced, self._queue = self._queue[:count], self._queue[count:]
        for event in produced:
            self.log("debug", "sent {event}", event=event)
        if self._queue and (self._retry is None or not self._retry.active()):
            self._retry = self.domain.reactor.callLater(RETRY_DELAY, self._retryFlush)
        return count > 0

    def _retryFlush(self) -> None:
        self._retry = None
        if self._queue:
            self._queueFull()
        self.flush()

    def _queueFull(self) -> None:
        """Replace waiting updates with one of the whole screen (RESIZEs stay, in order)."""
        width, height, _ = self.geometry
        resizes = [e for e in self._queue if isinstance(e, ResizeEvent)]
        self._queue = [*resizes, UpdateEvent(0, 0, width, height)]

    def _refreshPeriod(self, period: int) -> None:
        self.log("info", "refresh period {period} ms", period=period)
        previous, self.refreshPeriod = self.refreshPeriod, period
        if period != NO_REFRESH and previous == NO_REFRESH:
            # Updates were held back while nobody watched: resend everything.
            self._queueFull()
