"""The vfb ops: map the guest's framebuffer, keep a screen copy, show it (VNC, SDL).

The screen copy (`display.screen.Screen`, always XRGB8888) is what displays read.
The guest's UPDATE events (or, for a guest that cannot send them, a poll
while someone watches) only mark rectangles stale; pixels are copied out of
the guest's framebuffer when a display is about to send them (`Screen.sync`),
once per copy into a buffer of our own, so a display never touches guest
memory and nothing is copied while nobody watches.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from xend_vfb.backend.control import displaySocketPath
from xend_vfb.backend.device import BackendDevice, DeviceOps
from xend_vfb.display.screen import Screen
from xend_vfb.display.sdl import SDLDisplay
from xend_vfb.errors import DeviceError, GuestError
from xend_vfb.model import PASSWORD_EXPIRES
from xend_vfb.protocol import fbif
from xend_vfb.protocol.pixels import readRect
from xend_vfb.protocol.ring import RingOverflow
from xend_vfb.rfb.keymaps import loadKeymap
from xend_vfb.rfb.server import VNC_BASE_PORT
from xend_vfb.rfb.vncdisplay import VNCDisplay
from xend_vfb.tls import TLSSettings
from xend_vfb.xenstore.paths import domainPath

__all__ = ["VfbOps", "HeldDisplay"]

log = Logger()

MIB = 1024 * 1024
#: Refresh period (ms) asked of a guest while someone watches: about 60 Hz.
REFRESH_MS = 16
#: Seconds between marking the whole screen stale, for a guest that sends no UPDATE events.
POLL_INTERVAL = 0.05


@dataclass
class HeldDisplay:
    """A VNC display kept, black, while its guest moves to a new domain (reboot, save,
    migration), so that its viewers stay connected and see the guest come back."""

    screen: Screen
    display: VNCDisplay
    address: tuple[str, int]

    def blank(self) -> None:
        self.screen.onViewersChanged = lambda count: None
        self.screen.buffer[:] = bytes(len(self.screen.buffer))
        self.screen.update(0, 0, self.screen.width, self.screen.height)


class VfbOps(DeviceOps):
    """One vfb device's screen, mappings and display."""

    def __init__(self) -> None:
        self.config: Any = None
        self.screen: Screen | None = None
        self.display: VNCDisplay | None = None
        self.sdl: SDLDisplay | None = None
        self.address: tuple[str, int] | None = None
        self.page: Any = None
        self.framebuffer: Any = None
        self.channel: Any = None
        self.geometry: fbif.Geometry | None = None
        self.memLength = 0
        self._poller: LoopingCall | None = None
        self._device: BackendDevice | None = None
        #: For `status`: UPDATE events taken, out-ring overflows lived through, copies
        #: out of guest memory made, their cost.
        self.updatesReceived = 0
        self.overflows = 0
        self.copies = 0
        self.copySeconds = 0.0

    # -- ops ------------------------------------------------------------------

    @inlineCallbacks
    def init(self, device: BackendDevice):
        self._device = device
        self.config = config = yield device.context.deviceConfig(device)
        held = device.context.takeHeld(device.devid)
        if held is not None and config.vnc:
            # The guest's previous domain's display: same port, same viewers.
            self.screen, self.display, self.address = held.screen, held.display, held.address
            if (self.screen.width, self.screen.height) != (config.width, config.height):
                self.screen.resize(config.width, config.height)
            yield self.reloadPassword(device)
            yield self._publishAddress(device)
        else:
            if held is not None:
                yield held.display.stop()
            self.screen = Screen(config.width, config.height)
            if config.vnc:
                yield self._startVNC(device)
        self.screen.onViewersChanged = self._viewersChanged
        if config.sdl:
            self.sdl = SDLDisplay(self.screen, device.context.keyboardFor(device.devid),
                                  config.display, config.xauthority,
                                  title=f"{device.context.name} ({device.name})",
                                  reactor=device.context.reactor)
            yield self.sdl.start()

    @inlineCallbacks
    def _startVNC(self, device: BackendDevice):
        config = self.config
        # Compiling a layout from XKB data takes seconds on a slow host (dom0 under
        # software emulation): off the reactor, so xenstore replies are not left
        # waiting; the display then finds it in loadKeymap's cache.
        yield deferToThread(loadKeymap, config.keymap)
        previous = yield device.xs.readOrNone(f"{device.backendPath}/vnc-port")
        password, expires = yield self._password(device)
        sink = device.context.keyboardFor(device.devid)
        # The daemon's settings (its environment reaches backends).  Certificates are
        # read afresh for each display; a problem with them stops this display from
        # starting (ConfigError), never lets it start without TLS.
        settings = TLSSettings.fromEnvironment()
        tls = settings.contextFactory() if settings is not None else None

        def make(display: int | None, findUnused: bool) -> VNCDisplay:
            return VNCDisplay(self.screen, sink, listen=config.vnclisten, display=display,
                              findUnused=findUnused, password=password,
                              passwordExpires=expires,
                              keymap=config.keymap, reactor=device.context.reactor,
                              name=f"{device.context.name} ({device.name})",
                              lossy=os.environ.get("XEND_VFB_VNC_LOSSY") == "1",
                              share=config.vncshare or "allow-exclusive", tls=tls,
                              localSocket=lambda port: displaySocketPath(
                                  device.context.runDir, port),
                              powerControl=(device.context.requestPower
                                            if config.vncpowercontrol else None))

        self.display = None
        if previous and previous.isdigit() and int(previous) >= VNC_BASE_PORT:
            # A restarted backend takes back the port its viewers know, if it can.
            candidate = make(int(previous) - VNC_BASE_PORT, False)
            try:
                self.address = yield candidate.start()
                self.display = candidate
            except Exception as e:
                log.warn("{device}: cannot listen on previous port {port} again: {e}",
                         device=device, port=previous, e=e)
        if self.display is None:
            findUnused = config.vncunused or config.vncdisplay is None
            self.display = make(config.vncdisplay, findUnused)
            self.address = yield self.display.start()
        yield self._publishAddress(device)

    @inlineCallbacks
    def _password(self, device: BackendDevice):
        """The display's password ("" for none) and its expiry time (None for never),
        as the toolstack recorded them in the device's private area."""
        password = yield device.context.secret(device, "vncpasswd")
        expires = yield device.context.secret(device, PASSWORD_EXPIRES)
        try:
            when = float(expires) if expires else None
        except ValueError:
            log.warn("{device}: ignoring a malformed {key}", device=device, key=PASSWORD_EXPIRES)
            when = None
        return password or "", when

    @inlineCallbacks
    def reloadPassword(self, device: BackendDevice):
        """Take the password the toolstack recorded for this display now: viewers
        already in stay, new ones need it (`xend-vfb vnc-passwd`)."""
        if self.display is None:
            raise DeviceError(f"domain {device.domid}: {device.name} has no VNC display")
        password, expires = yield self._password(device)
        self.display.setPassword(password, expires)

    @inlineCallbacks
    def _publishAddress(self, device: BackendDevice):
        host, port = self.address
        yield device.writeKeys({"vnc-listen": host, "vnc-port": str(port)})
        if device.devid == 0:
            # The historical place old tools read, mirroring device 0.
            yield device.xs.write(f"{domainPath(device.domid)}/console/vnc-port", str(port))

    def features(self, device: BackendDevice) -> dict[str, str]:
        return {"feature-resize": "1", "request-update": "1"}

    @inlineCallbacks
    def connect(self, device: BackendDevice):
        memory = device.context.foreignMemory
        pageRef = yield device.readFrontendInt("page-ref")
        port = yield device.readFrontendInt("event-channel", maximum=2**32 - 1)
        protocol = (yield device.xs.readOrNone(f"{device.frontendPath}/protocol")) or "x86_64-abi"
        updates = (yield device.readFrontendInt("feature-update", required=False)) == 1

        self.page = memory.mapFrames(device.domid, [pageRef], True)
        info = fbif.FbPage.read(self.page.view, protocol, self.config.videoram * MIB)
        for note in info.clamped:
            log.warn("{device}: {note}", device=device, note=note)
        directories = memory.mapFrames(device.domid, info.pd, False)
        try:
            pages = [directories.view[i * fbif.PAGE_SIZE:(i + 1) * fbif.PAGE_SIZE]
                     for i in range(len(info.pd))]
            frames = fbif.framebufferFrames(pages, info.mem_length, protocol)
            for page in pages:
                page.release()
        finally:
            directories.close()
        self.framebuffer = memory.mapFrames(device.domid, frames, False)
        self.memLength = info.mem_length
        self._setGeometry(info.geometry)
        self.channel = device.context.eventChannels.bindInterdomain(
            device.domid, port, self._event)
        self.screen.source = self._read
        # Errors here go to our caller (the device fails to connect), not to
        # `guestError`, which would race with the device's own transition.
        self._hint(self._viewers())
        self._drain()
        if not updates:
            self._poller = LoopingCall(self._poll)
            self._poller.clock = device.context.reactor
            self._poller.start(POLL_INTERVAL)

    def disconnect(self, device: BackendDevice) -> None:
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        self._poller = None
        if self.screen is not None:
            self.screen.source = None  # the mappings go: nothing more to read
        for name in ("channel", "framebuffer", "page"):
            resource = getattr(self, name)
            setattr(self, name, None)
            if resource is not None:
                resource.close()
        self.geometry = None

    def free(self, device: BackendDevice) -> Any:
        if self.sdl is not None:
            sdl, self.sdl = self.sdl, None
            sdl.stop()  # closes at once
        if self.display is not None:
            display, self.display = self.display, None
            held = HeldDisplay(self.screen, display, self.address)
            if device.context.keep(device.devid, held):
                held.blank()
                return None
            return display.stop()
        return None

    def status(self) -> dict[str, Any]:
        host, port = self.address or (None, None)
        return {
            "vnc_listen": host,
            "vnc_port": port,
            "width": self.screen.width if self.screen else None,
            "height": self.screen.height if self.screen else None,
            "sdl_display": self.sdl.display if self.sdl and self.sdl.viewers else None,
            "viewers": self._viewers(),
            "updates_received": self.updatesReceived,
            "ring_overflows": self.overflows,
            "copies": self.copies,
            "copy_seconds": round(self.copySeconds, 3),
        }

    def _viewers(self) -> int:
        """How many watch: VNC viewers, plus the SDL window while it is open."""
        return sum(d.viewers for d in (self.display, self.sdl) if d is not None)

    # -- guest events -----------------------------------------------------------

    def _event(self) -> None:
        """The guest notified: handle every event in its out ring."""
        if self.page is None:
            return
        try:
            self._drain()
        except GuestError as e:
            self._device.guestError(e)

    def _drain(self) -> None:
        """Handle every event in the out ring; `GuestError` for a misbehaving guest.

        An UPDATE only marks its rectangle stale: however fast the guest redraws,
        pixels are copied only when a display is about to show them."""
        try:
            events = fbif.OUT_RING.consume(self.page.view)
        except RingOverflow as e:
            events = self._overflowed(e)
        for raw in events:
            event = fbif.decodeOutEvent(raw)
            if isinstance(event, fbif.UpdateEvent):
                self.updatesReceived += 1
                rect = fbif.clipUpdate(event, self.geometry.width, self.geometry.height)
                if rect is not None:
                    self.screen.invalidate(*rect)
            elif isinstance(event, fbif.ResizeEvent):
                self._setGeometry(fbif.validateResize(event, self.memLength))
            else:
                log.info("{device}: ignoring unknown event type {type}",
                         device=self._device, type=raw[0])

    def _overflowed(self, error: RingOverflow) -> list[bytes]:
        """Live through an out ring the guest overran: keep its newest ring-full of
        events, redraw the whole screen for the lost ones.

        Linux's xen-fbfront does overrun it: two of its writers can both find the
        ring one short of full and both produce, and from then on its "exactly
        full" test never stops it, so it writes on until we catch up.  Ending the
        device for that would take a real guest's display; a redraw costs no more
        than an UPDATE of the whole screen, which any guest may send."""
        self.overflows += 1
        if self.overflows == 1:
            log.warn("{device}: {error}; the lost updates are redrawn whole "
                     "(further overflows are only counted)",
                     device=self._device, error=error)
        fbif.OUT_RING.catchUp(self.page.view)
        self.screen.invalidate(0, 0, self.geometry.width, self.geometry.height)
        try:
            return fbif.OUT_RING.consume(self.page.view)
        except RingOverflow:
            return []  # the guest moves the counters under us: again at its next notify

    def _setGeometry(self, geometry: fbif.Geometry) -> None:
        self.geometry = geometry
        if (self.screen.width, self.screen.height) != (geometry.width, geometry.height):
            self.screen.resize(geometry.width, geometry.height)
        self.screen.invalidate(0, 0, geometry.width, geometry.height)

    def _read(self, x: int, y: int, w: int, h: int) -> bytearray:
        """The screen's source: the rectangle, out of the guest's framebuffer, as XRGB8888."""
        geometry = self.geometry
        started = time.perf_counter()
        pixels = readRect(self.framebuffer.view, geometry.stride, geometry.depth,
                          geometry.offset, x, y, w, h)
        self.copies += 1
        self.copySeconds += time.perf_counter() - started
        return pixels

    def refresh(self) -> None:
        """Bring the screen up to date with the whole visible framebuffer now.  For
        screenshots: while no display watches, the guest is told it need not send UPDATEs
        (REFRESH_PERIOD 0), and nothing is copied."""
        if self.geometry is not None and self.framebuffer is not None:
            self.screen.invalidate(0, 0, self.geometry.width, self.geometry.height)
            self.screen.sync()

    def _poll(self) -> None:
        if self.geometry is not None and self._viewers():
            self.screen.invalidate(0, 0, self.geometry.width, self.geometry.height)

    def _viewersChanged(self, count: int) -> None:
        """Tell the guest whether anyone watches (period 0: nobody, save your work)."""
        if self.page is None:
            return
        try:
            self._hint(count)
        except GuestError as e:
            self._device.guestError(e)

    def _hint(self, count: int) -> None:
        """Send the refresh period for `count` viewers; `GuestError` for a bad in ring."""
        period = REFRESH_MS if count else fbif.NO_REFRESH
        if fbif.IN_RING.produce(self.page.view, [fbif.RefreshPeriodEvent(period).encode()]):
            self.channel.notify()
        if count and self.geometry is not None:
            # The guest may have skipped updates while nobody watched.
            self.screen.invalidate(0, 0, self.geometry.width, self.geometry.height)

