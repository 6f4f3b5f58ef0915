"""Power requests from VNC viewers (xvp), carried out through the guest's lifecycle.

A display with ``vncpowercontrol=1`` lets viewers that authenticated ask for a
shutdown, a reboot or a reset.  The backend serving it does not act (it owns
no domain): it leaves the request in `/xend-vfb/power/<domid>` (domain 0 only,
so a guest cannot forge one), and the daemon takes it from there, once, and
does what an admin's `xend-vfb shutdown`/`reboot` does; a reset destroys the
domain and re-makes it at once, as a crash with ``on_crash=restart`` would.
A request left while the daemon was down is carried out when it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from xend_vfb.host import ShutdownReason
from xend_vfb.xenstore.paths import POWER_ROOT, powerRequestPath

if TYPE_CHECKING:
    from xend_vfb.daemon.service import XendVfbDaemon

__all__ = ["PowerRequests"]

log = Logger()

#: A viewer's shutdown and reboot are the guest's own (it is asked, as by `xl shutdown`).
_SHUTDOWNS = {"shutdown": ShutdownReason.poweroff, "reboot": ShutdownReason.reboot}


class PowerRequests(Service):
    """Watches the power requests backends leave, and carries them out for `daemon`;
    started once the guests are followed."""

    def __init__(self, daemon: XendVfbDaemon) -> None:
        self.daemon = daemon
        self._watch = None

    @inlineCallbacks
    def startService(self):
        """Watch for requests, and carry out any left while no daemon ran."""
        Service.startService(self)
        self._watch = yield self.daemon.xs.watch(POWER_ROOT, lambda _path: self._changed())
        self._changed()

    @inlineCallbacks
    def stopService(self):
        Service.stopService(self)
        watch, self._watch = self._watch, None
        if watch is not None:
            yield watch.cancel()  # before the store stops: services stop in reverse order

    def _changed(self) -> None:
        self._takeAll().addErrback(lambda f: log.failure("taking power requests", f))

    @inlineCallbacks
    def _takeAll(self):
        for name in (yield self.daemon.xs.list(POWER_ROOT)):
            action = yield self._take(name)
            if action is None:
                continue
            if not name.isdigit() or int(name) not in (yield self.daemon.domids()):
                log.warn("power request {action} for {name}, not a domain of ours: ignored",
                         action=action, name=name)
                continue
            try:
                yield self._carryOut(int(name), action)
            except Exception as e:
                log.error("domain {domid}: a viewer's {action} failed: {e}", domid=name,
                          action=action, e=e)

    @inlineCallbacks
    def _take(self, name: str):
        """Read and remove one request in one go: each is carried out once."""

        @inlineCallbacks
        def take(tx):
            path = f"{POWER_ROOT}/{name}"
            value = yield tx.readOrNone(path)
            yield tx.rm(path)
            return value

        return (yield self.daemon.xs.transaction(take))

    @inlineCallbacks
    def _carryOut(self, domid: int, action: str):
        log.info("domain {domid}: {action}, as a VNC viewer asked", domid=domid, action=action)
        if action in _SHUTDOWNS:
            yield self.daemon.guests.requestShutdown(domid, _SHUTDOWNS[action], None)
        elif action == "reset":
            yield self.daemon.guests.reset(domid)
        else:
            log.warn("domain {domid}: unknown power request {action!r} at {path}: ignored",
                     domid=domid, action=action, path=powerRequestPath(domid))
