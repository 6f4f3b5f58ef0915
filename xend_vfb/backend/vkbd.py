"""The vkbd ops: turn a display's input into events in the guest's keyboard ring."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.backend.device import BackendDevice, DeviceOps
from xend_vfb.display.screen import IInputSink
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


@implementer(IInputSink)
class VkbdOps(DeviceOps):
    """One vkbd device; also the input sink of the display paired with it."""

    def __init__(self) -> None:
        self.page: Any = None
        self.channel: Any = None
        self.absolute = False
        self.dropped = 0
        self._device: BackendDevice | None = None

    def init(self, device: BackendDevice) -> None:
        self._device = device

    def features(self, device: BackendDevice) -> dict[str, str]:
        return {"feature-abs-pointer": "1"}

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
        # The guest sends nothing on its out ring; notifications need no handling.
        self.channel = device.context.eventChannels.bindInterdomain(
            device.domid, port, lambda: None)

    def disconnect(self, device: BackendDevice) -> None:
        for name in ("channel", "page"):
            resource = getattr(self, name)
            setattr(self, name, None)
            if resource is not None:
                resource.close()

    def status(self) -> dict[str, Any]:
        return {"absolute": self.absolute, "dropped_events": self.dropped}

    # -- IInputSink ----------------------------------------------------------

    def keyEvent(self, keycode: int, pressed: bool) -> None:
        self._send(kbdif.KeyEvent(pressed, keycode))

    def pointerMotion(self, dx: int, dy: int, dz: int) -> None:
        self._send(kbdif.MotionEvent(dx, dy, dz))

    def pointerPosition(self, x: int, y: int, dz: int) -> None:
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
    paired with it at the time (it may connect after the display, or never)."""

    def __init__(self, lookup: Any) -> None:
        self._lookup = lookup

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
            keyboard.pointerPosition(x, y, dz)
