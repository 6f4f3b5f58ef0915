"""One generic backend state machine for every device class.

A device class supplies a `DeviceOps` table (hooks that do nothing by
default); `BackendDevice` drives it through the XenbusState handshake of
REFERENCE.md section 4.  It watches the device's backend area and the
frontend's `state`, and on every change runs `step` until a pass makes no
progress.  Each pass reads the current states afresh, so it does not matter
which write woke it, or how many were coalesced.

Nothing a guest writes may take the backend down: a `GuestError` from an op
ends that device's connection (error in xenstore and the log, backend
Closing) and nothing else.

The toolstack's decisions win over ours: a state the backend publishes is
written only if the state is still the one its pass read, so a destroy the
toolstack wrote while a step was in flight (a connect, a hotplug script) is
acted on by the next pass instead of being overwritten.  And every write goes
only into the instance of the backend area the device was started for (its
`generation`, which the toolstack writes afresh with each area): a finding
about an area the toolstack removed never lands in one it created at the
same path since.  (Over 400 lines because the whole handshake, both ways, is
one step loop: splitting it would hide which state leads to which.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger

from xend_vfb.backend.interfaces import IBackendContext
from xend_vfb.errors import GuestError, XendVfbError, XenstoreConnectionError, XenstoreError
from xend_vfb.settings import hotplugDir
from xend_vfb.xenbus import XenbusState, parseState
from xend_vfb.xenstore.interfaces import IXenstore
from xend_vfb.xenstore.paths import GENERATION_KEY, backendPath, frontendPath

__all__ = ["DeviceOps", "BackendDevice", "HOTPLUG_TIMEOUT"]

log = Logger()

#: Seconds a hotplug script may run before it counts as failed.
HOTPLUG_TIMEOUT = 30.0


class DeviceOps:
    """A device class's hooks; every one is optional and does nothing here.

    Hooks may return a Deferred.  They are called in this order: `init` once,
    `features` before InitWait, then `connect`/`disconnect` for each connection
    the guest makes, and `free` once at the end.
    """

    def init(self, device: BackendDevice) -> Any:
        """The device was seen (at creation, or by a restarted backend)."""

    def features(self, device: BackendDevice) -> dict[str, str]:
        """Keys the backend advertises in its area before going to InitWait."""
        return {}

    def connect(self, device: BackendDevice) -> Any:
        """The frontend is Initialised: read its keys, map, validate, bind.
        Raise `GuestError` for anything wrong the guest wrote."""

    def disconnect(self, device: BackendDevice) -> None:
        """Unmap and unbind what `connect` set up; called even after a failed connect."""

    def free(self, device: BackendDevice) -> Any:
        """The device is going away: release what `init` set up."""

    def status(self) -> dict[str, Any]:
        """Class-specific facts for `xend-vfb vfb-list` and the control socket."""
        return {}


class BackendDevice:
    """The backend end of device `devClass`/`devid` of domain `domid`."""

    def __init__(self, xs: IXenstore, domid: int, devClass: str, devid: int, ops: DeviceOps,
                 context: IBackendContext, onReleased: Callable[[BackendDevice], None]) -> None:
        self.xs = xs
        self.domid = domid
        self.devClass = devClass
        self.devid = devid
        self.ops = ops
        #: What ops need from the domain's backend: guest memory, event channels, ...
        self.context = context
        self.backendPath = backendPath(domid, devClass, devid)
        self.frontendPath = frontendPath(domid, devClass, devid)
        self.connected = False
        self.released = False
        #: Which instance of the backend area this device serves (`GENERATION_KEY`),
        #: read when it starts; None for an area written without one.
        self.generation: str | None = None
        self._onReleased = onReleased
        self._watches: list = []
        self._running = False
        self._again = False
        #: A `GuestError` an event handler saw, for the next step to act on.
        self._pendingError: str | None = None
        #: The backend `state` as this pass read it, or as we last wrote it.
        self._seenState: str | None = None

    def __repr__(self) -> str:
        return f"<{self.devClass}/{self.devid} of domain {self.domid}>"

    @property
    def name(self) -> str:
        return f"{self.devClass}/{self.devid}"

    # -- life --------------------------------------------------------------

    @inlineCallbacks
    def start(self):
        """Start watching and run the first steps once the ops' `init` is done."""
        self._running = True  # changes seen meanwhile wait for `init`
        try:
            self.generation = yield self.xs.readOrNone(f"{self.backendPath}/{GENERATION_KEY}")
            self._watches.append((yield self.xs.watch(self.backendPath, self.kick)))
            self._watches.append((yield self.xs.watch(f"{self.frontendPath}/state", self.kick)))
            yield maybeDeferred(self.ops.init, self)
        except BaseException:
            # A device that cannot start must not run steps later: its watches would
            # otherwise go on kicking it (it wrote hotplug-status connected over the
            # error its caller reports, then crashed connecting without a config).
            self.released = True
            yield self._cancelWatches()
            raise
        finally:
            self._running = False
        self.kick()

    def kick(self, _path: str = "") -> None:
        """Something changed: run steps, now or once the running pass finishes."""
        if self.released:
            return
        if self._running:
            self._again = True
            return
        self._running = True
        d = self._run()
        d.addErrback(self._crashed)

    @inlineCallbacks
    def _run(self):
        try:
            while True:
                self._again = False
                yield self.step()
                if not self._again or self.released:
                    break
        finally:
            self._running = False

    def _crashed(self, failure: Any) -> None:
        if self.released and failure.check(XenstoreConnectionError):
            # A step still in flight when the backend let go of xenstore (shutdown).
            log.debug("{device}: step cut short by shutdown", device=self)
        elif failure.check(XenstoreError):
            log.warn("{device}: xenstore error in step: {error}", device=self,
                     error=failure.value)
        else:
            log.failure("{device}: step failed", failure, device=self)

    # -- the state machine -------------------------------------------------

    @inlineCallbacks
    def step(self):
        """One pass: read both states and take the one transition they call for."""
        rawState = self._seenState = yield self.xs.readOrNone(f"{self.backendPath}/state")
        if rawState is None:
            # The toolstack removed the device.
            yield self.release()
            return
        if (yield self.xs.readOrNone(f"{self.backendPath}/{GENERATION_KEY}")) != self.generation:
            # The toolstack wrote the areas anew (a guest's reboot or restore, a restarted
            # toolstack), whatever state we were in: this device is over, and the domain's
            # backend serves the new one from the start, like any device it never saw.
            log.info("{device}: its areas were written anew; starting over", device=self)
            yield self.release()
            return
        state = parseState(rawState)
        if self._pendingError is not None:
            # Seen by an event handler: fail here, in step order, so that no pass
            # running meanwhile reconnects to (or reports Connected for) the guest.
            message, self._pendingError = self._pendingError, None
            yield self.fail(message)
            return
        online = (yield self.xs.readOrNone(f"{self.backendPath}/online")) == "1"
        rawFrontendState = yield self.xs.readOrNone(f"{self.frontendPath}/state")
        frontendState = parseState(rawFrontendState)

        if frontendState == XenbusState.Unknown and not (yield self.xs.exists(self.frontendPath)):
            # Guest death (or a toolstack tearing down): clean up our side.
            yield self.disconnect()
            if state != XenbusState.Closed:
                yield self.setState(XenbusState.Closed)
            yield self.release()
            return

        if state == XenbusState.Initialising:
            # Goes to InitWait on success, Closed when the hotplug script failed.
            if (yield self.hotplug("add")):
                yield self.writeKeys(self.ops.features(self))
                if (yield self.setState(XenbusState.InitWait)):
                    yield self.writeKeys({"hotplug-status": "connected"})
            else:
                # The toolstack reports the hotplug error and removes the device.
                yield self.setState(XenbusState.Closed)
                yield self.release()
            return

        if state == XenbusState.Closing:
            # Ours after an error, or the toolstack's on destroy: wait for the guest.
            yield self.disconnect()
            if frontendState in (XenbusState.Closed, XenbusState.Unknown,
                                 XenbusState.Initialising, XenbusState.InitWait):
                yield self.setState(XenbusState.Closed)
            return

        if state == XenbusState.Closed:
            yield self.disconnect()
            if not online:
                yield self.release()
            elif frontendState in (XenbusState.Initialising, XenbusState.InitWait):
                # The guest came back (reboot, driver reload): serve it again.
                yield self.setState(XenbusState.InitWait)
            return

        # InitWait, Initialised or Connected (ours, or found by a restarted backend).
        if frontendState == XenbusState.Unknown and rawFrontendState not in (None, "0"):
            # Not a XenbusState at all: the guest is broken or hostile.
            yield self.fail(f"frontend state {_printable(rawFrontendState)!r} is not a "
                            "XenbusState")
        elif frontendState == XenbusState.Closing:
            yield self.disconnect()
            yield self.setState(XenbusState.Closing)
        elif frontendState == XenbusState.Closed:
            yield self.disconnect()
            yield self.setState(XenbusState.Closed)
        elif frontendState in (XenbusState.Initialised, XenbusState.Connected):
            if not self.connected and self._pendingError is None:
                yield self.connect()
        elif state == XenbusState.Connected:
            # The frontend started over without closing: drop the old connection.
            yield self.disconnect()
            yield self.setState(XenbusState.InitWait)

    @inlineCallbacks
    def connect(self):
        """Goes to Connected, or to Closing with an error if the guest's values are bad."""
        try:
            yield maybeDeferred(self.ops.connect, self)
        except GuestError as e:
            self.ops.disconnect(self)
            yield self.fail(str(e))
            return
        self.connected = True
        if not (yield self.setState(XenbusState.Connected)):
            return  # the next pass disconnects, if the newer state says so
        # An error from an earlier connection (or a backend that died) is over.
        yield self.xs.rm(f"{self.backendPath}/error")
        log.info("{device} connected", device=self)

    @inlineCallbacks
    def fail(self, message: str):
        """End this device's connection because of something the guest did."""
        log.error("{device}: {message}", device=self, message=message)
        yield self.disconnect()
        yield self.writeKeys({"error": _printable(message)})
        yield self.setState(XenbusState.Closing)

    def guestError(self, error: GuestError) -> None:
        """For ops' event handlers: a bad value seen outside `connect`.  Stops using
        the guest's pages at once; the next step reports the error (`fail`)."""
        if self.released:
            return
        if self._pendingError is None:
            self._pendingError = str(error)
        if self.connected:
            self.connected = False
            self.ops.disconnect(self)
        self.kick()

    @inlineCallbacks
    def disconnect(self):
        if self.connected:
            self.connected = False
            self.ops.disconnect(self)
            log.info("{device} disconnected", device=self)
        yield None

    @inlineCallbacks
    def release(self):
        """Give the device up for good: the backend's part of teardown."""
        if self.released:
            return
        self.released = True
        yield self.disconnect()
        yield self._cancelWatches()
        try:
            yield maybeDeferred(self.ops.free, self)
        finally:
            if (yield self._ours(self.xs)):
                yield self.hotplug("remove")
            log.info("{device} released", device=self)
            self._onReleased(self)

    @inlineCallbacks
    def _cancelWatches(self):
        watches, self._watches = self._watches, []
        for watch in watches:
            try:
                yield watch.cancel()
            except XendVfbError:
                pass

    def stop(self) -> None:
        """Backend shutting down (not the device): unmap, leave xenstore as it is, so
        that a restarted backend reattaches."""
        self.released = True
        if self.connected:
            self.connected = False
            self.ops.disconnect(self)
        d = maybeDeferred(self.ops.free, self)
        d.addErrback(self._crashed)

    # -- xenstore helpers ----------------------------------------------------

    @inlineCallbacks
    def setState(self, state: XenbusState):
        """Move to `state`, unless the state changed since this pass read it: then
        whoever changed it (the toolstack closing the device while we connected) has
        the last word, and the next pass acts on it.  Fires with whether it moved."""
        value = str(int(state))
        if not (yield self._write({"state": value}, expectState=self._seenState)):
            log.info("{device}: state changed meanwhile, not moving to {state}", device=self,
                     state=state.name)
            self._again = True
            return False
        log.debug("{device} -> {state}", device=self, state=state.name)
        self._seenState = value
        return True

    def writeKeys(self, keys: dict[str, str]) -> Deferred[bool]:
        """Write keys into our backend area, in one transaction that first checks the
        area is still there and still the instance we serve: the toolstack owns the
        areas, and a write racing with its removal must not bring part of one back,
        nor land in the area it created next at the same path.  Fires with whether
        it wrote."""
        return self._write(keys)

    @inlineCallbacks
    def _ours(self, reader: Any):
        """Whether our backend area is there and is the instance we serve; `reader`
        is the connection or a transaction."""
        if not (yield reader.exists(self.backendPath)):
            return False
        return (yield reader.readOrNone(f"{self.backendPath}/{GENERATION_KEY}")) == \
            self.generation

    def _write(self, keys: dict[str, str], expectState: str | None = None) -> Deferred[bool]:
        """`writeKeys`, and with `expectState` only while `state` still holds it: both
        checks and the writes in one transaction, so nothing slips in between."""

        @inlineCallbacks
        def write(tx):
            if not (yield self._ours(tx)):
                return False
            if expectState is not None and (
                    yield tx.readOrNone(f"{self.backendPath}/state")) != expectState:
                return False
            for key, value in keys.items():
                yield tx.write(f"{self.backendPath}/{key}", value)
            return True

        return self.xs.transaction(write)

    @inlineCallbacks
    def readFrontendInt(self, key: str, required: bool = True, default: int = 0,
                        maximum: int = 2**64 - 1):
        """An integer the guest wrote in its area, at most `maximum` (the C type's
        range: a grant reference or port is 32 bits); `GuestError` naming the key if bad."""
        value = yield self.xs.readOrNone(f"{self.frontendPath}/{key}")
        if value is None:
            if required:
                raise GuestError(f"{self.name}: {key} missing")
            return default
        text = value.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 20:
            raise GuestError(f"{self.name}: {key}: invalid value {_printable(value)!r}")
        if int(text) > maximum:
            raise GuestError(f"{self.name}: {key}: {text} is out of range")
        return int(text)

    # -- hotplug scripts -----------------------------------------------------

    @inlineCallbacks
    def hotplug(self, action: str):
        """Run the device's hotplug script; for `add`, a failure is reported as
        `hotplug-status` = error with the script's reason.  Whether it succeeded."""
        script = yield self.xs.readOrNone(f"{self.backendPath}/script")
        path = script if script and script.startswith("/") else os.path.join(
            hotplugDir(), script or self.devClass)
        env = dict(os.environ, XENBUS_PATH=self.backendPath)
        try:
            d = getProcessOutputAndValue(path, [action], env=env)
            d.addTimeout(HOTPLUG_TIMEOUT, self.context.reactor)
            out, err, code = yield d
        except Exception as e:
            code, err = -1, f"could not run hotplug script {path}: {e}".encode()
        if code == 0:
            return True
        lines = err.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else f"hotplug script {path} {action} exited with status {code}"
        log.error("{device}: hotplug {action} failed: {why}", device=self, action=action, why=why)
        if action == "add":
            yield self.writeKeys({"hotplug-error": _printable(why), "hotplug-status": "error"})
        return False


def _printable(text: str) -> str:
    """`text` reduced to what xenstore values may hold."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text)[:1000]
