"""All of one domain's devices, served by one backend process.

`DomainBackend` watches the domain's backend areas, starts a `BackendDevice`
with the class's ops for each device it should serve (new ones, and on a
restart the ones already Connected), pairs each display with its keyboard,
and reports when the domain has no devices left, which ends the process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from zope.interface import implementer

from xend_vfb.backend.device import BackendDevice
from xend_vfb.backend.interfaces import IBackendContext
from xend_vfb.backend.vfb import HeldDisplay
from xend_vfb.backend.vkbd import KeyboardProxy
from xend_vfb.devices import DEVICE_CLASSES, VFB, classNamed
from xend_vfb.errors import DeviceError, XenstoreConnectionError
from xend_vfb.rfb.server import PowerAction
from xend_vfb.settings import DEFAULT_RUN_DIR
from xend_vfb.xenbus import XenbusState, parseState
from xend_vfb.xenstore.areas import readArea
from xend_vfb.xenstore.interfaces import IXenstore
from xend_vfb.xenstore.paths import (
    backendDomainPath,
    backendPath,
    domainPath,
    frontendPath,
    powerRequestPath,
    privatePath,
)

__all__ = ["DomainBackend"]

log = Logger()


@implementer(IBackendContext)
class DomainBackend:
    """The backend of domain `domid`: what ops reach through `device.context`."""

    def __init__(self, xs: IXenstore, domid: int, foreignMemory: Any, eventChannels: Any,
                 reactor: Any, runDir: str = DEFAULT_RUN_DIR) -> None:
        self.xs = xs
        self.runDir = runDir
        self.domid = domid
        self.foreignMemory = foreignMemory
        self.eventChannels = eventChannels
        self.reactor = reactor
        self.name = str(domid)
        self.devices: dict[tuple[str, int], BackendDevice] = {}
        #: Fires when the domain has no devices left to serve.
        self.finished: Deferred[None] = Deferred()
        #: (class, devid) → (class, devid) of its companion.
        self._companions: dict[tuple[str, int], tuple[str, int]] = {}
        self._watches: list = []
        self._scanning = False
        self._rescan = False
        self._stopped = False
        #: Displays kept for the guest's next domain (`hold`), by vfb devid.
        self._held: dict[int, HeldDisplay] = {}
        self._holdTimer: Any = None
        #: Called with (old, new) domid once `follow` has moved to the new domain.
        self.onFollow: Callable[[int, int], None] = lambda old, new: None

    @inlineCallbacks
    def start(self):
        self.name = (yield self.xs.readOrNone(f"{domainPath(self.domid)}/name")) or self.name
        for cls in DEVICE_CLASSES:
            path = backendDomainPath(self.domid, cls.name)
            self._watches.append((yield self.xs.watch(path, self._changed)))
        yield self._scan()

    def stop(self) -> None:
        """The process is stopping: release mappings, leave xenstore for a successor."""
        self._stopped = True
        self._cancelHold()
        for device in list(self.devices.values()):
            device.stop()
        self.devices.clear()
        self._dropHeld()

    # -- following the guest to a new domain -----------------------------------------

    def hold(self, seconds: float) -> None:
        """The guest is about to get a new domain (reboot, save, migration): keep each
        display, black, with its viewers, when its device goes, and stay up without
        devices for `seconds`, waiting for `follow`."""
        self._cancelHold()
        self._holdTimer = self.reactor.callLater(seconds, self._holdExpired)
        log.info("domain {domid}: holding its displays for the next domain", domid=self.domid)

    @property
    def holding(self) -> bool:
        return self._holdTimer is not None

    def keep(self, devid: int, held: HeldDisplay) -> bool:
        """A vfb's display as its device goes: kept if holding (True), else not."""
        if not self.holding:
            return False
        self._held[devid] = held
        return True

    def takeHeld(self, devid: int) -> HeldDisplay | None:
        """The display kept for vfb `devid`, for its device in the new domain."""
        return self._held.pop(devid, None)

    @inlineCallbacks
    def follow(self, domid: int):
        """Serve domain `domid` from now on: the guest's new domain, whose devices take
        over the displays kept by `hold`."""
        old = self.domid
        for watch in self._watches:
            yield watch.cancel()
        self._watches = []
        for device in list(self.devices.values()):
            device.stop()
        self.devices.clear()
        self._companions.clear()
        self.domid = domid
        self.name = str(domid)
        self._cancelHold()
        log.info("domain {old}: now serving the guest's new domain {new}", old=old, new=domid)
        yield self.start()
        self._dropHeld()  # displays the new domain does not have
        self.onFollow(old, domid)

    def _holdExpired(self) -> None:
        self._holdTimer = None
        log.info("domain {domid}: no new domain came: letting the displays go",
                 domid=self.domid)
        self._dropHeld()
        self._changed("")

    def _cancelHold(self) -> None:
        if self._holdTimer is not None and self._holdTimer.active():
            self._holdTimer.cancel()
        self._holdTimer = None

    def _dropHeld(self) -> None:
        for held in self._held.values():
            held.display.stop()
        self._held.clear()

    # -- finding devices ---------------------------------------------------------

    def _changed(self, _path: str) -> None:
        if self._stopped:
            return
        if self._scanning:
            self._rescan = True
            return
        d = self._scan()
        d.addErrback(self._scanFailed)

    def _scanFailed(self, failure: Any) -> None:
        if self._stopped and failure.check(XenstoreConnectionError):
            # A scan still in flight when the process let go of xenstore.
            log.debug("domain {domid}: scan cut short by shutdown", domid=self.domid)
            return
        log.failure("domain {domid}: scan failed", failure, domid=self.domid)

    @inlineCallbacks
    def _scan(self):
        self._scanning = True
        try:
            while True:
                self._rescan = False
                yield self._scanOnce()
                if not self._rescan:
                    break
        finally:
            self._scanning = False

    @inlineCallbacks
    def _scanOnce(self):
        present = 0
        for cls in DEVICE_CLASSES:
            ids = yield self.xs.list(backendDomainPath(self.domid, cls.name))
            for devid in sorted(int(i) for i in ids if i.isdigit()):
                present += 1
                key = (cls.name, devid)
                if key in self.devices or not (yield self._shouldServe(cls.name, devid)):
                    continue
                if cls.companion is not None:
                    companion = yield self.xs.readOrNone(
                        f"{privatePath(self.domid, cls.name, devid)}/{cls.companion}")
                    if companion is not None and companion.isdigit():
                        self._companions[key] = (cls.companion, int(companion))
                device = BackendDevice(self.xs, self.domid, cls.name, devid, cls.makeOps(), self,
                                       self._released)
                self.devices[key] = device
                log.info("domain {domid}: serving {device}", domid=self.domid,
                         device=device.name)
                try:
                    yield device.start()
                except Exception as e:
                    log.error("domain {domid}: {device} could not start: {e}",
                              domid=self.domid, device=device.name, e=e)
                    yield self._failed(device, str(e))
        if not present and not self.devices and not self.holding and not self.finished.called:
            log.info("domain {domid}: no devices left", domid=self.domid)
            self.finished.callback(None)

    @inlineCallbacks
    def _shouldServe(self, deviceClass: str, devid: int):
        """Serve a device whose frontend exists, unless it failed its hotplug script or
        was shut down for good (Closed and offline)."""
        area = backendPath(self.domid, deviceClass, devid)
        if not (yield self.xs.exists(frontendPath(self.domid, deviceClass, devid))):
            return False
        if (yield self.xs.readOrNone(f"{area}/hotplug-status")) == "error":
            return False
        state = parseState((yield self.xs.readOrNone(f"{area}/state")))
        online = (yield self.xs.readOrNone(f"{area}/online")) == "1"
        return state != XenbusState.Closed or online

    @inlineCallbacks
    def _failed(self, device: BackendDevice, why: str):
        """A device that could not even start: report it as a hotplug failure, in the
        area it was started for only (not one the toolstack wrote since, at the same
        path, which a scan serves afresh)."""
        yield device.writeKeys({"hotplug-error": why[:1000], "hotplug-status": "error"})
        device.stop()
        self._forget(device)

    def _released(self, device: BackendDevice) -> None:
        self._forget(device)
        self._changed("")

    def _forget(self, device: BackendDevice) -> None:
        key = (device.devClass, device.devid)
        if self.devices.get(key) is device:
            del self.devices[key]

    # -- what ops ask for ----------------------------------------------------------

    @inlineCallbacks
    def deviceConfig(self, device: BackendDevice):
        """The device's config, read from its backend area and private record."""
        details = yield readArea(self.xs, device.backendPath)
        if not details:
            raise DeviceError(f"Device {device.devid} ({device.devClass}) does not exist in "
                              f"domain {self.domid}")
        secrets = yield readArea(self.xs, privatePath(self.domid, device.devClass, device.devid))
        return classNamed(device.devClass).config.fromDetails(details, secrets, device.name)

    def secret(self, device: BackendDevice, key: str) -> Deferred[str | None]:
        return self.xs.readOrNone(f"{privatePath(self.domid, device.devClass, device.devid)}/{key}")

    def requestPower(self, action: PowerAction) -> Deferred[None]:
        """Pass a viewer's power request (xvp) to the daemon, which owns the guest's
        life: a node it watches, in the private area guests cannot write."""
        log.info("domain {domid}: a viewer asks for {action}", domid=self.domid,
                 action=action.name)
        return self.xs.write(powerRequestPath(self.domid), action.name)

    def keyboardFor(self, vfbId: int) -> KeyboardProxy:
        """The input sink for display `vfbId`: its companion keyboard once connected."""

        def lookup() -> Any:
            companion = self._companions.get((VFB.name, vfbId))
            keyboard = self.devices.get(companion) if companion is not None else None
            return keyboard.ops if keyboard is not None and keyboard.connected else None

        def screen() -> Any:
            display = self.devices.get((VFB.name, vfbId))
            return display.ops.screen if display is not None else None

        return KeyboardProxy(lookup, screen)

    # -- control socket --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        devices = []
        for (deviceClass, devid), device in sorted(self.devices.items()):
            devices.append({"class": deviceClass, "devid": devid,
                            "connected": device.connected, **device.ops.status()})
        return {"domid": self.domid, "name": self.name, "devices": devices}

    def reloadPassword(self, devid: int) -> Deferred[None]:
        """Display `devid` takes its recorded password now (`VfbOps.reloadPassword`)."""
        device = self.devices.get((VFB.name, devid))
        if device is None:
            raise ValueError(f"domain {self.domid} has no display vfb/{devid}")
        return device.ops.reloadPassword(device)

    def screen(self, devid: int) -> Any:
        device = self.devices.get((VFB.name, devid))
        if device is None or device.ops.screen is None:
            raise ValueError(f"domain {self.domid} has no display vfb/{devid}")
        device.ops.refresh()
        return device.ops.screen
