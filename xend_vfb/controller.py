"""The generic device controller, the way xend's DevController worked.

A controller manages one device class of one domain in xenstore only: it
writes a device's frontend and backend areas (and its toolstack-private
record) in one transaction, waits for the backend to report
`hotplug-status`, tears devices down, and rebuilds their configuration from
xenstore alone, which is what a restarted daemon does.  It never starts or
talks to a backend process.

A device class subclasses `DevController` and answers the template hooks:
which config class it uses and what goes into each area (`getDeviceDetails`);
`devices.DEVICE_CLASSES` names the subclass, so a new device class is a short
module and one entry there, not an edit here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, ClassVar

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from xend_vfb.errors import DeviceError
from xend_vfb.xenbus import XenbusState, parseState
from xend_vfb.xenstore.areas import readArea
from xend_vfb.xenstore.interfaces import ITransaction, IXenstore
from xend_vfb.xenstore.paths import (
    GENERATION_KEY,
    PRIVATE_ROOT,
    backendDomainPath,
    backendPath,
    frontendPath,
    privatePath,
)

__all__ = ["DevController"]

log = Logger()

#: xend's `device-create-timeout`: how long to wait for `hotplug-status`.
DEVICE_CREATE_TIMEOUT = 100.0
#: How long a graceful destroy waits for the backend to reach Closed.
DEVICE_DESTROY_TIMEOUT = 10.0
#: Directories `removeDevice` never removes, even when empty: the domains' homes and
#: their private records (a domain with one is managed by the daemon, devices or not).
_KEPT_PARENT = re.compile(rf"/local(/domain(/\d+)?)?|{re.escape(PRIVATE_ROOT)}(/\d+)?")



class DevController:
    """Devices of one class (`deviceClass`) for one domain."""

    deviceClass: ClassVar[str]
    #: The model class with `backendDetails`, `secretDetails` and `fromDetails`.
    configClass: ClassVar[Any]

    def __init__(self, xs: IXenstore, domid: int, name: str, reactor: Any = None) -> None:
        self.xs = xs
        self.domid = domid
        self.name = name
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor

    # -- template hooks for device classes -------------------------------

    def getDeviceDetails(self, config: Any, extra: dict[str, str]) -> tuple[dict, dict]:
        """The (backend, frontend) keys for a new device beyond the protocol's own.
        `extra` carries what the domain knows across devices (e.g. the size of the
        display a keyboard is paired with)."""
        return dict(config.backendDetails(), **extra), {}

    def configFromDetails(self, devid: int, details: dict, secrets: dict) -> Any:
        """Rebuild a device's config from its backend area and private secrets."""
        return self.configClass.fromDetails(details, secrets, f"{self.deviceClass}[{devid}]")

    # -- paths ------------------------------------------------------------

    def frontendPath(self, devid: int) -> str:
        return frontendPath(self.domid, self.deviceClass, devid)

    def backendPath(self, devid: int) -> str:
        return backendPath(self.domid, self.deviceClass, devid)

    def privatePath(self, devid: int) -> str:
        return privatePath(self.domid, self.deviceClass, devid)

    def describe(self, devid: int) -> str:
        return f"Device {devid} ({self.deviceClass})"

    # -- creation ---------------------------------------------------------

    @inlineCallbacks
    def createDevice(
        self,
        config: Any,
        devid: int | None = None,
        extra: dict[str, str] | None = None,
        private: dict[str, str] | None = None,
    ):
        """Write a new device's areas in one transaction; fires with its device id.

        `devid` None picks the lowest free id.  A device id in use is a `DeviceError`
        and changes nothing; a stale area left for that id is replaced.  `private`
        adds toolstack-private keys (e.g. the device it is paired with).
        """
        if config.backend != 0:
            raise DeviceError(f"{self.deviceClass}: backend={config.backend} is not supported "
                              "(xend-vfb runs every backend in domain 0)")
        back, front = self.getDeviceDetails(config, extra or {})
        record = dict(private or {}, **config.secretDetails())

        @inlineCallbacks
        def write(tx: ITransaction):
            chosen = devid if devid is not None else (yield self._lowestFreeID(tx))
            if (yield self._inUse(tx, chosen)):
                raise DeviceError(f"{self.describe(chosen)} is already in use in domain "
                                  f"{self.domid}")
            yield self._writeAreas(tx, chosen, back, front, record)
            return chosen

        chosen = yield self.xs.transaction(write)
        log.info("{device} of domain {domid} written", device=self.describe(chosen),
                 domid=self.domid)
        return chosen

    @inlineCallbacks
    def _writeAreas(self, tx: ITransaction, devid: int, back: dict, front: dict, record: dict):
        frontPath, backPath, privPath = (
            self.frontendPath(devid), self.backendPath(devid), self.privatePath(devid))
        for stale in (frontPath, backPath, privPath):
            yield tx.rm(stale)
        # Permissions first: nodes written below inherit them from their area.
        yield tx.mkdir(frontPath)
        yield tx.setPerms(frontPath, [f"n{self.domid}", "r0"])
        yield tx.mkdir(backPath)
        yield tx.setPerms(backPath, ["n0", f"r{self.domid}"])
        yield tx.mkdir(privPath)
        yield tx.setPerms(privPath, ["n0"])
        for key, value in sorted(record.items()):
            yield tx.write(f"{privPath}/{key}", value)
        frontKeys = dict(front, **{"backend": backPath, "backend-id": "0"})
        backKeys = dict(back, **{
            "frontend": frontPath,
            "frontend-id": str(self.domid),
            "domain": self.name,
            "online": "1",
            GENERATION_KEY: os.urandom(8).hex(),
        })
        for key, value in sorted(backKeys.items()):
            yield tx.write(f"{backPath}/{key}", value)
        for key, value in sorted(frontKeys.items()):
            yield tx.write(f"{frontPath}/{key}", value)
        # `state` last on each side: both ends watch it and read the rest when it moves.
        yield tx.write(f"{backPath}/state", str(int(XenbusState.Initialising)))
        yield tx.write(f"{frontPath}/state", str(int(XenbusState.Initialising)))

    @inlineCallbacks
    def _inUse(self, tx: ITransaction, devid: int):
        """In use: a backend area whose state is not Closed, with its frontend area
        still there.  Anything else left for this id is stale."""
        state = parseState((yield tx.readOrNone(f"{self.backendPath(devid)}/state")))
        if state in (XenbusState.Unknown, XenbusState.Closed):
            return False
        return (yield tx.exists(self.frontendPath(devid)))

    @inlineCallbacks
    def _lowestFreeID(self, tx: ITransaction):
        devid = 0
        while (yield self._inUse(tx, devid)):
            devid += 1
        return devid

    # -- waiting for the backend ------------------------------------------

    def waitForDevice(self, devid: int, timeout: float = DEVICE_CREATE_TIMEOUT) -> Deferred[None]:
        """Fire when the backend reports `hotplug-status` = connected; fail with a
        `DeviceError` carrying the backend's `hotplug-error` on `error`, or saying what
        was last seen after `timeout` seconds."""
        return self._waitFor(devid, timeout, self._hotplugOutcome)

    @inlineCallbacks
    def _hotplugOutcome(self, devid: int):
        """True when connected, False when not yet; raises on error."""
        path = self.backendPath(devid)
        status = yield self.xs.readOrNone(f"{path}/hotplug-status")
        if status == "connected":
            return True
        if status == "error":
            why = yield self.xs.readOrNone(f"{path}/hotplug-error")
            raise DeviceError(f"{self.describe(devid)} could not be connected: "
                              f"{why or 'the backend reported an error without a reason'}")
        if not (yield self.xs.exists(path)):
            raise DeviceError(f"{self.describe(devid)} could not be connected: "
                              "its backend area was removed")
        return False

    @inlineCallbacks
    def _lastSeen(self, devid: int):
        path = self.backendPath(devid)
        state = parseState((yield self.xs.readOrNone(f"{path}/state")))
        status = yield self.xs.readOrNone(f"{path}/hotplug-status")
        return f"backend state {state.name}, hotplug-status {status or 'not written'}"

    @inlineCallbacks
    def _waitFor(self, devid: int, timeout: float, outcome: Callable[[int], Deferred[bool]],
                 failed: str = "could not be connected"):
        """Watch the backend area until `outcome(devid)` is True or raises; after
        `timeout`, fail with "Device N (C) <failed>: no answer ..."."""
        done: Deferred[None] = Deferred()

        def check(_: str = "") -> None:
            if done.called:
                return
            d = outcome(devid)
            d.addCallbacks(lambda ok: ok and not done.called and done.callback(None),
                           lambda f: done.called or done.errback(f))

        def timedOut() -> None:
            if done.called:
                return
            d = self._lastSeen(devid)
            d.addCallback(lambda seen: DeviceError(
                f"{self.describe(devid)} {failed}: no answer from its backend "
                f"within {timeout:g} s ({seen})"))
            d.addBoth(lambda e: done.called or done.errback(e))

        watch = yield self.xs.watch(self.backendPath(devid), check)
        timer = self.reactor.callLater(timeout, timedOut)
        check()
        try:
            yield done
        finally:
            if timer.active():
                timer.cancel()
            yield watch.cancel()

    @inlineCallbacks
    def reportError(self, devid: int, message: str, failConnected: bool = False):
        """Show a problem the toolstack found (its backend died) on the device: `error`,
        and a hotplug error for a device not yet connected (or for any, with
        `failConnected`), so that whoever waits for it fails with the reason.  One
        transaction that writes nothing if the area is gone: never recreate it."""

        @inlineCallbacks
        def write(tx: ITransaction):
            path = self.backendPath(devid)
            if (yield tx.readOrNone(f"{path}/state")) is None:
                return
            yield tx.write(f"{path}/error", message)
            if failConnected or (yield tx.readOrNone(f"{path}/hotplug-status")) != "connected":
                yield tx.write(f"{path}/hotplug-error", message)
                yield tx.write(f"{path}/hotplug-status", "error")

        yield self.xs.transaction(write)

    # -- destruction --------------------------------------------------------

    @inlineCallbacks
    def destroyDevice(self, devid: int, force: bool = False,
                      timeout: float = DEVICE_DESTROY_TIMEOUT):
        """Ask the backend to close the device and remove both areas.

        `online` = 0 goes before `state` = Closing: the backend watches `state`, and on
        seeing Closing must already know not to wait for a reconnection.  Unless
        `force`, the areas are removed once the backend reports Closed (or after
        `timeout`, with a warning); with `force`, at once.
        """
        path = self.backendPath(devid)
        if (yield self.xs.exists(path)):
            yield self.xs.write(f"{path}/online", "0")
            yield self.xs.write(f"{path}/state", str(int(XenbusState.Closing)))
            if not force:
                try:
                    yield self._waitFor(devid, timeout, self._closedOutcome, "did not close")
                except DeviceError as e:
                    log.warn("{error}; removing it anyway", error=e)
        yield self.removeDevice(devid)

    @inlineCallbacks
    def _closedOutcome(self, devid: int):
        path = self.backendPath(devid)
        state = parseState((yield self.xs.readOrNone(f"{path}/state")))
        return state in (XenbusState.Closed, XenbusState.Unknown)

    @inlineCallbacks
    def removeDevice(self, devid: int):
        """Remove the device's areas and record in one transaction (no waiting)."""

        @inlineCallbacks
        def remove(tx: ITransaction):
            for path in (self.frontendPath(devid), self.backendPath(devid),
                         self.privatePath(devid)):
                yield tx.rm(path)
                yield self._removeEmptyParents(tx, path)

        yield self.xs.transaction(remove)
        log.info("{device} of domain {domid} removed", device=self.describe(devid),
                 domid=self.domid)

    @inlineCallbacks
    def _removeEmptyParents(self, tx: ITransaction, path: str):
        """Remove the directories above `path` that its device left empty (as libxl's
        `libxl__xs_path_cleanup` does), so that removing a domain's last device, or
        rolling back a failed create, leaves the store as it was.  Domain homes
        (/local/domain/N), private records (/xend-vfb/N) and what is above them stay."""
        parent = path.rsplit("/", 1)[0]
        while parent and not _KEPT_PARENT.fullmatch(parent):
            if (yield tx.list(parent)) or (yield tx.readOrNone(parent)):
                break
            yield tx.rm(parent)
            parent = parent.rsplit("/", 1)[0]

    # -- reading back -------------------------------------------------------

    @inlineCallbacks
    def deviceIDs(self):
        """Ids of the devices of this class that have a backend area, ascending."""
        names = yield self.xs.list(backendDomainPath(self.domid, self.deviceClass))
        return sorted(int(name) for name in names if name.isdigit())

    @inlineCallbacks
    def getDeviceConfiguration(self, devid: int):
        """The device's config, rebuilt from xenstore alone."""
        details = yield readArea(self.xs, self.backendPath(devid))
        if not details:
            raise DeviceError(f"{self.describe(devid)} does not exist in domain {self.domid}")
        secrets = yield readArea(self.xs, self.privatePath(devid))
        return self.configFromDetails(devid, details, secrets)

    @inlineCallbacks
    def reconfigureDevice(self, devid: int, config: Any,
                          private: dict[str, str | None] | None = None):
        """Replace a live device's configuration keys in xenstore, in one transaction,
        with toolstack-private keys in `private` (None removes one).  A running backend
        read its device's configuration when the device started and does not watch it:
        what can change live, the caller has it take (`xend-vfb vnc-passwd` has the
        backend reload the password); the rest counts from the device's next start."""
        # Only the config keys: the class's other keys (vkbd's width and height, from
        # the paired display) are not in `config` and must keep their values.
        back, _ = self.getDeviceDetails(config, {})
        back = {key: value for key, value in back.items() if key in self.configKeys()}
        secrets = config.secretDetails()

        @inlineCallbacks
        def rewrite(tx: ITransaction):
            backPath = self.backendPath(devid)
            if not (yield tx.exists(backPath)):
                raise DeviceError(f"{self.describe(devid)} does not exist in domain "
                                  f"{self.domid}")
            current = yield tx.list(backPath)
            for key in current:
                if key in self.configKeys() and key not in back:
                    yield tx.rm(f"{backPath}/{key}")
            for key, value in sorted(back.items()):
                yield tx.write(f"{backPath}/{key}", value)
            privPath = self.privatePath(devid)
            for key in self.configKeys():
                if key in secrets:
                    yield tx.write(f"{privPath}/{key}", secrets[key])
                else:
                    yield tx.rm(f"{privPath}/{key}")
            for key, value in sorted((private or {}).items()):
                if value is None:
                    yield tx.rm(f"{privPath}/{key}")
                else:
                    yield tx.write(f"{privPath}/{key}", value)

        yield self.xs.transaction(rewrite)

    def configKeys(self) -> frozenset[str]:
        """The configuration keys of this class (the model's one list)."""
        return frozenset(key.name for key in self.configClass.configKeys())
