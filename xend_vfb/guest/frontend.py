"""The frontend half of the XenbusState handshake, once for every device class.

`Frontend` runs the generic state machine a Linux xenbus frontend runs
(REFERENCE.md section 4) and routes its steps to small hooks a device class
overrides (`allocate`, `backendConnected`, `connected`, `eventReceived`,
`release`), in the spirit of Twisted's protocol hooks and QEMU's ops tables.

All work on a device is serialized: every xenstore change (ours or the
backend's) only *kicks* the device, and one `_check` at a time reads both
`state` nodes afresh and takes the step they call for.  Kicks arriving while
a check runs collapse into one more check, so a burst of watch events costs
one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from twisted.internet import defer
from twisted.internet.defer import (
    Deferred,
    DeferredLock,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.logger import Logger

from xend_vfb.errors import XendVfbError
from xend_vfb.xenbus import XenbusState, parseState
from xend_vfb.xenstore.paths import frontendPath

if TYPE_CHECKING:
    from xend_vfb.guest.interfaces import IGuestContext
    from xend_vfb.xenstore import ITransaction, IWatch

__all__ = ["Frontend"]

log = Logger()

_CLOSING_BACKEND = (XenbusState.Closing, XenbusState.Closed)


class Frontend:
    """One device of one guest, from probe to removal.

    ``state`` is what this frontend last wrote to its ``state`` node (Unknown
    before the first probe and after removal); ``backendState`` what it last
    read from the backend's.
    """

    devClass: ClassVar[str]

    def __init__(self, domain: IGuestContext, devid: int, onGone: Callable[[Frontend], None]):
        self.domain = domain
        self.devid = devid
        self.name = f"{self.devClass}/{devid}"
        self.path = frontendPath(domain.domid, self.devClass, devid)
        self.state = XenbusState.Unknown
        self.backendState = XenbusState.Unknown
        self.backendPath: str | None = None
        self.port: int | None = None
        self.gone = False
        self._onGone = onGone
        self._backendWatch: IWatch | None = None
        self._lock = DeferredLock()
        self._checkQueued = False
        # Whether the backend was seen in a live state since our last probe: a
        # backend still Closed from an earlier connection must not close us.
        self._backendSeenOpen = False
        self._shuttingDown = False
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.domain.domid}:{self.name} {self.state.name}>"

    # -- hooks for device classes -----------------------------------------

    def allocate(self) -> Deferred[dict[str, str]] | dict[str, str]:
        """Called at probe, before the event channel is allocated: allocate the shared
        pages, fill them in and return the class's keys for the frontend area
        (``page-ref``, features...).  May read the backend's static keys."""
        raise NotImplementedError

    def backendConnected(self) -> Deferred[None] | None:
        """Called each time the backend is seen Connected while we are Initialised or
        Connected (so again after a backend restart): re-read its dynamic keys."""

    def connected(self) -> None:
        """Called once we have written Connected."""

    def eventReceived(self) -> None:
        """Called when the backend notified our event channel, while we hold resources."""

    def release(self) -> None:
        """Free what `allocate` took; called on close, re-probe and removal (idempotent)."""

    # -- what hooks use ----------------------------------------------------

    def notify(self) -> None:
        """Notify the backend over our event channel (a no-op while it is not bound)."""
        if self.port is not None:
            self.domain.memory.notify(self.port)

    def log(self, level: str, message: str, **kwargs: object) -> None:
        """Log through twisted.logger with the device named, at `level` ("info", ...)."""
        getattr(log, level)(
            "domain {domid} {device}: " + message,
            domid=self.domain.domid,
            device=self.name,
            **kwargs,
        )

    # -- driven by the domain ---------------------------------------------

    def kick(self) -> None:
        """Something below our area or the backend's `state` changed: check soon."""
        if self._checkQueued or self.gone:
            return
        self._checkQueued = True
        self._lock.run(self._runCheck).addErrback(self._checkFailed)

    def close(self, timeout: float) -> Deferred[None]:
        """Close as a guest shutting down does: Closing, wait (at most `timeout` seconds)
        for the backend to go Closing or Closed, then Closed; never re-probes after."""
        self._shuttingDown = True
        if self.gone or self.state == XenbusState.Unknown:
            return succeed(None)
        self._lock.run(self._beginClose).addErrback(self._checkFailed)
        done = self._when(lambda: self.gone or self.state == XenbusState.Closed)

        def timedOut(failure):
            failure.trap(defer.TimeoutError)
            self.log("warn", "backend did not close within {timeout} s", timeout=timeout)
            return self._lock.run(self._finishClose)

        done.addTimeout(timeout, self.domain.reactor).addErrback(timedOut)

        def released(result):
            # Whatever happened (xenstore gone, say), nothing stays allocated.
            self._release()
            return result

        return done.addBoth(released)

    # -- the state machine -------------------------------------------------

    def _runCheck(self) -> Deferred[None]:
        self._checkQueued = False
        return self._check()

    def _checkFailed(self, failure) -> None:
        log.failure(
            "domain {domid} {device}: handling a change failed",
            failure,
            domid=self.domain.domid,
            device=self.name,
        )

    @inlineCallbacks
    def _check(self):
        if self.gone:
            return
        xs = self.domain.xs
        node = yield xs.readOrNone(self.path + "/state")
        if node is None and not (yield xs.exists(self.path)):
            self._remove()
            return
        # A toolstack (re)initialises the area by writing Initialising: probe.
        if parseState(node) == XenbusState.Initialising:
            if self._shuttingDown:
                return
            yield self._probe()
        if self.backendPath is None or self.state in (XenbusState.Unknown, XenbusState.Closed):
            return
        backend = parseState((yield xs.readOrNone(self.backendPath + "/state")))
        if backend != self.backendState:
            self.log("info", "backend is {state}", state=backend.name)
            self.backendState = backend
        if backend in _CLOSING_BACKEND or backend == XenbusState.Unknown:
            # Backend Closing means it has unmapped our pages (Closed: we missed
            # its Closing); Unknown means no backend is left to wait for.
            if self.state == XenbusState.Closing or (
                backend != XenbusState.Unknown
                and (self.state == XenbusState.Connected or self._backendSeenOpen)
            ):
                yield self._finishClose()
            return
        self._backendSeenOpen = True
        if backend == XenbusState.Connected and self.state in (
            XenbusState.Initialised,
            XenbusState.Connected,
        ):
            yield maybeDeferred(self.backendConnected)
            if self.state == XenbusState.Initialised:
                yield self._switch(XenbusState.Connected)
                if self.state == XenbusState.Connected:
                    self.connected()

    @inlineCallbacks
    def _probe(self):
        """Allocate, publish our keys and go Initialised (from any earlier state)."""
        self._release()
        self._setState(XenbusState.Initialising)
        self._backendSeenOpen = False
        self.backendState = XenbusState.Unknown
        xs = self.domain.xs
        backendPath = yield xs.readOrNone(self.path + "/backend")
        if not backendPath:
            self.log("warn", "no backend key yet; waiting")
            return
        self.log("info", "probing; backend at {backend}", backend=backendPath)
        if backendPath != self.backendPath:
            yield self._watchBackend(backendPath)
        try:
            keys = yield maybeDeferred(self.allocate)
            self.port = self.domain.memory.allocUnbound(self._eventReceived)
        except (XendVfbError, ValueError, OSError) as e:
            self.log("error", "cannot set up the device: {error}", error=e)
            self._release()
            yield self._switch(XenbusState.Closing)
            return
        keys["event-channel"] = str(self.port)
        keys["protocol"] = self.domain.options.protocol
        # One transaction for every key and the state, as Linux's frontends do, so
        # the backend never sees Initialised with half the keys.
        yield self._switch(XenbusState.Initialised, keys)
        if self.state == XenbusState.Initialised:
            self.log(
                "info",
                "published {keys}",
                keys=", ".join(f"{key}={value}" for key, value in sorted(keys.items())),
            )

    @inlineCallbacks
    def _watchBackend(self, backendPath: str):
        if self._backendWatch is not None:
            yield self._backendWatch.cancel()
            self._backendWatch = None
        self.backendPath = backendPath
        self._backendWatch = yield self.domain.xs.watch(
            backendPath + "/state", lambda path: self.kick()
        )

    @inlineCallbacks
    def _beginClose(self):
        if self.state in (XenbusState.Initialised, XenbusState.Connected):
            yield self._switch(XenbusState.Closing)
        elif self.state == XenbusState.Initialising:
            # Nothing published: nothing for a backend to unmap.
            yield self._switch(XenbusState.Closed)
        self.kick()

    @inlineCallbacks
    def _finishClose(self):
        """Closing (if not yet), free everything, Closed: the backend has let go."""
        if self.gone or self.state in (XenbusState.Unknown, XenbusState.Closed):
            return
        if self.state != XenbusState.Closing:
            yield self._switch(XenbusState.Closing)
        self._release()
        yield self._switch(XenbusState.Closed)

    @inlineCallbacks
    def _switch(self, state: XenbusState, keys: dict[str, str] | None = None):
        """Write `keys` and `state` in one transaction, unless our area is gone.

        Writing blindly would re-create an area a toolstack just removed.
        """
        path = self.path

        @inlineCallbacks
        def write(tx: ITransaction):
            if not (yield tx.exists(path)):
                return False
            for key, value in (keys or {}).items():
                yield tx.write(f"{path}/{key}", value)
            yield tx.write(f"{path}/state", str(int(state)))
            return True

        if (yield self.domain.xs.transaction(write)):
            self._setState(state)
        else:
            self._remove()

    def _setState(self, state: XenbusState) -> None:
        if state != self.state:
            self.log("info", "{old} -> {new}", old=self.state.name, new=state.name)
            self.state = state
        self._wake()

    def _when(self, condition: Callable[[], bool]) -> Deferred[None]:
        if condition():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append((condition, d))
        return d

    def _wake(self) -> None:
        ready = [(c, d) for c, d in self._waiters if c()]
        for entry in ready:
            self._waiters.remove(entry)
            if not entry[1].called:
                entry[1].callback(None)

    def _eventReceived(self) -> None:
        if self.port is not None:
            self.eventReceived()

    def _release(self) -> None:
        self.release()
        if self.port is not None:
            self.domain.memory.closePort(self.port)
            self.port = None

    def _remove(self) -> None:
        """Our area is gone (domain destroyed, device detached): free all, forget us."""
        if self.gone:
            return
        self.log("info", "frontend area removed")
        self._release()
        self.gone = True
        self.state = XenbusState.Unknown
        if self._backendWatch is not None:
            self._backendWatch.cancel().addErrback(self._checkFailed)
            self._backendWatch = None
        self._wake()
        self._onGone(self)
