"""The xend-vfb daemon: domains, their devices and backend processes.

A tree of Twisted services.  Everything it knows lives in xenstore (device
areas, the private record under /xend-vfb/<domid>) or on disk (process
records), never only in memory, so a restarted daemon rebuilds its state and
adopts the backends (and, in emulated mode, guests) that kept running while
it was down.  Each multi-step operation writes a journal entry (`pending`)
in the domain's private record first, so a daemon killed half-way finishes
or rolls back that operation when it starts again.

Requests arrive as JSON lines on `<runDir>/xend-vfb.sock` (root only).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import time
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import DeferredLock, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger

import xend_vfb.vfbif  # noqa: F401  (registers the vfb and vkbd controllers)
from xend_vfb import jsonline, sxp
from xend_vfb.backend.control import controlSocketPath
from xend_vfb.backend.zygote import TITLE_SPACE
from xend_vfb.domain import Domain
from xend_vfb.errors import DaemonError, DeviceError
from xend_vfb.host import EmulatedHost, IHost, XenHost
from xend_vfb.model import DomainConfig, VfbConfig, VkbdConfig
from xend_vfb.supervisor import ProcessSupervisor, programCommand
from xend_vfb.xenbus import parseState
from xend_vfb.xenstore import EmbeddedXenstored, connect
from xend_vfb.xenstore.paths import (
    PRIVATE_ROOT,
    backendDomainPath,
    backendPath,
    domainPath,
    frontendPath,
)

__all__ = ["XendVfbDaemon", "runDaemon", "socketPath", "crashPoint"]

log = Logger()

#: A backend that dies is restarted at most this many times in `RESTART_WINDOW` s.
RESTART_LIMIT = 3
RESTART_WINDOW = 60.0
#: Seconds `create` and `vfb-attach` wait for the backend's hotplug-status.
DEVICE_TIMEOUT = 30.0
#: Seconds a backend may take to exit once its domain has no devices left.
BACKEND_EXIT_TIMEOUT = 5.0
#: Seconds a backend may take to answer a screenshot: a full copy out of the guest's
#: framebuffer plus PNG encoding, 12-15 s on real Xen under QEMU TCG (docs/xen-harness.md).
SCREENSHOT_TIMEOUT = 120.0


def socketPath(runDir: str) -> str:
    """The daemon's control socket."""
    return os.path.join(runDir, "xend-vfb.sock")


def crashPoint(name: str) -> None:
    """Test hook: die like `kill -9` at the named step when XEND_VFB_CRASH_AT says so."""
    if os.environ.get("XEND_VFB_CRASH_AT") == name:
        log.warn("crash point {name} reached: killing myself", name=name)
        os.kill(os.getpid(), signal.SIGKILL)


#: The supervisor's key for the zygote backends are forked from.
ZYGOTE = "zygote"


def backendKey(domid: int) -> str:
    """The supervisor's key for a domain's backend process."""
    return f"backend/{domid}"


