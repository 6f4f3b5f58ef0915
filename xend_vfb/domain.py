"""A domain's display devices: the part of xend's XendDomainInfo that concerns them.

Small on purpose: it creates devices in the right order through the
controllers (each display's keyboard before the display, the old xend race
"Device 0 (vkbd) is already connected" came from the opposite order), pairs
each display with its keyboard in the display's private record, flags the
graphical console, and undoes everything a failed create wrote.
"""

from __future__ import annotations

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from xend_vfb import sxp
from xend_vfb.controller import DevController
from xend_vfb.devices import DEVICE_CLASSES, VFB, VKBD, classNamed
from xend_vfb.errors import DeviceError
from xend_vfb.model import PASSWORD_EXPIRES, DeviceConfig, DomainConfig
from xend_vfb.xenstore.interfaces import IXenstore
from xend_vfb.xenstore.paths import domainPath, privatePath

__all__ = ["Domain"]

log = Logger()


class Domain:
    """The devices of every class of domain `domid`, as recorded in xenstore."""

    def __init__(self, xs: IXenstore, domid: int, name: str, reactor=None) -> None:
        self.xs = xs
        self.domid = domid
        self.name = name
        self.controllers: dict[str, DevController] = {
            cls.name: cls.controllerClass()(xs, domid, name, reactor) for cls in DEVICE_CLASSES
        }

    def controller(self, name: str) -> DevController:
        return self.controllers[name]

    @property
    def useGraphicsPath(self) -> str:
        return f"{domainPath(self.domid)}/console/use_graphics"

    # -- creating ----------------------------------------------------------

    @inlineCallbacks
    def createDevices(self, config: DomainConfig):
        """Write every display (with its keyboard) and extra keyboard of `config`.
        Fires with the list of (class, devid) written; on failure removes them all
        and passes the failure on."""
        created: list[tuple[str, int]] = []
        wroteConsole = False
        try:
            keyboards = list(config.vkbds)
            for vfb in config.vfbs:
                yield self._attach(VFB.name, vfb, keyboards.pop(0) if keyboards else None,
                                   created)
            for vkbd in keyboards:
                yield self._attach(VKBD.name, vkbd, None, created)
            if config.vfbs:
                wroteConsole = not (yield self.xs.exists(self.useGraphicsPath))
                yield self.xs.write(self.useGraphicsPath, "1")
        except BaseException:
            yield self.rollback(created, wroteConsole)
            raise
        return created

    @inlineCallbacks
    def attach(self, name: str, config: DeviceConfig, companion: DeviceConfig | None = None):
        """Add a device of class `name` and, if the class has one, its companion (a
        display's keyboard: `companion`, or one with default keys); fires with the
        [(class, devid), ...] written, companion first."""
        created: list[tuple[str, int]] = []
        try:
            yield self._attach(name, config, companion, created)
        except BaseException:
            yield self.rollback(created)
            raise
        return created

    @inlineCallbacks
    def _attach(self, name: str, config: DeviceConfig, companion: DeviceConfig | None,
                created: list):
        # The companion first: a Linux display frontend probes its keyboard's area
        # as soon as its own appears ("Device 0 (vkbd) is already connected").
        companionClass = classNamed(name).companion
        private = {}
        if companionClass is not None:
            companion = companion or classNamed(companionClass).config()
            companionId = yield self.controller(companionClass).createDevice(
                companion, extra=config.companionDetails())
            created.append((companionClass, companionId))
            private[companionClass] = str(companionId)
        devid = yield self.controller(name).createDevice(config, private=private)
        created.append((name, devid))

    @inlineCallbacks
    def rollback(self, created: list[tuple[str, int]], wroteConsole: bool = False):
        """Remove what a failed create wrote, newest first."""
        for deviceClass, devid in reversed(created):
            yield self.controller(deviceClass).removeDevice(devid)
        if wroteConsole:
            yield self._removeGraphicsFlag()
        if created:
            log.info("domain {domid}: rolled back {count} device(s)", domid=self.domid,
                     count=len(created))

    @inlineCallbacks
    def waitForDevices(self, devices: list[tuple[str, int]], timeout: float | None = None):
        """Wait until the backend reports every device in `devices` connected."""
        for deviceClass, devid in devices:
            controller = self.controller(deviceClass)
            if timeout is None:
                yield controller.waitForDevice(devid)
            else:
                yield controller.waitForDevice(devid, timeout)

    @inlineCallbacks
    def restoreDevices(self, snapshot: list[dict]):
        """Write the devices a `snapshot` of another domain of the same guest recorded,
        with the same ids, pairing and configuration, each display asking its backend
        for the VNC port it had (taken only if still free).  Fires with the list of
        (class, devid) written; on failure removes them all."""
        created: list[tuple[str, int]] = []
        configs = {(row["class"], row["devid"]): classNamed(row["class"]).config.fromSXP(
            sxp.parse(row["sxp"]), f"{row['class']}[{row['devid']}]") for row in snapshot}
        # Each companion gets what its device gives it (a keyboard its display's size).
        companionExtra = {}
        for row in snapshot:
            companion = classNamed(row["class"]).companion
            if companion is not None and row.get(companion) is not None:
                companionExtra[(companion, row[companion])] = \
                    configs[(row["class"], row["devid"])].companionDetails()
        order = [cls.name for cls in DEVICE_CLASSES]
        try:
            for row in sorted(snapshot, key=lambda row: order.index(row["class"])):
                key = (row["class"], row["devid"])
                config = configs[key]
                extra, private = dict(companionExtra.get(key, {})), {}
                if row.get("vnc_port") and config.vnc:
                    # Where it listened: asked for again, and what `list` shows
                    # until the backend writes where it listens now.
                    extra["vnc-port"] = str(row["vnc_port"])
                    extra["vnc-listen"] = config.vnclisten
                if row.get(PASSWORD_EXPIRES) is not None:
                    private[PASSWORD_EXPIRES] = row[PASSWORD_EXPIRES]
                companion = classNamed(row["class"]).companion
                if companion is not None and row.get(companion) is not None:
                    private[companion] = str(row[companion])
                yield self.controller(row["class"]).createDevice(
                    config, devid=row["devid"], extra=extra, private=private)
                created.append(key)
            if any(row["class"] == VFB.name for row in snapshot):
                yield self.xs.write(self.useGraphicsPath, "1")
        except BaseException:
            yield self.rollback(created)
            raise
        return created

    # -- reading back --------------------------------------------------------

    @inlineCallbacks
    def snapshot(self):
        """Every device as a JSON-able row: what `restoreDevices` needs to give another
        domain of the same guest the same devices (secrets included: keep it private)."""
        rows = []
        for cls in DEVICE_CLASSES:
            controller = self.controller(cls.name)
            for devid in (yield controller.deviceIDs()):
                config = yield controller.getDeviceConfiguration(devid)
                row = {"class": cls.name, "devid": devid, "sxp": sxp.show(config.toSXP())}
                if cls.companion is not None:
                    row[cls.companion] = yield self.companion(cls.name, devid)
                if getattr(config, "vnc", False):
                    port = yield self.xs.readOrNone(f"{controller.backendPath(devid)}/vnc-port")
                    row["vnc_port"] = int(port) if port and port.isdigit() else None
                    expires = yield self.xs.readOrNone(
                        f"{controller.privatePath(devid)}/{PASSWORD_EXPIRES}")
                    if expires is not None:
                        row[PASSWORD_EXPIRES] = expires
                rows.append(row)
        return rows

    @inlineCallbacks
    def companion(self, name: str, devid: int):
        """The id of the companion of device `devid` of class `name` (a display's
        keyboard), or None."""
        companion = classNamed(name).companion
        if companion is None:
            return None
        value = yield self.xs.readOrNone(f"{privatePath(self.domid, name, devid)}/{companion}")
        return int(value) if value is not None and value.isdigit() else None

    @inlineCallbacks
    def deviceIDs(self):
        """{class: [devid, ...]} of the devices recorded in xenstore."""
        ids = {}
        for deviceClass, controller in self.controllers.items():
            ids[deviceClass] = yield controller.deviceIDs()
        return ids

    @inlineCallbacks
    def reportError(self, message: str, connectedToo: bool):
        """`DevController.reportError` on every device of the domain."""
        for controller in self.controllers.values():
            for devid in (yield controller.deviceIDs()):
                yield controller.reportError(devid, message, connectedToo)

    # -- destroying ------------------------------------------------------------

    @inlineCallbacks
    def detach(self, name: str, devid: int, force: bool = False):
        """Remove a device and its companion (a display and its keyboard, display
        first)."""
        controller = self.controller(name)
        if not (yield self.xs.exists(controller.backendPath(devid))):
            raise DeviceError(f"{controller.describe(devid)} does not exist in domain "
                              f"{self.domid}")
        companionId = yield self.companion(name, devid)
        yield controller.destroyDevice(devid, force)
        if companionId is not None:
            yield self.controller(classNamed(name).companion).destroyDevice(companionId, force)

    @inlineCallbacks
    def destroyDevices(self, force: bool = False):
        """Remove every device of this domain, companions last (a display before its
        keyboard).  The private record stays: it holds the daemon's journal."""
        for cls in reversed(DEVICE_CLASSES):
            controller = self.controller(cls.name)
            for devid in (yield controller.deviceIDs()):
                yield controller.destroyDevice(devid, force)

    @inlineCallbacks
    def _removeGraphicsFlag(self):
        """Remove `console/use_graphics`, and `console` too if the flag was all it held
        (a domain builder's console keys keep it)."""

        @inlineCallbacks
        def remove(tx):
            yield tx.rm(self.useGraphicsPath)
            console = self.useGraphicsPath.rsplit("/", 1)[0]
            if not (yield tx.list(console)) and not (yield tx.readOrNone(console)):
                yield tx.rm(console)

        yield self.xs.transaction(remove)
