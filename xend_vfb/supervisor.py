"""Spawning, adopting and reaping the processes a host runs for its domains.

Backends (one `xend-vfb-backend` per domain) and, in emulated mode, the
simulated guests are started in their own sessions with output to a log file,
so they outlive the daemon that started them.  Each is recorded as
`pid:starttime` in a record file, which rules out pid reuse when a restarted
daemon adopts it.  A child of ours is reaped by Twisted; an adopted process
is watched through a pidfd, readable the moment it exits: either way its end
is noticed at once, without polling.
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

from xend_vfb.fdreader import FdReader
from xend_vfb.procid import ProcessId

__all__ = ["ProcessSupervisor", "programCommand"]

log = Logger()


def programCommand(program: str) -> list[str]:
    """How to run one of our console scripts (`xend-vfb-backend`, `xend-vfb-guest`): the
    script next to this Python, so that `pgrep -f <program>` finds the process."""
    script = os.path.join(os.path.dirname(sys.executable), program)
    if not os.path.exists(script):
        script = shutil.which(program) or script
    return [sys.executable, script]


class _Supervised:
    """What the supervisor knows of one process."""

    def __init__(self, key: str, process: ProcessId, recordPath: str) -> None:
        self.key = key
        self.process = process
        self.recordPath = recordPath
        self.ended: Deferred[None] = Deferred()
        self.pidfd: int | None = None
        self.reader: FdReader | None = None


class _ChildProtocol(ProcessProtocol):
    def __init__(self, supervisor: ProcessSupervisor) -> None:
        self.supervisor = supervisor
        self.supervised: _Supervised | None = None

    def processEnded(self, reason: Any) -> None:
        code = getattr(reason.value, "exitCode", None)
        sig = getattr(reason.value, "signal", None)
        how = f"killed by signal {sig}" if sig else f"exit status {code}"
        if self.supervised is not None:
            self.supervisor._ended(self.supervised, how, clean=code == 0 and not sig)


def readRecord(recordPath: str) -> ProcessId | None:
    """The process recorded in `recordPath`, if that very process still runs."""
    try:
        with open(recordPath) as f:
            process = ProcessId.parse(f.read())
    except OSError:
        return None
    return process if process is not None and process.alive() else None


class ProcessSupervisor(Service):
    """Processes by key (`backend/3`, `guest/3`).  `onDeath(key, how, clean)` is called
    when one ends; `clean` is True for exit status 0, None when unknown (adopted)."""

    def __init__(self, reactor: Any, environ: dict[str, str] | None = None,
                 onDeath: Callable[[str, str, bool | None], None] | None = None) -> None:
        self.reactor = reactor
        self.environ = dict(os.environ if environ is None else environ)
        self.onDeath = onDeath or (lambda key, how, clean: None)
        self.processes: dict[str, _Supervised] = {}

    def processOf(self, key: str) -> ProcessId | None:
        supervised = self.processes.get(key)
        return supervised.process if supervised is not None else None

    def find(self, key: str, recordPath: str) -> ProcessId | None:
        """The process for `key`: the one watched, or the one its record names, adopted
        now (after a daemon restart); None if it does not run."""
        if key not in self.processes:
            process = readRecord(recordPath)
            if process is None:
                return None
            self.adopt(key, process, recordPath)
        return self.processOf(key)

    def ensure(self, key: str, command: list[str], recordPath: str,
               logPath: str) -> tuple[ProcessId, bool]:
        """The process for `key`: ours, one found running (adopted), or a new one.
        Returns it and whether it was started now."""
        process = self.find(key, recordPath)
        if process is not None:
            return process, False
        return self.spawn(key, command, recordPath, logPath), True

    def spawn(self, key: str, command: list[str], recordPath: str, logPath: str) -> ProcessId:
        """Start `command` in its own session, output appended to `logPath`."""
        os.makedirs(os.path.dirname(recordPath), mode=0o700, exist_ok=True)
        argv = ["/usr/bin/setsid", *command]
        logFd = os.open(logPath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        nullFd = os.open(os.devnull, os.O_RDONLY)
        protocol = _ChildProtocol(self)
        try:
            transport = self.reactor.spawnProcess(
                protocol, argv[0], argv, env=self.environ,
                childFDs={0: nullFd, 1: logFd, 2: logFd})
        finally:
            os.close(logFd)
            os.close(nullFd)
        process = ProcessId.of(transport.pid) or ProcessId(transport.pid, 0)
        self._writeRecord(recordPath, process)
        protocol.supervised = self.processes[key] = _Supervised(key, process, recordPath)
        log.info("{key} started: {process}", key=key, process=process)
        return process

    def record(self, key: str, pid: int, recordPath: str) -> ProcessId | None:
        """Record and watch a process started for us by someone else (the zygote);
        None if it is already gone."""
        process = ProcessId.of(pid)
        if process is None:
            return None
        os.makedirs(os.path.dirname(recordPath), mode=0o700, exist_ok=True)
        self._writeRecord(recordPath, process)
        self.adopt(key, process, recordPath)
        return process

    def _writeRecord(self, recordPath: str, process: ProcessId) -> None:
        with open(recordPath + ".new", "w") as f:
            f.write(f"{process}\n")
        os.replace(recordPath + ".new", recordPath)

    def adopt(self, key: str, process: ProcessId, recordPath: str) -> None:
        """Watch a process another daemon started; its exit wakes us through a pidfd."""
        supervised = _Supervised(key, process, recordPath)
        self.processes[key] = supervised
        try:
            supervised.pidfd = os.pidfd_open(process.pid)
        except ProcessLookupError:
            self._ended(supervised, "gone before it could be adopted", clean=None)
            return
        if not process.alive():  # exited between the check and pidfd_open
            self._ended(supervised, "gone before it could be adopted", clean=None)
            return
        supervised.reader = FdReader(supervised.pidfd, lambda: self._ended(
            supervised, "exited", clean=None), key)
        self.reactor.addReader(supervised.reader)
        log.info("{key} adopted: {process}", key=key, process=process)

    def _forget(self, supervised: _Supervised) -> None:
        if supervised.reader is not None:
            self.reactor.removeReader(supervised.reader)
            supervised.reader = None
        if supervised.pidfd is not None:
            os.close(supervised.pidfd)
            supervised.pidfd = None

    def rekey(self, key: str, newKey: str, newRecordPath: str) -> None:
        """The process for `key` now serves as `newKey` (a backend that follows its guest
        to a new domain): watched and recorded under the new key and record."""
        supervised = self.processes.pop(key)
        self._writeRecord(newRecordPath, supervised.process)
        if os.path.exists(supervised.recordPath):
            os.unlink(supervised.recordPath)
        supervised.key, supervised.recordPath = newKey, newRecordPath
        self.processes[newKey] = supervised
        log.info("{key} is now {newKey}", key=key, newKey=newKey)

    def _ended(self, supervised: _Supervised, how: str, clean: bool | None) -> None:
        key = supervised.key
        if self.processes.get(key) is not supervised:
            return
        del self.processes[key]
        self._forget(supervised)
        if readRecord(supervised.recordPath) is None and os.path.exists(supervised.recordPath):
            os.unlink(supervised.recordPath)
        if clean:
            log.info("{key} finished", key=key)
        else:
            log.warn("{key} ({process}) ended: {how}", key=key, process=supervised.process,
                     how=how)
        self.onDeath(key, how, clean)
        supervised.ended.callback(None)

    def whenEnded(self, key: str) -> Deferred[None]:
        """Fires once the process for `key` is gone (at once if there is none)."""
        supervised = self.processes.get(key)
        if supervised is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        supervised.ended.addBoth(lambda result: (d.callback(None), result)[1])
        return d

    def terminate(self, key: str, sig: int = signal.SIGTERM) -> Deferred[None]:
        """Signal the process for `key` and fire once it is gone."""
        supervised = self.processes.get(key)
        if supervised is None:
            return succeed(None)
        d = self.whenEnded(key)
        supervised.process.kill(sig)
        return d

    def stopService(self) -> None:
        """Stop watching; the processes themselves keep running (systemd's
        KillMode=process does the same for the daemon's unit)."""
        super().stopService()
        for supervised in self.processes.values():
            self._forget(supervised)
        self.processes.clear()
