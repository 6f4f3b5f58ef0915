"""A private copy of Xen's C xenstored for machines without a hypervisor.

Debian's xenstored refuses to start without Xen; the LD_PRELOAD shim built
from `shim.c` answers its hypervisor calls (REFERENCE.md section 9), leaving a
real xenstored that serves its Unix socket.  It runs in its own session with
its output in a file, so it outlives whoever started it, as a host's
xenstored outlives the toolstack; `start` reuses one already running in the
same directory.
"""

import os
import signal
import socket
import subprocess
import time

from twisted.logger import Logger

from xend_vfb.errors import XenstoreConnectionError
from xend_vfb.procid import ProcessId
from xend_vfb.settings import buildDir

__all__ = ["EmbeddedXenstored", "findXenstored", "findShim"]

log = Logger()

_SYSTEM_XENSTORED = "/usr/lib/xen-4.17/bin/xenstored"


def findXenstored() -> str:
    """The xenstored binary: `XEND_VFB_XENSTORED`, the set-up's copy in .build/, or Debian's."""
    candidates = [
        os.environ.get("XEND_VFB_XENSTORED", ""),
        os.path.join(buildDir(), "xen/usr/lib/xen-4.17/bin/xenstored"),
        _SYSTEM_XENSTORED,
    ]
    return _first(candidates, "the xenstored binary")


def findShim() -> str:
    """The LD_PRELOAD shim: `XEND_VFB_SHIM` or the set-up's build in .build/."""
    candidates = [
        os.environ.get("XEND_VFB_SHIM", ""),
        os.path.join(buildDir(), "xenstored-shim.so"),
    ]
    return _first(candidates, "the xenstored shim")


def _first(candidates: list[str], what: str) -> str:
    for path in candidates:
        if path and os.path.exists(path):
            return path
    looked = ", ".join(p for p in candidates if p)
    raise XenstoreConnectionError(
        f"{what} was not found (looked in {looked}); run ./test.sh or ./demo.sh to set it up"
    )


class EmbeddedXenstored:
    """xenstored serving `<runDir>/xenstored/socket`; `trace` logs every request (`-T`)."""

    def __init__(self, runDir: str, trace: bool = False) -> None:
        self.directory = os.path.join(runDir, "xenstored")
        self.socketPath = os.path.join(self.directory, "socket")
        self.tracePath = os.path.join(self.directory, "trace") if trace else None
        self.logPath = os.path.join(self.directory, "xenstored.log")
        self._pidPath = os.path.join(self.directory, "pid")
        self._child: subprocess.Popen | None = None

    @property
    def environ(self) -> dict[str, str]:
        """What a child process needs in its environment to find this xenstored."""
        return {"XENSTORED_PATH": self.socketPath}

    def running(self) -> ProcessId | None:
        """The xenstored recorded in this directory, if that very process still runs."""
        try:
            with open(self._pidPath) as f:
                process = ProcessId.parse(f.read())
        except OSError:
            return None
        return process if process is not None and process.alive() else None

    def start(self, timeout: float = 5.0) -> ProcessId:
        """Start xenstored (or find the one already running here) and return once it
        accepts connections.  Takes milliseconds, so it blocks."""
        process = self.running()
        if process is not None and self._accepts():
            return process
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        for stale in (self.socketPath, self._pidPath):
            if os.path.exists(stale):
                os.unlink(stale)
        command = [findXenstored(), "-N"]
        if self.tracePath:
            command += ["-T", self.tracePath]
        env = dict(os.environ, XENSTORED_RUNDIR=self.directory, LD_PRELOAD=findShim())
        with open(self.logPath, "ab") as output:
            self._child = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = ProcessId.of(self._child.pid)
        if process is None:
            raise self._failed("exited at once")
        with open(self._pidPath, "w") as f:
            f.write(f"{process}\n")
        deadline = time.monotonic() + timeout
        while not self._accepts():
            if self._child.poll() is not None:
                raise self._failed(f"exited with status {self._child.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise self._failed(f"did not accept connections within {timeout:g} s")
            time.sleep(0.005)
        log.info("embedded xenstored {process} serving {path}", process=process,
                 path=self.socketPath)
        return process

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; returns when it is gone."""
        process = self.running()
        if process is not None:
            process.kill(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self._stillRunning(process):
                if time.monotonic() > deadline:
                    process.kill(signal.SIGKILL)
                time.sleep(0.005)
        if self._child is not None:
            self._child.wait()
            self._child = None
        for path in (self.socketPath, self._pidPath):
            if os.path.exists(path):
                os.unlink(path)

    def _stillRunning(self, process: ProcessId) -> bool:
        if self._child is not None:
            return self._child.poll() is None
        return process.alive()

    def _accepts(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socketPath)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def _failed(self, what: str) -> XenstoreConnectionError:
        try:
            with open(self.logPath, errors="replace") as f:
                tail = " | ".join(f.read().strip().splitlines()[-3:])
        except OSError:
            tail = ""
        detail = f" (log: {tail})" if tail else ""
        return XenstoreConnectionError(f"embedded xenstored {what}{detail}")
