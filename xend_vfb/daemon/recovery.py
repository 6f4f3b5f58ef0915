"""What a daemon does when it starts: take over from the one before it.

Every domain with a private record is rebuilt from xenstore; an operation the
journal says was interrupted is finished or rolled back; backends still running
are adopted (never started twice) and missing ones started; half-built domains
are cleaned up.  Domains that stopped while no daemon ran are the guests'
business (`guests.Guests`, started next).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from xend_vfb.devices import DEVICE_CLASSES
from xend_vfb.domain import Domain
from xend_vfb.xenstore.paths import domainPath

if TYPE_CHECKING:
    from xend_vfb.daemon.service import XendVfbDaemon

__all__ = ["Recovery"]

log = Logger()


class Recovery(Service):
    """Runs `recover` as the daemon starts."""

    def __init__(self, daemon: XendVfbDaemon) -> None:
        self.daemon = daemon

    def startService(self):
        Service.startService(self)
        return self.recover()

    @inlineCallbacks
    def recover(self):
        daemon = self.daemon
        if daemon.emulated:
            # The emulated host writes /local/domain/D before `create` can journal it: a
            # daemon killed in between left a domain that no private record names.
            known = set((yield daemon.domids()))
            for domid, info in (yield daemon.host.domains()).items():
                if domid not in known and not (yield daemon.guests.knows(info.uuid)):
                    log.info("domain {domid}: cleaning up after an interrupted create",
                             domid=domid)
                    yield daemon.teardown(domid, graceful=False)
        for domid in (yield daemon.domids()):
            pending = yield daemon.journal.pending(domid)
            daemon.host.recover(domid)
            alive = yield daemon.xs.exists(domainPath(domid))
            if not alive or (pending and pending["op"] in ("create", "destroy")):
                why = "it died" if not alive else f"an interrupted {pending['op']}"
                log.info("domain {domid}: cleaning up after {why}", domid=domid, why=why)
                yield daemon.teardown(domid, graceful=alive and pending["op"] == "destroy")
                if pending and pending["op"] == "destroy":
                    yield daemon.guests.forget(domid)
                continue
            domain = yield daemon.domain(domid)
            if pending and pending["op"] == "attach":
                yield self._rollbackAttach(domain, pending["before"])
            elif pending and pending["op"] == "detach":
                for name, devid in pending["devices"]:
                    yield domain.controller(name).removeDevice(devid)
            if pending:
                yield daemon.guests.devicesChanged(domain)
            yield daemon.journal.clear(domid)
            yield daemon.backends.ensure(domain)

    @inlineCallbacks
    def _rollbackAttach(self, domain: Domain, before: dict):
        ids = yield domain.deviceIDs()
        for cls in DEVICE_CLASSES:
            for devid in ids.get(cls.name, []):
                if devid not in before.get(cls.name, []):
                    yield domain.controller(cls.name).removeDevice(devid)
