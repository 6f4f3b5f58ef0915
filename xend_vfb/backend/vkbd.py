"""The vkbd ops: turn a display's input into events in the guest's keyboard ring.

Absolute positions come in the pixels of the screen the display shows now;
the guest's xen-kbdfront read its pointer's range (the backend's ``width`` and
``height``) once, when it probed, and a resized framebuffer does not change
it: each position is scaled from the screen to that range (or to 0-0x7fff for
a guest that asked ``request-raw-pointer``).  A keyboard configured with
``feature-disable-keyboard`` or ``feature-disable-pointer`` drops that kind of
input: the guest has no device to take it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.backend.device import BackendDevice, DeviceOps
from xend_vfb.display.screen import IInputSink, IScreen
from xend_vfb.errors import GuestError
from xend_vfb.protocol import kbdif

__all__ = ["VkbdOps", "KeyboardProxy"]

log = Logger()

U32_MAX = 2**32 - 1
#: Grant references below this are the toolstack's (Xen's GNTTAB_NR_RESERVED_ENTRIES):
#: on Xen, 0 and 1 grant the guest's console and xenstore pages to their backends.  A
#: frontend never offers them (Linux allocates from 8 on), so one that does is refused
#: with that reason rather than having keyboard events written into those rings.
FIRST_GUEST_GREF = 8
#: The pointer's range when the backend area has none (Linux xen-kbdfront's default).
DEFAULT_WIDTH, DEFAULT_HEIGHT = 800, 600
_BUTTONS = frozenset({kbdif.BTN_LEFT, kbdif.BTN_RIGHT, kbdif.BTN_MIDDLE})


@implementer(IInputSink)
class VkbdOps(DeviceOps):
    """One vkbd device; also the input sink of the display paired with it."""

    def __init__(self) -> None:
        self.page: Any = None
        self.channel: Any = None
        self.absolute = False
        self.raw = False
        #: The pointer's range the guest read at probe (the backend's width, height).
        self.extent = (DEFAULT_WIDTH, DEFAULT_HEIGHT)
        self.config: Any = None
        self.dropped = 0
        self._device: BackendDevice | None = None

    @inlineCallbacks
    def init(self, device: BackendDevice):
        self._device = device
        self.config = yield device.context.deviceConfig(device)

    def features(self, device: BackendDevice) -> dict[str, str]:
        return {"feature-abs-pointer": "1", "feature-raw-pointer": "1"}

    @inlineCallbacks
    def connect(self, device: BackendDevice):
        memory = device.context.foreignMemory
        # grant_ref_t and evtchn_port_t are 32 bits: larger values are not Xen's to
        # refuse (os.pread overflowed on a 2**63 grant reference).
        gref = yield device.readFrontendInt("page-gref", required=False, default=-1,
                                            maximum=U32_MAX)
        if 0 <= gref < FIRST_GUEST_GREF:
            raise GuestError(f"{device.name}: page-gref {gref} is reserved for the toolstack "
                             f"(0-{FIRST_GUEST_GREF - 1})")
        if gref >= 0:
            self.page = memory.mapGrant(device.domid, gref, True)
        else:
            self.page = memory.mapFrames(
                device.domid, [(yield device.readFrontendInt("page-ref"))], True)
        port = yield device.readFrontendInt("event-channel", maximum=U32_MAX)
        self.absolute = (yield device.readFrontendInt(
            "request-abs-pointer", required=False)) == 1
        # Raw coordinates are only valid with absolute ones (kbdif.h).
        self.raw = self.absolute and (yield device.readFrontendInt(
            "request-raw-pointer", required=False)) == 1
        self.extent = (
            (yield self._backendSize(device, "width", DEFAULT_WIDTH)),
            (yield self._backendSize(device, "height", DEFAULT_HEIGHT)),
        )
        # The guest sends nothing on its out ring; notifications need no handling.
        self.channel = device.context.eventChannels.bindInterdomain(
            device.domid, port, lambda: None)

    @inlineCallbacks
    def _backendSize(self, device: BackendDevice, key: str, default: int):
        """The toolstack's `key` in our own area: what the guest read at probe."""
        value = yield device.xs.readOrNone(f"{device.backendPath}/{key}")
        return int(value) if value is not None and value.isdigit() and int(value) else default

    def disconnect(self, device: BackendDevice) -> None:
        for name in ("channel", "page"):
            resource = getattr(self, name)
            setattr(self, name, None)
            if resource is not None:
                resource.close()

    def status(self) -> dict[str, Any]:
        return {"absolute": self.absolute, "raw": self.raw, "extent": list(self.extent),
                "dropped_events": self.dropped}

    def guestPosition(self, x: int, y: int, screen: tuple[int, int]) -> tuple[int, int]:
        """(`x`, `y`) on a screen of `screen` pixels, in the guest's coordinates."""
        return kbdif.scalePosition(x, y, screen, None if self.raw else self.extent)

    @property
    def _keyboard(self) -> bool:
        return not (self.config is not None and self.config.disableKeyboard)

    @property
    def _pointer(self) -> bool:
        return not (self.config is not None and self.config.disablePointer)

    # -- IInputSink ----------------------------------------------------------

    def keyEvent(self, keycode: int, pressed: bool) -> None:
        if self._pointer if keycode in _BUTTONS else self._keyboard:
            self._send(kbdif.KeyEvent(pressed, keycode))

    def pointerMotion(self, dx: int, dy: int, dz: int) -> None:
        if self._pointer:
            self._send(kbdif.MotionEvent(dx, dy, dz))

    def pointerPosition(self, x: int, y: int, dz: int) -> None:
        """A position already in the guest's coordinates (see `guestPosition`)."""
        if self._pointer:
            self._send(kbdif.PositionEvent(x, y, dz))

    def _send(self, event: Any) -> None:
        if self.page is None:
            return  # not connected: input has nowhere to go
        try:
            if kbdif.IN_RING.produce(self.page.view, [event.encode()]):
                self.channel.notify()
            else:
                self.dropped += 1
                log.debug("{device}: ring full, input event dropped", device=self._device)
        except GuestError as e:
            self._device.guestError(e)


@implementer(IInputSink)
class KeyboardProxy:
    """The input sink a display is given: forwards to whichever keyboard device is
    paired with it at the time (it may connect after the display, or never), and
    scales absolute positions from the display's screen (`screen()`, None while there
    is none) to the guest's coordinates."""

    def __init__(self, lookup: Callable[[], VkbdOps | None],
                 screen: Callable[[], IScreen | None] = lambda: None) -> None:
        self._lookup = lookup
        self._screen = screen

    @property
    def absolute(self) -> bool:
        keyboard = self._lookup()
        return keyboard.absolute if keyboard is not None else False

    def keyEvent(self, keycode: int, pressed: bool) -> None:
        keyboard = self._lookup()
        if keyboard is not None:
            keyboard.keyEvent(keycode, pressed)

    def pointerMotion(self, dx: int, dy: int, dz: int) -> None:
        keyboard = self._lookup()
        if keyboard is not None:
            keyboard.pointerMotion(dx, dy, dz)

    def pointerPosition(self, x: int, y: int, dz: int) -> None:
        keyboard = self._lookup()
        if keyboard is not None:
            screen = self._screen()
            if screen is not None:
                x, y = keyboard.guestPosition(x, y, (screen.width, screen.height))
            keyboard.pointerPosition(x, y, dz)
