"""Identifying a process beyond its pid.

A pid alone can be reused after the process exits; the pair (pid, start time
in clock ticks since boot, field 22 of /proc/PID/stat) cannot, so records of
the processes we start (xenstored, backends, guests) keep both.  A process's
name as `pgrep -f` sees it can be rewritten in place (`setCommandLine`).
"""

import ctypes
import os
import signal
from dataclasses import dataclass

__all__ = ["ProcessId", "setCommandLine", "startTime"]


def startTime(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None  # a zombie has exited: only its reaping is left
    return int(fields[19])


@dataclass(frozen=True)
class ProcessId:
    """A process we started, as recorded on disk: `pid:starttime`."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> "ProcessId | None":
        start = startTime(pid)
        return None if start is None else cls(pid, start)

    @classmethod
    def parse(cls, text: str) -> "ProcessId | None":
        """Read a record written by `str()`; None for anything malformed."""
        try:
            pid, start = text.strip().split(":")
            return cls(int(pid), int(start))
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.pid}:{self.start}"

    def alive(self) -> bool:
        """Whether this very process (not a later one with the same pid) still runs."""
        return startTime(self.pid) == self.start

    def kill(self, sig: int = signal.SIGTERM) -> bool:
        """Send `sig` if this process still runs; whether it was sent."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True


def setCommandLine(words: list[str]) -> None:
    """Rewrite this process's /proc/PID/cmdline in place (as setproctitle does): the
    kernel shows the bytes between arg_start and arg_end, which we may overwrite."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # fields 48 and 49: arg_start, arg_end
    text = b"\0".join(w.encode() for w in words)[: end - start - 1]
    ctypes.memmove(start, text + bytes(end - start - len(text)), end - start)
