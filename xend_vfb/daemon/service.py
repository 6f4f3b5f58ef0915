"""The daemon's root service: the tree of services, and the operations on domains.

The children, in the order they start: the browser console (`xend_vfb.web`: first,
so that a wrong setting stops the daemon before anything started), the xenstore
connection (`store`), the process supervisor, the host, the backends and their
zygote (`backends`), the recovery of what an earlier daemon left (`recovery`), the
guests' lives across domains (`guests`), power requests from VNC viewers (`power`),
and last the control socket (`control`).  The operations (create, destroy, attach,
detach) journal each step (`journal`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import DeferredLock, inlineCallbacks
from twisted.logger import Logger

from xend_vfb.daemon.backends import ZYGOTE, Backends, backendKey
from xend_vfb.daemon.control import ControlSocket, socketPath
from xend_vfb.daemon.crash import crashPoint
from xend_vfb.daemon.guests import Guests
from xend_vfb.daemon.journal import Journal
from xend_vfb.daemon.power import PowerRequests
from xend_vfb.daemon.recovery import Recovery
from xend_vfb.daemon.requests import ControlRequests
from xend_vfb.daemon.store import XenstoreService
from xend_vfb.devices import DEVICE_CLASSES, VFB, classNamed
from xend_vfb.domain import Domain
from xend_vfb.errors import ConfigError, DaemonError, DeviceError
from xend_vfb.host import IHost
from xend_vfb.host.emulated import EmulatedHost
from xend_vfb.host.xen import XenHost
from xend_vfb.model import PASSWORD_EXPIRES, DomainConfig
from xend_vfb.supervisor import ProcessSupervisor
from xend_vfb.tls import TLSSettings
from xend_vfb.web import WebConsole, displaySocket
from xend_vfb.xenbus import parseState
from xend_vfb.xenstore.paths import (
    PRIVATE_ROOT,
    backendDomainPath,
    backendPath,
    domainPath,
    frontendPath,
)

__all__ = ["XendVfbDaemon", "runDaemon", "socketPath"]

log = Logger()

#: Seconds `create` and `vfb-attach` wait for the backend's hotplug-status.
DEVICE_TIMEOUT = 30.0
#: Seconds a backend may take to exit once its domain has no devices left.
BACKEND_EXIT_TIMEOUT = 5.0


class HostService(Service):
    """The daemon's hypervisor: `XenHost`, or `EmulatedHost` standing in for one."""

    def __init__(self, daemon: XendVfbDaemon) -> None:
        self.daemon = daemon

    def startService(self) -> None:
        Service.startService(self)
        daemon = self.daemon
        if daemon.emulated:
            daemon.host = EmulatedHost(daemon.xs, daemon.runDir, daemon.supervisor)
        else:
            daemon.host = XenHost(daemon.xs, daemon.runDir)


