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

import xend_vfb.vfbif  # noqa: F401  (registers the vfb and vkbd controllers used here)
from xend_vfb import sxp
from xend_vfb.controller import DevController, controllerClass
from xend_vfb.errors import DeviceError
from xend_vfb.model import DomainConfig, VfbConfig, VkbdConfig
from xend_vfb.xenstore.interfaces import IXenstore
from xend_vfb.xenstore.paths import domainPath, privatePath

__all__ = ["Domain", "PAIRED_KEYBOARD"]

log = Logger()

#: Key in a display's private record naming the keyboard its input goes to.
PAIRED_KEYBOARD = "vkbd"


class Domain:
    """The vfb and vkbd devices of domain `domid`, as recorded in xenstore."""

    deviceClasses = ("vkbd", "vfb")

    def __init__(self, xs: IXenstore, domid: int, name: str, reactor=None) -> None:
        self.xs = xs
        self.domid = domid
        self.name = name
        self.controllers: dict[str, DevController] = {
            cls: controllerClass(cls)(xs, domid, name, reactor) for cls in self.deviceClasses
        }

    def controller(self, deviceClass: str) -> DevController:
        return self.controllers[deviceClass]

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
                vkbd = keyboards.pop(0) if keyboards else VkbdConfig()
                yield self._attachDisplay(vfb, vkbd, created)
            for vkbd in keyboards:
                created.append(("vkbd", (yield self.controller("vkbd").createDevice(vkbd))))
            if config.vfbs:
                wroteConsole = not (yield self.xs.exists(self.useGraphicsPath))
                yield self.xs.write(self.useGraphicsPath, "1")
        except BaseException:
            yield self.rollback(created, wroteConsole)
            raise
        return created

    @inlineCallbacks
    def attachDisplay(self, vfb: VfbConfig, vkbd: VkbdConfig | None = None):
        """Add a display and its own keyboard; fires with [(vkbd, id), (vfb, id)]."""
        created: list[tuple[str, int]] = []
        try:
            yield self._attachDisplay(vfb, vkbd or VkbdConfig(), created)
        except BaseException:
            yield self.rollback(created)
            raise
        return created

    @inlineCallbacks
    def _attachDisplay(self, vfb: VfbConfig, vkbd: VkbdConfig, created: list):
        size = {"width": str(vfb.width), "height": str(vfb.height)}
        vkbdId = yield self.controller("vkbd").createDevice(vkbd, extra=size)
        created.append(("vkbd", vkbdId))
        vfbId = yield self.controller("vfb").createDevice(
            vfb, private={PAIRED_KEYBOARD: str(vkbdId)})
        created.append(("vfb", vfbId))

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
        sizes = {row["vkbd"]: row for row in snapshot if row["class"] == "vfb"}
        try:
            for row in sorted(snapshot, key=lambda row: row["class"] != "vkbd"):
                config = self.controller(row["class"]).configClass.fromSXP(
                    sxp.parse(row["sxp"]), f"{row['class']}[{row['devid']}]")
                extra, private = {}, {}
                if row["class"] == "vkbd" and row["devid"] in sizes:
                    vfb = sizes[row["devid"]]
                    extra = {"width": str(vfb["width"]), "height": str(vfb["height"])}
                if row["class"] == "vfb":
                    if row.get("vnc_port") and config.vnc:
                        # Where it listened: asked for again, and what `list` shows
                        # until the backend writes where it listens now.
                        extra["vnc-port"] = str(row["vnc_port"])
                        extra["vnc-listen"] = config.vnclisten
                    if row.get("vkbd") is not None:
                        private[PAIRED_KEYBOARD] = str(row["vkbd"])
                yield self.controller(row["class"]).createDevice(
                    config, devid=row["devid"], extra=extra, private=private)
                created.append((row["class"], row["devid"]))
            if sizes:
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
        for deviceClass in self.deviceClasses:
            controller = self.controller(deviceClass)
            for devid in (yield controller.deviceIDs()):
                config = yield controller.getDeviceConfiguration(devid)
                row = {"class": deviceClass, "devid": devid, "sxp": sxp.show(config.toSXP())}
                if deviceClass == "vfb":
                    port = yield self.xs.readOrNone(f"{controller.backendPath(devid)}/vnc-port")
                    row.update(vkbd=(yield self.pairedKeyboard(devid)),
                               vnc_port=int(port) if port and port.isdigit() else None,
                               width=config.width, height=config.height)
                rows.append(row)
        return rows

    @inlineCallbacks
    def pairedKeyboard(self, vfbId: int):
        """The keyboard display `vfbId` sends its input to, or None."""
        value = yield self.xs.readOrNone(f"{privatePath(self.domid, 'vfb', vfbId)}/"
                                         f"{PAIRED_KEYBOARD}")
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
    def detachDisplay(self, vfbId: int, force: bool = False):
        """Remove a display and the keyboard paired with it (display first)."""
        display = self.controller("vfb")
        if not (yield self.xs.exists(display.backendPath(vfbId))):
            raise DeviceError(f"{display.describe(vfbId)} does not exist in domain {self.domid}")
        vkbdId = yield self.pairedKeyboard(vfbId)
        yield self.controller("vfb").destroyDevice(vfbId, force)
        if vkbdId is not None:
            yield self.controller("vkbd").destroyDevice(vkbdId, force)

    @inlineCallbacks
    def destroyDevices(self, force: bool = False):
        """Remove every device of this domain, displays before keyboards, and the
        domain's private record."""
        for deviceClass in reversed(self.deviceClasses):
            controller = self.controller(deviceClass)
            for devid in (yield controller.deviceIDs()):
                yield controller.destroyDevice(devid, force)
        yield self._removeGraphicsFlag()
        yield self.xs.rm(privatePath(self.domid))

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
