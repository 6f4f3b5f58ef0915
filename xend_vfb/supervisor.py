"""Spawning, adopting and reaping the per-domain backend processes.

One `xend-vfb-backend` per domain, started once the domain's device areas are
written, in its own session with its output in a log file, so it outlives
the daemon that started it.  Each is recorded as `pid:starttime` in
`<runDir>/backends/<domid>.pid`, which rules out pid reuse when a restarted
daemon adopts it.  A child of ours is reaped by Twisted; an adopted one is
watched through a pidfd, which becomes readable the moment it exits: either
way its death is noticed at once, without polling.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from xend_vfb.guestmem.base import FdReader
from xend_vfb.procid import ProcessId

__all__ = ["BackendSupervisor", "backendCommand"]

log = Logger()

BACKEND_PROGRAM = "xend-vfb-backend"


def backendCommand() -> list[str]:
    """How to run the backend: the console script next to this Python, so that
    `pgrep -f xend-vfb-backend` finds it."""
    script = os.path.join(os.path.dirname(sys.executable), BACKEND_PROGRAM)
    if not os.path.exists(script):
        script = shutil.which(BACKEND_PROGRAM) or script
    return [sys.executable, script]


class _Backend:
    """What the supervisor knows of one domain's backend process."""

    def __init__(self, domid: int, process: ProcessId) -> None:
        self.domid = domid
        self.process = process
        self.ended: Deferred[None] = Deferred()
        self.pidfd: int | None = None
        self.reader: FdReader | None = None


class _BackendProtocol(ProcessProtocol):
    def __init__(self, supervisor: BackendSupervisor, domid: int) -> None:
        self.supervisor = supervisor
        self.domid = domid

    def processEnded(self, reason: Any) -> None:
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        how = f"killed by signal {sig}" if sig else f"exit status {code}"
        self.supervisor._ended(self.domid, how, clean=code == 0 and not sig)


class BackendSupervisor(Service):
    """The backend processes of every domain; `onDeath(domid, how)` is called when one
    ends other than by finishing its work (exit status 0)."""

    def __init__(self, runDir: str, mode: str, reactor: Any, environ: dict[str, str] | None = None,
                 onDeath: Callable[[int, str], None] | None = None) -> None:
        self.runDir = runDir
        self.mode = mode
        self.reactor = reactor
        self.environ = dict(os.environ if environ is None else environ)
        self.onDeath = onDeath or (lambda domid, how: None)
        self.backends: dict[int, _Backend] = {}

    def _directory(self) -> str:
        path = os.path.join(self.runDir, "backends")
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def recordPath(self, domid: int) -> str:
        return os.path.join(self._directory(), f"{domid}.pid")

    def logPath(self, domid: int) -> str:
        return os.path.join(self._directory(), f"{domid}.log")

    def recorded(self, domid: int) -> ProcessId | None:
        """The backend recorded for `domid`, if that very process still runs."""
        try:
            with open(self.recordPath(domid)) as f:
                process = ProcessId.parse(f.read())
        except OSError:
            return None
        return process if process is not None and process.alive() else None

    def running(self, domid: int) -> ProcessId | None:
        backend = self.backends.get(domid)
        return backend.process if backend is not None else None

    def ensure(self, domid: int) -> tuple[ProcessId, bool]:
        """The backend of `domid`: ours, one found running (adopted), or a new one.
        Returns it and whether it was started now."""
        if domid in self.backends:
            return self.backends[domid].process, False
        process = self.recorded(domid)
        if process is not None:
            self.adopt(domid, process)
            return process, False
        return self.spawn(domid), True

    def spawn(self, domid: int) -> ProcessId:
        """Start the backend of `domid` in its own session."""
        command = ["/usr/bin/setsid", *backendCommand(), "--domid", str(domid),
                   "--run-dir", self.runDir, "--mode", self.mode]
        logFd = os.open(self.logPath(domid), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        nullFd = os.open(os.devnull, os.O_RDONLY)
        try:
            transport = self.reactor.spawnProcess(
                _BackendProtocol(self, domid), command[0], command, env=self.environ,
                childFDs={0: nullFd, 1: logFd, 2: logFd})
        finally:
            os.close(logFd)
            os.close(nullFd)
        process = ProcessId.of(transport.pid)
        if process is None:  # it exited already; Twisted will report how
            process = ProcessId(transport.pid, 0)
        self._record(domid, process)
        self.backends[domid] = _Backend(domid, process)
        log.info("backend of domain {domid} started: {process}", domid=domid, process=process)
        return process

    def adopt(self, domid: int, process: ProcessId) -> None:
        """Watch a backend another daemon started; its exit wakes us through a pidfd."""
        backend = _Backend(domid, process)
        try:
            backend.pidfd = os.pidfd_open(process.pid)
        except ProcessLookupError:
            self._ended(domid, "gone before it could be adopted", clean=False)
            return
        self.backends[domid] = backend
        if not process.alive():  # exited between the check and pidfd_open
            self._ended(domid, "gone before it could be adopted", clean=False)
            return
        backend.reader = FdReader(backend.pidfd, lambda: self._adoptedExited(domid),
                                  f"backend {domid}")
        self.reactor.addReader(backend.reader)
        log.info("backend of domain {domid} adopted: {process}", domid=domid, process=process)

    def _adoptedExited(self, domid: int) -> None:
        self._ended(domid, "exited (status unknown: not our child)", clean=None)

    def _record(self, domid: int, process: ProcessId) -> None:
        path = self.recordPath(domid)
        with open(path + ".new", "w") as f:
            f.write(f"{process}\n")
        os.replace(path + ".new", path)

    def _ended(self, domid: int, how: str, clean: bool | None) -> None:
        backend = self.backends.pop(domid, None)
        if backend is None:
            return
        if backend.reader is not None:
            self.reactor.removeReader(backend.reader)
        if backend.pidfd is not None:
            os.close(backend.pidfd)
        if os.path.exists(self.recordPath(domid)):
            os.unlink(self.recordPath(domid))
        if clean:
            log.info("backend of domain {domid} finished", domid=domid)
        else:
            log.error("backend of domain {domid} ({process}) ended: {how}", domid=domid,
                      process=backend.process, how=how)
            self.onDeath(domid, how)
        backend.ended.callback(None)

    def whenEnded(self, domid: int) -> Deferred[None]:
        """Fires once the backend of `domid` is gone (at once if there is none)."""
        backend = self.backends.get(domid)
        if backend is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        backend.ended.addBoth(lambda result: (d.callback(None), result)[1])
        return d

    def terminate(self, domid: int, sig: int = signal.SIGTERM) -> Deferred[None]:
        """Signal the backend of `domid` and fire once it is gone."""
        backend = self.backends.get(domid)
        if backend is None:
            return succeed(None)
        backend.process.kill(sig)
        return self.whenEnded(domid)

    def stopService(self) -> None:
        """Stop watching; the backends themselves keep running (like KillMode=process)."""
        super().stopService()
        for domid in list(self.backends):
            backend = self.backends.pop(domid)
            if backend.reader is not None:
                self.reactor.removeReader(backend.reader)
            if backend.pidfd is not None:
                os.close(backend.pidfd)
