"""The daemon's backend processes: one per domain, forked from a pre-imported zygote.

Backends run in their own sessions and outlive the daemon; a restarted daemon
adopts them from their records.  A backend that dies while its domain still
has devices is reported on those devices and restarted, within one restart
policy (`RestartLimit`) shared with the zygote.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger

from xend_vfb import jsonline
from xend_vfb.backend.control import controlSocketPath
from xend_vfb.backend.zygote import TITLE_SPACE
from xend_vfb.domain import Domain
from xend_vfb.errors import DeviceError
from xend_vfb.supervisor import ProcessSupervisor, programCommand

__all__ = ["Backends", "RestartLimit", "backendKey", "ZYGOTE"]

log = Logger()

#: A process that dies is restarted at most this many times in `RESTART_WINDOW` s.
RESTART_LIMIT = 3
RESTART_WINDOW = 60.0
#: Seconds the zygote may go without showing progress (a new module imported, its
#: socket answering) before backends start afresh instead: a slow host (dom0 under
#: software emulation) takes long, but keeps moving.
ZYGOTE_STALL = 10.0

#: Seconds a backend keeps a guest's displays (and their viewers) while the guest moves
#: to a new domain: a re-make or a migration takes seconds, a save and restore longer.
HOLD_SECONDS = 300.0

#: The supervisor's key for the zygote backends are forked from.
ZYGOTE = "zygote"


def backendKey(domid: int) -> str:
    """The supervisor's key for a domain's backend process."""
    return f"backend/{domid}"


class RestartLimit:
    """At most `limit` restarts of one thing in `window` seconds."""

    def __init__(self, limit: int = RESTART_LIMIT, window: float = RESTART_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._times: dict[str, list[float]] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """Whether `key` may restart now (counting it if so), and its recent deaths."""
        now = time.monotonic()
        recent = [t for t in self._times.get(key, []) if now - t < self.window]
        if len(recent) >= self.limit:
            self._times[key] = recent
            return False, len(recent) + 1
        self._times[key] = recent + [now]
        return True, len(recent) + 1

    def forget(self, key: str) -> None:
        self._times.pop(key, None)


class Backends(Service):
    """Starting, adopting and restarting the backends of one daemon's domains, and
    the zygote they are forked from (started, or adopted, with the service)."""

    def __init__(self, reactor: Any, supervisor: ProcessSupervisor, runDir: str,
                 emulated: bool) -> None:
        self.reactor = reactor
        self.supervisor = supervisor
        self.runDir = runDir
        self.emulated = emulated
        self.restarts = RestartLimit()

    def paths(self, name: str) -> tuple[str, str]:
        """The record and log file of backend `name` (a domid, or `zygote`)."""
        directory = os.path.join(self.runDir, "backends")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        return os.path.join(directory, f"{name}.pid"), os.path.join(directory, f"{name}.log")

    def startService(self):
        Service.startService(self)
        self.startZygote()
        return self.zygoteReady()

    # -- the zygote -------------------------------------------------------------

    @property
    def zygoteSocket(self) -> str:
        return os.path.join(self.runDir, "backends", "zygote.sock")

    def startZygote(self) -> None:
        """Start (or adopt) the pre-imported image backends are forked from."""
        record, logPath = self.paths("zygote")
        command = [sys.executable, "-m", "xend_vfb.backend.zygote", "--socket",
                   self.zygoteSocket, "--title-space=" + "_" * TITLE_SPACE]
        self.supervisor.ensure(ZYGOTE, command, record, logPath)

    @inlineCallbacks
    def zygoteReady(self):
        """Wait until the zygote answers.  It imports for a while; give up only when
        it stops making progress (its log growing) for `ZYGOTE_STALL` seconds."""
        _, logPath = self.paths("zygote")
        progress, lastChange = None, time.monotonic()
        while self.supervisor.processOf(ZYGOTE) is not None:
            try:
                yield jsonline.request(self.reactor, self.zygoteSocket, {"op": "ping"})
                return True
            except jsonline.ChannelError:
                pass
            seen = _size(logPath), _modules(self.supervisor.processOf(ZYGOTE).pid)
            if seen != progress:
                progress, lastChange = seen, time.monotonic()
            elif time.monotonic() - lastChange > ZYGOTE_STALL:
                break
            yield deferLater(self.reactor, 0.05, lambda: None)
        log.warn("the zygote did not start: backends will start afresh")
        return False

    def zygoteEnded(self) -> None:
        allowed, _ = self.restarts.allow(ZYGOTE)
        if allowed:
            self.startZygote()
        else:
            log.error("the zygote keeps dying: backends will start afresh")

    # -- backends ---------------------------------------------------------------

    def find(self, domid: int) -> Any:
        """The domain's backend process (adopted from its record after a restart), or
        None if it does not run."""
        record, _ = self.paths(str(domid))
        return self.supervisor.find(backendKey(domid), record)

    @inlineCallbacks
    def ensure(self, domain: Domain):
        """Make sure the domain's backend runs if it has devices: adopt the one running,
        or fork one from the zygote (or, without a zygote, start one afresh)."""
        ids = yield domain.deviceIDs()
        domid = domain.domid
        if not any(ids.values()) or self.find(domid) is not None:
            return
        record, logPath = self.paths(str(domid))
        arguments = ["--domid", str(domid), "--run-dir", self.runDir,
                     "--mode", "emulated" if self.emulated else "xen"]
        try:
            reply = yield jsonline.request(
                self.reactor, self.zygoteSocket,
                {"op": "spawn", "argv": arguments, "log": logPath,
                 "env": self.supervisor.environ}, timeout=5.0)
        except jsonline.ChannelError as e:
            log.warn("no zygote ({e}): starting the backend of domain {domid} afresh",
                     e=e, domid=domid)
            self.supervisor.spawn(backendKey(domid),
                                  [*programCommand("xend-vfb-backend"), *arguments],
                                  record, logPath)
            return
        if self.supervisor.record(backendKey(domid), reply["pid"], record) is None:
            raise DeviceError(f"the backend of domain {domid} exited at once; see {logPath}")
        log.info("backend of domain {domid} forked: pid {pid}", domid=domid, pid=reply["pid"])

    @inlineCallbacks
    def hold(self, domid: int, seconds: float = HOLD_SECONDS):
        """Ask the domain's backend to keep its displays for the guest's next domain
        (for `seconds`; 0 takes a hold back); whether it will (a backend that does not
        run or answer will not)."""
        if self.find(domid) is None:
            return False
        try:
            yield jsonline.request(self.reactor, controlSocketPath(self.runDir, domid),
                                   {"op": "hold", "seconds": seconds})
        except jsonline.ChannelError as e:
            log.warn("the backend of domain {domid} cannot hold its displays: {e}",
                     domid=domid, e=e)
            return False
        return True

    @inlineCallbacks
    def follow(self, domain: Domain, old: int | None):
        """Make the backend that held domain `old`'s displays serve `domain` (the guest's
        new domain), so its viewers stay; without it (or an `old`: a guest migrated
        from another host), start one as usual."""
        if old is not None and self.find(old) is not None and self.find(domain.domid) is None:
            try:
                yield jsonline.request(self.reactor, controlSocketPath(self.runDir, old),
                                       {"op": "follow", "domid": domain.domid})
            except jsonline.ChannelError as e:
                log.warn("the backend of domain {old} cannot follow to domain {new}: {e}",
                         old=old, new=domain.domid, e=e)
            else:
                record, _ = self.paths(str(domain.domid))
                self.supervisor.rekey(backendKey(old), backendKey(domain.domid), record)
                return
        yield self.ensure(domain)

    @inlineCallbacks
    def reloadPassword(self, domid: int, devid: int):
        """Have display `devid` of the domain's backend take its recorded password now;
        a backend that does not run takes it when it starts."""
        if self.find(domid) is None:
            return
        yield jsonline.request(self.reactor, controlSocketPath(self.runDir, domid),
                               {"op": "vnc_password", "devid": devid})

    def lastError(self, domid: int) -> str:
        """The last error a backend wrote to its log (an error or critical log line, or
        a traceback's last line), if its last words were one: usually why it died."""
        _, logPath = self.paths(str(domid))
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
    def ended(self, domain: Domain, how: str, clean: bool | None, restart: bool):
        """A backend ended while its domain may still have devices: report it on them
        and restart it, at most RESTART_LIMIT times in RESTART_WINDOW seconds; then
        its devices show the error and stay down until an admin acts."""
        domid = domain.domid
        ids = yield domain.deviceIDs()
        if not any(ids.values()):
            return
        if not clean:
            last = self.lastError(domid)
            yield domain.reportError(f"backend process of domain {domid} ended ({how})"
                                     + (f": {last}" if last else ""), connectedToo=False)
        if not restart:
            return
        if not clean:
            allowed, deaths = self.restarts.allow(backendKey(domid))
            if not allowed:
                message = (f"backend process of domain {domid} died ({how}) {deaths} times "
                           f"in {RESTART_WINDOW:g} s; not restarted")
                log.error("{message}", message=message)
                yield domain.reportError(message, connectedToo=True)
                return
            log.warn("backend of domain {domid} died ({how}): restarting", domid=domid, how=how)
        yield self.ensure(domain)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def _modules(pid: int) -> int:
    """How much of its address space a process has mapped: grows while it imports."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1
