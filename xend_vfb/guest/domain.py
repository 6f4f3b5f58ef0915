"""One simulated guest: its memory, its ``device/`` area and the frontends in it.

A `GuestDomain` watches ``/local/domain/D/device`` as a guest kernel's xenbus
does: a ``<class>/N`` (a class of `devices.DEVICE_CLASSES`) that appears gets a
frontend, which probes as soon as its ``state`` says Initialising (hotplug is
the same path as boot); a frontend whose area disappears frees what it held and
is forgotten.  All of
a domain's state lives in this object, so one process can host many domains.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.devices import DEVICE_CLASSES
from xend_vfb.guest.frontend import Frontend
from xend_vfb.guest.interfaces import IGuestContext
from xend_vfb.guest.kbd import InputLog
from xend_vfb.guestmem.emulated import guestDir
from xend_vfb.guestmem.interfaces import IGuestMemory
from xend_vfb.xenstore import IWatch, IXenstore
from xend_vfb.xenstore.paths import domainPath

__all__ = ["CLOSE_TIMEOUT", "GuestDomain", "GuestOptions"]

log = Logger()

#: Seconds a closing frontend waits for its backend by default.
CLOSE_TIMEOUT = 5.0

#: The guest's driver for each device class.
FRONTENDS: dict[str, type[Frontend]] = {cls.name: cls.frontendClass() for cls in DEVICE_CLASSES}


@dataclass(frozen=True)
class GuestOptions:
    """How the simulated guest's drivers behave (the command line's choices)."""

    runDir: str
    protocol: str = "x86_64-abi"
    #: Initial mode (width, height); depth is always 32.
    size: tuple[int, int] = (800, 600)
    #: Least framebuffer bytes to allocate (0: just one screen).
    videoram: int = 0
    #: PNG (or any image Pillow reads) to show instead of the test pattern.
    image: str | None = None
    #: Seconds between animation frames; 0 disables animation.
    animate: float = 0.0
    #: Publish the vkbd page as a grant (``page-gref``) rather than a frame.
    vkbdGrant: bool = False
    #: Ask for raw pointer coordinates (``request-raw-pointer``) when the backend offers them.
    rawPointer: bool = False
    #: The mode SIGUSR1 switches to (and back from).
    resizeTo: tuple[int, int] | None = None


@implementer(IGuestContext)
class GuestDomain:
    """Domain `domid`'s drivers: attributes are what frontends use."""

    def __init__(
        self,
        reactor: IReactorTime,
        xs: IXenstore,
        memory: IGuestMemory,
        domid: int,
        options: GuestOptions,
    ) -> None:
        self.reactor = reactor
        self.xs = xs
        self.memory = memory
        self.domid = domid
        self.options = options
        self.inputLog = InputLog(guestDir(options.runDir, domid) / "input.jsonl")
        #: Live frontends by (class, devid).
        self.devices: dict[tuple[str, int], Frontend] = {}
        self._devicePath = domainPath(domid) + "/device"
        self._watch: IWatch | None = None
        self._stopping = False

    @inlineCallbacks
    def start(self):
        """Watch the device area, then look at what is already there."""
        self._watch = yield self.xs.watch(self._devicePath, self._changed)
        log.info("domain {domid}: watching {path}", domid=self.domid, path=self._devicePath)
        yield self._scan()

    def device(self, devClass: str, devid: int) -> Frontend | None:
        """The live frontend of ``devClass/devid``, if any."""
        return self.devices.get((devClass, devid))

    def stop(self, timeout: float = CLOSE_TIMEOUT) -> Deferred[None]:
        """Close every device as a guest shutting down does (bounded by `timeout`)."""
        self._stopping = True
        closing = [frontend.close(timeout) for frontend in list(self.devices.values())]
        d = DeferredList(closing, consumeErrors=True)

        @inlineCallbacks
        def finished(results):
            for ok, result in results:
                if not ok:
                    log.failure("domain {domid}: closing failed", result, domid=self.domid)
            if self._watch is not None:
                watch, self._watch = self._watch, None
                try:
                    yield watch.cancel()
                except Exception as e:
                    log.info("domain {domid}: unwatch failed: {e}", domid=self.domid, e=e)
            self.inputLog.close()
            self.memory.close()

        return d.addCallback(finished)

    def _changed(self, path: str) -> None:
        parts = path[len(self._devicePath) :].strip("/").split("/")
        if len(parts) >= 2 and parts[0] in FRONTENDS and parts[1].isdigit():
            self._kick(parts[0], int(parts[1]))
        else:
            # The whole area or a class directory: anything below may have changed.
            self._scan().addErrback(self._scanFailed)

    @inlineCallbacks
    def _scan(self):
        for devClass in FRONTENDS:
            for name in (yield self.xs.list(f"{self._devicePath}/{devClass}")):
                if name.isdigit():
                    self._kick(devClass, int(name))
        for frontend in list(self.devices.values()):
            frontend.kick()

    def _scanFailed(self, failure) -> None:
        log.failure("domain {domid}: scanning devices failed", failure, domid=self.domid)

    def _kick(self, devClass: str, devid: int) -> None:
        if self._stopping:
            return
        frontend = self.devices.get((devClass, devid))
        if frontend is None:
            frontend = FRONTENDS[devClass](self, devid, self._forget)
            self.devices[(devClass, devid)] = frontend
            log.info("domain {domid}: found {device}", domid=self.domid, device=frontend.name)
        frontend.kick()

    def _forget(self, frontend: Frontend) -> None:
        key = (frontend.devClass, frontend.devid)
        if self.devices.get(key) is frontend:
            del self.devices[key]