class XendVfbDaemon(MultiService):
    """The daemon: a tree of services started in order, each once the one before is
    up, and stopped in reverse (README "How it fits together").  `emulated` stands in
    for the hypervisor (SURFACE.md)."""

    def __init__(self, runDir: str, emulated: bool, reactor: Any) -> None:
        super().__init__()
        self.runDir = runDir
        self.emulated = emulated
        self.reactor = reactor
        self.host: IHost | None = None
        self.store = XenstoreService(runDir, emulated, onLost=reactor.stop)
        self.supervisor = ProcessSupervisor(reactor, onDeath=self._processEnded)
        self.backends = Backends(reactor, self.supervisor, runDir, emulated)
        self.guests = Guests(self)
        self.requests = ControlRequests(self)
        self.journal = Journal(self.store)
        self.web = WebConsole(reactor, lambda grant: displaySocket(self.xs, runDir, grant))
        for service in (self.web, self.store, self.supervisor, HostService(self), self.backends,
                        Recovery(self), self.guests, PowerRequests(self),
                        ControlSocket(reactor, runDir, self.requests)):
            service.setServiceParent(self)
        #: Domains an operation is working on: not to be reaped under its feet.
        self.busy: set[int] = set()
        self._building = DeferredLock()
        self.stopping = False
        #: The displays' TLS settings (`xend_vfb.tls`), read at start; None without TLS.
        self.tls: TLSSettings | None = None

    @property
    def xs(self) -> Any:
        return self.store.xs

    # -- start and stop ------------------------------------------------------

    @inlineCallbacks
    def startService(self):
        # The TLS settings and certificates first: a daemon asked for TLS that could
        # not give it must not start displays at all.
        self.tls = TLSSettings.fromEnvironment()
        if self.tls is not None:
            self.tls.contextFactory()
        os.makedirs(self.runDir, mode=0o700, exist_ok=True)
        Service.startService(self)
        for service in self:
            yield service.startService()
            if service is self.store:
                self.supervisor.environ.update(self.store.environ,
                                               XEND_VFB_RUN_DIR=self.runDir)
        log.info("xend-vfb daemon ready (pid {pid}, run dir {dir}, {mode} mode)",
                 pid=os.getpid(), dir=self.runDir,
                 mode="emulated" if self.emulated else "xen")

    @inlineCallbacks
    def stopService(self):
        self.stopping = True
        Service.stopService(self)
        for service in reversed(list(self)):
            if service.running:
                yield service.stopService()

    @inlineCallbacks
    def stopEverything(self):
        """`stop --all` (emulated mode): destroy every guest, stop the zygote, then stop
        the daemon and the embedded xenstored."""
        if not self.emulated:
            # On a real host, "everything" would be the guests themselves.
            raise DaemonError("stop --all is for emulated mode only: on a Xen host it "
                              "would destroy real guests (use destroy for each)")
        for domid in (yield self.domids()):
            yield self.teardown(domid, graceful=True)
        for domid in (yield self.host.domains()):
            yield self.host.destroyDomain(domid)
        yield self.guests.forgetAll()
        self.stopping = True
        yield self.supervisor.terminate(ZYGOTE)

    def stop(self, everything: bool) -> None:
        """Stop the reactor soon (after the reply has gone out)."""
        self.reactor.callLater(0.05, self._stop, everything)

    @inlineCallbacks
    def _stop(self, everything: bool):
        if everything and self.store.xenstored is not None:
            self.stopping = True
            yield self.store.stopXenstored()
        self.reactor.stop()

    # -- the domains -------------------------------------------------------------

    @inlineCallbacks
    def domids(self):
        """Domains this daemon manages: those with a private record."""
        names = yield self.xs.list(PRIVATE_ROOT)
        return sorted(int(n) for n in names if n.isdigit())

    @inlineCallbacks
    def domain(self, domid: int):
        name = (yield self.xs.readOrNone(f"{domainPath(domid)}/name")) or str(domid)
        return Domain(self.xs, domid, name, self.reactor)

    @inlineCallbacks
    def resolve(self, what: str):
        """A domain id from a name or an id given on the command line: any running
        domain (on Xen, also one started by plain `xl create`), or one of ours."""
        running = [int(n) for n in (yield self.xs.list("/local/domain")) if n.isdigit()]
        for domid in sorted(set(running) | set((yield self.domids())) - {0}):
            name = yield self.xs.readOrNone(f"{domainPath(domid)}/name")
            if what == str(domid) or what == name:
                return domid
        raise DaemonError(f"domain {what!r} does not exist")

    def _processEnded(self, key: str, how: str, clean: bool | None) -> None:
        if self.stopping:
            return
        if key == ZYGOTE:
            self.backends.zygoteEnded()
            return
        kind, _, number = key.partition("/")
        domid = int(number)
        if kind == "guest":
            self.host.guestEnded(domid)
            return
        d = self._backendEnded(domid, how, clean)
        d.addErrback(lambda f: log.failure("after {key} ended", f, key=key))

    @inlineCallbacks
    def _backendEnded(self, domid: int, how: str, clean: bool | None):
        if domid in (yield self.domids()):
            yield self.backends.ended((yield self.domain(domid)), how, clean,
                                      restart=domid not in self.busy)

    # -- operations -------------------------------------------------------------------

    @inlineCallbacks
    def create(self, config: DomainConfig):
        """Build the domain, write its devices, start its backend and the domain, and
        wait for the devices; on any failure undo all of it."""
        config = self.guests.withUUID(config)
        domid = yield self._building.run(self._build, config)
        try:
            crashPoint("create:journal")
            domain = Domain(self.xs, domid, config.name, self.reactor)
            created = yield domain.createDevices(config)
            crashPoint("create:devices")
            yield self.backends.ensure(domain)
            crashPoint("create:backend")
            yield self.host.startDomain(domid)
            yield domain.waitForDevices(created, DEVICE_TIMEOUT)
            yield self.guests.record(config, domain)
            yield self.journal.clear(domid)
        except BaseException:
            yield self.teardown(domid, graceful=False)
            yield self.guests.forget(domid)
            raise
        finally:
            self.busy.discard(domid)
        log.info("domain {domid} ({name}) created", domid=domid, name=config.name)
        return domid

    @inlineCallbacks
    def _build(self, config: DomainConfig):
        """Check the name is free and build the domain: under `_building`, so that two
        creates at once can neither both take a name nor both pick one domain id."""
        for domid in (yield self.domids()):
            if (yield self.xs.readOrNone(f"{domainPath(domid)}/name")) == config.name:
                raise DaemonError(f"domain {config.name!r} already exists (domain {domid})")
        domid = yield self.host.createDomain(config)
        self.busy.add(domid)
        try:
            yield self.journal.write(domid, {"op": "create"})
        except BaseException:
            self.busy.discard(domid)
            raise
        return domid

    @inlineCallbacks
    def teardown(self, domid: int, graceful: bool, destroyDomain: bool = True,
                 keepBackend: bool = False):
        """Take a domain's devices down (asking the guest if `graceful`), wait for its
        backend to go (unless `keepBackend`: it holds the displays for the guest's next
        domain), and destroy the domain (unless `destroyDomain` is False).  The guest's
        record, if any, stays: that is `Guests`' decision."""
        self.busy.add(domid)
        try:
            yield self.journal.write(domid, {"op": "destroy"})
            crashPoint("destroy:journal")
            domain = yield self.domain(domid)
            # A backend left running by an earlier daemon is watched from here on, so
            # that the domain goes only once its backend has.  Without a backend
            # nobody would answer a graceful close: do not wait 10 s per device.
            graceful = graceful and self.backends.find(domid) is not None
            yield domain.destroyDevices(force=not graceful)
            yield self._removeBackendAreas(domid)
            crashPoint("destroy:devices")
            if not keepBackend:
                ended = self.supervisor.whenEnded(backendKey(domid))
                timer = self.reactor.callLater(
                    BACKEND_EXIT_TIMEOUT, self.supervisor.terminate, backendKey(domid))
                yield ended
                if timer.active():
                    timer.cancel()
            yield self._removeBackendAreas(domid)
            if destroyDomain:
                yield self.host.destroyDomain(domid)
            yield self.xs.rm(f"{PRIVATE_ROOT}/{domid}")
            self.backends.restarts.forget(backendKey(domid))
        finally:
            self.busy.discard(domid)
        log.info("domain {domid}: devices {what}", domid=domid,
                 what="and domain destroyed" if destroyDomain else "removed")

    @inlineCallbacks
    def _removeBackendAreas(self, domid: int):
        """Remove what is left of the domain's backend areas once its devices are gone.
        A backend step racing with a forced removal can write `state` into an area just
        removed, recreating part of it; the toolstack owns the areas, so it sweeps."""
        for cls in DEVICE_CLASSES:
            yield self.xs.rm(backendDomainPath(domid, cls.name))

    @inlineCallbacks
    def attach(self, domid: int, name: str, config: Any):
        domain = yield self.domain(domid)
        yield self.journal.write(domid, {"op": "attach", "before": (yield domain.deviceIDs())})
        crashPoint("attach:journal")
        created = yield domain.attach(name, config)
        crashPoint("attach:devices")
        try:
            yield self.backends.ensure(domain)
            yield domain.waitForDevices(created, DEVICE_TIMEOUT)
        except BaseException:
            yield domain.rollback(created)
            raise
        finally:
            yield self.journal.clear(domid)
        yield self.guests.devicesChanged(domain)
        return dict(created)[name]

    @inlineCallbacks
    def detach(self, domid: int, name: str, devid: int, force: bool):
        domain = yield self.domain(domid)
        if devid not in (yield domain.controller(name).deviceIDs()):
            raise DeviceError(f"Device {devid} ({name}) does not exist in domain {domid}")
        devices = [[name, devid]]
        companion = yield domain.companion(name, devid)
        if companion is not None:
            devices.append([classNamed(name).companion, companion])
        yield self.journal.write(domid, {"op": "detach", "devices": devices})
        crashPoint("detach:journal")
        yield domain.detach(name, devid, force)
        crashPoint("detach:devices")
        yield self.journal.clear(domid)
        yield self.guests.devicesChanged(domain)

    @inlineCallbacks
    def setVncPassword(self, domid: int, devid: int, password: str, expire: float | None):
        """Give display `devid` a new VNC password, expiring `expire` seconds from now
        (None: never): recorded with the display's secrets (so the guest's next
        domains keep it), then taken by the running display at once."""
        if not password:
            raise ConfigError("vnc-passwd: the new password is empty (a display without "
                              "a password is configured with vncpasswd unset)")
        if expire is not None and expire < 0:
            raise ConfigError(f"vnc-passwd: --expire {expire:g} is negative")
        domain = yield self.domain(domid)
        controller = domain.controller(VFB.name)
        config = yield controller.getDeviceConfiguration(devid)
        if not config.vnc:
            raise DeviceError(f"{controller.describe(devid)} of domain {domid} has no VNC "
                              "display")
        new = config.withPassword(password, f"vfb[{devid}]")
        expires = None if expire is None else f"{self.reactor.seconds() + expire:.3f}"
        yield controller.reconfigureDevice(devid, new, private={PASSWORD_EXPIRES: expires})
        yield self.guests.devicesChanged(domain)
        yield self.backends.reloadPassword(domid, devid)
        log.info("domain {domid}: vfb {devid} has a new VNC password ({expiry})",
                 domid=domid, devid=devid,
                 expiry="never expires" if expire is None else f"expires in {expire:g} s")

    @inlineCallbacks
    def deviceList(self, domid: int, name: str):
        """A row per device of class `name`: states, hotplug outcome, where its VNC
        display listens (a display) and its companion's id (a display's keyboard)."""
        domain = yield self.domain(domid)
        companion = classNamed(name).companion
        rows = []
        for devid in (yield domain.controller(name).deviceIDs()):
            back = backendPath(domid, name, devid)
            row = {
                "devid": devid,
                "backend_state": int(parseState((yield self.xs.readOrNone(f"{back}/state")))),
                "frontend_state": int(parseState((yield self.xs.readOrNone(
                    f"{frontendPath(domid, name, devid)}/state")))),
                "hotplug_status": (yield self.xs.readOrNone(f"{back}/hotplug-status")),
                "error": (yield self.xs.readOrNone(f"{back}/error")),
            }
            if (yield self.xs.exists(f"{back}/vnc")):
                port = yield self.xs.readOrNone(f"{back}/vnc-port")
                row["vnc_port"] = int(port) if port and port.isdigit() else None
                row["vnc_listen"] = yield self.xs.readOrNone(f"{back}/vnc-listen")
            if companion is not None:
                row[companion] = yield domain.companion(name, devid)
            rows.append(row)
        return rows

    @inlineCallbacks
    def describe(self, domid: int):
        """{class: deviceList} for every class, as `list` shows a domain (displays
        first)."""
        devices = {}
        for cls in reversed(DEVICE_CLASSES):
            devices[cls.name] = yield self.deviceList(domid, cls.name)
        return devices


def runDaemon(runDir: str, emulated: bool) -> int:
    """Run the daemon in this process until it is shut down; the exit status."""
    from twisted.internet import reactor

    daemon = XendVfbDaemon(runDir, emulated, reactor)
    status = []

    def failed(failure: Any) -> None:
        log.failure("the daemon could not start", failure)
        status.append(f"Error: {failure.getErrorMessage()}")
        reactor.stop()

    def start() -> None:
        d = daemon.startService()
        d.addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", daemon.stopService)
    reactor.run()
    for line in status:
        print(line, file=sys.stderr)
    return 1 if status else 0