class XendVfbDaemon(MultiService):
    """The daemon.  `emulated` stands in for the hypervisor (SURFACE.md)."""

    def __init__(self, runDir: str, emulated: bool, reactor: Any) -> None:
        super().__init__()
        self.runDir = runDir
        self.emulated = emulated
        self.reactor = reactor
        self.xs: Any = None
        self.xenstored: EmbeddedXenstored | None = None
        self.host: IHost | None = None
        self.supervisor = ProcessSupervisor(reactor, onDeath=self._processEnded)
        self.supervisor.setServiceParent(self)
        self._restarts: dict[int, list[float]] = {}
        self._zygoteRestarts: list[float] = []
        self._busy: set[int] = set()
        self._building = DeferredLock()
        self._port: Any = None
        self.stopping = False

    # -- start and stop ------------------------------------------------------

    @inlineCallbacks
    def startService(self):
        os.makedirs(self.runDir, mode=0o700, exist_ok=True)
        environ = {}
        if self.emulated:
            self.xenstored = EmbeddedXenstored(self.runDir)
            self.xenstored.start()
            environ = self.xenstored.environ
            os.environ.update(environ)
        self.supervisor.environ.update(environ, XEND_VFB_RUN_DIR=self.runDir)
        self.xs = yield connect(environ.get("XENSTORED_PATH"))
        self.xs.whenLost().addCallback(self._xenstoreLost)
        if self.emulated:
            self.host = EmulatedHost(self.xs, self.runDir, self.supervisor)
        else:
            self.host = XenHost(self.xs, self.runDir)
            # Xen announces every domain's death here; find out whose it was.
            yield self.xs.watch("@releaseDomain", self._domainReleased)
        super().startService()
        self.startZygote()
        yield self._zygoteReady()
        yield self.recover()
        self._port = yield jsonline.listen(self.reactor, socketPath(self.runDir), self)
        log.info("xend-vfb daemon ready (pid {pid}, run dir {dir}, {mode} mode)",
                 pid=os.getpid(), dir=self.runDir,
                 mode="emulated" if self.emulated else "xen")

    @inlineCallbacks
    def stopService(self):
        self.stopping = True
        if self._port is not None:
            yield self._port.stopListening()
            # No socket left behind to be mistaken for a daemon that listens.
            if os.path.exists(socketPath(self.runDir)):
                os.unlink(socketPath(self.runDir))
        yield super().stopService()
        if self.xs is not None:
            self.xs.close()

    def _xenstoreLost(self, _: Any) -> None:
        if not self.stopping:
            log.error("lost the connection to xenstored: stopping")
            self.reactor.stop()

    # -- recovering after a restart --------------------------------------------

    @inlineCallbacks
    def recover(self):
        """Rebuild every domain from xenstore, finish interrupted operations, adopt or
        start backends, and clean up domains that died while we were down."""
        if self.emulated:
            # The emulated host writes /local/domain/D before `create` can journal it: a
            # daemon killed in between left a domain that no private record names.
            known = set((yield self.domids()))
            for name in (yield self.xs.list("/local/domain")):
                if name.isdigit() and int(name) not in known | {0}:
                    log.info("domain {domid}: cleaning up after an interrupted create",
                             domid=int(name))
                    yield self.teardown(int(name), graceful=False)
        for domid in (yield self.domids()):
            pending = yield self._pending(domid)
            alive = self.host.recover(domid) and (yield self.xs.exists(domainPath(domid)))
            if not alive or (pending and pending["op"] in ("create", "destroy")):
                why = "it died" if not alive else f"an interrupted {pending['op']}"
                log.info("domain {domid}: cleaning up after {why}", domid=domid, why=why)
                yield self.teardown(domid, graceful=alive and pending["op"] == "destroy")
                continue
            domain = yield self.domain(domid)
            if pending and pending["op"] == "attach":
                yield self._rollbackAttach(domain, pending["before"])
            elif pending and pending["op"] == "detach":
                for deviceClass, devid in pending["devices"]:
                    yield domain.controller(deviceClass).removeDevice(devid)
            yield self._journal(domid, None)
            yield self.ensureBackend(domid)

    @inlineCallbacks
    def _rollbackAttach(self, domain: Domain, before: dict):
        ids = yield domain.deviceIDs()
        for deviceClass in ("vfb", "vkbd"):
            for devid in ids.get(deviceClass, []):
                if devid not in before.get(deviceClass, []):
                    yield domain.controller(deviceClass).removeDevice(devid)

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

    def _domainReleased(self, _path: str) -> None:
        d = self._reapDeadDomains()
        d.addErrback(lambda f: log.failure("checking for dead domains", f))

    @inlineCallbacks
    def _reapDeadDomains(self):
        for domid in (yield self.domids()):
            if domid not in self._busy and not (yield self.xs.exists(domainPath(domid))):
                log.info("domain {domid} is gone: cleaning up", domid=domid)
                yield self.teardown(domid, graceful=False)

    @inlineCallbacks
    def _pending(self, domid: int):
        value = yield self.xs.readOrNone(f"{PRIVATE_ROOT}/{domid}/pending")
        return json.loads(value) if value else None

    def _journal(self, domid: int, entry: dict | None) -> Any:
        path = f"{PRIVATE_ROOT}/{domid}/pending"
        if entry is None:
            return self.xs.rm(path)
        return self.xs.write(path, json.dumps(entry, separators=(",", ":")))

    # -- backends -----------------------------------------------------------------

    def _backendPaths(self, name: str) -> tuple[str, str]:
        directory = os.path.join(self.runDir, "backends")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        return os.path.join(directory, f"{name}.pid"), os.path.join(directory, f"{name}.log")

    def startZygote(self) -> None:
        """Start (or adopt) the pre-imported image backends are forked from."""
        record, logPath = self._backendPaths("zygote")
        command = [sys.executable, "-m", "xend_vfb.backend.zygote", "--socket",
                   self._zygoteSocket(), "--title-space=" + "_" * TITLE_SPACE]
        self.supervisor.ensure(ZYGOTE, command, record, logPath)

    @inlineCallbacks
    def _zygoteReady(self, timeout: float = 10.0):
        """Wait until the zygote answers (it imports for a moment), or give up on it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                yield jsonline.request(self.reactor, self._zygoteSocket(), {"op": "ping"})
                return
            except jsonline.ChannelError:
                yield deferLater(self.reactor, 0.02, lambda: None)
        log.warn("the zygote did not start: backends will start afresh")

    def _zygoteSocket(self) -> str:
        return os.path.join(self.runDir, "backends", "zygote.sock")

    @inlineCallbacks
    def ensureBackend(self, domid: int):
        """Make sure the domain's backend runs if it has devices: adopt the one running,
        or fork one from the zygote (or, without a zygote, start one afresh)."""
        ids = yield (yield self.domain(domid)).deviceIDs()
        key = backendKey(domid)
        record, logPath = self._backendPaths(str(domid))
        if not any(ids.values()) or self.supervisor.find(key, record) is not None:
            return
        arguments = ["--domid", str(domid), "--run-dir", self.runDir,
                     "--mode", "emulated" if self.emulated else "xen"]
        try:
            reply = yield jsonline.request(
                self.reactor, self._zygoteSocket(),
                {"op": "spawn", "argv": arguments, "log": logPath,
                 "env": self.supervisor.environ}, timeout=5.0)
        except jsonline.ChannelError as e:
            log.warn("no zygote ({e}): starting the backend of domain {domid} afresh",
                     e=e, domid=domid)
            self.supervisor.spawn(key, [*programCommand("xend-vfb-backend"), *arguments],
                                  record, logPath)
            return
        if self.supervisor.record(key, reply["pid"], record) is None:
            raise DeviceError(f"the backend of domain {domid} exited at once; see {logPath}")
        log.info("backend of domain {domid} forked: pid {pid}", domid=domid, pid=reply["pid"])

    def _processEnded(self, key: str, how: str, clean: bool | None) -> None:
        if self.stopping:
            return
        if key == ZYGOTE:
            now = time.monotonic()
            recent = [t for t in self._zygoteRestarts if now - t < RESTART_WINDOW]
            if len(recent) < RESTART_LIMIT:
                self._zygoteRestarts = recent + [now]
                self.startZygote()
            else:
                log.error("the zygote keeps dying: backends will start afresh")
            return
        kind, _, number = key.partition("/")
        domid = int(number)
        if kind == "guest":
            if domid in self._busy:
                return
            log.info("domain {domid} died ({how}): cleaning up", domid=domid, how=how)
            d = self.teardown(domid, graceful=False)
        else:
            d = self._backendEnded(domid, how, clean, restart=domid not in self._busy)
        d.addErrback(lambda f: log.failure("after {key} ended", f, key=key))

    def _lastError(self, domid: int) -> str:
        """The last error a backend wrote to its log (an error or critical log line, or
        a traceback's last line), if its last words were one: usually why it died."""
        _, logPath = self._backendPaths(str(domid))
        try:
            with open(logPath, "rb") as f:
                f.seek(max(0, os.path.getsize(logPath) - 4096))
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        line = lines[-1].strip() if lines else ""
        if line[:4].isdigit() and "] " in line:  # a log line: "<time> [<namespace>#<level>] ..."
            header, line = line.split("] ", 1)
            if not header.endswith(("#error", "#critical")):
                return ""
        return line[:300]

    @inlineCallbacks
    def _reportDeath(self, domid: int, ids: dict, why: str):
        """Show a backend's death on every device of its domain: `error` for all of
        them, and a hotplug error for those not yet connected, so that a create or
        attach waiting for them fails at once with the reason."""
        for deviceClass, devids in ids.items():
            for devid in devids:
                path = backendPath(domid, deviceClass, devid)
                yield self.xs.write(f"{path}/error", why)
                if (yield self.xs.readOrNone(f"{path}/hotplug-status")) != "connected":
                    yield self.xs.write(f"{path}/hotplug-error", why)
                    yield self.xs.write(f"{path}/hotplug-status", "error")

    @inlineCallbacks
    def _backendEnded(self, domid: int, how: str, clean: bool | None, restart: bool):
        """A backend that ends while its domain still has devices is reported on them and
        restarted, at most RESTART_LIMIT times in RESTART_WINDOW seconds; then its
        devices show the error and stay down until an admin acts."""
        if domid not in (yield self.domids()):
            return
        domain = yield self.domain(domid)
        ids = yield domain.deviceIDs()
        if not any(ids.values()):
            return
        if not clean:
            last = self._lastError(domid)
            yield self._reportDeath(
                domid, ids, f"backend process of domain {domid} ended ({how})"
                + (f": {last}" if last else ""))
        if not restart:
            return
        if not clean:
            now = time.monotonic()
            recent = [t for t in self._restarts.get(domid, []) if now - t < RESTART_WINDOW]
            if len(recent) >= RESTART_LIMIT:
                message = (f"backend process of domain {domid} died ({how}) "
                           f"{len(recent) + 1} times in {RESTART_WINDOW:g} s; not restarted")
                log.error("{message}", message=message)
                for deviceClass, devids in ids.items():
                    for devid in devids:
                        path = backendPath(domid, deviceClass, devid)
                        yield self.xs.write(f"{path}/error", message)
                        yield self.xs.write(f"{path}/hotplug-error", message)
                        yield self.xs.write(f"{path}/hotplug-status", "error")
                return
            self._restarts[domid] = recent + [now]
            log.warn("backend of domain {domid} died ({how}): restarting", domid=domid, how=how)
        yield self.ensureBackend(domid)

    # -- operations -------------------------------------------------------------------

    @inlineCallbacks
    def create(self, config: DomainConfig):
        """Build the domain, write its devices, start its backend and the domain, and
        wait for the devices; on any failure undo all of it."""
        domid = yield self._building.run(self._build, config)
        try:
            crashPoint("create:journal")
            domain = Domain(self.xs, domid, config.name, self.reactor)
            created = yield domain.createDevices(config)
            crashPoint("create:devices")
            yield self.ensureBackend(domid)
            crashPoint("create:backend")
            yield self.host.startDomain(domid)
            yield domain.waitForDevices(created, DEVICE_TIMEOUT)
            yield self._journal(domid, None)
        except BaseException:
            yield self.teardown(domid, graceful=False)
            raise
        finally:
            self._busy.discard(domid)
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
        self._busy.add(domid)
        try:
            yield self._journal(domid, {"op": "create"})
        except BaseException:
            self._busy.discard(domid)
            raise
        return domid

    @inlineCallbacks
    def teardown(self, domid: int, graceful: bool):
        """Destroy a domain: devices (asking the guest if `graceful`), backend, domain."""
        self._busy.add(domid)
        try:
            yield self._journal(domid, {"op": "destroy"})
            crashPoint("destroy:journal")
            domain = yield self.domain(domid)
            # A backend left running by an earlier daemon is watched from here on, so
            # that the domain goes only once its backend has.  Without a backend
            # nobody would answer a graceful close: do not wait 10 s per device.
            backend = self._adoptBackend(domid)
            graceful = graceful and backend is not None
            # Device by device rather than Domain.destroyDevices, which also removes the
            # private record and with it this journal: a crash after that left the
            # domain (and its guest) unmanaged for good.
            for deviceClass in reversed(Domain.deviceClasses):
                controller = domain.controller(deviceClass)
                for devid in (yield controller.deviceIDs()):
                    yield controller.destroyDevice(devid, force=not graceful)
            yield self._removeBackendAreas(domid)
            crashPoint("destroy:devices")
            ended = self.supervisor.whenEnded(backendKey(domid))
            timer = self.reactor.callLater(
                BACKEND_EXIT_TIMEOUT, self.supervisor.terminate, backendKey(domid))
            yield ended
            if timer.active():
                timer.cancel()
            yield self._removeBackendAreas(domid)
            yield self.host.destroyDomain(domid)
            yield self.xs.rm(f"{PRIVATE_ROOT}/{domid}")
            self._restarts.pop(domid, None)
        finally:
            self._busy.discard(domid)
        log.info("domain {domid} destroyed", domid=domid)

    def _adoptBackend(self, domid: int) -> Any:
        """The domain's backend process, adopted from its record if no one watches it
        yet (after a restart); None if it does not run."""
        record, _ = self._backendPaths(str(domid))
        return self.supervisor.find(backendKey(domid), record)

    @inlineCallbacks
    def _removeBackendAreas(self, domid: int):
        """Remove what is left of the domain's backend areas once its devices are gone.
        A backend step racing with a forced removal can write `state` into an area just
        removed, recreating part of it; the toolstack owns the areas, so it sweeps."""
        for deviceClass in Domain.deviceClasses:
            yield self.xs.rm(backendDomainPath(domid, deviceClass))

    @inlineCallbacks
    def attach(self, domid: int, deviceClass: str, config: Any):
        domain = yield self.domain(domid)
        yield self._journal(domid, {"op": "attach", "before": (yield domain.deviceIDs())})
        crashPoint("attach:journal")
        if deviceClass == "vfb":
            created = yield domain.attachDisplay(config)
        else:
            created = [("vkbd", (yield domain.controller("vkbd").createDevice(config)))]
        crashPoint("attach:devices")
        try:
            yield self.ensureBackend(domid)
            yield domain.waitForDevices(created, DEVICE_TIMEOUT)
        except BaseException:
            yield domain.rollback(created)
            raise
        finally:
            yield self._journal(domid, None)
        return dict(created)[deviceClass]

    @inlineCallbacks
    def detach(self, domid: int, deviceClass: str, devid: int, force: bool):
        domain = yield self.domain(domid)
        if devid not in (yield domain.controller(deviceClass).deviceIDs()):
            raise DeviceError(f"Device {devid} ({deviceClass}) does not exist in domain {domid}")
        devices = [[deviceClass, devid]]
        if deviceClass == "vfb":
            paired = yield domain.pairedKeyboard(devid)
            if paired is not None:
                devices.append(["vkbd", paired])
        yield self._journal(domid, {"op": "detach", "devices": devices})
        crashPoint("detach:journal")
        if deviceClass == "vfb":
            yield domain.detachDisplay(devid, force)
        else:
            yield domain.controller("vkbd").destroyDevice(devid, force)
        crashPoint("detach:devices")
        yield self._journal(domid, None)

    @inlineCallbacks
    def deviceList(self, domid: int, deviceClass: str):
        domain = yield self.domain(domid)
        rows = []
        for devid in (yield domain.controller(deviceClass).deviceIDs()):
            back = backendPath(domid, deviceClass, devid)
            row = {
                "devid": devid,
                "backend_state": int(parseState((yield self.xs.readOrNone(f"{back}/state")))),
                "frontend_state": int(parseState((yield self.xs.readOrNone(
                    f"{frontendPath(domid, deviceClass, devid)}/state")))),
                "hotplug_status": (yield self.xs.readOrNone(f"{back}/hotplug-status")),
                "error": (yield self.xs.readOrNone(f"{back}/error")),
            }
            if deviceClass == "vfb":
                port = yield self.xs.readOrNone(f"{back}/vnc-port")
                row["vnc_port"] = int(port) if port and port.isdigit() else None
                row["vnc_listen"] = yield self.xs.readOrNone(f"{back}/vnc-listen")
                row["vkbd"] = yield domain.pairedKeyboard(devid)
            else:
                row["vfb"] = None
            rows.append(row)
        return rows

    # -- requests (jsonline handler) ----------------------------------------------

    def op_ping(self, request: dict) -> dict:
        return {"pid": os.getpid(), "emulated": self.emulated}

    @inlineCallbacks
    def op_create(self, request: dict):
        config = DomainConfig.fromSXP(sxp.parse(request["sxp"], "<create>"))
        domid = yield self.create(config)
        return {"domid": domid, "name": config.name, "devices": (yield self._describe(domid))}

    @inlineCallbacks
    def op_destroy(self, request: dict):
        domid = yield self.resolve(request["domain"])
        yield self.teardown(domid, graceful=True)
        return {"domid": domid}

    @inlineCallbacks
    def op_list(self, request: dict):
        domains = []
        for domid in (yield self.domids()):
            name = yield self.xs.readOrNone(f"{domainPath(domid)}/name")
            domains.append({"domid": domid, "name": name, "devices": (yield self._describe(domid))})
        return {"domains": domains}

    @inlineCallbacks
    def _describe(self, domid: int):
        devices = {}
        for deviceClass in ("vkbd", "vfb"):
            devices[deviceClass] = yield self.deviceList(domid, deviceClass)
        return devices

    @inlineCallbacks
    def op_attach(self, request: dict):
        domid = yield self.resolve(request["domain"])
        deviceClass = request["class"]
        configClass = {"vfb": VfbConfig, "vkbd": VkbdConfig}[deviceClass]
        config = configClass.parse(request["spec"], deviceClass, environ=request.get("environ"))
        devid = yield self.attach(domid, deviceClass, config)
        rows = yield self.deviceList(domid, deviceClass)
        return {"domid": domid, "device": next(r for r in rows if r["devid"] == devid)}

    @inlineCallbacks
    def op_detach(self, request: dict):
        domid = yield self.resolve(request["domain"])
        yield self.detach(domid, request["class"], int(request["devid"]),
                          bool(request.get("force")))
        return {"domid": domid}

    @inlineCallbacks
    def op_devices(self, request: dict):
        domid = yield self.resolve(request["domain"])
        return {"devices": (yield self.deviceList(domid, request["class"]))}

    @inlineCallbacks
    def op_screenshot(self, request: dict):
        domid = yield self.resolve(request["domain"])
        reply = yield jsonline.request(self.reactor, controlSocketPath(self.runDir, domid),
                                       {"op": "screenshot", "devid": request.get("devid", 0)},
                                       timeout=SCREENSHOT_TIMEOUT)
        base64.b64decode(reply["png"], validate=True)
        return {"png": reply["png"]}

    @inlineCallbacks
    def op_shutdown(self, request: dict):
        if request.get("all") and not self.emulated:
            # On a real host, "everything" would be the guests themselves.
            raise DaemonError("shutdown --all is for emulated mode only: on a Xen host it "
                              "would destroy real guests (use destroy for each)")
        if request.get("all"):
            for domid in (yield self.domids()):
                yield self.teardown(domid, graceful=True)
            self.stopping = True
            yield self.supervisor.terminate(ZYGOTE)
        self.reactor.callLater(0.05, self._shutdown, bool(request.get("all")))
        return {}

    def _shutdown(self, everything: bool) -> None:
        if everything and self.xenstored is not None:
            self.stopping = True
            self.xs.close()
            self.xenstored.stop()
        self.reactor.stop()



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
